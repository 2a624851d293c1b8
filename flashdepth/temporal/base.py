"""The interface every temporal component implements.

A temporal component sees one pooled DPT feature grid per frame, ``(B, C, h, w)``,
and carries a state across frames. The state is one plain tensor (no hidden
globals, no module buffers), so a stream can be checkpointed with ``torch.save``,
reset per video by zeroing its batch slice, batched across videos by
concatenating along dim 0, and trained through time (the tensor keeps its
autograd history inside a clip).

Dim 0 of every state indexes the batch, and the state's shape is fixed from frame 0:
:meth:`TemporalModule.init_state` is told the pooled grid the component will see, so
``torch.compile(fullgraph=True)`` and CUDA graphs can capture a streaming step.

Components are injected into FlashDepth as factories ``Callable[[int], TemporalModule]``
(the class with every argument but ``dim``): the model calls ``factory(dpt_width)``, so
a recipe never states a width that follows the encoder.
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

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    @abstractmethod
    def init_state(
        self,
        batch_size: int,
        grid: tuple[int, int] | None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> Tensor:
        """The state before the first frame of a video (zeros), batch on dim 0.

        Args:
            batch_size: Number of videos streamed side by side.
            grid: ``(h, w)`` of the pooled feature grid every frame will have. Only
                components whose state is a map of the grid (the GRU) need it; the
                others accept ``None``.
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
            state = self.init_state(clip.shape[0], clip.shape[-2:], clip.device, clip.dtype)
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
