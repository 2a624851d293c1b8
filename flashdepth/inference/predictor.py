"""The streaming predictor: one video's RGB frames in, relative inverse depth out, state carried.

:class:`StreamingPredictor` wraps any model of the zoo through its contract
(:class:`~flashdepth.models.contract.StreamingDepthModel`: ``init_state`` and ``step``) with
the shared preprocessing of :mod:`flashdepth.transforms`, device placement, autocast and an
optional ``torch.compile`` of ``step``. It keeps the model's state from one call to the next,
so frames must arrive in order; :meth:`StreamingPredictor.reset` starts a new video.

Input frames are ``(H, W, 3)`` RGB numpy arrays of one of three kinds:

* ``uint8`` (video, JPEG, PNG): divided by 255;
* ``uint16`` (16-bit PNG/TIFF): divided by 65535;
* ``float32`` / ``float16`` (EXR): with ``float_input="linear"`` (the default: EXR stores
  scene-linear light) the values are encoded with the sRGB transfer curve the networks were
  trained on, then clipped to [0, 1]; with ``float_input="display"`` they are taken as
  display-referred and only clipped. NaN and negative values become 0.

Output: ``float32 (H, W)`` relative inverse depth on the ×100 scale (≈ 100 / metres for our
recipes; affine-invariant for Depth Anything V2 weights) at the input resolution, or at the
network's with ``output="network"``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from flashdepth.models.contract import StreamingDepthModel
from flashdepth.transforms import Preprocess, postprocess

#: Autocast dtype of each ``dtype`` option (``None``: plain float32).
AUTOCAST_DTYPES: dict[str, torch.dtype | None] = {
    "fp32": None,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}
#: Where depth is returned: at the frame's own size or at the network input size.
OUTPUTS = ("input", "network")
#: How float frames (EXR) are read: scene-linear light or display-referred values.
FLOAT_INPUTS = ("linear", "display")
PATCH = 14


def linear_to_srgb(linear: np.ndarray) -> np.ndarray:
    """The sRGB transfer curve (IEC 61966-2-1) applied to linear values in [0, 1]."""
    linear = np.clip(linear, 0.0, 1.0)
    encoded = np.where(
        linear <= 0.0031308, 12.92 * linear, 1.055 * np.power(linear, 1 / 2.4) - 0.055
    )
    return encoded.astype(np.float32)


def rgb_to_unit(rgb: np.ndarray, float_input: str = "linear") -> np.ndarray:
    """Frame values as display-referred float32 RGB in [0, 1] (see the module docstring).

    Args:
        rgb: ``(H, W, 3)`` ``uint8``, ``uint16`` or float array.
        float_input: ``"linear"`` (sRGB-encode float frames) or ``"display"`` (clip only).

    Returns:
        ``(H, W, 3)`` float32 in [0, 1].
    """
    if rgb.dtype == np.uint8:
        return rgb.astype(np.float32) / 255.0
    if rgb.dtype == np.uint16:
        return rgb.astype(np.float32) / 65535.0
    if rgb.dtype.kind != "f":
        raise ValueError(
            f"frames must be uint8, uint16 or float RGB, got {rgb.dtype}; convert them first"
        )
    values = np.nan_to_num(rgb.astype(np.float32), nan=0.0, posinf=1.0, neginf=0.0)
    if float_input == "linear":
        return linear_to_srgb(values)
    return np.clip(values, 0.0, 1.0)


class StreamingPredictor:
    """Depth of a video's frames, one call per frame, temporal state carried across calls.

    Args:
        model: Any model of the zoo (it satisfies the model contract). It is put in eval
            mode and moved to ``device`` in place.
        resolution: Network input size: an int is the short side (aspect kept, sides rounded
            up to multiples of 14, see :func:`flashdepth.transforms.resize_shape`); a tuple
            is an explicit ``(H, W)``, both multiples of 14; ``None`` keeps the frame's size
            rounded up to multiples of 14.
        long_side_max: Cap on the network's long side (2044 for FlashDepth at 2K); only
            with an int or ``None`` resolution.
        device: Torch device the model runs on (``"cpu"``, ``"cuda"``, ``"cuda:1"``).
        dtype: ``"fp32"``, or ``"bf16"``/``"fp16"`` autocast (fp16 needs CUDA).
        compile: Wrap ``model.step`` in ``torch.compile`` (the state has a static shape).
        output: ``"input"`` (depth at the frame's size) or ``"network"`` (at the network's).
        float_input: How float (EXR) frames are read: ``"linear"`` or ``"display"``.
    """

    def __init__(
        self,
        model: nn.Module,
        resolution: int | tuple[int, int] | None = 518,
        long_side_max: int | None = None,
        device: str = "cpu",
        dtype: str = "fp32",
        compile: bool = False,
        output: str = "input",
        float_input: str = "linear",
    ) -> None:
        if dtype not in AUTOCAST_DTYPES:
            raise ValueError(f"dtype must be one of {sorted(AUTOCAST_DTYPES)}, got {dtype!r}")
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
        if float_input not in FLOAT_INPUTS:
            raise ValueError(f"float_input must be one of {FLOAT_INPUTS}, got {float_input!r}")
        self.device = torch.device(device)
        if dtype == "fp16" and self.device.type != "cuda":
            raise ValueError(
                f"dtype='fp16' needs a CUDA device, got device={device!r}; "
                "use dtype='bf16' or 'fp32' on the CPU"
            )
        self.fixed_size = _explicit_size(resolution, long_side_max)
        self.resolution = resolution
        self.long_side_max = long_side_max
        self.dtype = dtype
        self.compile = compile
        self.output = output
        self.float_input = float_input
        self.model: StreamingDepthModel = model.eval().to(self.device)
        self._step: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]] = (
            torch.compile(model.step) if compile else model.step
        )
        target = None if self.fixed_size is not None else resolution
        self._preprocess = Preprocess(target, long_side_max, device=self.device)
        self._state: Tensor | None = None
        self.input_size: tuple[int, int] | None = None
        self.network_size: tuple[int, int] | None = self.fixed_size
        self.frames_seen = 0

    def reset(self) -> None:
        """Start a new video: forget the state and the frame size."""
        self._state = None
        self.input_size = None
        self.network_size = self.fixed_size
        self.frames_seen = 0

    def _to_batch(self, rgb: np.ndarray) -> Tensor:
        """``(H, W, 3)`` frame -> ImageNet-normalised ``(1, 3, h, w)`` on the device.

        uint8 frames travel to the device as bytes; the others as float in [0, 1]. An
        explicit network size is reached with the interpolation ``Preprocess`` uses, after
        which ``Preprocess`` (at sides that are multiples of 14) only normalises.
        """
        if rgb.dtype == np.uint8:
            image = torch.from_numpy(np.ascontiguousarray(rgb))
        else:
            image = torch.from_numpy(rgb_to_unit(rgb, self.float_input))
        image = image.permute(2, 0, 1)  # (H, W, 3) -> (3, H, W)
        if self.fixed_size is None:
            return self._preprocess(image)
        batch = image[None].to(self.device)  # (3, H, W) -> (1, 3, H, W)
        batch = batch.float() / 255.0 if batch.dtype == torch.uint8 else batch
        if tuple(batch.shape[-2:]) != self.fixed_size:
            batch = F.interpolate(batch, self.fixed_size, mode="bicubic", align_corners=False)
            batch = batch.clamp(0.0, 1.0)
        return self._preprocess(batch)

    def _check_frame(self, rgb: np.ndarray) -> None:
        """Same size as the video's first frame, RGB layout."""
        if rgb.ndim != 3 or rgb.shape[-1] != 3:
            raise ValueError(
                f"frames must be RGB arrays (H, W, 3), got shape {rgb.shape}; "
                "convert grey or RGBA frames to RGB first"
            )
        size = (int(rgb.shape[0]), int(rgb.shape[1]))
        if self.input_size is None:
            self.input_size = size
        elif size != self.input_size:
            raise ValueError(
                f"frame {self.frames_seen} is {size[1]}x{size[0]} but this video's frames are "
                f"{self.input_size[1]}x{self.input_size[0]}; call reset() before a new video"
            )

    @torch.inference_mode()
    def predict(self, rgb: np.ndarray) -> np.ndarray:
        """Depth of the next frame of the current video.

        Args:
            rgb: ``(H, W, 3)`` RGB frame, ``uint8``, ``uint16`` or float (see module docs).

        Returns:
            ``float32 (H, W)`` relative inverse depth (×100 scale), at the input resolution
            (``output="input"``) or the network's (``output="network"``).
        """
        self._check_frame(rgb)
        batch = self._to_batch(rgb)  # (1, 3, h, w), ImageNet-normalised
        if self._state is None:
            self.network_size = (int(batch.shape[-2]), int(batch.shape[-1]))
            self._state = self.model.init_state(1, self.device, image_size=self.network_size)
        autocast = AUTOCAST_DTYPES[self.dtype]
        with torch.autocast(self.device.type, dtype=autocast, enabled=autocast is not None):
            depth, self._state = self._step(batch, self._state)  # (1, h, w)
        depth = depth.float()
        if self.output == "input":
            depth = postprocess(depth, self.input_size)  # (1, h, w) -> (1, H, W)
        self.frames_seen += 1
        return depth[0].cpu().numpy()

    def describe(self) -> dict[str, object]:
        """What produced the depth, for ``units.json``."""
        return {
            "model": type(self.model).__name__,
            "resolution": list(self.resolution)
            if isinstance(self.resolution, tuple)
            else self.resolution,
            "long_side_max": self.long_side_max,
            "network_size": None if self.network_size is None else list(self.network_size),
            "output": self.output,
            "dtype": self.dtype,
            "device": str(self.device),
            "compile": self.compile,
            "float_input": self.float_input,
        }


def _explicit_size(
    resolution: int | tuple[int, int] | None, long_side_max: int | None
) -> tuple[int, int] | None:
    """The explicit ``(H, W)`` network size of a tuple ``resolution``, validated."""
    if resolution is None or isinstance(resolution, int):
        if isinstance(resolution, int) and resolution < PATCH:
            raise ValueError(f"resolution must be at least {PATCH} px, got {resolution}")
        return None
    size = tuple(int(side) for side in resolution)
    if len(size) != 2 or any(side < PATCH or side % PATCH for side in size):
        nearest = tuple(PATCH * max(1, round(side / PATCH)) for side in size)
        raise ValueError(
            f"an explicit resolution must be (H, W) with both sides multiples of {PATCH} px, "
            f"got {resolution}; the nearest is {nearest}"
        )
    if long_side_max is not None:
        raise ValueError(
            f"long_side_max={long_side_max} applies to a short-side resolution only; "
            f"the explicit size {size} already fixes the long side"
        )
    return size  # type: ignore[return-value]
