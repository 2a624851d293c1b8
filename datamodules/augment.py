"""Clip-consistent augmentation: one crop, flip and colour change for every frame of a clip.

Video depth models learn from how frames relate to each other, so a training clip must be
augmented as one piece: :class:`ClipAugment` draws ONE set of random parameters per clip and
applies it identically to all ``T`` frames. Depth targets follow the same geometric transform
and never the colour one.

Geometry: the clip is resized so that it covers the target size (scale
``max(H_out / H, W_out / W)``, aspect ratio kept) and a window of the target size is cut from
it at a random (or, with ``random_crop=False``, central) position. The crop is taken in source
pixels first and only that region is resized, which is the same transform at a fraction of the
cost for 1080p clips.

Targets (depth in metres, inverse depth in 1/m, validity masks) are resampled with nearest
neighbour. Each output pixel then carries one real measurement and its own validity: an
invalid (NaN) pixel can never leak into a valid neighbour, and no "flying pixel" with a depth
halfway between a foreground object and the background is invented at occlusion edges, which
a bilinear (even a mask-normalised bilinear) filter would do and an L1 loss would then teach
the model to blur. Since nearest neighbour only picks pixels, depth in metres can be augmented
first and turned into inverse depth afterwards, on the smaller crop. The image is resized
bilinearly with anti-aliasing.

Colour: additive brightness in ``[-jitter, jitter]``, multiplicative contrast and saturation in
``[1 - jitter, 1 + jitter]`` (kornia's conventions: ``adjust_brightness``, ``adjust_contrast``,
``adjust_saturation_with_gray_subtraction``) and a hue rotation in ``[-hue, hue]`` turns of the
colour wheel, folded into one affine colour map and clamped to ``[0, 1]``. Calling kornia's
functions one after the other gives the same result wherever no intermediate value leaves
[0, 1] but costs several passes over the pixels: at 1918x1078 crops it made the colour jitter
alone as slow as decoding the frames.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

_RGB_TO_YIQ = torch.tensor(
    [[0.299, 0.587, 0.114], [0.595716, -0.274453, -0.321263], [0.211456, -0.522591, 0.311135]]
)
_YIQ_TO_RGB = torch.linalg.inv(_RGB_TO_YIQ)


class ClipAugment:
    """Resize-to-cover, crop, flip and colour-jitter a clip with one parameter set per clip.

    Args:
        size: Output (height, width) in pixels.
        flip_p: Probability of a horizontal flip of the whole clip.
        jitter: Strength of brightness (additive), contrast and saturation (multiplicative)
            jitter; 0 disables them.
        hue: Largest hue shift as a fraction of a full turn of the colour wheel (0.5 = 180°);
            0 disables it.
        random_crop: Crop at a random position; ``False`` takes the central window, which
            together with ``flip_p=0`` and ``jitter=hue=0`` is the deterministic resize used
            when augmentation is switched off.

    Example:
        >>> augment = ClipAugment((518, 518))
        >>> image, inverse_depth, valid = augment(image, inverse_depth, valid)
    """

    def __init__(
        self,
        size: tuple[int, int],
        flip_p: float = 0.5,
        jitter: float = 0.2,
        hue: float = 0.05,
        random_crop: bool = True,
    ) -> None:
        if len(size) != 2 or min(size) < 1:
            raise ValueError(f"size must be a positive (height, width) pair, got {size}")
        if not 0.0 <= flip_p <= 1.0:
            raise ValueError(f"flip_p is a probability in [0, 1], got {flip_p}")
        if not 0.0 <= jitter < 1.0:
            raise ValueError(f"jitter must be in [0, 1) so contrast stays positive, got {jitter}")
        if not 0.0 <= hue <= 0.5:
            raise ValueError(f"hue is a fraction of a turn in [0, 0.5], got {hue}")
        self.size = (int(size[0]), int(size[1]))
        self.flip_p = flip_p
        self.jitter = jitter
        self.hue = hue
        self.random_crop = random_crop

    def __call__(
        self, image: Tensor, *maps: Tensor, generator: torch.Generator | None = None
    ) -> tuple[Tensor, ...]:
        """Augment one clip.

        Args:
            image: (T, 3, H, W) RGB, float in [0, 1] or uint8 in [0, 255] (uint8 is resized
                before the conversion to float, which is faster for large frames).
            *maps: (T, H, W) per-pixel targets that follow the geometry only, resampled with
                nearest neighbour: inverse depth in 1/m, a bool validity mask, or depth in
                metres with +inf sky and NaN invalid (converting to inverse depth after the
                augmentation gives the same result at a fraction of the cost).
            generator: Source of randomness (one per DataLoader worker for reproducibility);
                the global torch generator when None.

        Returns:
            ``(image, *maps)``: the image (T, 3, h, w) float32 in [0, 1], each map (T, h, w)
            with its dtype kept, ``(h, w) = size``.
        """
        if image.ndim != 4 or image.shape[1] != 3:
            raise ValueError(f"image must be (T, 3, H, W) RGB, got shape {tuple(image.shape)}")
        frames, _, height, width = image.shape
        for index, target in enumerate(maps):
            if tuple(target.shape) != (frames, height, width):
                raise ValueError(
                    f"map {index} must be (T, H, W) = {(frames, height, width)} like the image, "
                    f"got {tuple(target.shape)}"
                )
        top, left, crop_h, crop_w = self._crop_box(height, width, generator)
        image = image[:, :, top : top + crop_h, left : left + crop_w]
        maps = tuple(m[:, top : top + crop_h, left : left + crop_w] for m in maps)
        if (crop_h, crop_w) != self.size:
            image = F.interpolate(
                image, size=self.size, mode="bilinear", align_corners=False, antialias=True
            )
            maps = tuple(_nearest(m, self.size) for m in maps)
        if self.flip_p > 0 and _uniform(0.0, 1.0, generator) < self.flip_p:
            image = image.flip(-1)  # before the float conversion: 4x fewer bytes for uint8
            maps = tuple(m.flip(-1) for m in maps)
        return (self._colour(image, generator), *(m.contiguous() for m in maps))

    def _crop_box(
        self, height: int, width: int, generator: torch.Generator | None
    ) -> tuple[int, int, int, int]:
        """Source-pixel window ``(top, left, crop_h, crop_w)`` that scales onto ``size``."""
        out_h, out_w = self.size
        scale = max(out_h / height, out_w / width)  # resize-to-cover factor
        crop_h = min(height, max(1, round(out_h / scale)))
        crop_w = min(width, max(1, round(out_w / scale)))
        if self.random_crop:
            top = int(torch.randint(0, height - crop_h + 1, (1,), generator=generator))
            left = int(torch.randint(0, width - crop_w + 1, (1,), generator=generator))
        else:
            top, left = (height - crop_h) // 2, (width - crop_w) // 2
        return top, left, crop_h, crop_w

    def _colour(self, image: Tensor, generator: torch.Generator | None) -> Tensor:
        """Convert (T, 3, h, w) to float in [0, 1] and apply one colour draw to every frame.

        Brightness ``b``, contrast ``c`` and the chroma matrix ``M`` (saturation, hue) fold
        into one affine map ``clamp(c * M @ rgb + c * b)`` (``M`` keeps grey, so the offset
        stays grey): kornia's ``adjust_brightness``, ``adjust_contrast`` and
        ``adjust_saturation_with_gray_subtraction`` in a row, without their clamps in between,
        in one pass over the pixels instead of eight.
        """
        scale = 1.0 / 255.0 if image.dtype == torch.uint8 else 1.0
        # one pass: uint8 (often channels-last, straight from the JPEG) -> contiguous float32
        image = image.to(torch.float32, memory_format=torch.contiguous_format, copy=True)
        brightness = _uniform(-self.jitter, self.jitter, generator) if self.jitter else 0.0
        contrast = _uniform(1 - self.jitter, 1 + self.jitter, generator) if self.jitter else 1.0
        saturation = _uniform(1 - self.jitter, 1 + self.jitter, generator) if self.jitter else 1.0
        turn = _uniform(-self.hue, self.hue, generator) if self.hue else 0.0
        if (brightness, contrast, saturation, turn) == (0.0, 1.0, 1.0, 0.0):
            return image.mul_(scale).clamp_(0.0, 1.0)
        matrix = contrast * scale * _chroma_matrix(saturation, 2 * math.pi * turn)
        frames, _, height, width = image.shape
        # (T, 3, h, w) -> (T, 3, h*w): mix the colour channels -> (T, 3, h, w)
        mixed = torch.matmul(matrix, image.view(frames, 3, height * width))
        return mixed.add_(contrast * brightness).clamp_(0.0, 1.0).view(frames, 3, height, width)


def _chroma_matrix(saturation: float, angle: float) -> Tensor:
    """3x3 RGB matrix scaling chroma by ``saturation`` and rotating hue by ``angle`` (radians).

    Works in YIQ, whose luma Y uses the same weights as kornia's grey image: scaling (I, Q)
    equals kornia's ``adjust_saturation_with_gray_subtraction``; rotating (I, Q) is the linear
    hue rotation, a close stand-in for kornia's HSV ``adjust_hue`` at a twentieth of its cost.
    """
    cos, sin = saturation * math.cos(angle), saturation * math.sin(angle)
    chroma = torch.tensor([[1.0, 0.0, 0.0], [0.0, cos, -sin], [0.0, sin, cos]])
    return _YIQ_TO_RGB @ chroma @ _RGB_TO_YIQ


def _nearest(values: Tensor, size: tuple[int, int]) -> Tensor:
    """Nearest-neighbour resize of (T, H, W) maps of any dtype (bool included)."""
    as_float = values.float() if values.dtype == torch.bool else values
    # (T, H, W) -> (T, 1, H, W) for interpolate and back
    resized = F.interpolate(as_float[:, None], size=size, mode="nearest-exact")[:, 0]
    return resized.bool() if values.dtype == torch.bool else resized


def _uniform(low: float, high: float, generator: torch.Generator | None) -> float:
    """One float drawn uniformly from ``[low, high)``."""
    return low + (high - low) * float(torch.rand((), generator=generator))
