"""Tests of the video depth metrics: numbers worked out by hand, invariances, and DDP sync."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from flashdepth.metrics import (
    BoundaryF1,
    FlashDepthMetrics,
    TemporalConsistency,
    VideoDepthMetrics,
    align_disparity_per_video,
    align_video,
    boundary_f1,
    flicker,
)

KEYS = ("abs_rel", "delta1", "boundary_f1", "flicker")


def _object_video(frames: int = 4, height: int = 14, width: int = 18) -> torch.Tensor:
    """(T, H, W) gt inverse depth (1/m): a wall at 5 m, a box at 2 m moving right, sky on top.

    The box stays inside the frame (edges in all four directions) while width >= frames + 9.
    """
    disp = torch.full((frames, height, width), 0.2)
    disp[:, :3] = 0.0
    for t in range(frames):
        disp[t, 6:11, 4 + t : 9 + t] = 0.5
    return disp


def _box_blur(disp: torch.Tensor) -> torch.Tensor:
    """3x3 box blur of a (T, H, W) map, edges replicated."""
    padded = F.pad(disp[:, None], (1, 1, 1, 1), mode="replicate")
    return F.avg_pool2d(padded, 3, stride=1)[:, 0]


def _values(metrics: VideoDepthMetrics) -> dict[str, float]:
    return {key: value.item() for key, value in metrics.compute().items()}


# --- AbsRel / δ1 ----------------------------------------------------------------------------


def test_abs_rel_delta1_by_hand() -> None:
    # pred disparity p = [1, 1, .5, .5] 1/m, gt g = p + r with r = [.1, -.1, .15, -.15]:
    # r sums to 0 and r·p = 0, so the least-squares fit g ≈ s·p + t is s = 1, t = 0.
    # depth error |1/p - 1/g| / (1/g) = |r| / p = [.1, .1, .3, .3] -> AbsRel = 0.2
    # ratios g/p or p/g = [1.1, 1.111, 1.3, 1.429] -> two below 1.25 -> δ1 = 0.5
    pred = torch.tensor([[[1.0, 1.0], [0.5, 0.5]]])
    gt = torch.tensor([[[1.1, 0.9], [0.65, 0.35]]])
    valid = torch.ones_like(gt, dtype=torch.bool)
    scale, shift = align_disparity_per_video(pred, gt, valid)
    assert scale.item() == pytest.approx(1.0, abs=1e-6)
    assert shift.item() == pytest.approx(0.0, abs=1e-6)
    metric = FlashDepthMetrics()
    metric.update(pred, gt, valid)
    result = metric.compute()
    assert result["abs_rel"].item() == pytest.approx(0.2, abs=1e-6)
    assert result["delta1"].item() == pytest.approx(0.5, abs=1e-6)


def test_sky_counts_at_70_m() -> None:
    # gt 1/m [1, .5, 0 (sky), .25]; pred equal except sky predicted at 2 m (0.5 1/m).
    # The fit ignores the sky (gt < 1/70) -> identity. Sky: gt 1/1e-3 = 1000 m -> 70 m,
    # pred 2 m -> |2 - 70| / 70 = 68/70; the other pixels are exact.
    # AbsRel = (68/70) / 4 = 0.242857, δ1 = 3/4.
    gt = torch.tensor([[[1.0, 0.5], [0.0, 0.25]]])
    pred = torch.tensor([[[1.0, 0.5], [0.5, 0.25]]])
    valid = torch.ones_like(gt, dtype=torch.bool)
    metric = FlashDepthMetrics()
    metric.update(pred, gt, valid)
    result = metric.compute()
    assert result["abs_rel"].item() == pytest.approx(68 / 70 / 4, abs=1e-6)
    assert result["delta1"].item() == pytest.approx(0.75, abs=1e-6)
    # predicting the sky as infinitely far (0) is exact: both clip to 70 m
    metric.reset()
    metric.update(gt.clone(), gt, valid)
    assert metric.compute()["abs_rel"].item() == pytest.approx(0.0, abs=1e-6)
    # the VDA protocol excludes the sky instead
    vda = FlashDepthMetrics(protocol="vda", max_depth=70.0)
    vda.update(pred, gt, valid)
    assert vda.compute()["abs_rel"].item() == pytest.approx(0.0, abs=1e-6)


def test_vda_averages_per_frame_and_flashdepth_pools() -> None:
    # frame 0: two valid pixels p = [1, 1], g = [1.1, .9] (|r|/p = .1 each); frame 1: four exact
    # pixels at 2 m. r sums to 0 and r·p = 0 -> identity fit. Pooled AbsRel = .2 / 6;
    # per frame: (.1 + 0) / 2 = .05. The NaN gt at frame 0's invalid pixels is never read.
    pred = torch.tensor([[[1.0, 1.0], [3.0, 3.0]], [[0.5, 0.5], [0.5, 0.5]]])
    gt = torch.tensor([[[1.1, 0.9], [float("nan")] * 2], [[0.5, 0.5], [0.5, 0.5]]])
    valid = torch.ones_like(gt, dtype=torch.bool)
    valid[0, 1] = False
    pooled, per_frame = FlashDepthMetrics(), FlashDepthMetrics(protocol="vda", max_depth=10.0)
    for metric in (pooled, per_frame):
        metric.update(pred, gt, valid)
    assert pooled.compute()["abs_rel"].item() == pytest.approx(0.2 / 6, abs=1e-6)
    assert per_frame.compute()["abs_rel"].item() == pytest.approx(0.05, abs=1e-6)
    assert per_frame.compute()["delta1"].item() == pytest.approx(1.0, abs=1e-6)


def test_vda_cap_excludes_far_pixels() -> None:
    # a pixel at 20 m is scored by the 70 m FlashDepth protocol but not under a 10 m cap
    gt = torch.tensor([[[1.0, 0.5], [0.25, 0.05]]])
    pred = gt.clone()
    pred[0, 1, 1] = 0.5  # the 20 m pixel predicted at 2 m
    valid = torch.ones_like(gt, dtype=torch.bool)
    video = align_video(pred, gt, valid, protocol="vda", max_depth=10.0)
    assert video.valid.tolist() == [[[True, True], [True, False]]]
    capped = FlashDepthMetrics(protocol="vda", max_depth=10.0)
    capped.update(pred, gt, valid)
    assert capped.compute()["abs_rel"].item() == pytest.approx(0.0, abs=1e-6)


def test_abs_rel_delta1_invariant_to_disparity_scale_and_shift() -> None:
    gt = _object_video()
    pred = gt + 0.05 * torch.rand_like(gt)
    valid = torch.ones_like(gt, dtype=torch.bool)
    first, second = FlashDepthMetrics(), FlashDepthMetrics()
    first.update(pred, gt, valid)
    second.update(3.0 * pred + 0.5, gt, valid)
    a, b = first.compute(), second.compute()
    assert a["abs_rel"].item() > 0.01
    assert b["abs_rel"].item() == pytest.approx(a["abs_rel"].item(), abs=1e-5)
    assert b["delta1"].item() == pytest.approx(a["delta1"].item(), abs=1e-5)


@pytest.mark.parametrize("protocol", ["flashdepth", "vda"])
def test_perfect_prediction(protocol: str) -> None:
    gt = _object_video()
    metrics = VideoDepthMetrics(protocol=protocol, max_depth=70.0)
    metrics.update(gt.clone(), gt, torch.ones_like(gt, dtype=torch.bool))
    values = _values(metrics)
    assert set(values) == set(KEYS)
    assert values["abs_rel"] == pytest.approx(0.0, abs=1e-6)
    assert values["delta1"] == pytest.approx(1.0, abs=1e-6)
    assert values["boundary_f1"] == pytest.approx(1.0, abs=1e-6)
    assert values["flicker"] == pytest.approx(0.0, abs=1e-6)


# --- boundary F1 ----------------------------------------------------------------------------


def test_boundary_f1_by_hand() -> None:
    # one row of depth [1, 1, 2, 2]: a single "right is farther" edge (ratio 2 > every t).
    # Perfect prediction: that direction has recall = precision = 1, the other three have no
    # GT edge and add 0, so r = p = 1/4 and F1 = 1/4 at every threshold -> 0.25.
    gt = torch.tensor([[[1.0, 1.0, 2.0, 2.0, 2.0]]])
    valid = torch.ones_like(gt, dtype=torch.bool)
    assert boundary_f1(gt, gt, valid).item() == pytest.approx(0.25, abs=1e-6)
    # an extra predicted edge (2 -> 4 m): right direction recall 1, precision 1/2,
    # so r = 1/4, p = 1/8 and F1 = 2·(1/4)(1/8) / (3/8) = 1/6 at every threshold.
    pred = torch.tensor([[[1.0, 1.0, 2.0, 2.0, 4.0]]])
    assert boundary_f1(pred, gt, valid).item() == pytest.approx(1 / 6, abs=1e-6)
    # invalidating the pixel at 4 m removes the extra edge from both maps
    valid[0, 0, 4] = False
    assert boundary_f1(pred, gt, valid).item() == pytest.approx(0.25, abs=1e-6)


def test_boundary_f1_threshold_weights() -> None:
    # ratio 1.15 is an edge only for thresholds 1.05, 1.0722, 1.0944, 1.1167, 1.1389 (first 5
    # of linspace(1.05, 1.25, 10)); perfect prediction -> F1 1/4 for those, 0 for the rest:
    # score = 1/4 · Σ_{i<5} t_i / Σ t_i = 1/4 · 5.4722 / 11.5
    gt = torch.tensor([[[1.0, 1.0, 1.15, 1.15]]])
    valid = torch.ones_like(gt, dtype=torch.bool)
    thresholds = torch.linspace(1.05, 1.25, 10, dtype=torch.float64)
    expected = 0.25 * thresholds[:5].sum().item() / thresholds.sum().item()
    assert boundary_f1(gt, gt, valid).item() == pytest.approx(expected, abs=1e-6)


def test_boundary_f1_drops_for_blur_and_is_zero_without_edges() -> None:
    gt = _object_video(frames=10, width=20)  # more frames than one boundary chunk
    valid = torch.ones_like(gt, dtype=torch.bool)
    scores = {}
    for name, pred in {
        "perfect": gt.clone(),
        "blurred": _box_blur(gt),
        "flat": torch.full_like(gt, 0.3),
    }.items():
        metric = BoundaryF1()
        metric.update(pred, gt, valid)
        scores[name] = metric.compute().item()
    assert scores["perfect"] == pytest.approx(1.0, abs=1e-6)
    assert 0.1 < scores["blurred"] < 0.9
    assert scores["flat"] == 0.0


# --- flicker --------------------------------------------------------------------------------


def test_flicker_by_hand() -> None:
    # one pixel: gt 1 m -> 2 m (change +1), prediction 1 m -> 1.5 m (change +.5): flicker .5;
    # second pair: gt 2 -> 2 (0), pred 1.5 -> 3 (+1): flicker 1. A pair whose pixel is invalid
    # in one frame is NaN.
    pred = torch.tensor([1.0, 1.5, 3.0, 3.0]).view(4, 1, 1)
    gt = torch.tensor([1.0, 2.0, 2.0, 2.0]).view(4, 1, 1)
    valid = torch.tensor([True, True, True, False]).view(4, 1, 1)
    per_pair = flicker(pred, gt, valid)
    assert per_pair[:2].tolist() == pytest.approx([0.5, 1.0])
    assert per_pair[2].isnan()


def test_flicker_zero_for_consistent_and_grows_with_noise() -> None:
    gt = _object_video(frames=6)
    valid = torch.ones_like(gt, dtype=torch.bool)
    scores = []
    for pred in (gt.clone(), 3.0 * gt + 0.5, gt * (1 + 0.2 * torch.rand(6, 1, 1) - 0.1)):
        metric = TemporalConsistency()
        metric.update(pred, gt, valid)
        scores.append(metric.compute().item())
    assert scores[0] == pytest.approx(0.0, abs=1e-6)
    assert scores[1] == pytest.approx(0.0, abs=1e-5)
    assert scores[2] > 0.02


# --- accumulation, padding, errors, sync ----------------------------------------------------


def _videos(count: int) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Distinct noisy videos of different lengths: (pred, gt, valid)."""
    videos = []
    for index in range(count):
        gt = _object_video(frames=2 + index)
        pred = gt * (1 + 0.3 * torch.rand_like(gt)) + 0.02 * index
        valid = torch.rand_like(gt) > 0.1
        videos.append((pred, gt, valid))
    return videos


def test_dataset_value_is_mean_over_videos_and_padding_is_excluded() -> None:
    videos = _videos(3)
    single = []
    for video in videos:
        metrics = VideoDepthMetrics()
        metrics.update(*video)
        single.append(_values(metrics))
    together = VideoDepthMetrics()
    for video in videos:
        together.update(*video)
    # a padding sample marked all-invalid changes nothing
    pred, gt, valid = videos[0]
    together.update(pred, gt, torch.zeros_like(valid))
    values = _values(together)
    for key in KEYS:
        assert values[key] == pytest.approx(sum(s[key] for s in single) / 3, abs=1e-6)


def test_merged_states_equal_one_metric_over_all_videos() -> None:
    videos = _videos(4)
    reference, rank0, rank1 = VideoDepthMetrics(), VideoDepthMetrics(), VideoDepthMetrics()
    for index, video in enumerate(videos):
        reference.update(*video)
        (rank0 if index % 2 == 0 else rank1).update(*video)
    for name, metric in rank0.items():
        metric.merge_state(rank1[name])
    assert _values(rank0) == pytest.approx(_values(reference), abs=1e-6)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ddp_worker(rank: int, port: int, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    torch.manual_seed(0)
    metrics = VideoDepthMetrics()
    for index, video in enumerate(_videos(3)):  # rank 0: videos 0 and 2, rank 1: video 1
        if index % 2 == rank:
            metrics.update(*video)
    torch.save(metrics.compute(), Path(out_dir) / f"rank{rank}.pt")
    dist.destroy_process_group()


def test_two_process_gloo_sync(tmp_path: Path) -> None:
    # fork: the workers inherit the imported modules instead of importing them again
    mp.start_processes(
        _ddp_worker, args=(_free_port(), str(tmp_path)), nprocs=2, start_method="fork"
    )
    torch.manual_seed(0)
    reference = VideoDepthMetrics()
    for video in _videos(3):
        reference.update(*video)
    expected = _values(reference)
    for rank in range(2):
        synced = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        assert {k: v.item() for k, v in synced.items()} == pytest.approx(expected, abs=1e-6)


def test_bad_inputs_are_explained() -> None:
    gt = _object_video()
    valid = torch.ones_like(gt, dtype=torch.bool)
    with pytest.raises(ValueError, match=r"one whole video.*\(4, 1, 14, 18\)"):
        FlashDepthMetrics().update(gt[:, None], gt[:, None], valid[:, None])
    with pytest.raises(ValueError, match="unknown evaluation protocol 'midas'"):
        VideoDepthMetrics(protocol="midas")
    with pytest.raises(ValueError, match="max_depth"):
        FlashDepthMetrics(max_depth=0.0)
