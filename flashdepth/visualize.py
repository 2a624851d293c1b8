"""Pictures of depth for people: colour maps, comparison grids and TensorBoard videos.

Inverse depth (1/m for ground truth, relative ×100 ≈ 100/m for predictions) is shown
with the perceptual *turbo* colour map: near is red, far is blue. Each map is
stretched between robust percentiles of its valid pixels, so ground truth and a
prediction on a different scale are both readable; a whole clip shares one range
so the colours of a video do not flicker.

TensorBoard shows a video as an animated GIF inside an image summary. We encode
the GIF with Pillow and write the summary ourselves, so no moviepy is needed.
"""

from __future__ import annotations

import io

import kornia.color
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tensorboard.compat.proto.summary_pb2 import Summary
from torch import Tensor

_TURBO = kornia.color.ColorMap("turbo", num_colors=256)


def value_range(inverse_depth: Tensor, valid: Tensor | None = None) -> tuple[float, float]:
    """Robust display range (2nd and 98th percentile) of the valid pixels.

    Args:
        inverse_depth: Any shape; 1/m or relative inverse depth.
        valid: Boolean mask of the same shape; non-finite values are always excluded.

    Returns:
        ``(low, high)`` with ``high > low``.
    """
    values = inverse_depth.detach().float()
    keep = torch.isfinite(values)
    if valid is not None:
        keep &= valid.bool()
    values = values[keep]
    if values.numel() == 0:
        return 0.0, 1.0
    # quantile refuses huge inputs; a strided subsample keeps the range honest
    values = values[:: max(1, values.numel() // 1_000_000)]
    low, high = torch.quantile(values, torch.tensor([0.02, 0.98], dtype=values.dtype)).tolist()
    if high - low < 1e-6:
        high = low + 1e-6
    return low, high


def colorize(
    inverse_depth: Tensor,
    valid: Tensor | None = None,
    limits: tuple[float, float] | None = None,
) -> np.ndarray:
    """Colour-map inverse depth with turbo (near = red, far = blue, invalid = black).

    Args:
        inverse_depth: ``(..., H, W)`` inverse depth (1/m, or relative ×100).
        valid: Boolean ``(..., H, W)``; pixels outside it are painted black.
        limits: Display range; defaults to :func:`value_range` over all given pixels.

    Returns:
        ``(..., H, W, 3)`` uint8 RGB.
    """
    values = inverse_depth.detach().float().cpu()
    mask = torch.isfinite(values)
    if valid is not None:
        mask &= valid.detach().bool().cpu()
    low, high = limits if limits is not None else value_range(values, mask)
    scaled = ((values - low) / (high - low)).clamp(0, 1).nan_to_num(0.0)
    flat = scaled.reshape(-1, 1, *scaled.shape[-2:])  # (..., H, W) -> (N, 1, H, W)
    rgb = kornia.color.apply_colormap(flat, _TURBO)  # (N, 3, H, W) in [0, 1]
    rgb = rgb * mask.reshape(-1, 1, *mask.shape[-2:])
    rgb = (rgb * 255).round().to(torch.uint8).permute(0, 2, 3, 1)  # (N, H, W, 3)
    return rgb.reshape(*scaled.shape, 3).numpy()


def comparison_frames(
    image: Tensor,
    target_inverse_depth: Tensor,
    prediction: Tensor,
    valid: Tensor,
) -> np.ndarray:
    """Side-by-side RGB | ground truth | prediction for every frame of one clip.

    Args:
        image: ``(T, 3, H, W)`` RGB in [0, 1] (any resolution).
        target_inverse_depth: ``(T, Hd, Wd)`` ground truth, 1/m (sky = 0).
        prediction: ``(T, Hd, Wd)`` predicted relative inverse depth.
        valid: ``(T, Hd, Wd)`` boolean ground-truth mask.

    Returns:
        ``(T, Hd, 3 * Wd, 3)`` uint8 RGB, each map with its own clip-wide range.
    """
    size = target_inverse_depth.shape[-2:]
    rgb = F.interpolate(image.detach().float().cpu(), size=size, mode="bilinear")
    rgb = (rgb.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    target = colorize(target_inverse_depth, valid)
    predicted = colorize(prediction)
    return np.concatenate([rgb, target, predicted], axis=2)


def image_grid(frames: np.ndarray, max_rows: int = 4) -> np.ndarray:
    """Stack the first frames of a clip vertically into one picture.

    Args:
        frames: ``(T, H, W, 3)`` uint8.
        max_rows: Most frames shown.

    Returns:
        ``(rows * H, W, 3)`` uint8.
    """
    return np.concatenate(list(frames[:max_rows]), axis=0)


def encode_gif(frames: np.ndarray, fps: float = 5.0) -> bytes:
    """Encode frames as a looping animated GIF.

    Args:
        frames: ``(T, H, W, 3)`` uint8 RGB.
        fps: Playback rate.

    Returns:
        The GIF file's bytes.
    """
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(
            f"encode_gif needs (T, H, W, 3) uint8 frames, got {frames.shape} {frames.dtype}"
        )
    pictures = [Image.fromarray(frame) for frame in frames]
    buffer = io.BytesIO()
    pictures[0].save(
        buffer,
        format="GIF",
        save_all=True,
        append_images=pictures[1:],
        duration=max(20, round(1000 / fps)),
        loop=0,
    )
    return buffer.getvalue()


def gif_summary(tag: str, frames: np.ndarray, fps: float = 5.0) -> Summary:
    """A TensorBoard image summary holding an animated GIF (shown as a video).

    Args:
        tag: Summary tag, e.g. ``"val/sintel/video"``.
        frames: ``(T, H, W, 3)`` uint8 RGB.
        fps: Playback rate.
    """
    image = Summary.Image(
        height=frames.shape[1],
        width=frames.shape[2],
        colorspace=3,
        encoded_image_string=encode_gif(frames, fps),
    )
    return Summary(value=[Summary.Value(tag=tag, image=image)])


def log_depth_media(
    experiment: object,
    tag: str,
    image: Tensor,
    target_inverse_depth: Tensor,
    prediction: Tensor,
    valid: Tensor,
    step: int,
    max_video_frames: int = 16,
) -> None:
    """Write a comparison grid and a comparison video of one clip to TensorBoard.

    Args:
        experiment: A ``torch.utils.tensorboard.SummaryWriter``.
        tag: Prefix of both tags (``{tag}/grid`` and ``{tag}/video``).
        image: ``(T, 3, H, W)`` RGB in [0, 1].
        target_inverse_depth: ``(T, Hd, Wd)`` ground truth, 1/m.
        prediction: ``(T, Hd, Wd)`` predicted relative inverse depth.
        valid: ``(T, Hd, Wd)`` boolean mask.
        step: Global step the media belong to.
        max_video_frames: Frames kept for the GIF.
    """
    frames = comparison_frames(image, target_inverse_depth, prediction, valid)
    experiment.add_image(f"{tag}/grid", image_grid(frames), step, dataformats="HWC")
    summary = gif_summary(f"{tag}/video", frames[:max_video_frames])
    experiment._get_file_writer().add_summary(summary, step)
