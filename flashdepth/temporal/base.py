"""The interface every temporal component implements.

A temporal component sees one pooled DPT feature grid per frame, ``(B, C, h, w)``,
and carries a state across frames. The state is one plain tensor (no hidden
globals, no module buffers), so a stream can be checkpointed with ``torch.save``,
reset per video by zeroing its batch slice, batched across videos by
concatenating along dim 0, and trained through time (the tensor keeps its
autograd history inside a clip).

Each component says which dimension of its state indexes the batch
(:attr:`TemporalModule.state_batch_dim`), so callers can select or reset single
videos without knowing what the component is.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor, nn


class TemporalModule(nn.Module, ABC):
    """Base class of the temporal components (Mamba, GRU, identity).

    Args:
        dim: Channels ``C`` of the feature grid the component receives (the DPT width).
    """

    #: Dimension of the state tensor that indexes the batch.
    state_batch_dim: int = 0

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    @abstractmethod
    def init_state(
        self,
        batch_size: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> Tensor:
        """The state before the first frame of a video (zeros).

        Args:
            batch_size: Number of videos streamed side by side.
            device: Device of the state; defaults to the module's.
            dtype: Floating dtype of the state; components that need float32 for a
                stable recurrence may ignore it.
        """

    @abstractmethod
    def step(self, x: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        """Process one frame.

        Args:
            x: Pooled features of one frame, ``(B, C, h, w)``.
            state: The state returned for the previous frame (or :meth:`init_state`).

        Returns:
            ``(features (B, C, h, w), new_state)``.
        """

    def forward(self, clip: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Process a whole clip, frame after frame, carrying the state.

        Args:
            clip: ``(B, T, C, h, w)``.
            state: Initial state; zeros when ``None``.

        Returns:
            ``(features (B, T, C, h, w), final_state)``.
        """
        if state is None:
            state = self.init_state(clip.shape[0], clip.device, clip.dtype)
        outputs = []
        for t in range(clip.shape[1]):
            out, state = self.step(clip[:, t], state)
            outputs.append(out)
        return torch.stack(outputs, dim=1), state

    def _param_device(self, device: torch.device | str | None) -> torch.device:
        if device is not None:
            return torch.device(device)
        first = next(self.parameters(), None)
        return first.device if first is not None else torch.device("cpu")
