"""Shard files: the one shard-pattern expander and the one tar reader of the clip pipeline.

* :func:`expand_shards` turns brace patterns, globs or folders into shard files and fails
  early, naming the pattern, when something is missing;
* :func:`index_shard` finds where the files of every sample lie in a shard from its tar headers
  alone (no data read; cached per process), which lets every rank plan evaluation without
  reading any pixels;
* :func:`read_samples` reads the raw samples of indexed entries, seeking straight to their
  files, so a reader can take any subset of a shard's clips; a truncated or unreadable shard,
  and any sample the decoder later rejects, is skipped with one :class:`BadSampleWarning`
  naming the shard and key and counted by a :class:`SkipCounter`;
* :func:`distributed_position` / :func:`worker_position` say which rank and DataLoader worker
  the code runs in.

Only local files are supported: the reader indexes a shard's tar headers, then seeks.
"""

from __future__ import annotations

import glob
import os
import tarfile
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from functools import lru_cache
from itertools import groupby
from operator import attrgetter
from typing import BinaryIO

import torch
import webdataset
from torch.utils.data import get_worker_info

#: Key of the damaged entry of a shard that breaks before its first sample.
SHARD_START = "<shard start>"


class BadSampleWarning(UserWarning):
    """A shard or sample was unreadable or broke the clip shard format and was skipped."""


def distributed_position() -> tuple[int, int]:
    """``(rank, world_size)`` from torch.distributed when initialised, else env RANK/WORLD_SIZE."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    rank, world_size = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    if not 0 <= rank < world_size:
        raise ValueError(f"environment RANK={rank} is outside WORLD_SIZE={world_size}")
    return rank, world_size


def worker_position() -> tuple[int, int]:
    """``(worker, num_workers)`` of this DataLoader worker; ``(0, 1)`` in the main process."""
    info = get_worker_info()
    return (0, 1) if info is None else (info.id, info.num_workers)


def expand_shards(patterns: str | Iterable[str]) -> list[str]:
    """Expand brace patterns, globs and folders (all ``*.tar`` inside) into shard files.

    Args:
        patterns: One pattern or several, e.g. ``"data/spring-train-{000000..000041}.tar"``.

    Returns:
        The files in pattern order (globs and folders sorted).

    Raises:
        FileNotFoundError: Naming the pattern when it matches nothing or names missing files.
    """
    shards: list[str] = []
    for pattern in [patterns] if isinstance(patterns, str) else patterns:
        found, missing = [], []
        for path in webdataset.shardlists.expand_urls(os.path.expanduser(pattern)):
            if glob.has_magic(path):
                found += sorted(glob.glob(path))
            elif os.path.isdir(path):
                found += sorted(glob.glob(os.path.join(path, "*.tar")))
            elif os.path.isfile(path):
                found.append(path)
            else:
                missing.append(path)
        if missing or not found:
            more = " ..." if len(missing) > 3 else ""
            detail = f"missing: {', '.join(missing[:3])}{more}" if missing else "nothing matched"
            raise FileNotFoundError(
                f"shard pattern {pattern!r} does not match existing shard files ({detail}); "
                "check the path, or create shards with `flashdepth data convert` / `data synth`"
            )
        shards += found
    return shards


@dataclass(frozen=True)
class SampleEntry:
    """Where the files of one sample lie in its shard.

    Attributes:
        shard: Shard file.
        key: Sample key (file name up to the first dot).
        files: ``(field, byte offset of the data, size in bytes)`` of each file, in tar order.
        damage: Why the sample cannot be read (the tar breaks off or cannot be opened there);
            ``None`` for an intact sample. Only the last entry of a shard can be damaged.
    """

    shard: str
    key: str
    files: tuple[tuple[str, int, int], ...]
    damage: str | None = None


def index_shard(shard: str) -> tuple[SampleEntry, ...]:
    """The samples of a shard in tar order, from its tar headers only.

    Consecutive files with the same key form one sample (a key that comes back later starts
    another entry). A shard that breaks off ends with one damaged entry for the sample being
    read there; one that cannot be opened is a single damaged entry. Cached per process by
    path, size and modification time.
    """
    try:
        stat = os.stat(shard)
    except OSError as error:  # vanished since it was listed
        return (SampleEntry(shard, SHARD_START, (), damage=str(error)),)
    return _index_shard(shard, stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=4096)
def _index_shard(shard: str, size: int, mtime_ns: int) -> tuple[SampleEntry, ...]:
    entries: list[SampleEntry] = []
    key, files = SHARD_START, []
    try:
        with tarfile.open(shard, "r:") as archive:
            for member in archive:
                if not member.isfile():
                    continue
                name_key, _, field = os.path.basename(member.name).partition(".")
                if files and name_key != key:
                    entries.append(SampleEntry(shard, key, tuple(files)))
                    files = []
                key = name_key
                files.append((field.lower(), member.offset_data, member.size))
    except (tarfile.TarError, OSError, EOFError) as error:
        entries.append(SampleEntry(shard, key, tuple(files), damage=str(error)))
        return tuple(entries)
    if files:
        entries.append(SampleEntry(shard, key, tuple(files)))
    return tuple(entries)


class SkipCounter:
    """Counts skipped samples and warns once per (shard, key) in this process."""

    def __init__(self) -> None:
        self.pending = 0
        self._warned: set[tuple[str, str]] = set()

    def skip(self, shard: str, key: str, problem: str) -> None:
        """Record one skipped sample and warn the first time this shard/key is seen."""
        self.pending += 1
        if (shard, key) not in self._warned:
            self._warned.add((shard, key))
            warnings.warn(
                f"skipping sample {key!r} of shard {shard}: {problem}", BadSampleWarning, 2
            )

    def take(self) -> int:
        """Skips since the previous call (attached to the next yielded sample)."""
        pending, self.pending = self.pending, 0
        return pending


def read_samples(
    entries: Iterable[SampleEntry], skip: Callable[[str, str, str], None]
) -> Iterator[dict]:
    """Yield the raw sample (field -> bytes, ``__key__``, ``__url__``) of each entry in order.

    Each sample's files are read at their indexed offsets; consecutive entries of one shard
    share one open file. A damaged entry, or a sample whose files cannot be read in full (the
    shard changed since it was indexed), is passed to ``skip(shard, key, problem)`` instead.

    Args:
        entries: Entries from :func:`index_shard`, any subset in any order.
        skip: Called for each sample that cannot be read, e.g. :meth:`SkipCounter.skip`.
    """
    for shard, group in groupby(entries, key=attrgetter("shard")):
        with ExitStack() as opened:
            handle = None
            for entry in group:
                if entry.damage is not None:
                    skip(shard, entry.key, f"unreadable tar ({entry.damage})")
                    continue
                try:
                    handle = handle or opened.enter_context(open(shard, "rb"))
                    sample = _read_files(handle, entry)
                except (OSError, EOFError) as error:
                    skip(shard, entry.key, f"unreadable tar ({error})")
                    continue
                yield sample


def _read_files(handle: BinaryIO, entry: SampleEntry) -> dict:
    """The files of one intact entry, read at their offsets."""
    sample: dict = {"__key__": entry.key, "__url__": entry.shard}
    for field, offset, size in entry.files:
        handle.seek(offset)
        sample[field] = handle.read(size)
        if len(sample[field]) != size:
            raise EOFError(f"{field} ends after {len(sample[field])} of {size} bytes")
    return sample


def read_shard(shard: str, skip: Callable[[str, str, str], None]) -> Iterator[dict]:
    """Yield the raw samples of one whole shard (see :func:`read_samples`)."""
    return read_samples(index_shard(shard), skip)
