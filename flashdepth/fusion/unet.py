"""UNet upsampler: full-resolution inverse depth from low-resolution features and the frame.

The super-resolution baseline of the FlashDepth ablation. A low-resolution depth model
(frozen FlashDepth-L) runs on the downscaled frame; its ``output_conv1(path_1)`` features
(128 channels) are the context. A small UNet brings them to the full resolution, guided by
an RGB encoder on the full-resolution (ImageNet-normalised) frame::

    enc1 = avgpool2(rgb_encoder1(frame))                    # (N,  64, H/2, W/2)
    enc2 = avgpool2(rgb_encoder2(enc1))                     # (N, 128, H/4, W/4)
    x = decoder_low([resize(context, (H/4, W/4)), enc2])   # (N, 128, H/4, W/4)
    x = decoder_high([up2(x), enc1])                        # (N, 128, H/2, W/2)
    depth = head(up2(x))                                    # (N, 1, H, W)

Every encoder and decoder stage is a :class:`SiLUResidualConvUnit`; resizes are bilinear
with ``align_corners=True``. The head ends in a ReLU, so the inverse depth is
non-negative; its biases start positive so the output is not dead at initialisation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from flashdepth.fusion.base import FusionInputs, FusionModule

#: Channels of the RGB encoder's two stages (at H/2 and H/4).
ENCODER_WIDTHS = (64, 128)
#: Channels of both decoder stages.
DECODER_WIDTH = 128
#: Channels between the two head convolutions.
HEAD_HIDDEN = 32
#: Initial biases of the head's 3x3 and 1x1 convolutions (keep the ReLU output alive).
HEAD_BIASES = (0.1, 0.2)


class SiLUResidualConvUnit(nn.Module):
    """``conv2(SiLU(conv1(SiLU x))) + skip(x)`` with 3x3 convolutions that may change width.

    ``conv1`` maps ``in_channels`` to ``out_channels``; ``skip`` is a 1x1 convolution
    without bias when the widths differ and the identity otherwise.

    Args:
        in_channels: Channels of the input.
        out_channels: Channels of the output.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1)
        self.skip = (
            nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False)
            if in_channels != out_channels
            else nn.Identity()
        )

    def forward(self, x: Tensor) -> Tensor:
        """``(B, in_channels, H, W)`` -> ``(B, out_channels, H, W)``: refinement plus skip."""
        return self.conv2(F.silu(self.conv1(F.silu(x)))) + self.skip(x)


def _resize(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear resize with ``align_corners=True``, the project's one rule for feature maps."""
    return F.interpolate(x, size=size, mode="bilinear", align_corners=True)


class UNetUpsampler(FusionModule):
    """Full-resolution inverse depth from low-resolution features, guided by the frame.

    Reads :attr:`FusionInputs.frame` and :attr:`FusionInputs.context`; the low-resolution
    depth and path_4 are not used.

    Args:
        dim: Output channels; must be 1 (the inverse depth).
        context_dim: Channels of the low-resolution features (128: FlashDepth-L's
            ``output_conv1``).
    """

    produces = "depth"

    def __init__(self, dim: int = 1, context_dim: int = 128) -> None:
        super().__init__(dim, context_dim)
        if dim != 1:
            raise ValueError(
                f"UNetUpsampler produces depth, one channel, so dim must be 1, got {dim}"
            )
        enc1, enc2 = ENCODER_WIDTHS
        self.rgb_encoder1 = SiLUResidualConvUnit(3, enc1)
        self.rgb_encoder2 = SiLUResidualConvUnit(enc1, enc2)
        self.decoder_low = SiLUResidualConvUnit(context_dim + enc2, DECODER_WIDTH)
        self.decoder_high = SiLUResidualConvUnit(DECODER_WIDTH + enc1, DECODER_WIDTH)
        self.head = nn.Sequential(
            nn.Conv2d(DECODER_WIDTH, HEAD_HIDDEN, kernel_size=3, padding=1),
            nn.SiLU(),
            nn.Conv2d(HEAD_HIDDEN, dim, kernel_size=1),
            nn.ReLU(),
        )
        nn.init.constant_(self.head[0].bias, HEAD_BIASES[0])
        nn.init.constant_(self.head[2].bias, HEAD_BIASES[1])

    def forward(self, inputs: FusionInputs) -> Tensor:
        """Upsample to the frame's size: returns ``(N, H, W)`` non-negative inverse depth."""
        frame, context = inputs.frame, inputs.context
        if frame.dim() != 4 or frame.shape[1] != 3:
            raise ValueError(
                f"UNetUpsampler needs the frame as (N, 3, H, W), got {tuple(frame.shape)}"
            )
        height, width = frame.shape[2:]
        if height % 4 != 0 or width % 4 != 0:
            raise ValueError(
                f"UNetUpsampler needs a frame whose height and width are divisible by 4, got "
                f"{height}x{width}; pad or resize the frame (e.g. 2044x1148 is fine)"
            )
        if context.dim() != 4 or context.shape[:2] != (frame.shape[0], self.context_dim):
            raise ValueError(
                f"UNetUpsampler(context_dim={self.context_dim}) needs the low-resolution "
                f"features as (N, {self.context_dim}, h, w) with N={frame.shape[0]}, got "
                f"{tuple(context.shape)}"
            )
        half, quarter = (height // 2, width // 2), (height // 4, width // 4)
        enc1 = F.avg_pool2d(self.rgb_encoder1(frame), 2)  # (N, 64, H/2, W/2)
        enc2 = F.avg_pool2d(self.rgb_encoder2(enc1), 2)  # (N, 128, H/4, W/4)
        context = _resize(context, quarter)  # (N, context_dim, H/4, W/4)
        x = self.decoder_low(torch.cat([context, enc2], dim=1))  # (N, 128, H/4, W/4)
        x = self.decoder_high(torch.cat([_resize(x, half), enc1], dim=1))  # (N, 128, H/2, W/2)
        # (N, 1, H, W) -> (N, H, W)
        return self.head(_resize(x, (height, width))).squeeze(1)
