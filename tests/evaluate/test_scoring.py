"""Two-pass streaming scores equal :class:`flashdepth.metrics.VideoDepthMetrics`; drift; caps."""

from __future__ import annotations

import pytest
import torch

from flashdepth.evaluate import EvaluationError
from flashdepth.evaluate.scoring import ProtocolSetting, max_depth_for, score_video
from flashdepth.metrics import VideoDepthMetrics
from tests.evaluate.fakes import known_depth


def _video(frames: int = 7) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A known gt video and a noisy affine prediction of it (x100 inverse depth + 3)."""
    depth = torch.from_numpy(known_depth(seed=1, shape=(frames, 12, 16)))
    valid = ~depth.isnan()
    gt = depth.reciprocal().nan_to_num(0.0)
    noise = 1 + 0.1 * torch.randn(depth.shape, generator=torch.Generator().manual_seed(0))
    return gt * 100 * noise + 3, gt, valid


def _reader(pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor):
    return lambda frames: (pred[frames.start : frames.stop], gt[frames.start : frames.stop],
                           valid[frames.start : frames.stop])  # fmt: skip


@pytest.mark.parametrize(("protocol", "cap"), [("flashdepth", 70.0), ("vda", 10.0)])
@pytest.mark.parametrize("chunk", [1, 3, 16])
def test_streaming_scores_equal_the_metrics_bit_for_bit(protocol, cap, chunk) -> None:
    pred, gt, valid = _video()
    reference = VideoDepthMetrics(protocol, cap)
    reference.update(pred, gt, valid)
    expected = {key: float(value) for key, value in reference.compute().items()}
    scores = score_video(_reader(pred, gt, valid), 7, [ProtocolSetting(protocol, cap)], chunk)
    assert {key: scores[protocol][key] for key in expected} == expected
    assert 0.05 < expected["abs_rel"] < 0.5  # a real, non-trivial score


def test_both_protocols_are_scored_from_the_same_reads() -> None:
    pred, gt, valid = _video()
    reads = []

    def read(frames: range):
        reads.append(frames)
        return _reader(pred, gt, valid)(frames)

    settings = [ProtocolSetting("flashdepth", 70.0), ProtocolSetting("vda", 10.0)]
    scores = score_video(read, 7, settings, chunk_frames=4)
    assert reads == [range(0, 4), range(4, 7)] * 2  # two passes, whatever the protocols
    assert scores["flashdepth"]["max_depth"] == 70.0 and scores["vda"]["max_depth"] == 10.0
    assert scores["flashdepth"]["abs_rel"] != scores["vda"]["abs_rel"]


def test_scale_drift_is_each_frames_own_scale_over_the_videos() -> None:
    _, gt, valid = _video(frames=4)
    factors = torch.tensor([1.0, 2.0, 4.0, 0.5])  # per-frame scale of the prediction
    pred = gt * factors[:, None, None]
    valid[2] = False  # a frame without ground truth: no scale of its own
    result = score_video(_reader(pred, gt, valid), 4, [ProtocolSetting("flashdepth", 70.0)])
    drift = result["flashdepth"]["frames"]["scale_drift"]
    video_scale = result["flashdepth"]["scale"]
    # frame t alone is fitted exactly by scale 1 / factor_t (no shift)
    expected = [1 / (f * video_scale) for f in (1.0, 2.0)] + [None, 1 / (0.5 * video_scale)]
    assert drift[2] is None
    assert [d for d in drift if d is not None] == pytest.approx(
        [e for e in expected if e is not None], rel=1e-6
    )
    frames = result["flashdepth"]["frames"]
    assert frames["abs_rel"][2] is None and frames["delta1"][2] is None
    assert frames["flicker"][1] is None and frames["flicker"][2] is None  # pairs with frame 2
    assert len(frames["flicker"]) == 3


def test_a_perfect_prediction_scores_perfectly_per_frame() -> None:
    _, gt, valid = _video(frames=3)
    result = score_video(_reader(gt * 100, gt, valid), 3, [ProtocolSetting("vda", 10.0)])
    frames = result["vda"]["frames"]
    assert frames["delta1"] == [1.0, 1.0, 1.0]
    assert max(frames["abs_rel"]) < 1e-5 and max(frames["flicker"]) < 1e-5
    assert frames["scale_drift"] == pytest.approx([1.0, 1.0, 1.0], rel=1e-6)
    assert result["vda"]["scale"] == pytest.approx(0.01, rel=1e-6)


@pytest.mark.parametrize(
    ("dataset", "cap"),
    [("KITTI", 80.0), ("bonn_rgbd_dynamic", 10.0), ("ScanNet", 10.0), ("NYUv2", 10.0),
     ("nyu_depth_v2", 10.0), ("sintel", 70.0)],
)  # fmt: skip
def test_vda_caps_follow_the_dataset_name(dataset: str, cap: float) -> None:
    assert max_depth_for("vda", dataset, None) == cap
    assert max_depth_for("flashdepth", dataset, None) == 70.0
    assert max_depth_for("vda", dataset, 25.0) == 25.0


def test_vda_on_a_dataset_without_a_cap_asks_for_max_depth() -> None:
    with pytest.raises(EvaluationError, match="'synthetic'.*--max-depth"):
        max_depth_for("vda", "synthetic", None)
