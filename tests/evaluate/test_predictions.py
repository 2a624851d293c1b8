"""Prediction folders: formats and units, the matching rule, missing/extra/mis-sized frames."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from flashdepth.evaluate import EvaluationError
from flashdepth.evaluate.ground_truth import list_videos, read_targets
from flashdepth.evaluate.predictions import PredictionOptions, plan_method
from flashdepth.evaluate.runner import VideoJob, run_job
from flashdepth.evaluate.scoring import ProtocolSetting
from flashdepth.metrics import VideoDepthMetrics
from flashdepth.transforms import postprocess
from tests.evaluate.fakes import known_depth, write_frames, write_shards

BOTH = (ProtocolSetting("flashdepth", 70.0), ProtocolSetting("vda", 70.0))
IDS = [10, 11, 12, 13, 14]


@pytest.fixture(scope="module")
def gt(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One sintel video (frame ids 10..14) without sky, one kitti video with sky."""
    folder = tmp_path_factory.mktemp("gt")
    return write_shards(
        folder,
        [("sintel", "alley_1", known_depth(0, sky=False), IDS),
         ("kitti", "drive_0001", known_depth(1), [0, 1, 2, 3, 4])],
    )  # fmt: skip


def _inverse(seed: int = 0, sky: bool = False) -> np.ndarray:
    """x100 inverse depth of ``known_depth`` with 5 % noise (NaN -> a dense value)."""
    noise = np.random.default_rng(7).uniform(0.95, 1.05, known_depth(seed).shape)
    inverse = 100 / known_depth(seed, sky=sky) * noise
    return np.nan_to_num(inverse, nan=10.0).astype(np.float32)


def _scores(gt: str, root: Path, tmp: Path, **options: object) -> list[dict]:
    """Score every video of ``gt`` found under ``root`` (missing ones allowed)."""
    videos = list_videos(gt)
    plans = plan_method("m", root, videos, PredictionOptions(**{"allow_missing": True, **options}))
    return [
        run_job(VideoJob("m", video, plan, BOTH, 8, tmp / f"{video.key}.json"))
        for video, plan in zip(videos, plans, strict=True)
        if plan.numbering != "none"
    ]


@pytest.mark.parametrize("file_format", ["exr", "npy", "npz", "png16"])
@pytest.mark.parametrize("kind", ["inverse-depth", "depth"])
def test_every_format_and_kind_gives_the_same_scores(gt, tmp_path, file_format, kind) -> None:
    values = _inverse() if kind == "inverse-depth" else 100 / _inverse()
    scale = 100.0 if kind == "inverse-depth" else 1000.0  # png16: 0.01 steps, or millimetres
    write_frames(tmp_path / "m" / "alley_1", values, file_format, IDS, png16_scale=scale)
    write_frames(tmp_path / "ref" / "alley_1", _inverse(), "npy", IDS)
    options = {"kind": kind, "png16_scale": scale}
    (record,) = _scores(gt, tmp_path / "m", tmp_path, **options)
    (reference,) = _scores(gt, tmp_path / "ref", tmp_path, kind="inverse-depth")
    assert record["format"] == file_format and record["kind"] == kind
    # float32 files: the same to rounding. 16-bit PNG (0.01 or 1 mm steps): AbsRel and flicker
    # move by < 1e-5; a thresholded pixel (pair) may flip in δ1 / boundary F1 (960 pixels here)
    tolerances = {"abs_rel": 5e-5, "delta1": 1e-3, "boundary_f1": 1e-3, "flicker": 5e-5}
    for protocol in ("flashdepth", "vda"):
        for metric, tolerance in tolerances.items():
            tolerance = tolerance if file_format == "png16" else 1e-6
            assert record["protocols"][protocol][metric] == pytest.approx(
                reference["protocols"][protocol][metric], abs=tolerance
            ), (protocol, metric)
    assert 0.02 < reference["protocols"]["flashdepth"]["abs_rel"] < 0.1


def test_depth_sky_at_infinity_is_inverse_depth_zero(gt, tmp_path) -> None:
    with np.errstate(divide="ignore"):
        depth = 100 / _inverse(seed=1, sky=True)  # sky: 100 / 0 = inf
    write_frames(tmp_path / "depth" / "drive_0001", depth, "npy")
    write_frames(tmp_path / "inverse" / "drive_0001", _inverse(seed=1, sky=True), "npy")
    (from_depth,) = _scores(gt, tmp_path / "depth", tmp_path, kind="depth")
    (from_inverse,) = _scores(gt, tmp_path / "inverse", tmp_path, kind="inverse-depth")
    for metric in ("abs_rel", "delta1"):
        assert from_depth["protocols"]["flashdepth"][metric] == pytest.approx(
            from_inverse["protocols"]["flashdepth"][metric], abs=1e-6
        )


def test_units_json_of_flashdepth_stream_overrides_the_flags(gt, tmp_path) -> None:
    folder = tmp_path / "ours" / "alley_1"
    write_frames(folder / "png16", _inverse(), "png16", IDS, png16_scale=100)
    (folder / "units.json").write_text(json.dumps({"quantity": "relative inverse depth"}))
    (plan,) = plan_method(
        "ours", tmp_path / "ours", list_videos(gt)[:1], PredictionOptions("depth")
    )
    assert (plan.reader.kind, plan.reader.png16_scale) == ("inverse-depth", 100)
    assert plan.folder == folder / "png16" and plan.numbering == "frame id"
    assert plan.files[0].name == "000010.png"


def test_folders_match_dataset_scene_then_scene_then_key(gt, tmp_path) -> None:
    videos = list_videos(gt)
    write_frames(tmp_path / "a" / "sintel" / "alley_1", _inverse(), "npy", IDS)
    write_frames(tmp_path / "a" / "kitti_drive_0001_000000", _inverse(), "npy")
    plans = plan_method("a", tmp_path / "a", videos, PredictionOptions("depth"))
    assert [p.folder.relative_to(tmp_path / "a") for p in plans] == [
        Path("sintel/alley_1"), Path("kitti_drive_0001_000000")
    ]  # fmt: skip
    write_frames(tmp_path / "b" / "alley_1", _inverse(), "npy", numbers=[0, 1, 2, 3, 4])
    (plan,) = plan_method("b", tmp_path / "b", videos[:1], PredictionOptions("depth"))
    assert plan.numbering == "position"  # 0..4 are positions, not the frame ids 10..14
    assert [p.name for p in plan.files] == [f"00000{i}.npy" for i in range(5)]


def test_a_missing_frame_names_method_video_and_frame(gt, tmp_path) -> None:
    paths = write_frames(tmp_path / "m" / "alley_1", _inverse(), "exr", IDS)
    paths[2].unlink()
    videos = list_videos(gt)[:1]
    with pytest.raises(EvaluationError) as error:
        plan_method("m", tmp_path / "m", videos, PredictionOptions("depth"))
    message = str(error.value)
    for part in ("method 'm'", "sintel/alley_1", "frame 2 (frame id 12)", "--allow-missing"):
        assert part in message
    (plan,) = plan_method(
        "m", tmp_path / "m", videos, PredictionOptions("depth", allow_missing=True)
    )
    assert plan.missing_frames == 1 and plan.files[2] is None


def test_allowed_missing_frames_are_scored_as_frames_without_prediction(gt, tmp_path) -> None:
    paths = write_frames(tmp_path / "m" / "alley_1", _inverse(), "npy", IDS)
    paths[2].unlink()
    (record,) = _scores(gt, tmp_path / "m", tmp_path, kind="inverse-depth")
    target, valid = read_targets(list_videos(gt)[0], range(5))  # float16 as stored
    valid[2] = False
    reference = VideoDepthMetrics("flashdepth", 70.0)
    reference.update(torch.from_numpy(_inverse()), target, valid)
    expected = {key: float(value) for key, value in reference.compute().items()}
    assert {k: record["protocols"]["flashdepth"][k] for k in expected} == expected
    assert (
        record["missing_frames"] == 1 and record["protocols"]["vda"]["frames"]["delta1"][2] is None
    )


def test_an_extra_file_is_named(gt, tmp_path) -> None:
    write_frames(tmp_path / "m" / "alley_1", _inverse()[:1], "npy", [99])
    write_frames(tmp_path / "m" / "alley_1", _inverse(), "npy", IDS)
    with pytest.raises(EvaluationError, match=r"000099\.npy \(frame id 99\)"):
        plan_method("m", tmp_path / "m", list_videos(gt)[:1], PredictionOptions("depth"))
    options = PredictionOptions("depth", allow_missing=True)
    (plan,) = plan_method("m", tmp_path / "m", list_videos(gt)[:1], options)
    assert plan.extra_files == 1 and plan.missing_frames == 0


def test_a_video_without_a_folder_is_named(gt, tmp_path) -> None:
    write_frames(tmp_path / "m" / "alley_1", _inverse(), "npy", IDS)
    with pytest.raises(EvaluationError, match="'m' has no folder for video kitti/drive_0001"):
        plan_method("m", tmp_path / "m", list_videos(gt), PredictionOptions("depth"))


def test_a_half_resolution_prediction_is_resized_bilinearly(gt, tmp_path) -> None:
    half = _inverse()[:, ::2, ::2].copy()  # (5, 6, 8)
    write_frames(tmp_path / "m" / "alley_1", half, "npy", IDS)
    (record,) = _scores(gt, tmp_path / "m", tmp_path, kind="inverse-depth")
    resized = postprocess(torch.from_numpy(half), (12, 16))  # align_corners=True
    reference = VideoDepthMetrics("flashdepth", 70.0)
    reference.update(resized, *read_targets(list_videos(gt)[0], range(5)))
    expected = {key: float(value) for key, value in reference.compute().items()}
    assert {k: record["protocols"]["flashdepth"][k] for k in expected} == expected
    assert record["prediction_size"] == [6, 8]


def test_a_transposed_prediction_is_refused(gt, tmp_path) -> None:
    write_frames(tmp_path / "m" / "alley_1", _inverse().transpose(0, 2, 1), "npy", IDS)
    with pytest.raises(EvaluationError, match=r"frame 0: .*12x16 but the ground truth is 16x12"):
        _scores(gt, tmp_path / "m", tmp_path, kind="inverse-depth")


def test_holes_in_a_depth_prediction_are_refused(gt, tmp_path) -> None:
    depth = 100 / _inverse()
    depth[3, 0, :4] = 0.0
    write_frames(tmp_path / "m" / "alley_1", depth, "npy", IDS)
    with pytest.raises(EvaluationError, match=r"frame 3: .*000013\.npy: 4 pixel\(s\) with depth"):
        _scores(gt, tmp_path / "m", tmp_path, kind="depth")


def test_no_units_and_no_kind_asks_for_kind(gt, tmp_path) -> None:
    write_frames(tmp_path / "m" / "alley_1", _inverse(), "npy", IDS)
    with pytest.raises(EvaluationError, match="--kind depth or --kind inverse-depth"):
        plan_method("m", tmp_path / "m", list_videos(gt)[:1], PredictionOptions())


def test_an_allowed_missing_video_is_counted_and_left_unscored(gt, tmp_path) -> None:
    write_frames(tmp_path / "m" / "alley_1", _inverse(), "npy", IDS)
    videos = list_videos(gt)
    options = PredictionOptions("inverse-depth", allow_missing=True, max_frames=3)
    alley, drive = plan_method("m", tmp_path / "m", videos, options)
    assert (alley.numbering, len(alley.files), alley.missing_frames) == ("frame id", 3, 0)
    assert (drive.numbering, drive.reader, drive.missing_frames) == ("none", None, 3)
    record = run_job(VideoJob("m", videos[1], drive, BOTH, 8, tmp_path / "drive.json"))
    assert record["format"] is None and record["frames"] == 3 and record["frames_in_video"] == 5
    for protocol in ("flashdepth", "vda"):
        scores = record["protocols"][protocol]
        assert [scores[m] for m in ("abs_rel", "delta1", "boundary_f1", "flicker")] == [None] * 4


def test_flashdepth_predict_layout_with_its_root_units_json(gt, tmp_path) -> None:
    write_frames(tmp_path / "ours" / "sintel" / "alley_1", _inverse(), "npy", IDS)
    units = {"quantity": "relative inverse depth (disparity)", "format": "npy"}
    (tmp_path / "ours" / "units.json").write_text(json.dumps(units))
    (plan,) = plan_method("ours", tmp_path / "ours", list_videos(gt)[:1], PredictionOptions())
    assert (plan.reader.kind, plan.reader.file_format) == ("inverse-depth", "npy")
    assert plan.folder == tmp_path / "ours" / "sintel" / "alley_1"
