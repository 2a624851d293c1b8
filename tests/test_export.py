"""Tests of :mod:`flashdepth.export`: TorchScript and ONNX files of the streaming step.

Three FlashDepth-S presets (Mamba, GRU, no temporal module), built at the tiny test size
(``vitt``: the same modules, narrower), are exported once per module at 56x84, with their
zero-initialised output layers randomised so that the carried state reaches the depth. The
exported steps must stream like eager PyTorch, state carried. Measured on a 2-core CPU
(torch 2.14, onnxruntime 1.32): TorchScript is bitwise equal, ONNX within 1e-6 of the output
scale; the bounds below leave a margin of ten.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from flashdepth.export import (
    FORMATS,
    OPSET,
    ExportCheck,
    ExportError,
    ExportInfo,
    check_export,
    export,
    load_exported,
    main,
    parse_resolution,
)
from flashdepth.transforms import Preprocess
from tests.cli_overrides import tiny_preset

SIZE = (56, 84)
PRESETS = ("flashdepth-s", "flashdepth-s-gru", "flashdepth-s-none")
#: The state of each preset (tiny size: DPT width 32) for one video at 56x84: Mamba's 4 blocks
#: of 4 heads of 32 channels, the GRU's hidden map of the 1x1 pooled grid.
STATE_SHAPES = {
    "flashdepth-s": (1, 4, 4, 32, 256),
    "flashdepth-s-gru": (1, 32, 1, 1),
    "flashdepth-s-none": (1, 0),
}
#: Largest difference to eager relative to the output's scale (measured: 0 and ~1e-6).
MAX_RELATIVE = {"torchscript": 1e-6, "onnx": 1e-5}

#: The README's example ("Export"), run as it is on a generated video.
README_SNIPPET = """\
import av
import numpy as np
import onnxruntime as ort

session = ort.InferenceSession("flashdepth-s.onnx", providers=["CPUExecutionProvider"])
frame_input, state_input = session.get_inputs()
height, width = frame_input.shape[2:]  # the network input size fixed at export
state = np.zeros(state_input.shape, np.float32)  # every video starts from zeros
mean = np.array([0.485, 0.456, 0.406], np.float32)  # ImageNet mean and std
std = np.array([0.229, 0.224, 0.225], np.float32)
with av.open("video.mp4") as video:
    for index, decoded in enumerate(video.decode(video=0)):
        rgb = decoded.to_ndarray(
            format="rgb24", width=width, height=height, interpolation="BICUBIC"
        )
        frame = ((rgb / np.float32(255) - mean) / std).transpose(2, 0, 1)[None]
        inverse_depth, state = session.run(None, {"frame": frame, "state": state})
        np.save(f"depth_{index:05d}.npy", inverse_depth[0])  # (H, W) relative inverse depth
"""


@dataclass
class Exported:
    """A preset with randomised output layers and its exported files."""

    model: nn.Module
    paths: dict[str, Path]
    checks: dict[str, ExportCheck]


def streaming_model(name: str, **overrides: object) -> nn.Module:
    """The preset at the tiny test size with every zero-initialised weight matrix randomised.

    Randomising the temporal and fusion outputs makes the state and the teacher change the depth.
    """
    torch.manual_seed(0)  # module fixtures run outside the seeding of conftest
    model = tiny_preset(name, **overrides).eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() > 1 and not parameter.any():
                parameter.normal_(0.0, 0.5, generator=generator)
    return model


def export_both(model: nn.Module, name: str, folder: Path, dynamic_batch: bool) -> Exported:
    """Export ``model`` to TorchScript (``.pt``) and ONNX (``.onnx``) in ``folder``."""
    paths = {"torchscript": folder / f"{name}.pt", "onnx": folder / f"{name}.onnx"}
    checks = {}
    for format, path in paths.items():
        dynamic = dynamic_batch and format == "onnx"
        _, checks[format] = export(
            model, path, SIZE, format, dynamic_batch=dynamic, model_name=name
        )
    return Exported(model, paths, checks)


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Exported]:
    """Every preset of :data:`PRESETS` in both formats; ``-none``'s ONNX has a dynamic batch."""
    folder = tmp_path_factory.mktemp("exports")
    return {
        name: export_both(streaming_model(name), name, folder, name == "flashdepth-s-none")
        for name in PRESETS
    }


def relative(got: torch.Tensor, want: torch.Tensor) -> float:
    """``max |got - want|`` over ``max |want|`` (0 for empty tensors)."""
    if not want.numel():
        return 0.0
    return ((got - want).abs().max() / want.abs().max()).item()


def stream(model: nn.Module, run: Callable, videos: int, frames: int = 3) -> list[float]:
    """Stream random frames through ``model`` and ``run``, each with its own state.

    Returns the relative differences of depth and state, frame after frame.
    """
    generator = torch.Generator().manual_seed(2)
    eager_state = model.init_state(videos, image_size=SIZE)
    file_state = eager_state.clone()
    differences = []
    with torch.no_grad(), torch.jit.optimized_execution(False):  # no TorchScript recompiling
        for _ in range(frames):
            frame = torch.randn(videos, 3, *SIZE, generator=generator)
            depth, eager_state = model.step(frame, eager_state)
            got, file_state = run(frame, file_state)
            differences += [relative(got, depth), relative(file_state, eager_state)]
    return differences


@pytest.mark.parametrize("format", FORMATS)
@pytest.mark.parametrize("name", PRESETS)
def test_exported_files_stream_like_eager(exports: dict, name: str, format: str) -> None:
    """The check run by ``export`` measured the differences; the file describes itself.

    The check streams 3 frames, state carried (two videos for a dynamic batch).
    """
    check = exports[name].checks[format]
    assert check.frames == 3
    assert max(check.depth_relative, check.state_relative) <= MAX_RELATIVE[format]
    assert check.depth_max_abs <= 10 * MAX_RELATIVE[format]  # depths are of order 1 here
    if name != "flashdepth-s-none":
        assert check.state_max_abs <= MAX_RELATIVE[format]  # states are below 1
    batch = "batch" if format == "onnx" and name == "flashdepth-s-none" else 1
    state = (batch, *STATE_SHAPES[name][1:])
    shapes = {"frame": (batch, 3, *SIZE), "state": state, "inverse_depth": (batch, *SIZE)}
    _, info = load_exported(exports[name].paths[format])
    assert info == ExportInfo(name, format, SIZE, {**shapes, "next_state": state})


@pytest.mark.parametrize("name", ["flashdepth-s", "flashdepth-s-gru"])
def test_exported_state_carries_the_past(exports: dict, name: str) -> None:
    run, _ = load_exported(exports[name].paths["onnx"])
    frames = torch.randn(3, 1, 3, *SIZE, generator=torch.Generator().manual_seed(3))
    fresh = exports[name].model.init_state(1, image_size=SIZE)
    state = fresh
    for frame in frames:
        depth, state = run(frame, state)
    alone, _ = run(frames[-1], fresh)
    assert state.abs().max() > 0.01
    # the third frame's depth depends on the first two (measured 1e-3 to 3e-3), far beyond
    # the export's error
    assert relative(depth, alone) > 20 * MAX_RELATIVE["onnx"]


def test_per_frame_preset_has_no_memory_and_a_dynamic_batch(exports: dict) -> None:
    run, _ = load_exported(exports["flashdepth-s-none"].paths["onnx"])
    frames = torch.randn(2, 2, 3, *SIZE, generator=torch.Generator().manual_seed(4))
    _, state = run(frames[0], torch.zeros(2, 0))  # two videos side by side
    second, state = run(frames[1], state)
    alone, _ = run(frames[1], torch.zeros(2, 0))
    assert state.shape == (2, 0) and second.shape == (2, *SIZE)
    assert torch.equal(second, alone)


def test_onnx_files_have_the_documented_names_and_opset(exports: dict) -> None:
    path = exports["flashdepth-s-gru"].paths["onnx"]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [(node.name, node.shape) for node in session.get_inputs()] == [
        ("frame", [1, 3, 56, 84]),
        ("state", [1, 32, 1, 1]),
    ]
    assert [(node.name, node.shape) for node in session.get_outputs()] == [
        ("inverse_depth", [1, 56, 84]),
        ("next_state", [1, 32, 1, 1]),
    ]
    dynamic = ort.InferenceSession(
        str(exports["flashdepth-s-none"].paths["onnx"]), providers=["CPUExecutionProvider"]
    )
    assert dynamic.get_inputs()[0].shape == ["batch", 3, 56, 84]
    opsets = {entry.domain: entry.version for entry in onnx.load(str(path)).opset_import}
    assert opsets[""] == OPSET >= 17


def test_check_finds_a_file_of_other_weights(exports: dict) -> None:
    other = streaming_model("flashdepth-s-none")
    with torch.no_grad():
        other.temporal_out[1].bias.fill_(0.5)
    path = exports["flashdepth-s-none"].paths["torchscript"]
    with pytest.raises(ExportError, match=r"differs from the eager model \(frames streamed: 1\)"):
        check_export(other, path, SIZE, frames=1)
    with pytest.raises(ValueError, match=r"was exported for \(56, 84\) \(H, W\)"):
        check_export(exports["flashdepth-s-none"].model, path, (56, 98))


class RunningMeanDepth(nn.Module):
    """A tiny streaming model of the contract: depth = ReLU(1x1 conv) + the state's mean.

    The state is an exponential mean of the frames' channel means.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 1, 1)

    def init_state(
        self, batch_size: int, device: object = None, dtype: object = None, *, image_size: object
    ) -> torch.Tensor:
        return torch.zeros(batch_size, 3, device=device)

    def step(self, frame: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        depth = torch.relu(self.conv(frame))[:, 0] + state.mean(1)[:, None, None]
        return depth, 0.5 * state + frame.mean((2, 3))


def test_export_failing_its_check_leaves_no_file(tmp_path: Path) -> None:
    path = tmp_path / "never.pt"
    with pytest.raises(ExportError, match=r"tolerance -1; nothing was written to .*never\.pt"):
        # every difference, even 0, exceeds a negative tolerance
        export(RunningMeanDepth(), path, SIZE, "torchscript", tolerance=-1.0)
    assert list(tmp_path.iterdir()) == []
    info, check = export(RunningMeanDepth(), path, SIZE, "torchscript")
    assert info.model == "RunningMeanDepth" and check is not None and check.state_relative == 0
    assert [file.name for file in tmp_path.iterdir()] == ["never.pt"]


def write_video(path: Path, frames: int = 4, size: tuple[int, int] = (112, 168)) -> None:
    """A tiny H.264 mp4 of random blocks, twice the export size (the snippet resizes)."""
    generator = np.random.default_rng(0)
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=10)
        video.height, video.width = size
        video.pix_fmt = "yuv420p"
        for _ in range(frames):
            blocks = generator.integers(0, 256, (size[0] // 8, size[1] // 8, 3), dtype=np.uint8)
            rgb = blocks.repeat(8, axis=0).repeat(8, axis=1)
            container.mux(video.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        container.mux(video.encode(None))


def test_readme_snippet_streams_a_video_like_the_eager_model(
    exports: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "flashdepth-s.onnx").symlink_to(exports["flashdepth-s"].paths["onnx"])
    write_video(tmp_path / "video.mp4")
    monkeypatch.chdir(tmp_path)
    exec(compile(README_SNIPPET, "README.md", "exec"), {})

    model, preprocess = exports["flashdepth-s"].model, Preprocess(target=None)
    state = model.init_state(1, image_size=SIZE)
    with av.open("video.mp4") as video:
        for index, decoded in enumerate(video.decode(video=0)):
            rgb = decoded.to_ndarray(format="rgb24", width=84, height=56, interpolation="BICUBIC")
            with torch.no_grad():
                depth, state = model.step(preprocess(rgb), state)
            saved = torch.from_numpy(np.load(f"depth_{index:05d}.npy"))
            assert saved.shape == SIZE
            assert relative(saved, depth[0]) <= MAX_RELATIVE["onnx"]
    assert index == 3
    assert len(list(tmp_path.glob("depth_*.npy"))) == 4


def test_cli_writes_the_weights_it_is_given(
    exports: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str], tiny_presets: None
) -> None:
    model = exports["flashdepth-s-none"].model
    weights, out = tmp_path / "weights.pt", tmp_path / "out" / "s-none.pt"
    torch.save(model.state_dict(), weights)
    args = ["flashdepth-s-none", "--weights", str(weights), "--resolution", "56x84"]
    assert main([*args, "--format", "torchscript", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out} (torchscript, " in printed
    assert "flashdepth-s-none at 56x84 (HxW)" in printed
    for line in (
        "input  frame          (1, 3, 56, 84) float32",
        "input  state          (1, 0) float32",
        "output inverse_depth  (1, 56, 84) float32",
        "output next_state     (1, 0) float32",
    ):
        assert line in printed
    depth_difference = re.search(r"max \|Δ\| inverse depth (\S+) \((\S+) relative\)", printed)
    assert (
        depth_difference is not None and float(depth_difference[2]) <= MAX_RELATIVE["torchscript"]
    )
    run, _ = load_exported(out)  # the file holds the given weights, not a fresh initialisation
    assert max(stream(model, run, videos=1, frames=1)) <= MAX_RELATIVE["torchscript"]


@pytest.mark.parametrize(
    ("model", "resolution", "message"),
    [
        ("flashdepth-s", "57x84", "'57x84': height and width must be positive multiples of 14"),
        ("flashdepth-s", "57x80", "e.g. 56x84"),
        ("flashdepth-s", "518", "resolution '518' is not HEIGHTxWIDTH in pixels"),
        ("flashdepth-xl", "56x84", "unknown model 'flashdepth-xl'; available: "),
    ],
)
def test_cli_rejects_bad_arguments(
    model: str, resolution: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "never.onnx"
    with pytest.raises(SystemExit) as exit_:
        main([model, "--resolution", resolution, "--out", str(out)])
    assert exit_.value.code == 2
    error = capsys.readouterr().err
    assert message in error and "usage: flashdepth export" in error
    assert not out.exists()


def test_parse_resolution_reads_height_first() -> None:
    assert parse_resolution("518x924") == (518, 924)
    assert parse_resolution(" 56 × 84 ") == (56, 84)
    with pytest.raises(ValueError, match="e.g. 14x14"):
        parse_resolution("0x7")


def test_missing_onnx_packages_say_what_to_install(
    exports: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as when not installed
    monkeypatch.setitem(sys.modules, "onnxscript", None)
    install = r"install it with: pip install 'flashdepth\[onnx\]'"
    exported = exports["flashdepth-s-none"]
    with pytest.raises(ImportError, match=rf"running an exported ONNX model .*{install}"):
        check_export(exported.model, exported.paths["onnx"], SIZE)
    with pytest.raises(ImportError, match=rf"needs 'onnxscript'.*{install}"):
        export(exported.model, tmp_path / "never.onnx", SIZE, "onnx")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow  # some 80 s on 2 cores even at the tiny size: ONNX export time, not compute
def test_hybrid_full_exports_with_its_teacher(tmp_path: Path) -> None:
    model = streaming_model("flashdepth-full", teacher_resolution=28)  # teacher sees 28x42
    exported = export_both(model, "flashdepth-full", tmp_path, dynamic_batch=False)
    for format, path in exported.paths.items():
        run, info = load_exported(path)
        assert info.shapes["state"] == STATE_SHAPES["flashdepth-s"]  # the student's state
        assert max(stream(model, run, videos=1)) <= MAX_RELATIVE[format]
