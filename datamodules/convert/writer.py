"""The resumable conversion run: a converter's clips -> shards, manifest and report.

Shard ``i`` holds clips ``[i*N, (i+1)*N)`` of the converter's deterministic clip list. A shard is
written under a temporary name (``.tar.partial``) and renamed by the writer's ``post`` hook once
all its clips are in, so an existing ``.tar`` is always complete and a re-run skips it; a
leftover ``.tar.partial`` is simply written again. The configuration is recorded in
``{name}-{split}.manifest.json`` (with the converter's ``max_frames`` cap when it has one); a
re-run with another configuration is refused unless ``overwrite=True``.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from datamodules.convert.base import ClipSpec, Converter
from datamodules.format import FORMAT_VERSION
from datamodules.shard_writer import ClipShardWriter

log = logging.getLogger(__name__)

PARTIAL_SUFFIX = ".partial"
"""Suffix of a shard being written; removed (renamed) when the shard is complete."""

MANIFEST_KEYS = (
    "converter",
    "split",
    "clip_length",
    "stride",
    "max_frames",
    "clips_per_shard",
    "num_clips",
)
"""Manifest fields that must match for a re-run to resume instead of refusing."""


@dataclass
class ConversionReport:
    """What :func:`convert` did.

    Attributes:
        converter: Converter name.
        split: Split converted.
        out_dir: Output folder.
        clips_written: Clips written by this run.
        clips_skipped: Clips already in complete shards from an earlier run.
        shards: Every shard of the split, written now or earlier, in order.
        shards_written: Shards written by this run.
        scenes_skipped: Scenes too short for one clip.
        seconds: Wall-clock time of the run.
    """

    converter: str
    split: str
    out_dir: Path
    clips_written: int
    clips_skipped: int
    shards: list[Path]
    shards_written: list[Path]
    scenes_skipped: list[str]
    seconds: float

    def __str__(self) -> str:
        return (
            f"{self.converter}/{self.split}: wrote {self.clips_written} clips in "
            f"{len(self.shards_written)} shards, kept {self.clips_skipped} clips already "
            f"converted, {len(self.shards)} shards in {self.out_dir}, skipped "
            f"{len(self.scenes_skipped)} short scenes, {self.seconds:.1f} s"
        )


def _manifest_path(out_dir: Path, name: str, split: str) -> Path:
    return out_dir / f"{name}-{split}.manifest.json"


def _existing_outputs(out_dir: Path, name: str, split: str) -> list[Path]:
    """Shards (complete or partial) and manifest of ``name``/``split`` already in ``out_dir``."""
    stem = f"{name}-{split}-"
    outputs = [*out_dir.glob(f"{stem}*.tar"), *out_dir.glob(f"{stem}*.tar{PARTIAL_SUFFIX}")]
    manifest = _manifest_path(out_dir, name, split)
    return sorted(outputs) + ([manifest] if manifest.exists() else [])


def _check_previous_run(out_dir: Path, config: dict[str, Any], overwrite: bool) -> None:
    """Refuse (or, with ``overwrite``, delete) outputs of a differently configured earlier run."""
    name, split = config["converter"], config["split"]
    outputs = _existing_outputs(out_dir, name, split)
    if not outputs:
        return
    manifest = _manifest_path(out_dir, name, split)
    if overwrite:
        for path in outputs:
            path.unlink()
        log.info("%s: removed %d earlier outputs in %s (overwrite)", name, len(outputs), out_dir)
        return
    if not manifest.exists():
        raise FileExistsError(
            f"{out_dir} holds {name}-{split} shards but no manifest {manifest.name}, so they "
            "cannot be resumed safely; pass overwrite=True (--overwrite) to replace them or "
            "choose another output folder"
        )
    try:
        previous = json.loads(manifest.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise FileExistsError(
            f"cannot read manifest {manifest} ({error}); pass overwrite=True (--overwrite) to "
            "replace this output or choose another output folder"
        ) from error
    changed = [
        f"{key}: existing {previous.get(key)!r}, requested {config.get(key)!r}"
        for key in (*MANIFEST_KEYS, "format_version")
        if previous.get(key) != config.get(key)
    ]
    if changed:
        raise FileExistsError(
            f"{out_dir} holds {name}-{split} shards made with another configuration "
            f"({'; '.join(changed)}); pass overwrite=True (--overwrite) to replace them or "
            "choose another output folder"
        )


def _write_manifest(path: Path, manifest: dict[str, Any]) -> None:
    """Write the manifest atomically (temporary file + rename)."""
    temporary = path.with_name(path.name + PARTIAL_SUFFIX)
    temporary.write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(temporary, path)


def _write_shard(
    converter: Converter,
    specs: Sequence[ClipSpec],
    pattern: str,
    index: int,
    final: Path,
    progress: tqdm,
) -> None:
    """Write one shard under its temporary name; rename it to ``final`` only when complete.

    The writer calls ``post`` (the rename) when it closes normally; an exception while loading a
    clip leaves the ``.tar.partial`` file behind, which the next run overwrites.
    """
    with ClipShardWriter(
        pattern,
        max_clips_per_shard=len(specs),
        start_shard=index,
        post=lambda written: os.replace(written, final),
    ) as writer:
        for spec in specs:
            writer.write(converter.load_clip(spec))
            progress.update(1)


def convert(
    converter: Converter,
    out_dir: str | Path,
    split: str,
    clip_length: int = 32,
    stride: int = 1,
    clips_per_shard: int = 16,
    overwrite: bool = False,
    progress: bool = True,
) -> ConversionReport:
    """Convert one split of a raw dataset into clip shards ``{name}-{split}-%06d.tar``.

    Re-running with the same configuration resumes: complete shards are kept, missing ones
    (and leftover ``.tar.partial`` files) are written again.

    Args:
        converter: Converter built on the raw dataset folder.
        out_dir: Output folder (created if needed).
        split: One of ``converter.splits``.
        clip_length: Frames per stored clip.
        stride: Step between the stored frames of a clip.
        clips_per_shard: Clips per shard file.
        overwrite: Replace outputs of an earlier run made with another configuration.
        progress: Show a tqdm progress bar over clips.

    Returns:
        What was written and skipped.

    Raises:
        ValueError: Unknown split, bad sizes, or the split has no clip of this length.
        FileExistsError: ``out_dir`` holds shards of this converter and split made with another
            configuration (or without a manifest) and ``overwrite`` is False.
    """
    started = time.perf_counter()
    converter.check_split(split)
    if clips_per_shard < 1:
        raise ValueError(f"clips_per_shard must be >= 1, got {clips_per_shard}")
    specs = converter.list_clips(split, clip_length, stride)
    if not specs:
        raise ValueError(
            f"{converter.name}/{split}: no scene under {converter.root} has the "
            f"{max(clip_length - 1, 0) * stride + 1} frames one clip needs "
            f"(clip_length={clip_length}, "
            f"stride={stride}); lower --clip-length or check --root"
        )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = {
        "converter": converter.name,
        "split": split,
        "clip_length": clip_length,
        "stride": stride,
        "clips_per_shard": clips_per_shard,
        "num_clips": len(specs),
        "format_version": FORMAT_VERSION,
    }
    if converter.max_frames is not None:
        config["max_frames"] = converter.max_frames
    _check_previous_run(out, config, overwrite)
    manifest = {**config, "root": str(converter.root), "units": converter.units}
    manifest_path = _manifest_path(out, converter.name, split)
    _write_manifest(manifest_path, {**manifest, "complete": False})

    stem = f"{converter.name}-{split}-"
    # ShardWriter formats the pattern with %: escape any % in the folder name
    pattern = str(out).replace("%", "%%") + f"/{stem}%06d.tar{PARTIAL_SUFFIX}"
    chunks = [specs[i : i + clips_per_shard] for i in range(0, len(specs), clips_per_shard)]
    shards = [out / f"{stem}{index:06d}.tar" for index in range(len(chunks))]
    todo = [index for index, shard in enumerate(shards) if not shard.exists()]
    clips_skipped = len(specs) - sum(len(chunks[index]) for index in todo)
    with tqdm(
        total=len(specs), initial=clips_skipped, unit="clip", desc=stem[:-1], disable=not progress
    ) as bar:
        for index in todo:
            _write_shard(converter, chunks[index], pattern, index, shards[index], bar)

    _write_manifest(
        manifest_path, {**manifest, "complete": True, "shards": [s.name for s in shards]}
    )
    return ConversionReport(
        converter=converter.name,
        split=split,
        out_dir=out,
        clips_written=len(specs) - clips_skipped,
        clips_skipped=clips_skipped,
        shards=shards,
        shards_written=[shards[i] for i in todo],
        scenes_skipped=list(converter.skipped_scenes),
        seconds=time.perf_counter() - started,
    )
