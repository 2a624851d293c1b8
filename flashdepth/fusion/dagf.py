"""DAGF: Deep Attentional Guided Image Filtering as a depth upsampler (FlashDepth's baseline).

Zhong et al., "Deep Attentional Guided Image Filtering", IEEE TNNLS 2023 (arXiv 2112.06401;
official code zhwzhong/DAGF), used to upsample the low-resolution model's inverse depth
under the guidance of the full-resolution RGB frame. Coarse to fine over the levels::

    lr_up         = bicubic(lr -> H x W)
    depth, guide  = pyramid(encoder(lr_up)), pyramid(encoder(rgb))   # H, H/2, H/4
    for each level, at H/4, H/2, H:
        W         = attention_unet([depth, guide])                   # per pixel, PReLU-unbounded
        K         = W * softmax(kernel(depth)) + (1 - W) * softmax(kernel(guide))
        K         = tanh(K) / a;   K = K / max(1, sum|K|)            # a learnable, 4.5 at init
        x         = residual_blocks(seed(lr_up at half the level, previous x))
        x         = sum_k K_k * shift_k(nearest_up2(x))              # 3x3 taps, dilation 2
        h         = head(x) merged with previous h
        out_level = area(lr_up, level size) + residual_head(h)

Since ``sum|K| <= 1`` the filter is non-expansive: a constant map ``c`` comes out as
``c * sum(K)``. The filter is computed tap by tap on shifted views of the replicate-padded
features; that equals ``F.unfold(3, dilation=2)`` and the weighted sum, without the 9x larger
unfolded copy (several GB per frame at 2K).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from flashdepth.fusion.base import FusionInputs, FusionModule
from flashdepth.transforms import IMAGENET_MEAN, IMAGENET_STD

#: Floor of the per-sample mean inverse depth (×100 units) the input is divided by.
_DEPTH_SCALE_EPS = 1e-3


def conv_block(
    in_channels: int,
    out_channels: int,
    kernel_size: int = 3,
    activation: bool = True,
    adaptive_norm: bool = False,
) -> nn.Sequential:
    """Convolution (same padding, with bias), optionally :class:`AdaptiveNorm`, then PReLU."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
    ]
    if adaptive_norm:
        layers.append(AdaptiveNorm(out_channels))
    if activation:
        layers.append(nn.PReLU())
    return nn.Sequential(*layers)


class AdaptiveNorm(nn.Module):
    """``w0 * x + w1 * BatchNorm(x)``, with ``w0 = 1`` and ``w1 = 0``: the identity at init.

    Args:
        channels: Channels normalised by the batch norm.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.w0 = nn.Parameter(torch.ones(1))
        self.w1 = nn.Parameter(torch.zeros(1))
        self.bn = nn.BatchNorm2d(channels, eps=1e-3)

    def forward(self, x: Tensor) -> Tensor:
        """Blend ``x`` ``(N, C, h, w)`` with its batch-normalised self."""
        return self.w0 * x + self.w1 * self.bn(x)


class ResidualBlock(nn.Module):
    """``PReLU(x + conv(PReLU(conv(x))))`` at constant width.

    Args:
        features: Channels in and out.
    """

    def __init__(self, features: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            conv_block(features, features), conv_block(features, features, activation=False)
        )
        self.activation = nn.PReLU()

    def forward(self, x: Tensor) -> Tensor:
        """Refine ``x`` ``(N, C, h, w)``."""
        return self.activation(self.body(x) + x)


def downsample(features: int) -> nn.Sequential:
    """One pyramid step: conv, pixel-unshuffle by 2, 1x1 conv back to ``features``."""
    return nn.Sequential(
        conv_block(features, features),
        nn.PixelUnshuffle(2),
        conv_block(4 * features, features, kernel_size=1),
    )


class AttentionUNet(nn.Module):
    """The small U-Net of DAGF's attentional kernel learning, two scales deep.

    Pixel-unshuffle goes down and pixel-shuffle up, skips are added, and every convolution
    carries an :class:`AdaptiveNorm`; the input is added to the output. Needs ``h`` and ``w``
    divisible by 4.

    Args:
        features: Channels in and out (even).
    """

    def __init__(self, features: int) -> None:
        super().__init__()
        self.encoder1 = conv_block(features, features // 2, adaptive_norm=True)
        self.encoder2 = conv_block(2 * features, features, adaptive_norm=True)
        self.bottleneck = nn.Sequential(
            conv_block(4 * features, 4 * features, adaptive_norm=True),
            conv_block(4 * features, 4 * features, adaptive_norm=True),
        )
        self.decoder1 = conv_block(4 * features, 8 * features, adaptive_norm=True)
        self.decoder2 = conv_block(2 * features, 4 * features, adaptive_norm=True)

    def forward(self, x: Tensor) -> Tensor:
        """``(N, C, h, w)`` -> ``(N, C, h, w)``."""
        # (N, C/2, h, w) -> (N, 2C, h/2, w/2)
        skip1 = F.pixel_unshuffle(self.encoder1(x), 2)
        # (N, C, h/2, w/2) -> (N, 4C, h/4, w/4)
        skip2 = F.pixel_unshuffle(self.encoder2(skip1), 2)
        bottom = self.bottleneck(skip2) + skip2
        # (N, 8C, h/4, w/4) -> (N, 2C, h/2, w/2)
        up1 = F.pixel_shuffle(self.decoder1(bottom), 2)
        # (N, 4C, h/2, w/2) -> (N, C, h, w)
        return F.pixel_shuffle(self.decoder2(up1 + skip1), 2) + x


class GuidedFilterLevel(nn.Module):
    """One pyramid level: seed and refinement, attentional kernel, filtering, head features.

    Args:
        features: Width of every feature map.
        first: Whether this is the coarsest level (no previous level to merge).
        kernel_size: Odd side of the per-pixel kernel.
        dilation: Spacing of the kernel taps on the upsampled grid.
    """

    def __init__(self, features: int, first: bool, kernel_size: int = 3, dilation: int = 2) -> None:
        super().__init__()
        taps = kernel_size**2
        self.kernel_size = kernel_size
        self.dilation = dilation
        self.seed = conv_block(1, features)
        merged = features if first else 2 * features
        self.seed_merge = nn.Conv2d(merged, features, 3, padding=1)
        self.refine = nn.Sequential(ResidualBlock(features), ResidualBlock(features))
        self.depth_kernel = nn.Sequential(
            conv_block(features, features, 1), conv_block(features, taps, 1, activation=False)
        )
        self.guide_kernel = nn.Sequential(
            conv_block(features, features, 1), conv_block(features, taps, 1, activation=False)
        )
        self.weight_net = nn.Sequential(
            conv_block(2 * features, features, adaptive_norm=True),
            AttentionUNet(features),
            conv_block(features, 1, adaptive_norm=True),
        )
        self.kernel_scale = nn.Parameter(torch.full((1,), taps / 2))
        self.head = conv_block(features, features)
        self.head_merge = None if first else conv_block(features, features)
        self.head_skip_scale = None if first else nn.Parameter(torch.zeros(1))

    def kernel(self, depth: Tensor, guide: Tensor) -> Tensor:
        """Per-pixel kernel ``(N, k*k, h, w)`` from the level's features, ``sum|K| <= 1``."""
        weight = self.weight_net(torch.cat([depth, guide], dim=1))
        depth_kernel = self.depth_kernel(depth).softmax(dim=1)
        guide_kernel = self.guide_kernel(guide).softmax(dim=1)
        fused = weight * depth_kernel + (1 - weight) * guide_kernel
        fused = torch.tanh(fused) / self.kernel_scale
        return fused / fused.abs().sum(dim=1, keepdim=True).clamp_min(1.0)

    def filter(self, x: Tensor, kernel: Tensor) -> Tensor:
        """Weighted sum of the dilated ``k x k`` neighbourhood of ``x`` ``(N, C, h, w)``.

        Tap ``i * k + j`` (row-major, the order of ``F.unfold``) reads ``x`` shifted by
        ``((i - k // 2) * dilation, (j - k // 2) * dilation)``; borders are replicated.
        """
        height, width = x.shape[-2:]
        pad = self.kernel_size // 2 * self.dilation
        padded = F.pad(x, (pad, pad, pad, pad), mode="replicate")
        out = torch.zeros_like(x)
        for tap in range(self.kernel_size**2):
            top = tap // self.kernel_size * self.dilation
            left = tap % self.kernel_size * self.dilation
            shifted = padded[..., top : top + height, left : left + width]
            out = out + kernel[:, tap : tap + 1] * shifted
        return out

    def forward(
        self,
        depth: Tensor,
        guide: Tensor,
        lr_half: Tensor,
        previous: Tensor | None,
        previous_head: Tensor | None,
    ) -> tuple[Tensor, Tensor]:
        """Filter one level.

        Args:
            depth: ``(N, C, h, w)`` depth features of this level.
            guide: ``(N, C, h, w)`` guide features of this level.
            lr_half: ``(N, 1, h/2, w/2)`` normalised depth at half the level's size.
            previous: ``(N, C, h/2, w/2)`` filtered features of the previous level, or
                ``None`` on the first level.
            previous_head: ``(N, C, h/2, w/2)`` residual-head features of the previous level,
                or ``None`` on the first level.

        Returns:
            Filtered features ``(N, C, h, w)`` and the features ``(N, C, h, w)`` the shared
            residual head of :class:`DAGFUpsampler` turns into this level's depth residual.
        """
        seed = self.seed(lr_half)
        if previous is not None:
            seed = torch.cat([seed, previous], dim=1)
        seed = self.refine(self.seed_merge(seed))
        upsampled = F.interpolate(seed, scale_factor=2, mode="nearest")
        filtered = self.filter(upsampled, self.kernel(depth, guide))
        head = self.head(filtered)
        if self.head_merge is not None and previous_head is not None:
            skip = F.interpolate(previous_head, scale_factor=2, mode="nearest")
            head = self.head_merge(head + self.head_skip_scale * skip)
        return filtered, head


class DAGFUpsampler(FusionModule):
    """Guided upsampling of the low-resolution inverse depth with DAGF.

    DAGF is guided by the RGB frame and the low-resolution depth only; ``context_dim`` is
    accepted for the common factory interface and unused (:attr:`FusionInputs.context` is
    ignored).

    **Depth normalisation** (not described for FlashDepth's use): ``low_res_depth`` (×100
    inverse depth, any scale) is divided per sample by its mean over pixels (floored at
    ``1e-3``) before the network and the output is multiplied back, so the filter sees
    values around 1 and the result scales exactly with the input.

    **Sizes**: the frame is padded (replicate) on the right and bottom to the next multiple of
    ``2 ** (levels + 1)`` (16 for 3 levels: the coarsest level is H/4 and its U-Net goes two
    scales deeper), e.g. 2044x1148 -> 2048x1152, and the output is cropped back. ``lr_up`` is
    bicubic to the frame's size, then padded the same way; the smaller depth maps the levels
    need are area-downsampled from it, so every level stays pixel-aligned with the padded
    frame.

    **Parameters**: 2,392,130 with the defaults, 3 x 707,499 of them in the per-level weight
    nets: the attention U-Net has 688,674 (two 128->128 bottleneck convs, 295k together, and a
    128->256 decoder conv, 295k), its 64->32 entry and 32->1 exit convs 18,825. The rest of a
    level (seed, two residual blocks, depth and guide kernel convs, ``a``, head) has 58,523 on
    the coarsest level and 76,989 on the others, whose merges with the previous level read
    twice the channels. Encoders and both pyramids have 56,842, the residual head 290:
    3 x 707,499 + 58,523 + 2 x 76,989 + 56,842 + 290. The official code has 2.44 M: the same
    layers, one residual head per level, and about 47k in layers its forward never uses.

    **Residual head**: one ``conv3x3(features -> 1) + PReLU`` shared by all levels (the official
    code has one per level). A coarse level's own head would get no gradient from a loss on the
    last output only, which DDP (``find_unused_parameters=False``) rejects.

    **Choices where the paper is silent or the code differs**: the ImageNet normalisation of
    the frame is undone to get the paper's RGB guide in [0, 1]; all smaller depth maps are
    area-downsampled from the padded ``lr_up`` (the official code resizes ``lr``, which our
    padding would misalign); level outputs stay at their level's size (the official code
    upsamples them to the full size); the filter pads by replication, not zeros; batch norms
    use ``eps=1e-3`` and PyTorch's default momentum (the official ``momentum=0.999`` is meant
    in the other convention; in PyTorch it gives the newest batch a weight of 0.999).

    Args:
        dim: Channels of the output; must be 1 (inverse depth).
        context_dim: Channels of the low-resolution features; unused.
        features: Width of every feature map (even).
        levels: Pyramid levels; the finest is the frame's size, each coarser one half of it.
    """

    produces = "depth"

    def __init__(
        self, dim: int = 1, context_dim: int = 128, features: int = 32, levels: int = 3
    ) -> None:
        super().__init__(dim, context_dim)
        if dim != 1:
            raise ValueError(f"DAGFUpsampler outputs inverse depth, so dim must be 1, got {dim}")
        if features < 2 or features % 2:
            raise ValueError(f"features must be even (the U-Net halves it), got {features}")
        if levels < 1:
            raise ValueError(f"levels must be at least 1, got {levels}")
        self.levels = levels
        self.size_multiple = 2 ** (levels + 1)
        self.depth_encoder = nn.Sequential(
            nn.Conv2d(1, features, 3, padding=1), conv_block(features, features, 1)
        )
        self.guide_encoder = nn.Sequential(
            nn.Conv2d(3, features, 3, padding=1), conv_block(features, features, 1)
        )
        self.depth_pyramid = nn.ModuleList(downsample(features) for _ in range(levels - 1))
        self.guide_pyramid = nn.ModuleList(downsample(features) for _ in range(levels - 1))
        self.filter_levels = nn.ModuleList(
            GuidedFilterLevel(features, first=level == 0) for level in range(levels)
        )
        self.residual_head = conv_block(features, 1)

    def forward(self, inputs: FusionInputs) -> Tensor:
        """``(N, H, W)`` non-negative inverse depth, in the input's units, at the frame's size."""
        return self.level_outputs(inputs)[-1]

    def level_outputs(self, inputs: FusionInputs) -> list[Tensor]:
        """Every level's inverse depth, coarse to fine, for deep supervision.

        Returns:
            ``levels`` maps ``(N, ceil(H / s), ceil(W / s))`` with ``s = 2 ** (levels - 1 - i)``
            for level ``i``; the last is :meth:`forward`'s output. Each is non-negative.
        """
        frame, lr = inputs.frame, inputs.low_res_depth
        if lr is None:
            raise ValueError(
                "DAGFUpsampler needs FusionInputs.low_res_depth (the low-resolution model's "
                "inverse depth), got None; use a host that computes it"
            )
        if frame.dim() != 4 or frame.shape[1] != 3 or lr.dim() != 3 or len(lr) != len(frame):
            raise ValueError(
                "DAGFUpsampler expects frame (N, 3, H, W) and low_res_depth (N, h, w), got "
                f"{tuple(frame.shape)} and {tuple(lr.shape)}"
            )
        height, width = frame.shape[-2:]
        pad_bottom = -height % self.size_multiple
        pad_right = -width % self.size_multiple
        mean = frame.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = frame.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
        guide = F.pad(frame * std + mean, (0, pad_right, 0, pad_bottom), mode="replicate")
        scale = lr.mean(dim=(1, 2)).clamp_min(_DEPTH_SCALE_EPS).view(-1, 1, 1, 1)
        # (N, h, w) -> (N, 1, h, w) -> (N, 1, H, W), then padded like the frame
        lr_up = F.interpolate(lr.unsqueeze(1) / scale, size=(height, width), mode="bicubic")
        lr_up = F.pad(lr_up, (0, pad_right, 0, pad_bottom), mode="replicate")

        depth_features, guide_features = [self.depth_encoder(lr_up)], [self.guide_encoder(guide)]
        for depth_down, guide_down in zip(self.depth_pyramid, self.guide_pyramid, strict=True):
            depth_features.append(depth_down(depth_features[-1]))
            guide_features.append(guide_down(guide_features[-1]))

        outputs = []
        filtered: Tensor | None = None
        head: Tensor | None = None
        for level, filter_level in enumerate(self.filter_levels):
            stride = 2 ** (self.levels - 1 - level)
            lr_half = F.avg_pool2d(lr_up, 2 * stride)
            filtered, head = filter_level(
                depth_features[-1 - level], guide_features[-1 - level], lr_half, filtered, head
            )
            lr_level = F.avg_pool2d(lr_up, stride) if stride > 1 else lr_up
            out = (lr_level + self.residual_head(head)) * scale
            # (N, 1, Hp/s, Wp/s) -> (N, ceil(H/s), ceil(W/s))
            out = out[:, 0, : -(-height // stride), : -(-width // stride)]
            outputs.append(out.clamp_min(0.0))
        return outputs
