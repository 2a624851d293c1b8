"""Clip-consistent augmentation: one crop, flip and colour change for every frame of a clip.

Video depth models learn from how frames relate to each other, so a training clip must be
augmented as one piece: :class:`ClipAugment` draws ONE set of random parameters per clip and
applies it identically to all ``T`` frames. Depth targets follow the same geometric transform
and never the colour one.

Where the work happens: the DataLoader workers do the geometry (crop, resize, flip) on the
uint8 frames and only *draw* the colour change. A clip leaves them as uint8 RGB (a quarter of
the bytes of float32 to collate, pin and transfer) with its four colour parameters beside it
(:meth:`ClipAugment.draw_colour`). The accelerator applies them after the batch transfer:
:func:`datamodules.samples.finish_batch`, which ``ClipDataModule.on_after_batch_transfer``
calls, turns the uint8 frames into float in [0, 1] with :func:`apply_colour`, batched over the
clips. (Done in float32 on one CPU core, the colour change of 1078x1918 crops had cost more than
decoding the frames.)

Geometry: the clip is resized so that it covers the target size (scale
``max(H_out / H, W_out / W)``, aspect ratio kept) and a window of the target size is cut from
it at a random (or, with ``random_crop=False``, central) position. The crop is taken in source
pixels first and only that region is resized, which is the same transform at a fraction of the
cost for 1080p clips. A frame that already covers the target and is at most
``native_tolerance`` (1 %) larger is cut at native scale instead: a 1078x1918 crop of a
1080x1920 frame keeps every pixel sharp rather than resampling the whole clip by 0.999 to gain
two pixels of view. The image is resized bilinearly with anti-aliasing, in uint8 and in the
channels-last layout the JPEG decoder gives (torch's fast path for uint8), and stays
channels-last through the flip.

Targets (depth in metres, inverse depth in 1/m, validity masks) are resampled with nearest
neighbour. Each output pixel then carries one real measurement and its own validity: an
invalid (NaN) pixel can never leak into a valid neighbour, and no "flying pixel" with a depth
halfway between a foreground object and the background is invented at occlusion edges, which
a bilinear (even a mask-normalised bilinear) filter would do and an L1 loss would then teach
the model to blur. Since nearest neighbour only picks pixels, depth in metres can be augmented
as stored (float16) and turned into inverse depth afterwards, on the accelerator.

Colour: additive brightness in ``[-jitter, jitter]``, multiplicative contrast and saturation in
``[1 - jitter, 1 + jitter]`` (kornia's conventions: ``adjust_brightness``, ``adjust_contrast``,
``adjust_saturation_with_gray_subtraction``) and a hue rotation in ``[-hue, hue]`` turns of the
colour wheel, folded into one affine colour map per clip and clamped to ``[0, 1]``
(:func:`apply_colour`). Calling kornia's functions one after the other with the clip's
parameters gives the same result wherever no intermediate value leaves [0, 1], but costs
several passes over the pixels.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

#: Colour parameters ``(brightness, contrast, saturation, hue turn)`` that change nothing.
IDENTITY_COLOUR = (0.0, 1.0, 1.0, 0.0)

_RGB_TO_YIQ = torch.tensor(
    [[0.299, 0.587, 0.114], [0.595716, -0.274453, -0.321263], [0.211456, -0.522591, 0.311135]],
    dtype=torch.float64,
)
_YIQ_TO_RGB = torch.linalg.inv(_RGB_TO_YIQ)


class AugmentedClip(NamedTuple):
    """One clip out of :class:`ClipAugment`: geometry applied, colour drawn but not applied.

    Attributes:
        image: (T, 3, h, w) RGB with the input's dtype (uint8 in [0, 255] from the shards).
        colour: (4,) float32 ``(brightness, contrast, saturation, hue turn)`` of the clip, for
            :func:`apply_colour`; :data:`IDENTITY_COLOUR` when jitter and hue are off.
        maps: The (T, h, w) targets, each with its dtype kept.
    """

    image: Tensor
    colour: Tensor
    maps: tuple[Tensor, ...]


class ClipAugment:
    """Resize-to-cover, crop and flip a clip and draw its colour change, one draw per clip.

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
        native_tolerance: A frame that covers ``size`` and is at most this fraction larger
            (resize-to-cover scale in ``[1 - native_tolerance, 1]``) is cropped at native
            scale, without resampling; 0 always resizes to cover.

    Example:
        >>> augment = ClipAugment((518, 518))
        >>> clip = augment(image_uint8, depth_m, generator=generator)
        >>> frames01 = apply_colour(clip.image, clip.colour)  # where float frames are needed
    """

    def __init__(
        self,
        size: tuple[int, int],
        flip_p: float = 0.5,
        jitter: float = 0.2,
        hue: float = 0.05,
        random_crop: bool = True,
        native_tolerance: float = 0.01,
    ) -> None:
        if len(size) != 2 or min(size) < 1:
            raise ValueError(f"size must be a positive (height, width) pair, got {size}")
        if not 0.0 <= flip_p <= 1.0:
            raise ValueError(f"flip_p is a probability in [0, 1], got {flip_p}")
        if not 0.0 <= jitter < 1.0:
            raise ValueError(f"jitter must be in [0, 1) so contrast stays positive, got {jitter}")
        if not 0.0 <= hue <= 0.5:
            raise ValueError(f"hue is a fraction of a turn in [0, 0.5], got {hue}")
        if not 0.0 <= native_tolerance < 1.0:
            raise ValueError(f"native_tolerance is a fraction in [0, 1), got {native_tolerance}")
        self.size = (int(size[0]), int(size[1]))
        self.flip_p = flip_p
        self.jitter = jitter
        self.hue = hue
        self.random_crop = random_crop
        self.native_tolerance = native_tolerance

    def __call__(
        self, image: Tensor, *maps: Tensor, generator: torch.Generator | None = None
    ) -> AugmentedClip:
        """Crop, resize and flip one clip and draw its colour parameters.

        Random draws, in this order: crop position, flip, colour (:meth:`draw_colour`).

        Args:
            image: (T, 3, H, W) RGB, uint8 in [0, 255] (best channels-last, as
                ``permute(0, 3, 1, 2)`` of decoded (T, H, W, 3) frames gives) or float in
                [0, 1].
            *maps: (T, H, W) per-pixel targets that follow the geometry only, resampled with
                nearest neighbour: inverse depth in 1/m, a bool validity mask, or depth in
                metres with +inf sky and NaN invalid (converting to inverse depth after the
                augmentation gives the same result at a fraction of the cost).
            generator: Source of randomness (one per DataLoader worker for reproducibility);
                the global torch generator when None.

        Returns:
            The clip: image (T, 3, h, w) with its dtype kept, ``(h, w) = size``; its colour
            parameters (4,), not yet applied; each map (T, h, w) with its dtype kept.
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
            image = image.flip(-1)
            maps = tuple(m.flip(-1) for m in maps)
        colour = self.draw_colour(generator)
        return AugmentedClip(image, colour, tuple(m.contiguous() for m in maps))

    def draw_colour(self, generator: torch.Generator | None = None) -> Tensor:
        """Draw one clip's colour parameters (only those switched on consume random numbers).

        Args:
            generator: Source of randomness; the global torch generator when None.

        Returns:
            (4,) float32 ``(brightness, contrast, saturation, hue turn)``: brightness in
            ``[-jitter, jitter]``, contrast and saturation in ``[1 - jitter, 1 + jitter]``, the
            hue turn in ``[-hue, hue]`` (fraction of a turn); :data:`IDENTITY_COLOUR` entries
            for what is switched off.
        """
        brightness, contrast, saturation, turn = IDENTITY_COLOUR
        if self.jitter:
            brightness = _uniform(-self.jitter, self.jitter, generator)
            contrast = _uniform(1 - self.jitter, 1 + self.jitter, generator)
            saturation = _uniform(1 - self.jitter, 1 + self.jitter, generator)
        if self.hue:
            turn = _uniform(-self.hue, self.hue, generator)
        return torch.tensor([brightness, contrast, saturation, turn], dtype=torch.float32)

    def _crop_box(
        self, height: int, width: int, generator: torch.Generator | None
    ) -> tuple[int, int, int, int]:
        """Source-pixel window ``(top, left, crop_h, crop_w)`` that scales onto ``size``."""
        out_h, out_w = self.size
        scale = max(out_h / height, out_w / width)  # resize-to-cover factor
        if 1.0 - self.native_tolerance <= scale <= 1.0:
            scale = 1.0  # barely larger than the crop: cut at native scale, no resampling
        crop_h = min(height, max(1, round(out_h / scale)))
        crop_w = min(width, max(1, round(out_w / scale)))
        if self.random_crop:
            top = int(torch.randint(0, height - crop_h + 1, (1,), generator=generator))
            left = int(torch.randint(0, width - crop_w + 1, (1,), generator=generator))
        else:
            top, left = (height - crop_h) // 2, (width - crop_w) // 2
        return top, left, crop_h, crop_w


def identity_colour(clips: int) -> Tensor:
    """(clips, 4) float32 colour parameters that leave every clip unchanged."""
    return torch.tensor(IDENTITY_COLOUR, dtype=torch.float32).expand(clips, 4).clone()


def colour_maps(colour: Tensor) -> tuple[Tensor, Tensor]:
    """The affine colour map ``rgb -> clamp(matrix @ rgb + offset)`` of each parameter set.

    Brightness ``b``, contrast ``c`` and the chroma matrix ``M`` (saturation, hue) fold into
    ``matrix = c * M`` and the grey ``offset = c * b`` (``M`` keeps grey, so the offset stays
    grey). The identity parameters give exactly the identity matrix and offset 0.

    Args:
        colour: (N, 4) ``(brightness, contrast, saturation, hue turn)``.

    Returns:
        ``matrix`` (N, 3, 3) and ``offset`` (N,), float32 on ``colour``'s device.
    """
    brightness, contrast, saturation, turn = colour.to(torch.float32).unbind(-1)  # (N,) each
    return contrast[:, None, None] * _chroma_matrix(saturation, turn), contrast * brightness


def apply_colour(image: Tensor, colour: Tensor) -> Tensor:
    """Float RGB in [0, 1] with each clip's colour map, on the image's device.

    One affine map per clip, the same for all its frames: ``clamp(c * M @ rgb + c * b)``, which
    is kornia's ``adjust_brightness(b)``, ``adjust_contrast(c)`` and
    ``adjust_saturation_with_gray_subtraction(s)`` in a row without their clamps in between,
    followed by a linear hue rotation (see :func:`colour_maps`). It runs batched over all clips
    as element-wise multiply-adds, never a matmul, so TF32 and autocast cannot lower its
    precision, and without a host synchronisation. The identity parameters give exactly
    ``image / 255`` (uint8) or ``image`` clamped to [0, 1] (float).

    Args:
        image: (*clips, T, 3, H, W) RGB, uint8 in [0, 255] or float in [0, 1], any memory
            layout; e.g. a batch (B, T, 3, H, W) or one clip (T, 3, H, W).
        colour: (*clips, 4) parameters of each clip, ``(brightness, contrast, saturation,
            hue turn)`` as :meth:`ClipAugment.draw_colour` draws them.

    Returns:
        (*clips, T, 3, H, W) float32 RGB in [0, 1], contiguous, on ``image``'s device.

    Raises:
        ValueError: If the shapes do not pair one parameter set with each clip, or the image
            is neither uint8 nor float.
    """
    if image.ndim < 4 or image.shape[-3] != 3 or tuple(colour.shape) != (*image.shape[:-4], 4):
        raise ValueError(
            f"apply_colour needs images (*clips, T, 3, H, W) and colours (*clips, 4), got "
            f"{tuple(image.shape)} and {tuple(colour.shape)}"
        )
    if image.dtype != torch.uint8 and not image.is_floating_point():
        raise ValueError(f"images must be uint8 or float, got {image.dtype}")
    clips = image.reshape(-1, *image.shape[-4:])  # (*clips, T, 3, H, W) -> (N, T, 3, H, W)
    unit = clips.to(torch.float32)  # read only below: may be the caller's float tensor
    if image.dtype == torch.uint8:
        unit = unit.div_(255.0)
    matrix, offset = colour_maps(colour.reshape(-1, 4).to(image.device))  # (N, 3, 3), (N,)
    coefficient = matrix[:, None, :, :, None, None]  # (N, 1, 3, 3, 1, 1) against (N, T, H, W)
    out = torch.empty(clips.shape, dtype=torch.float32, device=image.device)
    for c in range(3):
        channel = out[:, :, c]  # (N, T, H, W), written in place
        torch.mul(unit[:, :, 0], coefficient[:, :, c, 0], out=channel)
        channel.addcmul_(unit[:, :, 1], coefficient[:, :, c, 1])
        channel.addcmul_(unit[:, :, 2], coefficient[:, :, c, 2])
    out += offset[:, None, None, None, None]
    return out.clamp_(0.0, 1.0).view(image.shape)


def _chroma_matrix(saturation: Tensor, turn: Tensor) -> Tensor:
    """(N, 3, 3) RGB matrices scaling chroma by ``saturation`` and turning hue by ``turn``.

    Works in YIQ, whose luma Y uses the same weights as kornia's grey image: scaling (I, Q)
    equals kornia's ``adjust_saturation_with_gray_subtraction``; rotating (I, Q) is the linear
    hue rotation, a close stand-in for kornia's HSV ``adjust_hue`` at a twentieth of its cost.
    Written as identity plus a change (zero for saturation 1 and turn 0, so the identity is
    exact) with broadcast products, not matmuls (exact float32 whatever TF32 says).
    """
    angle = 2 * math.pi * turn
    change = torch.zeros(*saturation.shape, 3, 3, dtype=torch.float32, device=saturation.device)
    change[:, 1, 1] = change[:, 2, 2] = saturation * torch.cos(angle) - 1
    change[:, 2, 1] = saturation * torch.sin(angle)
    change[:, 1, 2] = -change[:, 2, 1]
    to_rgb = _YIQ_TO_RGB.to(saturation.device, torch.float32)
    to_yiq = _RGB_TO_YIQ.to(saturation.device, torch.float32)
    # (3, 3) @ (N, 3, 3) @ (3, 3) as broadcast sums over the inner index
    mixed = (to_rgb[None, :, :, None] * change[:, None, :, :]).sum(2)
    mixed = (mixed[:, :, :, None] * to_yiq[None, None, :, :]).sum(2)
    return torch.eye(3, device=saturation.device) + mixed


def _nearest(values: Tensor, size: tuple[int, int]) -> Tensor:
    """Nearest-neighbour resize of (T, H, W) maps of any dtype (bool included)."""
    as_float = values.float() if values.dtype == torch.bool else values
    # (T, H, W) -> (T, 1, H, W) for interpolate and back
    resized = F.interpolate(as_float[:, None], size=size, mode="nearest-exact")[:, 0]
    return resized.bool() if values.dtype == torch.bool else resized


def _uniform(low: float, high: float, generator: torch.Generator | None) -> float:
    """One float drawn uniformly from ``[low, high)``."""
    return low + (high - low) * float(torch.rand((), generator=generator))
