"""A convolutional GRU over the pooled feature grid (the GRU ablation of FlashDepth).

The hidden state is a feature map of the pooled grid's size, updated per frame by
GRU gates computed with convolutions, so each cell sees its spatial neighbourhood::

    r, u = sigmoid(conv_gates([x, h]))            # reset, update
    n    = tanh(conv_candidate([x, r * h]))
    h'   = (1 - u) * h + u * n

The output is ``h'`` itself when ``hidden_dim == dim``; otherwise a 1x1 convolution
(``out_proj``) maps it back to ``dim``. No extra projection is added in the first case
because the temporal alignment around the component already applies its own output
layer (GELU + Linear, zero-initialised).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from flashdepth.temporal.base import TemporalModule


class GRUTemporal(TemporalModule):
    """Convolutional GRU carrying a hidden feature map across frames.

    The state is the hidden map ``(B, hidden_dim, h, w)`` of the pooled grid, zeros before
    the first frame (its shape never changes during a video).

    Args:
        dim: Channels of the feature grid.
        hidden_dim: Channels of the hidden map; ``dim`` when ``None``.
        kernel_size: Odd size of the gate and candidate convolutions.
    """

    def __init__(self, dim: int, hidden_dim: int | None = None, kernel_size: int = 3) -> None:
        super().__init__(dim)
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(
                f"kernel_size must be odd so the hidden map keeps its size, got {kernel_size}"
            )
        self.hidden_dim = dim if hidden_dim is None else hidden_dim
        padding = kernel_size // 2
        both = dim + self.hidden_dim
        self.conv_gates = nn.Conv2d(both, 2 * self.hidden_dim, kernel_size, padding=padding)
        self.conv_candidate = nn.Conv2d(both, self.hidden_dim, kernel_size, padding=padding)
        self.out_proj = nn.Conv2d(self.hidden_dim, dim, 1) if self.hidden_dim != dim else None

    def init_state(
        self,
        batch_size: int,
        grid: tuple[int, int] | None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> Tensor:
        """A zero hidden map ``(B, hidden_dim, h, w)`` for the pooled ``grid`` ``(h, w)``.

        The state is a map of the grid, so ``grid`` is required (``None`` raises).
        """
        if grid is None:
            raise ValueError(
                "GRUTemporal's state is a map of the pooled grid, so init_state needs "
                "grid=(h, w); pass image_size=(H, W) to the model's init_state"
            )
        if dtype is None:
            dtype = self.conv_gates.weight.dtype
        device = self._param_device(device)
        height, width = grid
        return torch.zeros(batch_size, self.hidden_dim, height, width, device=device, dtype=dtype)

    def step(self, x: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        """One frame ``(B, C, h, w)`` -> ``(features (B, C, h, w), hidden (B, hidden, h, w))``."""
        batch, channels, height, width = x.shape
        if channels != self.dim:
            raise ValueError(f"GRUTemporal(dim={self.dim}) got features with {channels} channels")
        if state.dim() != 4 or state.shape[:2] != (batch, self.hidden_dim):
            raise ValueError(
                f"GRU state must be (B, hidden_dim, h, w) with (B, hidden_dim) = "
                f"{(batch, self.hidden_dim)}, got {tuple(state.shape)}"
            )
        if state.shape[2:] != (height, width):
            raise ValueError(
                f"GRU state grid {tuple(state.shape[2:])} does not match the frame's pooled grid "
                f"{(height, width)}; build the state with init_state(batch, grid=(h, w)) for the "
                "frame size, and start a new video from init_state when the size changes"
            )
        reset, update = torch.sigmoid(self.conv_gates(torch.cat([x, state], dim=1))).chunk(2, 1)
        candidate = torch.tanh(self.conv_candidate(torch.cat([x, reset * state], dim=1)))
        hidden = (1 - update) * state + update * candidate
        out = hidden if self.out_proj is None else self.out_proj(hidden)
        return out, hidden
