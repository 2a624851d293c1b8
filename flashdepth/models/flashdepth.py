"""FlashDepth: Depth Anything V2 with a temporal component after one DPT stage.

At DPT stage ``k`` (0 after path_4, 1 after path_3, 2 after path_2, 3 after path_1)
the features ``F (B, C, h, w)`` become::

    F' = F + Out(Up(T(Pool(F))))

``Pool`` is adaptive average pooling to ``(int(h * 0.1), int(w * 0.1))``, ``T`` the
temporal component (tokens row-major, no positional embedding; it carries the
state across frames), ``Up`` bilinear (align_corners=True) back to ``(h, w)`` and
``Out`` GELU + Linear(C, C) per pixel, zero-initialised: an untrained temporal
module leaves Depth Anything V2's output untouched on every frame.

Released configurations: FlashDepth-S inserts after path_3 (k=1, C=64) and
FlashDepth-L after path_1 (k=3, C=256).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from flashdepth.models.depth_anything import DepthAnythingV2
from flashdepth.temporal.base import TemporalModule
from flashdepth.temporal.mamba import MambaTemporal

#: Names of the DPT stages after which a temporal component can sit.
STAGE_NAMES = ("path_4", "path_3", "path_2", "path_1")


def released_mamba(encoder: str, dim: int) -> MambaTemporal:
    """The Mamba configuration of the released weights for an encoder size.

    ViT-S (DPT width 64) uses expand 4 and head dim 32; the larger encoders use
    expand 2 and head dim 64 (8 heads in both released models).
    """
    if encoder == "vits":
        return MambaTemporal(dim, expand=4, headdim=32)
    return MambaTemporal(dim, expand=2, headdim=64)


class FlashDepth(DepthAnythingV2):
    """Streaming video depth: DAv2 plus a temporal component (dependency-injected).

    Args:
        encoder: DINOv2 size, one of ``vits``, ``vitb``, ``vitl``, ``vitg``.
        temporal: The temporal component (``MambaTemporal``, ``GRUTemporal``,
            ``IdentityTemporal``, or your own :class:`TemporalModule`). Its ``dim``
            must equal the DPT width of the encoder. ``None`` builds the released
            Mamba configuration for the encoder.
        stage: DPT stage after which the component sits (0..3, see module docstring).
        pool_scale: Factor of the adaptive pooling before the temporal component.

    Inputs are ImageNet-normalised RGB with sides that are multiples of 14; outputs
    are relative inverse depth (non-negative; ≈ 100/m for our training recipes).
    """

    def __init__(
        self,
        encoder: str = "vits",
        temporal: TemporalModule | None = None,
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
        if temporal is None:
            temporal = released_mamba(encoder, self.features)
        if temporal.dim != self.features:
            raise ValueError(
                f"the temporal component has dim={temporal.dim} but the DPT width of "
                f"encoder {encoder!r} is {self.features}: build it with dim={self.features}"
            )
        self.stage = stage
        self.pool_scale = pool_scale
        self.temporal = temporal
        self.temporal_out = nn.Sequential(nn.GELU(), nn.Linear(self.features, self.features))
        nn.init.zeros_(self.temporal_out[1].weight)
        nn.init.zeros_(self.temporal_out[1].bias)

    def init_state(
        self,
        batch_size: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> Tensor:
        """The temporal state before the first frame of ``batch_size`` videos."""
        if device is None:
            device = next(self.parameters()).device
        return self.temporal.init_state(batch_size, device=device, dtype=dtype)

    def step(self, frame: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        """One frame of a stream.

        Args:
            frame: ``(B, 3, H, W)`` ImageNet-normalised, H and W multiples of 14.
            state: The state returned for the previous frame, or :meth:`init_state`.

        Returns:
            ``(inverse_depth (B, H, W), new_state)``.
        """
        if frame.ndim != 4:
            raise ValueError(f"step() takes one frame (B, 3, H, W), got shape {tuple(frame.shape)}")
        depth, state = self._run(frame.unsqueeze(1), state)
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
        if clip.ndim != 5:
            raise ValueError(
                f"FlashDepth takes a clip (B, T, 3, H, W), got shape {tuple(clip.shape)}; "
                "use step() for single frames"
            )
        if state is None:
            state = self.init_state(clip.shape[0], device=clip.device)
        depth, _ = self._run(clip, state)
        return depth

    def forward_with_state(self, clip: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        """Like :meth:`forward` but starting from, and returning, a state (chunked streams)."""
        return self._run(clip, state)

    def _run(self, clip: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        batch, time = clip.shape[:2]
        frames = clip.flatten(0, 1)  # (B, T, 3, H, W) -> (B*T, 3, H, W)
        features, patch_h, patch_w = self.encode(frames)
        carried = [state]

        def after_stage(k: int, x: Tensor) -> Tensor:
            if k != self.stage:
                return x
            x, carried[0] = self._temporal_residual(x, batch, time, carried[0])
            return x

        depth = self.decode(features, patch_h, patch_w, after_stage=after_stage)
        return depth.unflatten(0, (batch, time)), carried[0]  # (B*T, H, W) -> (B, T, H, W)

    def _temporal_residual(
        self, x: Tensor, batch: int, time: int, state: Tensor
    ) -> tuple[Tensor, Tensor]:
        """``F + Out(Up(T(Pool(F))))`` on stage features ``(B*T, C, h, w)``."""
        height, width = x.shape[-2:]
        pooled_size = (
            max(1, int(height * self.pool_scale)),
            max(1, int(width * self.pool_scale)),
        )
        pooled = F.adaptive_avg_pool2d(x, pooled_size)
        pooled = pooled.unflatten(0, (batch, time))  # (B*T, C, h', w') -> (B, T, C, h', w')
        temporal, state = self.temporal(pooled, state)
        temporal = temporal.flatten(0, 1)  # (B, T, C, h', w') -> (B*T, C, h', w')
        temporal = F.interpolate(temporal, (height, width), mode="bilinear", align_corners=True)
        residual = self.temporal_out(temporal.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return x + residual, state
