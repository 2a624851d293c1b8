"""Summarise clip shards before training on them: counts, resolutions, depth statistics, errors.

``flashdepth data inspect SHARDS...`` runs :func:`inspect_shards` and prints
:func:`format_report`. Shards are found by :func:`datamodules.shards.expand_shards` (brace
patterns, globs, folders) and read by the pipeline's own tar reader; every clip is decoded with
:func:`datamodules.format.decode_clip`, so a clean report means the training pipeline will read
every sample. Decode errors and unreadable (e.g. truncated) shards are listed with shard, key
and field; they never stop the inspection.

Depth statistics are exact over the stored float16 values: each valid finite pixel is counted in
a histogram of the 31 744 positive finite float16 values, so percentiles need no sampling and
constant memory for any amount of data. Percentiles use the inverted-CDF definition (the
smallest stored value with at least q % of the pixels at or below it).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from datamodules.format import Clip, ShardFormatError, decode_clip
from datamodules.shards import expand_shards, index_shard, read_samples

_FLOAT16_INF_BITS = 0x7C00  # bit patterns below this (and above 0) are positive finite float16
PERCENTILES = (1, 50, 99)


@dataclass
class DatasetStats:
    """Counts and depth statistics (metres) of the clips of one dataset."""

    clips: int = 0
    frames: int = 0
    resolutions: Counter = field(default_factory=Counter)  # (H, W) -> number of clips
    pixels: int = 0
    invalid_pixels: int = 0  # NaN depth
    sky_pixels: int = 0  # +inf depth
    histogram: np.ndarray = field(default_factory=lambda: np.zeros(_FLOAT16_INF_BITS, np.int64))

    def add(self, clip: Clip) -> None:
        """Count one decoded clip."""
        frames, height, width = clip.depth.shape
        self.clips += 1
        self.frames += frames
        self.resolutions[(height, width)] += 1
        self.pixels += clip.depth.size
        bits = clip.depth.astype(np.float16).view(np.uint16)  # exact: depth came from float16
        counts = np.bincount(bits.ravel(), minlength=1 << 16)
        self.sky_pixels += int(counts[_FLOAT16_INF_BITS])
        self.invalid_pixels += int(counts[_FLOAT16_INF_BITS + 1 : 0x8000].sum())
        self.invalid_pixels += int(counts[0x8000 | (_FLOAT16_INF_BITS + 1) :].sum())
        self.histogram += counts[:_FLOAT16_INF_BITS]

    def merge(self, other: DatasetStats) -> None:
        """Add the counts of ``other``."""
        self.clips += other.clips
        self.frames += other.frames
        self.resolutions.update(other.resolutions)
        self.pixels += other.pixels
        self.invalid_pixels += other.invalid_pixels
        self.sky_pixels += other.sky_pixels
        self.histogram += other.histogram

    @property
    def valid_finite_pixels(self) -> int:
        """Pixels with a finite depth."""
        return int(self.histogram.sum())

    @property
    def invalid_fraction(self) -> float:
        """Fraction of pixels with NaN (invalid) depth."""
        return self.invalid_pixels / self.pixels if self.pixels else 0.0

    @property
    def sky_fraction(self) -> float:
        """Fraction of pixels with +inf (sky) depth."""
        return self.sky_pixels / self.pixels if self.pixels else 0.0

    def depth_percentile(self, q: float) -> float | None:
        """Depth (m) at percentile ``q`` in [0, 100] of the finite pixels; None if there are none.

        ``q = 0`` gives the minimum, ``q = 100`` the maximum.
        """
        cumulative = np.cumsum(self.histogram)
        total = int(cumulative[-1])
        if total == 0:
            return None
        rank = min(max(int(np.ceil(q / 100.0 * total)), 1), total)
        bits = np.searchsorted(cumulative, rank)  # first pattern whose count reaches the rank
        return float(np.array(bits, dtype=np.uint16).view(np.float16))


@dataclass
class DecodeError:
    """A sample or shard that could not be read."""

    shard: str
    key: str | None
    field: str | None
    message: str

    def __str__(self) -> str:
        where = f"shard {self.shard}"
        where += f", key {self.key!r}" if self.key else ""
        where += f", field {self.field!r}" if self.field else ""
        return f"{where}: {self.message}"


@dataclass
class InspectReport:
    """What :func:`inspect_shards` found."""

    shards: list[str]
    datasets: dict[str, DatasetStats] = field(default_factory=dict)
    errors: list[DecodeError] = field(default_factory=list)
    duplicate_keys: list[str] = field(default_factory=list)

    def unreadable(self, shard: str, key: str, problem: str) -> None:
        """Record a sample whose files could not be read."""
        self.errors.append(DecodeError(shard, key, None, problem))

    @property
    def total(self) -> DatasetStats:
        """Statistics over all datasets."""
        total = DatasetStats()
        for stats in self.datasets.values():
            total.merge(stats)
        return total


def inspect_shards(patterns: str | Iterable[str], progress: bool = False) -> InspectReport:
    """Decode every clip of the given shards and gather statistics per dataset.

    Args:
        patterns: Shard paths, brace patterns, globs or folders.
        progress: Show a progress bar over shards.

    Raises:
        FileNotFoundError: If a pattern matches no file. Problems inside shards are reported in
            :attr:`InspectReport.errors` instead.
    """
    report = InspectReport(shards=expand_shards(patterns))
    seen: set[str] = set()

    for shard in tqdm(report.shards, desc="inspect", unit="shard", disable=not progress):
        entries = index_shard(shard)
        intact = [entry for entry in entries if entry.damage is None]
        for sample in read_samples(intact, report.unreadable):
            try:
                clip = decode_clip(sample)
            except ShardFormatError as error:
                report.errors.append(DecodeError(shard, error.key, error.field, error.problem))
                continue
            if clip.key in seen:
                report.duplicate_keys.append(clip.key)
            seen.add(clip.key)
            report.datasets.setdefault(clip.meta["dataset"], DatasetStats()).add(clip)
        if len(intact) < len(entries):  # the shard breaks off after its intact samples
            reason = entries[-1].damage
            message = f"unreadable tar after {len(intact)} clip(s): {reason}"
            report.errors.append(DecodeError(shard, None, None, message))
    return report


def format_report(report: InspectReport) -> str:
    """Human-readable table of a report, one row per dataset and a total row."""
    total = report.total
    lines = [
        f"shards: {len(report.shards)}   clips: {total.clips}   frames: {total.frames}   "
        f"decode errors: {len(report.errors)}   duplicate keys: {len(report.duplicate_keys)}",
        "",
        f"{'dataset':<20} {'clips':>7} {'frames':>8} {'invalid':>8} {'sky':>8}  "
        "depth m: min / p1 / p50 / p99 / max   resolutions (HxW: clips)",
    ]
    rows = sorted(report.datasets.items())
    rows += [("(all)", total)] if len(report.datasets) > 1 else []
    for name, stats in rows:
        quantiles = [stats.depth_percentile(q) for q in (0, *PERCENTILES, 100)]
        depth = " / ".join("-" if v is None else f"{v:.4g}" for v in quantiles)
        sizes = ", ".join(f"{h}x{w}: {n}" for (h, w), n in stats.resolutions.most_common())
        lines.append(
            f"{name:<20} {stats.clips:>7} {stats.frames:>8} {stats.invalid_fraction:>8.2%} "
            f"{stats.sky_fraction:>8.2%}  {depth:<34}  {sizes}"
        )
    if report.errors:
        lines += ["", f"decode errors ({len(report.errors)}):"]
        lines += [f"  {error}" for error in report.errors]
    if report.duplicate_keys:
        lines += ["", f"duplicate keys ({len(report.duplicate_keys)}):"]
        lines += [f"  {key}" for key in report.duplicate_keys[:20]]
    return "\n".join(lines)
