"""The "no temporal module" baseline: every frame is processed on its own.

With :class:`IdentityTemporal` FlashDepth reduces to per-frame Depth Anything V2 (the
temporal alignment adds ``Out(Up(x))``, whose zero-initialised output layer stays
trainable but sees no information from other frames).
"""

from __future__ import annotations

import torch
from torch import Tensor

from flashdepth.temporal.base import TemporalModule


class IdentityTemporal(TemporalModule):
    """Returns the features unchanged; its state is an empty ``(B, 0)`` tensor.

    Args:
        dim: Channels of the feature grid (checked, otherwise unused).
    """

    def init_state(
        self,
        batch_size: int,
        grid: tuple[int, int] | None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> Tensor:
        """An empty ``(B, 0)`` tensor that only records the batch size.

        ``grid`` is unused, ``None`` is fine: only map-shaped states need it.
        """
        return torch.zeros(batch_size, 0, device=self._param_device(device), dtype=dtype)

    def step(self, x: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        """One frame ``(B, C, h, w)`` -> ``(x, state)``, both unchanged."""
        if x.shape[1] != self.dim:
            raise ValueError(f"IdentityTemporal(dim={self.dim}) got {x.shape[1]} channels")
        if state.shape[0] != x.shape[0]:
            raise ValueError(
                f"state is for {state.shape[0]} videos but the frame batch has {x.shape[0]}"
            )
        return x, state
