"""Pre- and postprocessing around the depth network.

Preprocessing follows Depth Anything V2: RGB in [0, 1], bicubic resize keeping the
aspect ratio so the short side reaches a target and each side is a multiple of the
ViT patch (14 px), then ImageNet mean/std. Postprocessing resizes the predicted
inverse depth back to the input resolution (values unchanged: same units as the
model's output). The size rule, :func:`resize_shape`, lives in
:mod:`datamodules.network_input`, shared with evaluation clips and video prediction.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from datamodules.network_input import resize_shape

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalize(image01: Tensor) -> Tensor:
    """ImageNet-normalise RGB images in [0, 1] of shape ``(..., 3, H, W)``."""
    if image01.ndim < 3 or image01.shape[-3] != 3:
        raise ValueError(f"Expected RGB images (..., 3, H, W), got shape {tuple(image01.shape)}.")
    mean = image01.new_tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = image01.new_tensor(IMAGENET_STD).view(3, 1, 1)
    return (image01 - mean) / std


def postprocess(depth: Tensor, size: tuple[int, int]) -> Tensor:
    """Resize predicted inverse depth ``(B, h, w)`` to ``size = (H, W)``.

    Bilinear with ``align_corners=True``, as Depth Anything V2's ``infer_image``. The
    values are not rescaled: the output keeps the model's units.
    """
    if depth.ndim != 3:
        raise ValueError(f"Expected depth maps (B, h, w), got shape {tuple(depth.shape)}.")
    if tuple(depth.shape[-2:]) == tuple(size):
        return depth
    # (B, h, w) -> (B, 1, h, w) -> (B, 1, H, W) -> (B, H, W)
    resized = F.interpolate(depth[:, None], size=size, mode="bilinear", align_corners=True)
    return resized[:, 0]


class Preprocess:
    """Images in, network-ready batches out.

    Accepts a uint8 RGB ``(H, W, 3)`` numpy array, or a torch tensor ``(3, H, W)`` /
    ``(B, 3, H, W)`` that is float in [0, 1] or uint8 in [0, 255]. Resizes with bicubic
    interpolation (no antialias, like DAv2's ``cv2.INTER_CUBIC``) to
    :func:`resize_shape`, clamps to [0, 1] and ImageNet-normalises. The input size of
    the last call is kept in :attr:`original_size` for :func:`postprocess`.

    Args:
        target: Minimum short side of the network input (``None``: native size).
        long_side_max: Optional cap on the long side (2044 for FlashDepth at 2K).
        device: Where to resize; ``None`` keeps tensors where they are (numpy on CPU).
    """

    def __init__(
        self,
        target: int | None = 518,
        long_side_max: int | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        self.target = target
        self.long_side_max = long_side_max
        self.device = device
        self.original_size: tuple[int, int] | None = None

    def _as_batch(self, image: np.ndarray | Tensor) -> Tensor:
        """Convert the accepted inputs to a float ``(B, 3, H, W)`` batch in [0, 1]."""
        if isinstance(image, np.ndarray):
            if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
                raise ValueError(
                    "Numpy input must be a uint8 RGB image (H, W, 3), got "
                    f"{image.dtype} {image.shape}; convert grey/RGBA frames to RGB first."
                )
            image = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)  # (3, H, W)
        if image.ndim == 3:
            image = image[None]
        if image.ndim != 4 or image.shape[1] != 3:
            raise ValueError(
                f"Expected an RGB image (3, H, W) or batch (B, 3, H, W), got {tuple(image.shape)}."
            )
        if self.device is not None:
            image = image.to(self.device)
        if image.dtype == torch.uint8:
            return image.float() / 255.0
        if not image.is_floating_point():
            raise ValueError(f"Expected uint8 or float images, got dtype {image.dtype}.")
        return image

    def __call__(self, image: np.ndarray | Tensor) -> Tensor:
        """Resize and normalise ``image``; returns ``(B, 3, h, w)`` with h, w multiples of 14."""
        batch = self._as_batch(image)
        height, width = batch.shape[-2:]
        self.original_size = (height, width)
        size = resize_shape(height, width, self.target, self.long_side_max)
        if size != (height, width):
            batch = F.interpolate(batch, size=size, mode="bicubic", align_corners=False)
            batch = batch.clamp(0.0, 1.0)
        return normalize(batch)
