"""FlashDepth: Depth Anything V2 with a temporal component after one DPT stage.

At DPT stage ``k`` (0 after path_4, 1 after path_3, 2 after path_2, 3 after path_1)
the features ``F (B, C, h, w)`` become::

    F' = F + Out(Up(T(Pool(F))))

``Pool`` is adaptive average pooling to ``(int(h * 0.1), int(w * 0.1))``, ``T`` the
temporal component (tokens row-major, no positional embedding; it carries the
state across frames), ``Up`` bilinear (align_corners=True) back to ``(h, w)`` and
``Out`` GELU + Linear(C, C) per pixel, zero-initialised: an untrained temporal
module leaves Depth Anything V2's output untouched on every frame.

The forward pass is a fixed sequence of named stages::

    encode -> reassemble -> path_4 -> fuse_path_4 -> [temporal 0] -> path_3 -> [temporal 1]
           -> path_2 -> [temporal 2] -> path_1 -> [temporal 3] -> head

``fuse_path_4`` is the identity here; the hybrid model (FlashDepth Full) overrides it.

Released configurations: FlashDepth-S inserts after path_3 (k=1, C=64) and
FlashDepth-L after path_1 (k=3, C=256).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from flashdepth.models.contract import WeightPart
from flashdepth.models.depth_anything import DepthAnythingV2, check_clip, check_frame
from flashdepth.models.dpt import PATCH_SIZE
from flashdepth.temporal.base import TemporalModule
from flashdepth.temporal.mamba import MambaTemporal

#: Names of the DPT stages after which a temporal component can sit.
STAGE_NAMES = ("path_4", "path_3", "path_2", "path_1")

#: Parameter-name prefixes of the temporal component and its output layer (absent from
#: Depth Anything V2 checkpoints).
TEMPORAL_PREFIXES = ("temporal.", "temporal_out.")

#: A temporal component without its width: ``factory(dpt_width) -> TemporalModule``.
TemporalFactory = Callable[[int], TemporalModule]


def released_mamba(encoder: str) -> TemporalFactory:
    """The Mamba configuration of the released weights for an encoder size, as a factory.

    ViT-S (DPT width 64) uses expand 4 and head dim 32; the larger encoders use
    expand 2 and head dim 64 (8 heads in both released models). The tiny test size
    ``vitt`` (DPT width 32, no released weights) takes ViT-S's: 4 heads of 32.
    """
    if encoder in ("vits", "vitt"):
        return partial(MambaTemporal, expand=4, headdim=32)
    return partial(MambaTemporal, expand=2, headdim=64)


class FlashDepth(DepthAnythingV2):
    """Streaming video depth: DAv2 plus a temporal component (dependency-injected).

    Args:
        encoder: DINOv2 size, one of ``vits``, ``vitb``, ``vitl``, ``vitg``, or ``vitt``, the
            tiny test size without released weights (fast tests and debugging).
        temporal: Factory of the temporal component, called with the encoder's DPT width:
            a class (``GRUTemporal``), a ``functools.partial`` or, in YAML, ``class_path`` and
            ``init_args`` without ``dim``. ``None`` builds the released Mamba configuration.
        stage: DPT stage after which the component sits (0..3, see module docstring).
        pool_scale: Factor of the adaptive pooling before the temporal component.

    Inputs are ImageNet-normalised RGB with sides that are multiples of 14; outputs
    are relative inverse depth (non-negative; ≈ 100/m for our training recipes).
    """

    def __init__(
        self,
        encoder: str = "vits",
        temporal: TemporalFactory | None = None,
        stage: int = 1,
        pool_scale: float = 0.1,
    ) -> None:
        super().__init__(encoder)
        if stage not in range(len(STAGE_NAMES)):
            raise ValueError(
                f"stage must be 0..3 (0 after path_4, 1 after path_3, 2 after path_2, "
                f"3 after path_1), got {stage}"
            )
        if not 0.0 < pool_scale <= 1.0:
            raise ValueError(f"pool_scale must be in (0, 1], got {pool_scale}")
        factory = released_mamba(encoder) if temporal is None else temporal
        module = factory(self.features)
        if not isinstance(module, TemporalModule) or module.dim != self.features:
            raise ValueError(
                f"the temporal factory {factory!r} must build a TemporalModule of dim "
                f"{self.features} (the DPT width of encoder {encoder!r}), got {module!r}"
            )
        self.stage = stage
        self.pool_scale = pool_scale
        self.temporal = module
        self.temporal_out = nn.Sequential(nn.GELU(), nn.Linear(self.features, self.features))
        nn.init.zeros_(self.temporal_out[1].weight)
        nn.init.zeros_(self.temporal_out[1].bias)

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """ViT, DPT and temporal (component and its output layer) parameters."""
        return {
            **super().parameter_groups(),
            "temporal": [*self.temporal.parameters(), *self.temporal_out.parameters()],
        }

    def weight_parts(self) -> dict[str, WeightPart]:
        """One source of weights: none to name."""
        return {}

    def pooled_grid(self, image_size: tuple[int, int]) -> tuple[int, int]:
        """``(h, w)`` of the pooled grid the temporal component sees for a network input."""
        scale = 2**self.stage  # path_4 is at the patch grid; each later stage doubles it
        height = image_size[0] // PATCH_SIZE * scale
        width = image_size[1] // PATCH_SIZE * scale
        return self._pooled(height, width)

    def _pooled(self, height: int, width: int) -> tuple[int, int]:
        return max(1, int(height * self.pool_scale)), max(1, int(width * self.pool_scale))

    def init_state(
        self,
        batch_size: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        image_size: tuple[int, int] | None = None,
    ) -> Tensor:
        """The temporal state before the first frame of ``batch_size`` videos.

        Args:
            batch_size: Videos streamed side by side (dim 0 of the state).
            device: Device of the state; defaults to the model's.
            dtype: Floating dtype (Mamba keeps float32 whatever is asked).
            image_size: ``(H, W)`` of the network input; required by components whose
                state is a map of the pooled grid (GRU).
        """
        if device is None:
            device = self.temporal_out[1].weight.device
        grid = None if image_size is None else self.pooled_grid(image_size)
        return self.temporal.init_state(batch_size, grid, device=device, dtype=dtype)

    def step(self, frame: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        """One frame of a stream.

        Args:
            frame: ``(B, 3, H, W)`` ImageNet-normalised, H and W multiples of 14.
            state: The state returned for the previous frame, or :meth:`init_state`.

        Returns:
            ``(inverse_depth (B, H, W), new_state)``.
        """
        check_frame(frame, type(self).__name__)
        depth, state = self.forward_with_state(frame.unsqueeze(1), state)
        return depth[:, 0], state

    def forward(self, clip: Tensor, state: Tensor | None = None) -> Tensor:
        """A whole clip, state starting from zero; gradients flow through time.

        The encoder and the DPT stages run on all ``B*T`` frames at once; only the
        pooled tokens go through the temporal component frame after frame.

        Args:
            clip: ``(B, T, 3, H, W)`` ImageNet-normalised.
            state: Initial state (zeros when ``None``).

        Returns:
            ``(B, T, H, W)`` relative inverse depth.
        """
        check_clip(clip, type(self).__name__)
        if state is None:
            state = self.init_state(
                clip.shape[0], clip.device, image_size=(clip.shape[-2], clip.shape[-1])
            )
        return self.forward_with_state(clip, state)[0]

    def forward_with_state(self, clip: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        """Like :meth:`forward` but starting from, and returning, a state (chunked streams)."""
        check_clip(clip, type(self).__name__)
        path_1, patch_h, patch_w, state = self.path_1_with_state(clip, state)
        depth = self.depth_head.head(path_1, patch_h, patch_w).squeeze(1)  # (B*T, H, W)
        return depth.unflatten(0, clip.shape[:2]), state  # -> (B, T, H, W)

    def path_1_with_state(self, clip: Tensor, state: Tensor) -> tuple[Tensor, int, int, Tensor]:
        """Every stage up to the head: ``(path_1 (B*T, C, 8ph, 8pw), ph, pw, new_state)``."""
        batch, time = clip.shape[:2]
        frames = clip.flatten(0, 1)  # (B, T, 3, H, W) -> (B*T, 3, H, W)
        layers, patch_h, patch_w = self.encode_layers(frames)
        x = self.fuse_path_4(self.depth_head.path_4(layers), frames, patch_h, patch_w)
        x, state = self.temporal_at(0, x, batch, time, state)
        x = self.depth_head.path_3(x, layers)
        x, state = self.temporal_at(1, x, batch, time, state)
        x = self.depth_head.path_2(x, layers)
        x, state = self.temporal_at(2, x, batch, time, state)
        x = self.depth_head.path_1(x, layers)
        x, state = self.temporal_at(3, x, batch, time, state)
        return x, patch_h, patch_w, state

    def fuse_path_4(self, path_4: Tensor, frames: Tensor, patch_h: int, patch_w: int) -> Tensor:
        """The fusion slot after path_4 (identity; the hybrid model fuses its teacher here)."""
        return path_4

    def temporal_at(
        self, stage: int, x: Tensor, batch: int, time: int, state: Tensor
    ) -> tuple[Tensor, Tensor]:
        """``F + Out(Up(T(Pool(F))))`` on the stage features ``(B*T, C, h, w)`` of this stage.

        At every other stage ``(x, state)`` is returned unchanged.
        """
        if stage != self.stage:
            return x, state
        height, width = x.shape[-2:]
        pooled = F.adaptive_avg_pool2d(x, self._pooled(height, width))
        pooled = pooled.unflatten(0, (batch, time))  # (B*T, C, h', w') -> (B, T, C, h', w')
        temporal, state = self.temporal(pooled, state)
        temporal = temporal.flatten(0, 1)  # (B, T, C, h', w') -> (B*T, C, h', w')
        temporal = F.interpolate(temporal, (height, width), mode="bilinear", align_corners=True)
        residual = self.temporal_out(temporal.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return x + residual, state
