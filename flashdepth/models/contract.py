"""The model contract: what every depth model of the zoo offers its users.

The Lightning task, the benchmark, the inference package and other people's projects
talk to a model only through :class:`StreamingDepthModel`, a small typed protocol; they
never probe it with ``hasattr`` or reach into its sub-modules. Per-frame models
(Depth Anything V2) satisfy it with an empty state.

**State.** One plain tensor whose dim 0 indexes the videos of the batch, with a shape
fixed from frame 0 (``init_state`` knows the network input size), so a stream can be
saved with ``torch.save``, reset per video (``state[b] = fresh[b]``), batched across
videos (``torch.cat``), trained through time inside a clip, and captured by
``torch.compile(model.step, fullgraph=True)`` or CUDA graphs.

**Parameter groups.** The model, not the task, knows which of its parameters are the
ViT (``"vit"``), the DPT decoder (``"dpt"``), the temporal component (``"temporal"``) and
the fusion (``"fusion"``). Frozen parts (the hybrid's teacher, a frozen low-resolution
model) belong to no group.

**Weight parts.** A model assembled from separately trained pieces (stage 2: student and
teacher) names them in :meth:`StreamingDepthModel.weight_parts`, so one checkpoint can be
loaded into each part (:func:`flashdepth.checkpoints.load_weights` with ``part=``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor, nn

#: Names of the optimiser groups a model may return from ``parameter_groups``.
GROUP_NAMES = ("vit", "dpt", "temporal", "fusion")


@dataclass(frozen=True)
class WeightPart:
    """A piece of a model that takes its weights from its own checkpoint.

    Attributes:
        prefix: Key prefix of the part inside the model's ``state_dict`` (``""``: the
            model itself).
        exclude: Model key prefixes that are not part of it (``"teacher."`` for the
            student of the hybrid).
        keeps_initialisation: Key prefixes inside the part that a checkpoint of this
            part does not hold and that keep their initialisation (the fusion of a stage-1
            student: zero-initialised, so the model starts as the stage-1 model).
        ignores: Checkpoint key prefixes (zoo names, after renaming) the part does not use
            (the temporal module of a stage-1 FlashDepth-L loaded as a teacher).
    """

    prefix: str = ""
    exclude: tuple[str, ...] = ()
    keeps_initialisation: tuple[str, ...] = ()
    ignores: tuple[str, ...] = ()


@runtime_checkable
class StreamingDepthModel(Protocol):
    """Relative inverse depth (≥ 0; ×100 ≈ 100/m for our recipes) of video frames.

    Inputs are ImageNet-normalised RGB whose sides are multiples of 14 (see
    :class:`flashdepth.transforms.Preprocess`).
    """

    def init_state(
        self,
        batch_size: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        image_size: tuple[int, int] | None = None,
    ) -> Tensor:
        """The state before the first frame of ``batch_size`` videos of ``image_size``.

        ``image_size`` is ``(H, W)``, the network input size; it is needed by components whose
        state is a map.
        """
        ...

    def step(self, frame: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        """One frame ``(B, 3, H, W)`` -> ``(inverse_depth (B, H, W), new_state)``."""
        ...

    def forward(self, clip: Tensor, state: Tensor | None = None) -> Tensor:
        """A clip ``(B, T, 3, H, W)`` -> ``(B, T, H, W)``; gradients flow through time."""
        ...

    def forward_with_state(self, clip: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        """Like ``forward`` from a given state, also returning the final state (chunks)."""
        ...

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Trainable parameters by optimiser group (names from :data:`GROUP_NAMES`)."""
        ...

    def weight_parts(self) -> dict[str, WeightPart]:
        """Parts that load their weights separately (``{}`` for single-source models)."""
        ...

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute activations in the backward pass instead of storing them."""
        ...
