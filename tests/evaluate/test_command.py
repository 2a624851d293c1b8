"""``flashdepth evaluate`` end to end: it reproduces ``flashdepth test``; peers side by side.

The evaluation shards are the synthetic test split that ``flashdepth test`` reads with the
CLI tests' tiny overrides (2 videos of 4 frames, 42x56). FlashDepth-S and Depth Anything V2
(per frame), both at the tiny test size with random weights, stream those frames with
``flashdepth stream``; an "external method" is the ground truth with a drifting per-frame
scale, written as 16-bit PNG depth in millimetres at half resolution.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import OpenEXR
import pytest
import torch
from PIL import Image

from datamodules.format import decode_clip
from datamodules.shards import expand_shards, read_shard
from datamodules.synthetic import ensure_synthetic_dataset
from flashdepth.cli import build_cli
from flashdepth.evaluate.command import main
from flashdepth.evaluate.ground_truth import list_videos, read_targets
from flashdepth.inference.command import main as stream
from flashdepth.metrics import VideoDepthMetrics
from flashdepth.transforms import postprocess
from tests.cli_overrides import shrink_presets, tiny_data, tiny_model, tiny_preset, tiny_trainer

QUICKSTART = str(Path(__file__).resolve().parents[2] / "recipes" / "quickstart.yaml")
METRICS = ("abs_rel", "delta1", "boundary_f1", "flicker")


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path | str]:
    """The synthetic test shards, their frames as PNG sequences, and random weights."""
    root = tmp_path_factory.mktemp("evaluate")
    cache = root / "synthetic"
    # the set SyntheticClipDataModule renders for tiny_data(cache): test split = 2 clips
    gt = ensure_synthetic_dataset(cache, 4, 2, 2, frames=4, height=42, width=56,
                                  clips_per_shard=1)["test"]  # fmt: skip
    for shard in expand_shards(gt):
        for raw in read_shard(shard, lambda *problem: None):
            clip = decode_clip(raw)
            for rgb, frame_id in zip(clip.frames, clip.meta["frame_ids"], strict=True):
                folder = root / "frames" / clip.meta["scene"]
                folder.mkdir(parents=True, exist_ok=True)
                Image.fromarray(rgb).save(folder / f"{frame_id:06d}.png")  # lossless
                depth = np.nan_to_num(clip.depth[frame_id], posinf=65.0)  # sky: 65 m
                drifting = depth * (1 + 0.1 * frame_id)  # a per-frame scale, as per-frame models
                half = Image.fromarray(drifting).resize((28, 21), Image.Resampling.BILINEAR)
                millimetres = np.clip(np.round(np.asarray(half) * 1000), 1, 65535)
                external = root / "external" / clip.meta["scene"]
                external.mkdir(parents=True, exist_ok=True)
                Image.fromarray(millimetres.astype(np.uint16)).save(external / f"{frame_id}.png")
    weights = {}
    for name in ("flashdepth-s", "depth-anything-v2-vits"):
        torch.manual_seed(0)
        weights[name] = root / f"{name}.pth"
        torch.save(tiny_preset(name).state_dict(), weights[name])
        command = [str(root / "frames"), "--out", str(root / name), "--model", name,
                   "--weights", str(weights[name]), "--resolution", "42", "--formats", "exr",
                   "--device", "cpu", "--no-progress"]  # fmt: skip
        with pytest.MonkeyPatch.context() as patch:
            shrink_presets(patch)  # --model NAME builds the preset at the tiny size
            assert stream(command) == 0
    return {"root": root, "cache": cache, "gt": gt, "weights": weights["flashdepth-s"]}


def test_evaluate_reproduces_flashdepth_test_exactly(data, tmp_path) -> None:
    args = ["test", "-c", QUICKSTART, *tiny_data(data["cache"]), *tiny_model()]
    args += tiny_trainer(tmp_path)
    cli = build_cli(args + [f"--model.init_weights={data['weights']}"])
    tested = {key: float(cli.trainer.callback_metrics[f"test/synthetic/{key}"]) for key in METRICS}
    out = tmp_path / "eval"
    pred = f"flashdepth-s={data['root'] / 'flashdepth-s'}"
    assert main(["--gt", data["gt"], "--pred", pred, "--out", str(out), "--no-plots"]) == 0
    results = json.loads((out / "results.json").read_text())
    means = results["methods"]["flashdepth-s"]["datasets"]["flashdepth"]["synthetic"]
    assert {key: means[key] for key in METRICS} == tested  # bit for bit
    assert means["videos"] == 2 and 0 < tested["abs_rel"]


def _expected(data: dict, method: str, protocol: str) -> dict[str, float]:
    """The dataset's scores from :class:`VideoDepthMetrics` on the files, read here."""
    metric = VideoDepthMetrics(protocol, 70.0)
    for video in list_videos(data["gt"]):
        target, valid = read_targets(video, range(4))
        frames = []
        for frame_id in video.frame_ids:
            if method == "external":  # 16-bit PNG depth (mm), half resolution
                with Image.open(data["root"] / method / video.scene / f"{frame_id}.png") as png:
                    inverse = 1000 / np.asarray(png).astype(np.float32)
            else:
                path = data["root"] / method / video.scene / "exr" / f"{frame_id:06d}.exr"
                with OpenEXR.File(str(path), separate_channels=True) as exr:
                    inverse = exr.channels()["Z"].pixels
            frames.append(torch.from_numpy(inverse))
        metric.update(postprocess(torch.stack(frames), tuple(target.shape[-2:])), target, valid)
    return {key: float(value) for key, value in metric.compute().items()}


def test_peers_side_by_side_in_one_command(data, tmp_path) -> None:
    root, out = data["root"], tmp_path / "eval"
    methods = {"FlashDepth-S": "flashdepth-s", "DAv2-S": "depth-anything-v2-vits"}
    methods["external"] = "external"
    command = ["--gt", data["gt"], "--out", str(out), "--protocol", "both", "--max-depth", "70",
               *(f"--pred={name}={root / folder}" for name, folder in methods.items()),
               "--kind", "external=depth", "--png16-scale", "external=1000"]  # fmt: skip
    assert main(command) == 0
    results = json.loads((out / "results.json").read_text())
    assert list(results["methods"]) == list(methods)
    for protocol in ("flashdepth", "vda"):
        for name, folder in methods.items():
            means = results["methods"][name]["datasets"][protocol]["synthetic"]
            assert {key: means[key] for key in METRICS} == _expected(data, folder, protocol)
    external = results["methods"]["external"]["videos"]
    assert {tuple(video["prediction_size"]) for video in external.values()} == {(21, 28)}
    # the table: methods in --pred order, the best δ1 in bold with rank 1, average ranks
    table = (out / "table.md").read_text().splitlines()
    rows = table[table.index("### δ1 ↑") + 2 : table.index("### δ1 ↑") + 7]
    assert rows[:2] == ["| Method | synthetic | Avg. rank |", "|:--|--:|--:|"]
    delta1 = {
        n: results["methods"][n]["datasets"]["flashdepth"]["synthetic"]["delta1"] for n in methods
    }
    for row, (name, value) in zip(rows[2:], delta1.items(), strict=True):
        rank = 1 + sum(other > value for other in delta1.values())
        cell = f"**{value:.3f}**" if rank == 1 else f"{value:.3f}"
        assert row == f"| {name} | {cell} ({rank}) | {rank:.2f} |"
    # the external method's inverse depth shrinks by 1 / (1 + 0.1 t): its own scale grows
    key = next(iter(external))
    per_frame = json.loads((out / "videos" / "external" / f"{key}.json").read_text())
    drift = per_frame["protocols"]["flashdepth"]["frames"]["scale_drift"]
    assert [d / drift[0] for d in drift] == pytest.approx([1.0, 1.1, 1.2, 1.3], rel=0.02)
    for protocol in ("flashdepth", "vda"):
        assert (out / "plots" / protocol / f"{key}_scale_drift.png").is_file()


def test_usage_errors_exit_2_before_scoring(data, tmp_path, capsys) -> None:
    out = tmp_path / "eval"
    base = ["--gt", data["gt"], "--out", str(out)]
    cases = [
        ([f"--pred=ext={data['root'] / 'external'}"], "pass --kind depth or --kind inverse-depth"),
        ([f"--pred=a={tmp_path}", "--kind", "inverse-depth"], "'a' has no folder for video"),
        ([f"--pred=a={tmp_path}", f"--pred=a={tmp_path}"], "given twice in --pred"),
        ([f"--pred=a={tmp_path}", "--kind", "b=depth"], "method(s) ['b'] not in --pred"),
        ([f"--pred=a={data['root'] / 'flashdepth-s'}", "--protocol", "vda"], "--max-depth"),
    ]
    for extra, message in cases:
        assert main(base + extra) == 2, extra
        assert message in capsys.readouterr().err
    assert not out.exists()
    assert main(["--gt", data["gt"], "--out", str(out), "--pred", "no-folder"]) == 2
    assert main(["-h"]) == 0
