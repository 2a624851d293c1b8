"""Tests of the training losses on 100·inverse depth and of the least-squares fit."""

from __future__ import annotations

import pytest
import torch

from flashdepth.losses import (
    INVERSE_DEPTH_SCALE,
    LOSSES,
    fit_scale_shift,
    get_loss,
    masked_l1_loss,
    scale_shift_invariant_loss,
)


def _clip(batch: int = 2, frames: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """Ground-truth inverse depth in 1/m (0.05..1, i.e. 1..20 m) and an all-valid mask."""
    target = torch.rand(batch, frames, 6, 8) * 0.95 + 0.05
    return target, torch.ones_like(target, dtype=torch.bool)


def test_l1_by_hand() -> None:
    # target 1/m: [0.5, 0.0 (sky), 0.2, NaN (invalid)] -> x100: [50, 0, 20, -]
    # pred: [52, 1, 20, 1000]; |error| over the 3 valid pixels: 2 + 1 + 0 = 3 -> mean 1.0
    target = torch.tensor([0.5, 0.0, 0.2, float("nan")])
    pred = torch.tensor([52.0, 1.0, 20.0, 1000.0], requires_grad=True)
    valid = torch.tensor([True, True, True, False])
    loss = masked_l1_loss(pred, target, valid)
    assert loss.item() == pytest.approx(1.0)
    loss.backward()
    # d|p - t|/dp = sign / count: +1/3, +1/3 (sky pushes 1 -> 0), 0 at the exact hit, 0 invalid
    assert torch.allclose(pred.grad, torch.tensor([1 / 3, 1 / 3, 0.0, 0.0]))


def test_l1_zero_for_target_on_x100_scale() -> None:
    target, valid = _clip()
    assert masked_l1_loss(target * INVERSE_DEPTH_SCALE, target, valid).item() == pytest.approx(0)
    assert masked_l1_loss(target, target, valid).item() > 1.0


def test_l1_ignores_nan_and_inf_at_invalid_pixels() -> None:
    target, valid = _clip()
    pred = (target * INVERSE_DEPTH_SCALE + 1.0).requires_grad_()
    valid[:, :, :2] = False
    corrupt = target.clone()
    corrupt[:, :, 0] = float("nan")
    corrupt[:, :, 1] = float("inf")
    loss = masked_l1_loss(pred, corrupt, valid)
    assert loss.item() == pytest.approx(1.0)
    loss.backward()
    assert torch.isfinite(pred.grad).all()
    assert (pred.grad[:, :, :2] == 0).all()


@pytest.mark.parametrize("loss_fn", [masked_l1_loss, scale_shift_invariant_loss])
def test_no_valid_pixel_gives_zero_with_grad(loss_fn) -> None:
    target, valid = _clip()
    pred = torch.randn_like(target, requires_grad=True)
    loss = loss_fn(pred, target, torch.zeros_like(valid))
    assert loss.item() == 0.0
    loss.backward()
    assert pred.grad is not None and (pred.grad == 0).all()


def test_ssi_invariant_to_prediction_scale_and_shift() -> None:
    target, valid = _clip()
    pred = 2.0 * (INVERSE_DEPTH_SCALE * target) + 3.0
    assert scale_shift_invariant_loss(pred, target, valid).item() < 1e-4
    # the plain L1 is not invariant: the same prediction is far off
    assert masked_l1_loss(pred, target, valid).item() > 50.0


def test_ssi_fits_each_clip_separately() -> None:
    target, valid = _clip(batch=2)
    # clip 0 scaled by 2, clip 1 by 0.5 and shifted: both align exactly
    pred = INVERSE_DEPTH_SCALE * target * torch.tensor([2.0, 0.5])[:, None, None, None] + 7.0
    assert scale_shift_invariant_loss(pred, target, valid).item() < 1e-4


def test_ssi_mean_over_clips_skips_empty_clips() -> None:
    target, valid = _clip(batch=2)
    noise = torch.randn_like(target)
    pred = INVERSE_DEPTH_SCALE * target + noise
    only_first = scale_shift_invariant_loss(pred[:1], target[:1], valid[:1])
    valid[1] = False
    assert scale_shift_invariant_loss(pred, target, valid).item() == pytest.approx(
        only_first.item(), rel=1e-5
    )


def test_ssi_gradient_flows_and_ignores_invalid_nan() -> None:
    target, valid = _clip()
    valid[:, 0] = False
    target[:, 0] = float("nan")
    pred = torch.randn_like(target, requires_grad=True)
    loss = scale_shift_invariant_loss(pred, target, valid)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(pred.grad).all()
    assert pred.grad[:, 1:].abs().sum() > 0
    assert (pred.grad[:, 0] == 0).all()


def test_fit_scale_shift_by_hand_and_degenerate_rows() -> None:
    # row 0: target = 3·pred - 1 exactly; row 1: constant prediction -> shift = mean target (4);
    # row 2: no masked pixel -> (0, 0)
    pred = torch.tensor([[0.0, 1.0, 2.0, 9.0], [5.0, 5.0, 5.0, 5.0], [1.0, 2.0, 3.0, 4.0]])
    target = torch.tensor([[-1.0, 2.0, 5.0, 0.0], [2.0, 4.0, 6.0, 4.0], [1.0, 1.0, 1.0, 1.0]])
    mask = torch.tensor([[True, True, True, False], [True] * 4, [False] * 4])
    scale, shift = fit_scale_shift(pred, target, mask)
    assert scale.dtype == torch.float64
    assert scale[0].item() == pytest.approx(3.0, abs=1e-6)
    assert shift[0].item() == pytest.approx(-1.0, abs=1e-6)
    assert (scale[1] * 5 + shift[1]).item() == pytest.approx(4.0, abs=1e-6)
    assert scale[2].item() == 0.0 and shift[2].item() == 0.0


def test_shape_mismatch_names_the_shapes() -> None:
    target, valid = _clip()
    with pytest.raises(ValueError, match=r"pred \(2, 3, 6\)"):
        masked_l1_loss(target[..., 0], target, valid)


def test_registry() -> None:
    assert set(LOSSES) == {"l1", "ssi"}
    assert get_loss("l1") is masked_l1_loss
    assert get_loss("ssi") is scale_shift_invariant_loss
    with pytest.raises(ValueError, match=r"unknown loss 'l2'.*\['l1', 'ssi'\]"):
        get_loss("l2")
