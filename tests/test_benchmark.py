"""``flashdepth benchmark``: resolutions, frame timer, side-by-side comparison, tables.

Timing is asserted with stub models that sleep known durations (robust on a busy CPU);
real presets, built at the tiny test size (``tiny_presets``), run once each at 42x28 (W x H)
with a few frames.
"""

from __future__ import annotations

import re
import time

import pytest
import torch
from torch import Tensor, nn

from flashdepth.benchmark import (
    FrameTimer,
    benchmark_scan,
    benchmark_stream,
    compare_models,
    format_comparison,
    main,
    parse_resolution,
)
from flashdepth.models.contract import StreamingDepthModel, WeightPart
from flashdepth.transforms import normalize


class SleepingModel:
    """A :class:`StreamingDepthModel` whose ``step`` sleeps and records what it sees.

    Args:
        seconds: Sleep of every step.
        first_seconds: Sleep of the first ``first_steps`` steps instead (the warm-up).
        first_steps: How many steps sleep ``first_seconds``.
        log: Shared list the model appends its name to at every step.
        name: The name it logs.
    """

    def __init__(
        self,
        seconds: float,
        first_seconds: float | None = None,
        first_steps: int = 0,
        log: list[str] | None = None,
        name: str = "",
    ) -> None:
        self.seconds = seconds
        self.first_seconds = seconds if first_seconds is None else first_seconds
        self.first_steps = first_steps
        self.log = log
        self.name = name
        self.calls = 0
        self.frames: list[Tensor] = []
        self.autocast: list[torch.dtype | None] = []
        self.inference_mode: list[bool] = []

    def init_state(
        self,
        batch_size: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        image_size: tuple[int, int] | None = None,
    ) -> Tensor:
        """A counter state ``(B, 1)``."""
        return torch.zeros(batch_size, 1, device=device, dtype=dtype)

    def step(self, frame: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        """Sleep, record, and return zeros with the state counted up."""
        time.sleep(self.first_seconds if self.calls < self.first_steps else self.seconds)
        self.calls += 1
        self.frames.append(frame.clone())
        enabled = torch.is_autocast_enabled("cpu")
        self.autocast.append(torch.get_autocast_dtype("cpu") if enabled else None)
        self.inference_mode.append(torch.is_inference_mode_enabled())
        if self.log is not None:
            self.log.append(self.name)
        return frame.new_zeros(frame.shape[0], *frame.shape[-2:]), state + 1

    def forward(self, clip: Tensor, state: Tensor | None = None) -> Tensor:
        """Zeros ``(B, T, H, W)``."""
        return clip.new_zeros(*clip.shape[:2], *clip.shape[-2:])

    def forward_with_state(self, clip: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        """Zeros and the state counted up by the clip length."""
        return self.forward(clip), state + clip.shape[1]

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """No parameters."""
        return {}

    def weight_parts(self) -> dict[str, WeightPart]:
        """No parts."""
        return {}

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Nothing to checkpoint."""


def test_stub_satisfies_the_contract() -> None:
    assert isinstance(SleepingModel(0.0), StreamingDepthModel)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("42x28", (28, 42)), ("2044x1148", (1148, 2044)), ("1148X2044", (2044, 1148))],
)
def test_resolution_is_width_by_height(text: str, expected: tuple[int, int]) -> None:
    assert parse_resolution(text) == expected  # (height, width)
    assert parse_resolution(text.replace("x", "×").replace("X", "×")) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("2040x1148", r"'2040x1148' \(width x height\): width 2040 is not a positive multiple"),
        ("2044x1150", r"height 1150 is not a positive multiple of 14"),
        ("40x27", r"width 40 and height 27 are not positive multiples of 14"),
        ("0x28", r"width 0 is not"),
        ("1148", r"'1148' is not WIDTHxHEIGHT"),
    ],
)
def test_resolution_errors_name_the_value(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_resolution(text)


def test_cli_rejects_a_bad_resolution(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["compare", "--resolution", "2040x1148"])
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert "argument --resolution" in err and "width 2040 is not a positive multiple" in err


def test_warm_up_frames_are_not_timed() -> None:
    model = SleepingModel(0.002, first_seconds=0.06, first_steps=2)
    timer = FrameTimer(model, 28, 42)
    timer.warm_up(2)
    durations = timer.run(4)
    assert model.calls == 6 and len(durations) == 4
    assert all(2.0 <= duration < 40.0 for duration in durations), durations
    assert timer.state.item() == 6  # one stream: the state carries across the two calls


def test_frames_are_normalised_uint8_and_stepped_in_inference_mode() -> None:
    model = SleepingModel(0.0)
    timer = FrameTimer(model, 28, 42, seed=3)
    timer.run(9)  # cycles through the 8 stored frames, then starts again
    expected = normalize(timer.source[0].float() / 255)
    assert timer.source.dtype == torch.uint8 and len(model.frames) == 9
    assert model.frames[0].shape == (1, 3, 28, 42) and model.frames[0].dtype == torch.float32
    torch.testing.assert_close(model.frames[0], expected)
    torch.testing.assert_close(model.frames[8], expected)
    assert not torch.equal(model.frames[0], model.frames[1])
    assert all(model.inference_mode) and model.autocast == [None] * 9


def test_float_input_and_bf16_autocast() -> None:
    model = SleepingModel(0.0)
    timer = FrameTimer(model, 28, 42, dtype="bf16", input_dtype="float")
    timer.run(2)
    torch.testing.assert_close(model.frames[1], timer.source[1])
    assert model.autocast == [torch.bfloat16, torch.bfloat16]


def test_compare_ratio_is_the_ratio_of_medians() -> None:
    models = {"slow": SleepingModel(0.04), "flashdepth-s": SleepingModel(0.02)}
    results = compare_models(models, 28, 42, frames=4, warmup=1, rounds=2)
    assert list(results) == ["slow", "flashdepth-s"]  # the order given
    reference, slow = results["flashdepth-s"], results["slow"]
    assert reference["ratio"] == 1.0  # flashdepth-s is the reference wherever it is listed
    assert slow["ratio"] == pytest.approx(slow["median_ms"] / reference["median_ms"], rel=1e-12)
    assert slow["ratio"] == pytest.approx(2.0, rel=0.3)  # 40 ms vs 20 ms sleeps
    for row in results.values():
        assert row["frames"] == 4
        assert row["fps"] == pytest.approx(1000 / row["mean_ms"])
    assert 20.0 <= reference["median_ms"] < 40.0 and 40.0 <= slow["median_ms"] < 80.0
    assert models["slow"].calls == models["flashdepth-s"].calls == 5  # 1 warm-up + 4 timed


def test_compare_warms_up_then_interleaves_rounds() -> None:
    log: list[str] = []
    models = {name: SleepingModel(0.0, log=log, name=name) for name in ("a", "b", "c")}
    results = compare_models(models, 28, 42, frames=4, warmup=1, rounds=3, reference="b")
    warm_up = ["a", "b", "c"]
    rounds = ["a", "a", "b", "b", "c", "c"] + ["b", "c", "a"] + ["c", "a", "b"]  # 2 + 1 + 1
    assert log == warm_up + rounds
    assert results["b"]["ratio"] == 1.0


def test_compare_rejects_a_reference_not_compared() -> None:
    with pytest.raises(ValueError, match="'flashdepth-l' is not among"):
        compare_models({"a": SleepingModel(0.0)}, 28, 42, frames=1, reference="flashdepth-l")


def test_comparison_table_prints_the_numbers() -> None:
    results = {
        "flashdepth-full": {"median_ms": 30.0, "mean_ms": 32.0, "fps": 31.25, "ratio": 3.0},
        "flashdepth-s": {"median_ms": 10.0, "mean_ms": 12.5, "fps": 80.0, "ratio": 1.0},
    }
    lines = format_comparison(results, "flashdepth-s").splitlines()
    assert lines[0].split() == ["model", "median", "ms", "mean", "ms", "FPS", "vs", "flashdepth-s"]
    assert lines[1].split() == ["flashdepth-full", "30.00", "32.00", "31.25", "3.00x"]
    assert lines[2].split() == ["flashdepth-s", "10.00", "12.50", "80.00", "1.00x"]
    assert len({len(line) for line in lines}) == 1  # columns line up


def test_cli_compares_full_and_small(
    capsys: pytest.CaptureFixture[str], tiny_presets: None
) -> None:
    args = ["compare", "--resolution", "42x28", "--frames", "3", "--warmup", "1"]
    assert main([*args, "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "42x28 (WxH), cpu, fp32, 3 frames per model after 1 warm-up" in out
    rows = {}
    for model in ("flashdepth-full", "flashdepth-s"):  # the default models
        match = re.search(rf"^{model}\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)x$", out, re.M)
        assert match, out
        rows[model] = [float(value) for value in match.groups()]
        median, mean, fps, _ = rows[model]
        assert median > 0 and mean > 0 and fps == pytest.approx(1000 / mean, rel=1e-3, abs=0.006)
    assert rows["flashdepth-s"][3] == 1.0
    ratio = rows["flashdepth-full"][0] / rows["flashdepth-s"][0]
    assert rows["flashdepth-full"][3] == pytest.approx(ratio, abs=0.006)


def test_per_frame_preset_streams(tiny_presets: None) -> None:
    result = benchmark_stream(
        "depth-anything-v2-vits", frames=5, height=28, width=42, window=2, warmup=1
    )
    assert result["early_ms"] > 0 and result["late_ms"] > 0
    assert result["latency_ratio"] == pytest.approx(result["late_ms"] / result["early_ms"])
    assert result["rss_end_mb"] > 0


def test_scan_benchmark_compares_equal_results() -> None:
    result = benchmark_scan(tokens=70, repeats=1)
    assert result["max_abs_diff"] < 1e-3
    assert result["speedup"] == pytest.approx(result["recurrent_ms"] / result["chunked_ms"])


def test_main_prints_stream_and_scan_tables(
    capsys: pytest.CaptureFixture[str], tiny_presets: None
) -> None:
    args = ["--frames", "25", "--window", "10", "--height", "28", "--width", "42"]
    assert main([*args, "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "stream: flashdepth-s 42x28 (WxH), cpu, fp32" in out
    for row in ("median latency, frames 5-15", "last 10 frames", "late / early", "growth"):
        assert row in out
    assert re.search(r"speed-up\s+\d+\.\d+x", out)
    assert re.search(r"host RSS at the end\s+\d+\.\d MiB", out)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--resolution", "42x28", "--height", "28"], "either --resolution WxH or --height"),
        (["compare", "--models", "flashdepth-s,nope"], "unknown model(s) ['nope']"),
        (["compare", "--models", "flashdepth-s", "--reference", "x"], "'x' is not among"),
        (["compare", "--frames", "0"], "--frames must be at least 1"),
        (["stream", "--height", "30"], "--height 30 must be a positive multiple of 14"),
    ],
)
def test_cli_errors(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == 2
    assert message in capsys.readouterr().err
