"""Training losses on inverse depth, and the least-squares scale/shift fit they share with eval.

Units. The models predict *relative inverse depth on the x100 scale*: a value of 100 means
1 m, 1 means 100 m, 0 means infinitely far (sky). Ground truth arrives as inverse depth in
1/m with sky = 0 (a valid target: sky is supervised to be infinitely far). Every loss here
multiplies the target by :data:`INVERSE_DEPTH_SCALE` before comparing, so the prediction and the
target share the x100 scale.

``valid`` marks the pixels that carry ground truth. Targets at invalid pixels may be anything,
including NaN or inf: they are replaced before any arithmetic, so they never reach the loss or
its gradient.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

INVERSE_DEPTH_SCALE = 100.0
"""Factor between ground-truth inverse depth (1/m) and the model's output scale (x100)."""

_RIDGE = 1e-9
"""Relative damping of the normal equations' diagonal; keeps degenerate fits finite."""

_ABSOLUTE_RIDGE = 1e-12
"""Absolute damping on the diagonal, for a prediction that is zero everywhere."""


def _check_shapes(pred: Tensor, target: Tensor, valid: Tensor) -> None:
    if not (pred.shape == target.shape == valid.shape):
        raise ValueError(
            "pred, target and valid must have the same shape, got "
            f"pred {tuple(pred.shape)}, target {tuple(target.shape)}, valid {tuple(valid.shape)}; "
            "give one value per pixel in each (e.g. all (B, T, H, W))."
        )


def _scaled_target(target: Tensor, valid: Tensor) -> Tensor:
    """Target on the x100 scale in float32, zero (never NaN) at invalid pixels."""
    return torch.where(valid, target.float() * INVERSE_DEPTH_SCALE, 0.0)


def normal_equation_sums(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """The sums of the least-squares fit ``target ≈ scale * pred + shift`` of each row.

    Sums of several parts of a problem add up to the sums of the whole (a video read a few
    frames at a time); :func:`solve_scale_shift` solves them.

    Args:
        pred: (B, N) values to align (any units).
        target: (B, N) values to align to; only entries under ``mask`` are read.
        mask: (B, N) bool, the pixels that take part in the fit.

    Returns:
        (B, 5) float64: pixel count, Σpred, Σtarget, Σpred², Σpred·target over ``mask``.
    """
    _check_shapes(pred, target, mask)
    m = mask.double()
    p = torch.where(mask, pred.double(), 0.0)
    g = torch.where(mask, target.double(), 0.0)
    n = m.sum(dim=1)
    sum_p, sum_g = p.sum(dim=1), g.sum(dim=1)
    sum_pp, sum_pg = (p * p).sum(dim=1), (p * g).sum(dim=1)
    return torch.stack([n, sum_p, sum_g, sum_pp, sum_pg], dim=-1)


def solve_scale_shift(sums: Tensor) -> tuple[Tensor, Tensor]:
    """Scale and shift from :func:`normal_equation_sums` ``(..., 5)``, in closed form.

    A tiny Levenberg-style damping of the diagonal keeps degenerate rows finite: constant
    prediction -> scale ≈ 0, shift ≈ mean target; no masked pixel -> scale 0, shift 0.

    Returns:
        ``(scale, shift)``, each ``(...)`` float64.
    """
    n, sum_p, sum_g, sum_pp, sum_pg = sums.unbind(dim=-1)
    a = sum_pp * (1.0 + _RIDGE) + _ABSOLUTE_RIDGE
    d = n * (1.0 + _RIDGE) + _ABSOLUTE_RIDGE
    det = a * d - sum_p * sum_p
    scale = (d * sum_pg - sum_p * sum_g) / det
    shift = (a * sum_g - sum_p * sum_pg) / det
    return scale, shift


def fit_scale_shift(pred: Tensor, target: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Least-squares scale and shift per row: ``target ≈ scale * pred + shift`` over ``mask``.

    Solves the 2x2 normal equations (:func:`normal_equation_sums`) in closed form in float64,
    one problem per leading index (:func:`solve_scale_shift`, damped so that a row whose
    masked prediction is constant or empty gets a finite answer). The fit is differentiable
    with respect to ``pred`` (the scale-and-shift-invariant loss back-propagates through it).

    Args:
        pred: (B, N) values to align (any units).
        target: (B, N) values to align to; only entries under ``mask`` are read.
        mask: (B, N) bool, the pixels that take part in the fit.

    Returns:
        ``(scale, shift)``, each (B,) float64.
    """
    return solve_scale_shift(normal_equation_sums(pred, target, mask))


def masked_l1_loss(pred: Tensor, target: Tensor, valid: Tensor) -> Tensor:
    """Mean absolute error on 100·inverse depth over the valid pixels of the whole batch.

    Args:
        pred: model output, relative inverse depth on the x100 scale (≈ 100/m), any shape,
            e.g. (B, T, H, W).
        target: ground-truth inverse depth in 1/m, same shape; sky = 0 is a valid target.
        valid: bool, same shape; pixels with ground truth (sky included).

    Returns:
        Scalar float32 loss. With no valid pixel it is a zero that still carries a gradient
        (so every rank of a DDP job runs the same backward).
    """
    _check_shapes(pred, target, valid)
    valid = valid.bool()
    error = torch.where(valid, (pred.float() - _scaled_target(target, valid)).abs(), 0.0)
    # with no valid pixel this is 0 / 1: a zero that still carries a gradient
    return error.sum() / valid.sum().clamp(min=1)


def scale_shift_invariant_loss(pred: Tensor, target: Tensor, valid: Tensor) -> Tensor:
    """L1 on 100·inverse depth after aligning each clip's prediction by least squares.

    For every clip (first dimension), one scale ``s`` and shift ``t`` are fitted over the valid
    pixels of all its frames so that ``s * pred + t ≈ 100 * target``; the loss is the mean
    absolute error of the aligned prediction over those pixels. Gradients flow through ``s``
    and ``t``. Clips without a valid pixel are left out of the mean over clips.

    Args:
        pred: (B, ...) model output, relative inverse depth on the x100 scale, e.g. (B, T, H, W).
        target: (B, ...) ground-truth inverse depth in 1/m; sky = 0 is a valid target.
        valid: (B, ...) bool, pixels with ground truth.

    Returns:
        Scalar float32 loss, zero with a gradient when no clip has a valid pixel.
    """
    _check_shapes(pred, target, valid)
    valid = valid.bool()
    # (B, ...) -> (B, N): every pixel of every frame of a clip in one row
    pred_rows = pred.float().flatten(start_dim=1)
    valid_rows = valid.flatten(start_dim=1)
    target_rows = _scaled_target(target, valid).flatten(start_dim=1)
    scale, shift = fit_scale_shift(pred_rows, target_rows, valid_rows)
    aligned = scale.float()[:, None] * pred_rows + shift.float()[:, None]
    error = torch.where(valid_rows, (aligned - target_rows).abs(), 0.0)
    count = valid_rows.sum(dim=1)
    per_clip = error.sum(dim=1) / count.clamp(min=1)
    has_pixels = count > 0
    # clips without pixels add 0 and are not counted; none at all gives 0 / 1 with a gradient
    return (per_clip * has_pixels).sum() / has_pixels.sum().clamp(min=1)


LossFn = Callable[[Tensor, Tensor, Tensor], Tensor]

LOSSES: dict[str, LossFn] = {
    "l1": masked_l1_loss,
    "ssi": scale_shift_invariant_loss,
}
"""Losses selectable by name from a recipe (``loss: l1`` or ``loss: ssi``)."""


def get_loss(name: str) -> LossFn:
    """Return the loss function registered under ``name``.

    Args:
        name: a key of :data:`LOSSES`.

    Returns:
        ``loss(pred, target, valid) -> scalar``.

    Raises:
        ValueError: if ``name`` is not registered.
    """
    try:
        return LOSSES[name]
    except KeyError:
        raise ValueError(
            f"unknown loss {name!r}; choose one of {sorted(LOSSES)} "
            "(l1: masked L1 on 100·inverse depth; ssi: per-clip scale-and-shift-invariant L1)"
        ) from None
