"""Shard files for the clip DataModules: listing, counting and tolerant reading.

* :func:`expand_shards` turns brace patterns, globs or folders into shard files and fails
  early, naming the pattern, when something is missing;
* :func:`count_clips` counts the clips of a shard from its tar headers (no decoding; cached per
  process), which lets every rank plan evaluation without reading any pixels;
* :func:`read_shard` yields the raw samples of one shard; a truncated or unreadable shard, and
  any sample the decoder later rejects, is skipped with one :class:`BadSampleWarning` naming the
  shard and key and counted by a :class:`SkipCounter`;
* :func:`distributed_position` / :func:`worker_position` say which rank and DataLoader worker
  the code runs in.

Only local files are supported (evaluation must count clips before reading them).
"""

from __future__ import annotations

import glob
import os
import tarfile
import warnings
from collections.abc import Iterator
from functools import lru_cache

import torch
import webdataset
from torch.utils.data import get_worker_info


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


def expand_shards(patterns: str | list[str]) -> list[str]:
    """Expand brace patterns, globs and folders (all ``*.tar`` inside) into shard files.

    Args:
        patterns: One pattern or a list of them, e.g. ``"data/spring-train-{000000..000041}.tar"``.

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


def count_clips(shard: str) -> int:
    """Number of samples (clips) in a shard, read from its tar headers only."""
    stat = os.stat(shard)
    return _count_clips(shard, stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=65536)
def _count_clips(shard: str, size: int, mtime_ns: int) -> int:
    """Count distinct sample keys; a truncated shard counts the keys seen before the damage."""
    keys: set[str] = set()
    try:
        with tarfile.open(shard, "r:") as archive:
            for member in archive:
                if member.isfile():
                    keys.add(os.path.basename(member.name).split(".", 1)[0])
    except (tarfile.TarError, OSError, EOFError):
        pass  # read_shard warns about the damage when the shard is read
    return len(keys)


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


def read_shard(shard: str, counter: SkipCounter) -> Iterator[dict]:
    """Yield the raw samples (field -> bytes, ``__key__``, ``__url__``) of one tar shard.

    A shard that cannot be opened, or breaks off, is reported once through ``counter``; the
    sample being read at that point is skipped and the rest of the shard is lost.
    """
    sample: dict = {}
    try:
        with tarfile.open(shard, "r:") as archive:
            for member in archive:
                if not member.isfile():
                    continue
                name = os.path.basename(member.name)
                key, _, field = name.partition(".")
                if sample and sample["__key__"] != key:
                    yield sample
                    sample = {}
                sample.setdefault("__key__", key)
                sample.setdefault("__url__", shard)
                sample[field.lower()] = archive.extractfile(member).read()
    except (tarfile.TarError, OSError, EOFError) as error:
        counter.skip(shard, sample.get("__key__", "<shard start>"), f"unreadable tar ({error})")
        return
    if sample:
        yield sample
