"""Video depth metrics: AbsRel, δ1, boundary F1 and flicker, as torchmetrics ``Metric``s.

Every metric is computed **per video** and averaged over videos; ``update`` takes ONE WHOLE
VIDEO (all its frames, in order):

* ``pred`` (T, H, W): the model output, relative inverse depth at any scale and shift (the
  x100 training scale is fine: a per-video least-squares fit removes scale and shift);
* ``gt_inverse_depth`` (T, H, W): ground-truth inverse depth in 1/m, sky = 0;
* ``valid`` (T, H, W) bool: pixels with ground truth (sky included). Non-finite or negative
  ground truth is never valid, so NaN, inf or -1 may stand at invalid pixels.

The prediction is aligned with one scale and shift per video in disparity
(:func:`align_disparity_per_video`), then prediction and ground truth become depth in metres,
``1 / max(disparity, 1e-3)`` clipped to ``[1e-3, max_depth]`` (:func:`align_video`). Protocols:

* ``"flashdepth"`` (default, the FlashDepth paper): fit over valid pixels with gt disparity
  >= 1/max_depth (max_depth = 70 m); score ALL valid pixels, sky included (sky gt disparity 0
  -> 1000 m -> clipped to 70 m); AbsRel and δ1 pooled over every scored pixel of the video.
* ``"vda"`` (Video Depth Anything): a per-dataset cap ``max_depth``; fit and score the valid
  pixels with 1e-3 < gt depth < max_depth (sky excluded); AbsRel and δ1 per frame, averaged
  over frames.

Boundary F1 and flicker are averaged over the frames (frame pairs) of a video in both. States
are per-video sums and a video count reduced with ``sum``, so DDP evaluation gives the numbers
of one process. A video or frame whose ``valid`` mask is all False contributes nothing: mark
padding samples (e.g. a distributed sampler's duplicates) invalid to exclude them.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, Literal, NamedTuple

import torch
from torch import Tensor
from torchmetrics import Metric, MetricCollection

from flashdepth.losses import fit_scale_shift

Protocol = Literal["flashdepth", "vda"]
PROTOCOLS: tuple[str, ...] = ("flashdepth", "vda")

MIN_DEPTH_M = 1e-3
"""Smallest depth (m) after conversion; also the floor of disparity (1/m) before inverting."""
DELTA1_THRESHOLD = 1.25
BOUNDARY_THRESHOLDS = (1.05, 1.25, 10)
"""Depth Pro's boundary F1: ``linspace(1.05, 1.25, 10)`` neighbour-ratio thresholds."""
BOUNDARY_FRAMES_PER_CHUNK = 8
"""Frames scored at once by :func:`boundary_f1`; bounds its memory on long videos."""


class AlignedVideo(NamedTuple):
    """A video ready to score.

    Attributes:
        pred_depth: (T, H, W) aligned predicted depth, metres, in [1e-3, max_depth].
        gt_depth: (T, H, W) ground-truth depth, metres, in [1e-3, max_depth].
        valid: (T, H, W) bool, the pixels scored under the protocol.
    """

    pred_depth: Tensor
    gt_depth: Tensor
    valid: Tensor


def align_disparity_per_video(
    pred: Tensor, gt_disp: Tensor, valid: Tensor, min_gt_disp: float = 1 / 70
) -> tuple[Tensor, Tensor]:
    """One least-squares scale and shift for a whole video: ``gt_disp ≈ scale * pred + shift``.

    Args:
        pred: (T, H, W) predicted relative inverse depth, any scale.
        gt_disp: (T, H, W) ground-truth disparity (inverse depth) in 1/m.
        valid: (T, H, W) bool, pixels with ground truth.
        min_gt_disp: only pixels with ``gt_disp >= min_gt_disp`` (1/m) take part in the fit,
            i.e. ground truth closer than ``1 / min_gt_disp`` metres.

    Returns:
        ``(scale, shift)``, scalar float64 tensors. A video with no pixel to fit gives (0, 0).
    """
    mask = valid & (gt_disp >= min_gt_disp)
    # (T, H, W) -> (1, T*H*W): one least-squares problem for the whole video
    scale, shift = fit_scale_shift(pred.reshape(1, -1), gt_disp.reshape(1, -1), mask.reshape(1, -1))
    return scale[0], shift[0]


def disparity_to_depth(disparity: Tensor, max_depth: float) -> Tensor:
    """Depth in metres, ``1 / max(disparity, 1e-3)`` clipped to ``[1e-3, max_depth]``."""
    return disparity.clamp(min=MIN_DEPTH_M).reciprocal().clamp(MIN_DEPTH_M, max_depth)


def _check_protocol(protocol: str, max_depth: float) -> None:
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown evaluation protocol {protocol!r}; choose one of {PROTOCOLS}")
    if not max_depth > MIN_DEPTH_M:
        raise ValueError(f"max_depth must be a depth in metres above 1e-3, got {max_depth}")


def align_video(
    pred: Tensor,
    gt_inverse_depth: Tensor,
    valid: Tensor,
    protocol: Protocol = "flashdepth",
    max_depth: float = 70.0,
) -> AlignedVideo:
    """Align a video's prediction to its ground truth and convert both to clipped depth.

    Args:
        pred: (T, H, W) model output, relative inverse depth at any scale.
        gt_inverse_depth: (T, H, W) ground-truth inverse depth in 1/m, sky = 0.
        valid: (T, H, W) bool, pixels with ground truth (sky included).
        protocol: ``"flashdepth"`` or ``"vda"`` (see the module docstring).
        max_depth: depth cap in metres (70 for the FlashDepth protocol; per dataset for VDA).

    Returns:
        The aligned :class:`AlignedVideo`.

    Raises:
        ValueError: if the shapes differ or are not (T, H, W), or the protocol is unknown.
    """
    _check_protocol(protocol, max_depth)
    if pred.ndim != 3 or not (pred.shape == gt_inverse_depth.shape == valid.shape):
        raise ValueError(
            "a video metric takes one whole video as pred, gt_inverse_depth and valid of the "
            f"same shape (T, H, W); got {tuple(pred.shape)}, {tuple(gt_inverse_depth.shape)}, "
            f"{tuple(valid.shape)}. Squeeze a channel dimension and call update once per video."
        )
    valid = valid.bool() & gt_inverse_depth.isfinite() & (gt_inverse_depth >= 0)
    gt_disp = torch.where(valid, gt_inverse_depth.float(), 0.0)
    if protocol == "vda":
        # 1e-3 m < gt depth < max_depth, written on disparity so sky (0) needs no division
        valid = valid & (gt_disp > 1.0 / max_depth) & (gt_disp < 1.0 / MIN_DEPTH_M)
    pred = pred.float()
    scale, shift = align_disparity_per_video(pred, gt_disp, valid, min_gt_disp=1.0 / max_depth)
    aligned_disp = scale.float() * pred + shift.float()
    return AlignedVideo(
        pred_depth=disparity_to_depth(aligned_disp, max_depth),
        gt_depth=disparity_to_depth(gt_disp, max_depth),
        valid=valid,
    )


def _per_frame_sum_count(values: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Per-frame sum / count of ``values`` over ``mask``: (T, H, W) -> ((T,), (T,))."""
    return torch.where(mask, values, 0.0).sum(dim=(-2, -1)), mask.sum(dim=(-2, -1))


def abs_rel_delta1_sums(video: AlignedVideo) -> tuple[Tensor, Tensor, Tensor]:
    """Per-frame sums of AbsRel and δ1 over the scored pixels, and their count.

    Returns:
        ``(abs_rel_sum, delta1_sum, count)``, each (T,): Σ|d_pred - d_gt| / d_gt,
        Σ[max(d_pred/d_gt, d_gt/d_pred) < 1.25] (float32) and the scored pixels (long).
    """
    pred, gt = video.pred_depth, video.gt_depth
    abs_rel = (pred - gt).abs() / gt
    inside = (torch.maximum(pred / gt, gt / pred) < DELTA1_THRESHOLD).float()
    abs_rel_sum, count = _per_frame_sum_count(abs_rel, video.valid)
    delta1_sum, _ = _per_frame_sum_count(inside, video.valid)
    return abs_rel_sum, delta1_sum, count


def reduce_abs_rel_delta1(
    abs_rel_sum: Tensor, delta1_sum: Tensor, count: Tensor, per_frame: bool
) -> dict[str, Tensor] | None:
    """A video's AbsRel and δ1 from its :func:`abs_rel_delta1_sums` (see there)."""
    scored = count > 0
    if not bool(scored.any()):
        return None
    if per_frame:
        return {
            "abs_rel": (abs_rel_sum[scored] / count[scored]).mean(),
            "delta1": (delta1_sum[scored] / count[scored]).mean(),
        }
    total = count.sum()
    return {"abs_rel": abs_rel_sum.sum() / total, "delta1": delta1_sum.sum() / total}


def abs_rel_delta1(video: AlignedVideo, per_frame: bool) -> dict[str, Tensor] | None:
    """AbsRel and δ1 of one aligned video.

    ``abs_rel = mean |d_pred - d_gt| / d_gt`` and ``delta1 = mean [max(d_pred/d_gt,
    d_gt/d_pred) < 1.25]`` over the scored pixels, pooled over the whole video
    (``per_frame=False``) or per frame then averaged over frames with a scored pixel.

    Returns:
        ``{"abs_rel", "delta1"}`` scalar tensors, or None if no pixel is scored.
    """
    return reduce_abs_rel_delta1(*abs_rel_delta1_sums(video), per_frame=per_frame)


def _occlusion_ratios(depth: Tensor, valid: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Depth ratios towards each of the four neighbours of (T, H, W) depth (Depth Pro's edges).

    In order: left/right, top/bottom, right/left, bottom/top; horizontal maps are
    (T, H, W-1), vertical ones (T, H-1, W). A ratio above a threshold marks an occluding
    contour in that direction. Pairs with an invalid pixel get ratio 0, so they are never edges.
    """
    left, right = depth[..., :, :-1], depth[..., :, 1:]
    top, bottom = depth[..., :-1, :], depth[..., 1:, :]
    pairs_h = valid[..., :, :-1] & valid[..., :, 1:]
    pairs_v = valid[..., :-1, :] & valid[..., 1:, :]
    return (
        torch.where(pairs_h, left / right, 0.0),
        torch.where(pairs_v, top / bottom, 0.0),
        torch.where(pairs_h, right / left, 0.0),
        torch.where(pairs_v, bottom / top, 0.0),
    )


def _boundary_f1_frames(pred_depth: Tensor, gt_depth: Tensor, valid: Tensor) -> Tensor:
    """:func:`boundary_f1` of a chunk of frames: (T, H, W) -> (T,)."""
    pred_ratios = _occlusion_ratios(pred_depth, valid)
    gt_ratios = _occlusion_ratios(gt_depth, valid)
    low, high, steps = BOUNDARY_THRESHOLDS
    thresholds = torch.linspace(low, high, steps, dtype=torch.float64).tolist()
    score = pred_depth.new_zeros(pred_depth.shape[0])
    for threshold in thresholds:
        recall = precision = torch.zeros_like(score)
        for pred_ratio, gt_ratio in zip(pred_ratios, gt_ratios, strict=True):
            pred_edges, gt_edges = pred_ratio > threshold, gt_ratio > threshold
            hits = (pred_edges & gt_edges).sum(dim=(-2, -1))
            recall = recall + hits / gt_edges.sum(dim=(-2, -1)).clamp(min=1) / 4
            precision = precision + hits / pred_edges.sum(dim=(-2, -1)).clamp(min=1) / 4
        f1 = 2 * precision * recall / (precision + recall).clamp(min=torch.finfo(score.dtype).tiny)
        score = score + f1 * (threshold / sum(thresholds))
    return score


def boundary_f1(pred_depth: Tensor, gt_depth: Tensor, valid: Tensor) -> Tensor:
    """Depth Pro's scale-invariant boundary F1 of every frame.

    For each ``t`` in ``linspace(1.05, 1.25, 10)``, a pair of 4-neighbours is an edge in one of
    four directions when the depth ratio that way exceeds ``t`` (:func:`_occlusion_ratios`);
    pairs with an invalid pixel are dropped from both maps. Per direction, recall =
    |P ∩ G| / max(|G|, 1) and precision = |P ∩ G| / max(|P|, 1), each averaged over the four
    directions; F1 = 2pr / (p + r) (0 if p + r = 0); the score sums F1 weighted by ``t / Σt``.
    As in Depth Pro, a direction without ground-truth edges adds zero recall: a perfect
    prediction scores 1 only if the ground truth has edges in all four directions (any object
    inside the frame). Depth Pro thresholds inverse depth; on depth the same pairs appear with
    directions swapped, so the score is identical.

    Args:
        pred_depth: (T, H, W) aligned predicted depth, metres, positive.
        gt_depth: (T, H, W) ground-truth depth, metres, positive.
        valid: (T, H, W) bool, pixels with ground truth.

    Returns:
        (T,) float32 boundary F1 per frame.
    """
    # frames are independent: score a few at a time to bound the memory of long videos
    return torch.cat(
        [
            _boundary_f1_frames(pred, gt, mask)
            for pred, gt, mask in zip(
                pred_depth.split(BOUNDARY_FRAMES_PER_CHUNK),
                gt_depth.split(BOUNDARY_FRAMES_PER_CHUNK),
                valid.split(BOUNDARY_FRAMES_PER_CHUNK),
                strict=True,
            )
        ]
    )


def flicker(pred_depth: Tensor, gt_depth: Tensor, valid: Tensor) -> Tensor:
    """Temporal flicker of every consecutive frame pair.

    For frames t and t+1 and each pixel valid in both, the relative frame-to-frame change
    ``(d_{t+1} - d_t) / d_t`` is computed for prediction and ground truth; the pair's flicker
    is the mean absolute difference of the two changes. It is 0 when the prediction changes
    exactly as the ground truth does (a perfect or a consistently scaled prediction), and grows
    with temporal noise. Pixels are compared at fixed image positions (no motion compensation),
    so true motion is not penalised as long as the prediction follows it.

    Args:
        pred_depth: (T, H, W) aligned predicted depth, metres, positive.
        gt_depth: (T, H, W) ground-truth depth, metres, positive.
        valid: (T, H, W) bool, pixels with ground truth.

    Returns:
        (T-1,) flicker per pair, NaN for a pair without a pixel valid in both frames.
    """
    both = valid[1:] & valid[:-1]
    pred_change = (pred_depth[1:] - pred_depth[:-1]) / pred_depth[:-1]
    gt_change = (gt_depth[1:] - gt_depth[:-1]) / gt_depth[:-1]
    error_sum, count = _per_frame_sum_count((pred_change - gt_change).abs(), both)
    return error_sum / count


class _PerVideoMetric(Metric):
    """Base for metrics that score each video and average the scores over videos.

    Subclasses name their outputs in ``keys`` and implement :meth:`score_video`.
    """

    is_differentiable = False
    full_state_update = False
    keys: tuple[str, ...] = ()

    def __init__(
        self, protocol: Protocol = "flashdepth", max_depth: float = 70.0, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        _check_protocol(protocol, max_depth)
        self.protocol = protocol
        self.max_depth = float(max_depth)
        for key in self.keys:
            self.add_state(f"{key}_sum", torch.tensor(0.0, dtype=torch.float64), "sum")
        self.add_state("num_videos", torch.tensor(0, dtype=torch.long), "sum")

    @abstractmethod
    def score_video(self, video: AlignedVideo) -> dict[str, Tensor] | None:
        """Scores of one aligned video by key, or None if nothing in it can be scored."""

    def update(self, pred: Tensor, gt_inverse_depth: Tensor, valid: Tensor) -> None:
        """Add one whole video.

        Args:
            pred: (T, H, W) model output, relative inverse depth at any scale.
            gt_inverse_depth: (T, H, W) ground-truth inverse depth in 1/m, sky = 0.
            valid: (T, H, W) bool, pixels with ground truth; all False excludes the video.
        """
        video = align_video(pred, gt_inverse_depth, valid, self.protocol, self.max_depth)
        scores = self.score_video(video)
        if scores is None:
            return
        for key in self.keys:
            state = getattr(self, f"{key}_sum")
            setattr(self, f"{key}_sum", state + scores[key].to(state))
        self.num_videos += 1

    def mean_over_videos(self) -> dict[str, Tensor]:
        """Mean score per key over the videos seen (NaN before any scored video)."""
        return {key: getattr(self, f"{key}_sum") / self.num_videos for key in self.keys}


class FlashDepthMetrics(_PerVideoMetric):
    """AbsRel (lower is better) and δ1 (higher is better) of aligned depth, mean over videos.

    ``protocol="flashdepth"`` pools each video's pixels; ``protocol="vda"`` averages per frame
    (see the module docstring). ``compute`` returns ``{"abs_rel", "delta1"}``.
    """

    keys = ("abs_rel", "delta1")

    def score_video(self, video: AlignedVideo) -> dict[str, Tensor] | None:
        """AbsRel and δ1 of one video, per frame under the VDA protocol (:func:`abs_rel_delta1`)."""
        return abs_rel_delta1(video, per_frame=self.protocol == "vda")

    def compute(self) -> dict[str, Tensor]:
        """``{"abs_rel", "delta1"}``, each the mean over the scored videos."""
        return self.mean_over_videos()


class BoundaryF1(_PerVideoMetric):
    """Depth Pro boundary F1 (:func:`boundary_f1`) per frame, mean over frames, then videos.

    Frames without a valid pixel are skipped. Higher is better; ``compute`` returns a scalar.
    """

    keys = ("boundary_f1",)
    higher_is_better = True

    def score_video(self, video: AlignedVideo) -> dict[str, Tensor] | None:
        """Mean boundary F1 over the frames with a valid pixel; None if no frame has one."""
        scored = video.valid.any(dim=(-2, -1))
        if not bool(scored.any()):
            return None
        per_frame = boundary_f1(video.pred_depth, video.gt_depth, video.valid)
        return {"boundary_f1": per_frame[scored].mean()}

    def compute(self) -> Tensor:
        """Boundary F1, the mean over the scored videos (a scalar)."""
        return self.mean_over_videos()["boundary_f1"]


class TemporalConsistency(_PerVideoMetric):
    """Flicker (:func:`flicker`) per frame pair, mean over pairs, then over videos.

    Unitless; 0 for a prediction that changes over time exactly like the ground truth, higher
    is worse. Pairs without a pixel valid in both frames, and one-frame videos, are skipped.
    """

    keys = ("flicker",)
    higher_is_better = False

    def score_video(self, video: AlignedVideo) -> dict[str, Tensor] | None:
        """Mean flicker over the frame pairs with a pixel valid in both; None if there is none."""
        scored = (video.valid[1:] & video.valid[:-1]).any(dim=(-2, -1))
        if not bool(scored.any()):
            return None
        per_pair = flicker(video.pred_depth, video.gt_depth, video.valid)
        return {"flicker": per_pair[scored].mean()}

    def compute(self) -> Tensor:
        """Flicker, the mean over the scored videos (a scalar)."""
        return self.mean_over_videos()["flicker"]


class VideoDepthMetrics(MetricCollection):
    """All video depth metrics of one dataset: ``{"abs_rel", "delta1", "boundary_f1", "flicker"}``.

    Call ``update(pred, gt_inverse_depth, valid)`` once per whole video (T, H, W) and
    ``compute()`` at the end; keep one instance per evaluation dataset.

    Args:
        protocol: ``"flashdepth"`` or ``"vda"`` (see the module docstring).
        max_depth: depth cap in metres.
        prefix: optional prefix of the returned keys, e.g. ``"test/sintel/"``.
    """

    def __init__(
        self, protocol: Protocol = "flashdepth", max_depth: float = 70.0, prefix: str | None = None
    ) -> None:
        super().__init__(
            {
                "accuracy": FlashDepthMetrics(protocol, max_depth),
                "boundary_f1": BoundaryF1(protocol, max_depth),
                "flicker": TemporalConsistency(protocol, max_depth),
            },
            prefix=prefix,
            compute_groups=False,
        )
