"""The network input rule: frames resized for a ViT of 14 px patches, keeping the aspect ratio.

One rule for everything that feeds the depth network: evaluation clips
(:mod:`datamodules.eval_stream`), video prediction (:mod:`datamodules.video`) and the inference
preprocessing of ``flashdepth.transforms``, which takes :func:`resize_shape` from here (the
``flashdepth`` package depends on ``datamodules``, never the reverse). It is Depth Anything V2's
rule: RGB in [0, 1], bicubic resize (no antialias, like DAv2's ``cv2.INTER_CUBIC``) so the short
side reaches a target and each side is a multiple of the patch.
"""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor

#: Tolerance so sizes that are already exact multiples are not rounded one step further.
_ROUNDING_EPS = 1e-6


def resize_shape(
    height: int,
    width: int,
    target: int | None = 518,
    long_side_max: int | None = None,
    multiple: int = 14,
) -> tuple[int, int]:
    """The network input size for an image, keeping its aspect ratio.

    The image is scaled so its short side is at least ``target`` and each side is
    rounded up to a multiple of ``multiple``. If the long side then exceeds
    ``long_side_max``, the image is instead scaled to fit under it, each side rounded
    down to a multiple (the short side may then be below ``target``).

    Examples: 1080x1920 -> (518, 924) at 518; 1080x1920 with ``target=1080,
    long_side_max=2044`` -> (1092, 1932).

    Args:
        height: Input height in pixels.
        width: Input width in pixels.
        target: Minimum short side; ``None`` keeps the native size (rounded up).
        long_side_max: Optional cap on the long side.
        multiple: Each output side is a multiple of this (the ViT patch size).

    Returns:
        ``(h, w)`` in pixels.

    Raises:
        ValueError: If the image size is not positive or the cap is below one patch.
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"Image size must be positive, got {height}x{width}.")
    scale = 1.0 if target is None else target / min(height, width)
    h, w = (
        multiple * math.ceil(side * scale / multiple - _ROUNDING_EPS) for side in (height, width)
    )
    if long_side_max is not None and max(h, w) > long_side_max:
        if long_side_max < multiple:
            raise ValueError(f"long_side_max={long_side_max} is below one patch ({multiple} px).")
        scale = long_side_max / max(height, width)
        h, w = (
            multiple * max(1, math.floor(side * scale / multiple + _ROUNDING_EPS))
            for side in (height, width)
        )
    return h, w


def network_frames(rgb: Tensor, short_side: int | None, long_side_max: int | None = None) -> Tensor:
    """Frames as the network takes them: float RGB in [0, 1] at :func:`resize_shape`.

    Args:
        rgb: (T, 3, H, W) uint8 RGB frames.
        short_side: Target short side (``None``: native size rounded up to 14 px multiples).
        long_side_max: Optional cap on the long side.

    Returns:
        (T, 3, h, w) float32 RGB in [0, 1] (bicubic overshoot clamped).
    """
    image = rgb.float() / 255.0
    size = resize_shape(*image.shape[-2:], target=short_side, long_side_max=long_side_max)
    if size != tuple(image.shape[-2:]):
        image = F.interpolate(image, size=size, mode="bicubic", align_corners=False)
        image = image.clamp(0.0, 1.0)
    return image
