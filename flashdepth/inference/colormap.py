"""Colour for viewing depth while it streams: the turbo map and a running normalisation.

A whole-video min/max is unknown until the video ends, and a per-frame min/max makes the
colours flicker whenever something enters or leaves the frame. :class:`RunningRange`
instead follows the per-frame 2nd and 98th percentiles of the relative inverse depth
(×100 scale) with an exponential moving average whose time constant is in **seconds** of
video (1 s by default, so the same at 24 and 60 fps), started from the first frame: on a
still scene the range does not move, and after a change of scene it settles within a few
time constants (≈ 95 % after 3 s).

Colours: Google's turbo map (a perceptual rainbow), evaluated from its published polynomial
fit; **near is red** (high inverse depth), far is blue.
"""

from __future__ import annotations

import math

import numpy as np

#: Coefficients of the turbo polynomial fit, one row per channel, for x^0 .. x^5.
_TURBO_POLYNOMIAL = np.array(
    [
        [0.13572138, 4.61539260, -42.66032258, 132.13108234, -152.94239396, 59.28637943],
        [0.09140261, 2.19418839, 4.84296658, -14.18503333, 4.27729857, 2.82956604],
        [0.10667330, 12.64194608, -60.58204836, 110.36276771, -89.90310912, 27.34824973],
    ]
)
#: Pixels between two samples (in each direction) when estimating a frame's percentiles.
PERCENTILE_STRIDE = 4


def turbo_lut(entries: int = 256) -> np.ndarray:
    """The turbo colour map as a ``(entries, 3)`` uint8 table, index 0 blue -> last red."""
    x = np.linspace(0.0, 1.0, entries)
    powers = x[:, None] ** np.arange(6)[None]  # (entries, 6)
    rgb = np.clip(powers @ _TURBO_POLYNOMIAL.T, 0.0, 1.0)  # (entries, 3)
    return np.round(rgb * 255).astype(np.uint8)


_TURBO = turbo_lut()


class RunningRange:
    """Exponential moving average of per-frame low/high percentiles of inverse depth.

    Args:
        time_constant_s: Seconds of video for the range to move ``1 - 1/e`` (63 %) of the way
            to a new scene's percentiles.
        low_percentile: Lower percentile of each frame (far end of the colour map).
        high_percentile: Upper percentile of each frame (near end).
    """

    def __init__(
        self,
        time_constant_s: float = 1.0,
        low_percentile: float = 2.0,
        high_percentile: float = 98.0,
    ) -> None:
        if time_constant_s <= 0:
            raise ValueError(f"time_constant_s must be positive, got {time_constant_s}")
        if not 0 <= low_percentile < high_percentile <= 100:
            raise ValueError(
                "need 0 <= low_percentile < high_percentile <= 100, got "
                f"{low_percentile}, {high_percentile}"
            )
        self.time_constant_s = time_constant_s
        self.percentiles = (low_percentile, high_percentile)
        self.low: float | None = None
        self.high: float | None = None

    def update(self, inverse_depth: np.ndarray, seconds: float) -> tuple[float, float]:
        """Fold one frame in; returns the ``(low, high)`` range to normalise it with.

        Args:
            inverse_depth: ``(H, W)`` relative inverse depth (×100 scale).
            seconds: Time since the previous frame (1 / fps); ignored for the first frame.
        """
        sample = inverse_depth[::PERCENTILE_STRIDE, ::PERCENTILE_STRIDE]
        sample = sample[np.isfinite(sample)]
        if sample.size == 0:
            return self.range
        low, high = (float(value) for value in np.percentile(sample, self.percentiles))
        if self.low is None or self.high is None:
            self.low, self.high = low, high
        else:
            rate = 1.0 - math.exp(-max(seconds, 0.0) / self.time_constant_s)
            self.low += rate * (low - self.low)
            self.high += rate * (high - self.high)
        return self.range

    @property
    def range(self) -> tuple[float, float]:
        """The current ``(low, high)``; ``(0, 1)`` before the first frame."""
        if self.low is None or self.high is None:
            return 0.0, 1.0
        return self.low, self.high


def colorize(inverse_depth: np.ndarray, low: float, high: float) -> np.ndarray:
    """Turbo colours of ``(H, W)`` inverse depth normalised to ``[low, high]``.

    Returns:
        ``(H, W, 3)`` uint8 RGB; values at or above ``high`` (near) are red, at or below
        ``low`` (far) blue; NaN is drawn as far.
    """
    span = max(high - low, 1e-6)
    unit = np.nan_to_num((inverse_depth - low) / span, nan=0.0)
    index = np.clip(np.rint(unit * (len(_TURBO) - 1)), 0, len(_TURBO) - 1).astype(np.intp)
    return _TURBO[index]  # (H, W) -> (H, W, 3)


class DepthColorizer:
    """Colour frames of one stream with a :class:`RunningRange` (stable, no flicker).

    Args:
        time_constant_s: See :class:`RunningRange`.
        low_percentile: See :class:`RunningRange`.
        high_percentile: See :class:`RunningRange`.
    """

    def __init__(
        self,
        time_constant_s: float = 1.0,
        low_percentile: float = 2.0,
        high_percentile: float = 98.0,
    ) -> None:
        self.range = RunningRange(time_constant_s, low_percentile, high_percentile)

    def __call__(self, inverse_depth: np.ndarray, seconds: float) -> np.ndarray:
        """``(H, W)`` inverse depth -> ``(H, W, 3)`` uint8 RGB.

        ``seconds``: seconds since the last frame.
        """
        low, high = self.range.update(inverse_depth, seconds)
        return colorize(inverse_depth, low, high)
