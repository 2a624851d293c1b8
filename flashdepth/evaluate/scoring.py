"""One video's scores in two streaming passes, under the FlashDepth and/or the VDA protocol.

The metrics are those of :mod:`flashdepth.metrics` (read its docstring for both protocols).
They align a video with ONE least-squares scale and shift in disparity, then score depth,
which is not linear in the prediction (reciprocal, clipping, thresholds): there is no running
sum that scores a video in one pass. So a video is read twice, a chunk of frames at a time:

1. **fit**: per protocol, the sums of the normal equations of
   :func:`flashdepth.losses.fit_scale_shift` (pixel count, Σp, Σg, Σp², Σpg in float64) are
   accumulated over the chunks and solved once for the video's scale and shift; each frame's
   own scale and shift are fitted too (same least squares, same pixels), for the scale drift
   ``s_frame / s_video``;
2. **score**: each chunk is aligned with the video's scale and shift; per frame the AbsRel and
   δ1 sums and pixel counts, the boundary F1 (:func:`~flashdepth.metrics.boundary_f1`) and
   per frame pair the flicker (:func:`~flashdepth.metrics.flicker`, the last frame of a chunk
   carried into the next) are kept, and reduced at the end exactly as the metrics reduce them.

Memory is one chunk of frames plus a few numbers per frame, whatever the video's length.
Which pixels are valid and the ground-truth depth come from
:func:`~flashdepth.metrics.align_video` itself, so the protocols are defined in one place.
With the whole video in one chunk the operations are those of
:class:`~flashdepth.metrics.VideoDepthMetrics`, in the same order, and the scores are
bit-identical; over several chunks the float64 fit sums are added in another order, which can
move the scale and shift in their last bits (about 1e-16 relative) and the scores by
float32 rounding (below 1e-6 relative). Run single-threaded (the runner does): torch sums a
single large row in thread-count-dependent pieces.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from flashdepth.evaluate import EvaluationError
from flashdepth.losses import fit_scale_shift, normal_equation_sums, solve_scale_shift
from flashdepth.metrics import (
    PROTOCOLS,
    AlignedVideo,
    abs_rel_delta1_sums,
    align_video,
    boundary_f1,
    disparity_to_depth,
    flicker,
    reduce_abs_rel_delta1,
)

#: Depth cap (m) of the FlashDepth protocol.
FLASHDEPTH_MAX_DEPTH_M = 70.0
#: Video Depth Anything's per-dataset depth caps (m), by dataset-name prefix.
VDA_MAX_DEPTH_M = {"kitti": 80.0, "bonn": 10.0, "scannet": 10.0, "nyu": 10.0, "sintel": 70.0}
#: Per-video scores, in table order.
METRICS = ("abs_rel", "delta1", "boundary_f1", "flicker")

#: ``read_chunk(frames) -> (pred, gt_inverse_depth, valid)``, each (C, H, W) (see the metrics).
ChunkReader = Callable[[range], tuple[Tensor, Tensor, Tensor]]


@dataclass(frozen=True)
class ProtocolSetting:
    """A protocol and the depth cap (m) it scores a video with."""

    protocol: str
    max_depth: float


def max_depth_for(protocol: str, dataset: str, override: float | None) -> float:
    """The depth cap of a protocol on a dataset.

    ``override`` if given, else 70 m for the FlashDepth protocol and VDA's cap for the dataset
    (name prefix, case and punctuation ignored: ``NYUv2`` and ``nyu_depth_v2`` are both
    ``nyu``).

    Raises:
        EvaluationError: For the VDA protocol on a dataset without a known cap.
    """
    if override is not None:
        return override
    if protocol == "flashdepth":
        return FLASHDEPTH_MAX_DEPTH_M
    name = re.sub(r"[^a-z0-9]", "", dataset.lower())
    for prefix, cap in VDA_MAX_DEPTH_M.items():
        if name.startswith(prefix):
            return cap
    known = ", ".join(f"{k} {v:g} m" for k, v in VDA_MAX_DEPTH_M.items())
    raise EvaluationError(
        f"the VDA protocol has no depth cap for dataset {dataset!r} (known: {known}); "
        "give one with --max-depth METRES"
    )


class _ProtocolScores:
    """The running state of one protocol over one video: fit sums, then per-frame scores."""

    def __init__(self, setting: ProtocolSetting) -> None:
        self.setting = setting
        self.sums = torch.zeros(5, dtype=torch.float64)
        self.frame_scales: list[Tensor] = []
        self.scale = self.shift = torch.zeros((), dtype=torch.float64)
        self.parts: dict[str, list[Tensor]] = {
            name: [] for name in ("abs_rel_sum", "delta1_sum", "count", "boundary_f1", "flicker")
        }
        self.previous: AlignedVideo | None = None

    def _base(self, pred: Tensor, gt: Tensor, valid: Tensor) -> tuple[AlignedVideo, Tensor]:
        """The protocol's valid pixels and gt depth (from ``align_video``) and gt disparity."""
        base = align_video(pred, gt, valid, self.setting.protocol, self.setting.max_depth)
        return base, torch.where(base.valid, gt.float(), 0.0)

    def fit(self, pred: Tensor, gt: Tensor, valid: Tensor) -> None:
        """Pass 1 on one chunk: add its fit sums; fit each frame on its own."""
        base, gt_disp = self._base(pred, gt, valid)
        mask = base.valid & (gt_disp >= 1.0 / self.setting.max_depth)
        # (C, H, W) -> (1, C*H*W): one row, as the metrics fit a whole video
        self.sums = (
            self.sums
            + normal_equation_sums(
                pred.reshape(1, -1), gt_disp.reshape(1, -1), mask.reshape(1, -1)
            )[0]
        )
        rows = pred.shape[0]
        # (C, H, W) -> (C, H*W): one least-squares problem per frame
        rows_mask = mask.reshape(rows, -1)
        scales, _ = fit_scale_shift(pred.reshape(rows, -1), gt_disp.reshape(rows, -1), rows_mask)
        self.frame_scales.append(torch.where(rows_mask.any(dim=1), scales, torch.nan))

    def solve(self) -> None:
        """End of pass 1: the video's scale and shift."""
        self.scale, self.shift = solve_scale_shift(self.sums)

    def score(self, pred: Tensor, gt: Tensor, valid: Tensor) -> None:
        """Pass 2 on one chunk: align with the video's fit, keep per-frame sums and scores."""
        base, _ = self._base(pred, gt, valid)
        aligned_disp = self.scale.float() * pred.float() + self.shift.float()
        video = AlignedVideo(
            disparity_to_depth(aligned_disp, self.setting.max_depth), base.gt_depth, base.valid
        )
        for name, sums in zip(
            ("abs_rel_sum", "delta1_sum", "count"), abs_rel_delta1_sums(video), strict=True
        ):
            self.parts[name].append(sums)
        self.parts["boundary_f1"].append(boundary_f1(*video))
        if self.previous is not None:
            # (1 + C) frames: the pair across the chunk boundary first
            video = AlignedVideo(
                *(torch.cat(pair) for pair in zip(self.previous, video, strict=True))
            )
        self.parts["flicker"].append(flicker(*video))
        self.previous = AlignedVideo(*(tensor[-1:] for tensor in video))

    def result(self) -> dict[str, object]:
        """Per-video scores and per-frame values.

        Scores are ``None`` where nothing is scored, as the metrics skip the video; per-frame
        values are NaN where nothing is scored.
        """
        abs_rel_sum, delta1_sum, count, boundary, pairs = (
            torch.cat(self.parts[name])
            for name in ("abs_rel_sum", "delta1_sum", "count", "boundary_f1", "flicker")
        )
        scored, scored_pairs = count > 0, ~pairs.isnan()
        scores: dict[str, Tensor | None] = dict.fromkeys(METRICS)
        per_frame = self.setting.protocol == "vda"
        scores.update(reduce_abs_rel_delta1(abs_rel_sum, delta1_sum, count, per_frame) or {})
        if bool(scored.any()):
            scores["boundary_f1"] = boundary[scored].mean()
        if bool(scored_pairs.any()):
            scores["flicker"] = pairs[scored_pairs].mean()
        frame_scales = torch.cat(self.frame_scales)
        return {
            "max_depth": self.setting.max_depth,
            "scale": float(self.scale),
            "shift": float(self.shift),
            **{name: None if value is None else float(value) for name, value in scores.items()},
            "frames": {
                "abs_rel": _floats(abs_rel_sum / count),
                "delta1": _floats(delta1_sum / count),
                "boundary_f1": _floats(torch.where(scored, boundary, torch.nan)),
                "flicker": _floats(pairs),
                "scale_drift": _floats(frame_scales / self.scale),
            },
        }


def _floats(values: Tensor) -> list[float | None]:
    """A tensor as JSON numbers, NaN (and ±inf) as ``None``."""
    return [v if v == v and abs(v) != float("inf") else None for v in values.tolist()]


def score_video(
    read_chunk: ChunkReader,
    num_frames: int,
    settings: list[ProtocolSetting],
    chunk_frames: int = 8,
) -> dict[str, dict[str, object]]:
    """Score one video under each protocol setting, reading it twice, a chunk at a time.

    Args:
        read_chunk: Returns ``(pred, gt_inverse_depth, valid)`` of a range of frames, each
            (C, H, W): prediction (relative inverse depth) resized to the ground truth, gt in
            1/m (sky 0), bool valid mask.
        num_frames: Frames of the video to score.
        settings: Protocols and depth caps, each scored independently.
        chunk_frames: Frames read at once (memory is proportional to it).

    Returns:
        ``{protocol: result}`` with the video's ``scale``, ``shift``, ``abs_rel``, ``delta1``,
        ``boundary_f1``, ``flicker`` (``None`` if not scored) and per-frame ``frames``.
    """
    unknown = [s.protocol for s in settings if s.protocol not in PROTOCOLS]
    if unknown or not settings or chunk_frames < 1 or num_frames < 1:
        raise ValueError(
            f"need >= 1 frame, a chunk of >= 1 frame and protocols from {PROTOCOLS}; got "
            f"{num_frames} frames, chunk {chunk_frames}, protocols {unknown or settings}"
        )
    states = [_ProtocolScores(setting) for setting in settings]
    chunks = [
        range(s, min(s + chunk_frames, num_frames)) for s in range(0, num_frames, chunk_frames)
    ]
    for frames in chunks:  # pass 1: fit
        chunk = read_chunk(frames)
        for state in states:
            state.fit(*chunk)
    for state in states:
        state.solve()
    for frames in chunks:  # pass 2: score
        chunk = read_chunk(frames)
        for state in states:
            state.score(*chunk)
    return {state.setting.protocol: state.result() for state in states}
