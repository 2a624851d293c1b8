"""Weight import: official Depth Anything V2, released FlashDepth, and our own checkpoints.

Three layouts are recognised and mapped onto the zoo's parameter names:

``dav2``
    Official Depth Anything V2 ``.pth``: a flat state dict with ``pretrained.*``
    (DINOv2) and ``depth_head.*`` (DPT). ``pretrained.mask_token`` is unused and
    dropped. Loaded into a FlashDepth model, everything but the temporal module
    loads; the temporal module keeps its initialisation (its zero-initialised
    output makes the model reproduce DAv2 exactly) and the report says so.
``flashdepth-release``
    The released FlashDepth ``.pth`` files: ``{"model": state_dict, ...}`` whose
    state dict adds ``mamba.blocks.{slot}.{i}.*`` (``slot`` indexes the list of
    insertion stages; one insertion is released, slot 0) and
    ``mamba.final_layer.1.*``, and for FlashDepth (Full) ``hybrid_fusion.*`` and
    ``teacher_model.*``.
``flashdepth``
    Our own: a plain ``model.state_dict()``, or a Lightning checkpoint whose
    ``state_dict`` holds the model under the prefix ``model.``.

Everything is read with ``torch.load(weights_only=True)``: no pickled code runs. Before
loading, :func:`read_checkpoint` looks at the file itself (torch's zip archive or its older
pickle format) so that a download gone wrong (an HTML page, a truncated archive, random
bytes) is reported as not a checkpoint, and only a genuine checkpoint holding Python objects
is reported as such.

The weights registry (``flashdepth/weights_registry.json``, described for people in
``checkpoints/README.md``) ships inside the package and is read with
:mod:`importlib.resources`, so registry names work from an installed wheel too.
"""

from __future__ import annotations

import codecs
import hashlib
import io
import json
import logging
import os
import pickle
import pickletools
import re
import zipfile
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from flashdepth.models.contract import StreamingDepthModel, WeightPart
from flashdepth.models.flashdepth import TEMPORAL_PREFIXES

log = logging.getLogger(__name__)

#: Key renames from the released FlashDepth layout to the zoo's (prefix → prefix).
RELEASE_PREFIXES = (
    ("mamba.blocks.0.", "temporal.blocks."),
    ("mamba.final_layer.", "temporal_out."),
    ("hybrid_fusion.blocks.0.", "fusion.blocks."),
    ("teacher_model.", "teacher."),
)
#: DINOv2's SwiGLU names (ViT-G) and timm's, which the zoo's encoder uses.
SWIGLU_RENAMES = ((".mlp.w12.", ".mlp.fc1."), (".mlp.w3.", ".mlp.fc2."))
#: Official keys that the zoo does not use.
UNUSED_KEYS = frozenset({"pretrained.mask_token", "teacher_model.pretrained.mask_token"})
#: The weights registry, a data file of the ``flashdepth`` package.
REGISTRY_RESOURCE = "weights_registry.json"
#: First bytes of torch's zip format (``torch.save`` since torch 1.6).
ZIP_MAGIC = b"PK\x03\x04"
#: First bytes of torch's older format: its magic number, pickled with protocol 2.
LEGACY_MAGIC = pickle.dumps(torch.serialization.MAGIC_NUMBER, protocol=2)
#: Pickles at the start of the older format: magic number, protocol, system info, the object.
LEGACY_PICKLES = 4
#: What reading a damaged zip archive or pickle stream raises.
_DAMAGE = (zipfile.BadZipFile, ValueError, EOFError, OSError, RuntimeError)
_HEADER_BYTES = 512
_LISTED = 8


class CheckpointError(RuntimeError):
    """A checkpoint could not be read or does not fit the model."""


class CheckpointMismatchError(CheckpointError):
    """Keys or shapes of a checkpoint do not match the model (strict loading).

    Attributes:
        layout: The layout detected for the checkpoint.
        missing: Model keys absent from the checkpoint.
        unexpected: Checkpoint keys the model does not have.
        mismatched: ``(key, checkpoint shape, model shape)`` for keys present in both.
    """

    def __init__(
        self,
        source: str,
        layout: str,
        missing: list[str],
        unexpected: list[str],
        mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]],
        hint: str = "",
    ) -> None:
        self.layout, self.missing, self.unexpected, self.mismatched = (
            layout,
            missing,
            unexpected,
            mismatched,
        )
        lines = [f"checkpoint {source} (detected layout: {layout}) does not fit the model:"]
        for title, items in (
            ("missing from the checkpoint", missing),
            ("unexpected in the checkpoint", unexpected),
            (
                "shape mismatch (checkpoint vs model)",
                [f"{k}: {tuple(a)} vs {tuple(b)}" for k, a, b in mismatched],
            ),
        ):
            if items:
                shown = ", ".join(items[:_LISTED])
                more = f" … and {len(items) - _LISTED} more" if len(items) > _LISTED else ""
                lines.append(f"  {len(items)} {title}: {shown}{more}")
        lines.append(
            "  Check that the preset matches the weights (e.g. flashdepth-s for a ViT-S "
            "checkpoint, flashdepth-l for ViT-L), or load only what fits: in Python "
            "create_model(name, weights=..., strict=False) or load_weights(model, source, "
            "strict=False); in a recipe `strict_weights: false` in the task's init_args "
            "(--model.strict_weights false on the command line)."
        )
        if hint:
            lines.append(hint)
        super().__init__("\n".join(lines))


@dataclass
class LoadReport:
    """What :func:`load_weights` did."""

    source: str
    layout: str
    loaded: int
    kept_initialisation: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    part: str | None = None
    unused: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        into = f" into {self.part}" if self.part else ""
        text = f"loaded {self.loaded} tensors from {self.source} ({self.layout} layout){into}"
        if self.kept_initialisation:
            modules = sorted({k.split(".")[0] for k in self.kept_initialisation})
            text += (
                f"; {len(self.kept_initialisation)} tensors ({', '.join(modules)}) are not in "
                "the checkpoint and keep their initialisation (zero-initialised outputs: the "
                "model reproduces the checkpoint's model until trained)"
            )
        if self.unused:
            modules = sorted({k.split(".")[0] for k in self.unused})
            text += (
                f"; dropped {len(self.unused)} checkpoint tensors ({', '.join(modules)}) that "
                f"this part does not use"
            )
        if self.ignored:
            text += f"; ignored {len(self.ignored)} keys not in the model (strict=False)"
        return text


def read_checkpoint(path: str | Path, mmap: bool = False) -> dict[str, Any]:
    """``torch.load`` a checkpoint file safely (``weights_only=True``, on CPU).

    Args:
        path: A file written by ``torch.save`` (a ``.pth``, ``.pt`` or Lightning ``.ckpt``).
        mmap: Map tensor storages from the file instead of reading them into memory (files in
            torch's zip format): a full check of a large file that costs little memory.

    Returns:
        The loaded object, a dict.

    Raises:
        FileNotFoundError: ``path`` is not a file.
        CheckpointError: The file is not a PyTorch checkpoint (empty, text, truncated, foreign
            data), holds Python objects that safe loading refuses, or holds no dict.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"checkpoint {path} does not exist; see checkpoints/README.md for where to get weights"
        )
    zip_format, problem = _inspect_format(path)
    if problem:
        raise CheckpointError(_not_a_checkpoint(path, problem))
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap and zip_format)
    except pickle.UnpicklingError as error:
        if not _pickle_is_intact(path, zip_format):
            kind = "zip archive" if zip_format else "file in torch's legacy format"
            problem = f"a damaged {kind}: its pickle ends early or is corrupt"
            raise CheckpointError(_not_a_checkpoint(path, problem)) from error
        refused = re.search(r"Unsupported global: GLOBAL (\S+)", str(error))
        what = f" (e.g. {refused.group(1)})" if refused else ""
        raise CheckpointError(
            f"{path} is a PyTorch checkpoint that holds Python objects{what}, which safe loading "
            "(torch.load with weights_only=True) refuses, so nothing in it was run. Re-save it "
            "as a plain state dict where it was made: torch.save(model.state_dict(), path)"
        ) from error
    except Exception as error:  # torch reports damage as RuntimeError, OSError, EOFError, ...
        sentence = str(error).strip().split(". ")[0].partition("\n")[0]
        damage = type(error).__name__ + (f": {sentence}" if sentence else "")
        kind = "zip archive" if zip_format else "file in torch's legacy format"
        raise CheckpointError(
            _not_a_checkpoint(path, f"a damaged {kind}; torch.load fails with {damage}")
        ) from error
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, expected a dict of tensors")
    return obj


def _inspect_format(path: Path) -> tuple[bool, str]:
    """``(is torch's zip format, what is wrong)`` from the file's own bytes; ``""`` if nothing."""
    with open(path, "rb") as f:
        head = f.read(_HEADER_BYTES)
    if not head:
        return False, "the file is empty"
    if head.startswith(ZIP_MAGIC):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except _DAMAGE:
            return True, "a truncated or damaged zip archive: its table of contents is unreadable"
        if not any(name.endswith("data.pkl") for name in names):
            return True, "a zip archive without the data.pkl that torch.save writes"
        return True, ""
    if head.startswith(LEGACY_MAGIC):
        return False, ""
    if head[:1] == pickle.PROTO and len(head) > 1 and 2 <= head[1] <= pickle.HIGHEST_PROTOCOL:
        return False, "a Python pickle that torch.save did not write"
    text = _as_text(head)
    if text is not None:
        first_line = text.strip().partition("\n")[0]
        return False, f"a text file starting with {first_line[:60]!r}"
    return False, f"unrecognised data starting with bytes {head[:8].hex(' ')}"


def _as_text(head: bytes) -> str | None:
    """The first bytes of a file as text, or ``None`` when they are not printable UTF-8."""
    try:  # an incremental decoder accepts a character cut at the end of ``head``
        text = codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return None
    return text if all(c.isprintable() or c in "\t\n\r" for c in text) else None


def _pickle_is_intact(path: Path, zip_format: bool) -> bool:
    """Whether the pickle of the checkpoint's object parses to its end, read without running it.

    When it does, a refusal by ``weights_only`` is about what the file holds, not damage.
    """
    try:
        with open(path, "rb") as file:
            stream, pickles = file, LEGACY_PICKLES
            if zip_format:
                with zipfile.ZipFile(file) as archive:
                    name = next(n for n in archive.namelist() if n.endswith("data.pkl"))
                    stream, pickles = io.BytesIO(archive.read(name)), 1  # read checks the CRC
            for _ in range(pickles):
                for _ in pickletools.genops(stream):
                    pass
    except _DAMAGE:
        return False
    return True


def _not_a_checkpoint(path: Path, problem: str) -> str:
    """The message for a file that torch.load cannot read, with what to do about it."""
    start = f"{path} is not a PyTorch checkpoint ({problem})."
    entry = next((e for e in registry().values() if e["file"] == path.name), None)
    if entry is None:
        return (
            f"{start} Download it again, or save it again with torch.save; where its source "
            f"publishes a sha256, compare it with the file's (sha256sum {path})."
        )
    if entry["sha256"]:
        check = f"the registry's sha256 is {entry['sha256']}, this file's is {_sha256(path)}"
    else:
        check = "compare its sha256 with the one that page shows"
    return (
        f"{start} It is the file of the registry entry {entry['name']!r}: download it again "
        f"from {entry['url']} ({check})."
    )


def _sha256(path: Path) -> str:
    """The hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def detect_layout(checkpoint: dict[str, Any]) -> tuple[dict[str, Tensor], str]:
    """Find the state dict inside a loaded checkpoint and name its layout."""
    if isinstance(checkpoint.get("state_dict"), dict):  # Lightning checkpoint
        inner = checkpoint["state_dict"]
        state = {k[len("model.") :]: v for k, v in inner.items() if k.startswith("model.")}
        if not state:
            raise CheckpointError(
                "Lightning checkpoint without 'model.*' keys: it was not written by FlashDepthTask"
            )
        return state, "flashdepth"
    if isinstance(checkpoint.get("model"), dict):
        state = checkpoint["model"]
    else:
        state = checkpoint
    bad = [k for k, v in state.items() if not isinstance(v, Tensor)]
    if bad:
        raise CheckpointError(
            f"expected a state dict of tensors, but {len(bad)} entries are not tensors "
            f"(e.g. {bad[:3]}); known layouts: DAv2 .pth, FlashDepth .pth ({{'model': ...}}), "
            "Lightning .ckpt"
        )
    if all(k.startswith("module.") for k in state):  # saved from a DDP wrapper
        state = {k[len("module.") :]: v for k, v in state.items()}
    if any(k.startswith(("mamba.", "hybrid_fusion.", "teacher_model.")) for k in state):
        return state, "flashdepth-release"
    if any(k.startswith(TEMPORAL_PREFIXES) for k in state):
        return state, "flashdepth"
    if any(k.startswith("pretrained.") for k in state) and any(
        k.startswith("depth_head.") for k in state
    ):
        return state, "dav2"
    return state, "flashdepth"


def to_zoo_keys(state: dict[str, Tensor], layout: str) -> dict[str, Tensor]:
    """Rename the keys of a detected layout to the zoo's parameter names."""
    renamed: dict[str, Tensor] = {}
    for key, value in state.items():
        if key in UNUSED_KEYS:
            continue
        if layout == "flashdepth-release":
            if key.startswith("mamba.blocks.") and not key.startswith("mamba.blocks.0."):
                raise CheckpointError(
                    f"checkpoint key {key!r} belongs to a second temporal insertion slot; the "
                    "zoo's FlashDepth has one temporal module (the released models use one)"
                )
            for old, new in RELEASE_PREFIXES:
                if key.startswith(old):
                    key = new + key[len(old) :]
                    break
        for old, new in SWIGLU_RENAMES:
            key = key.replace(old, new)
        renamed[key] = value
    return renamed


def load_weights(
    model: nn.Module,
    source: str | Path | dict[str, Any],
    strict: bool = True,
    part: str | None = None,
) -> LoadReport:
    """Load any supported checkpoint into a zoo model, or into one part of it.

    Args:
        model: A zoo model (``DepthAnythingV2``, ``FlashDepth``, ``FlashDepthHybrid``, ...).
        source: A checkpoint path or an already loaded checkpoint/state dict.
        strict: Raise :class:`CheckpointMismatchError` on any missing, unexpected or
            shape-mismatched key (except the temporal module when loading DAv2
            weights into a FlashDepth model, and what the part keeps initialised). With
            ``False`` load what fits.
        part: A name from ``model.weight_parts()`` (e.g. ``"student"`` or ``"teacher"`` of
            the hybrid): the checkpoint fills only that part.

    Returns:
        A :class:`LoadReport`; its text is also logged.
    """
    name = str(source) if not isinstance(source, dict) else "<state dict>"
    checkpoint = source if isinstance(source, dict) else read_checkpoint(source)
    state, layout = detect_layout(checkpoint)
    state = to_zoo_keys(state, layout)

    own = model.state_dict()
    target = WeightPart() if part is None else _weight_part(model, part)
    own = {
        k[len(target.prefix) :]: v
        for k, v in own.items()
        if k.startswith(target.prefix) and not k.startswith(target.exclude)
    }
    unused = sorted(k for k in state if target.ignores and k.startswith(target.ignores))
    state = {k: v for k, v in state.items() if k not in set(unused)}
    missing = sorted(k for k in own if k not in state)
    unexpected = sorted(k for k in state if k not in own)
    mismatched = [
        (k, tuple(state[k].shape), tuple(own[k].shape))
        for k in sorted(own.keys() & state.keys())
        if state[k].shape != own[k].shape
    ]
    kept = [
        k
        for k in missing
        if (layout == "dav2" and k.startswith(TEMPORAL_PREFIXES))
        or (target.keeps_initialisation and k.startswith(target.keeps_initialisation))
    ]
    real_missing = [k for k in missing if k not in kept]
    if strict and (real_missing or unexpected or mismatched):
        raise CheckpointMismatchError(
            name, layout, real_missing, unexpected, mismatched, _parts_hint(model, part)
        )

    usable = {
        target.prefix + k: v for k, v in state.items() if k in own and v.shape == own[k].shape
    }
    model.load_state_dict(usable, strict=False)
    ignored = unexpected if not strict else []
    report = LoadReport(name, layout, len(usable), kept, ignored, part, unused)
    log.info("%s", report)
    return report


def _weight_part(model: nn.Module, part: str) -> WeightPart:
    parts = model.weight_parts() if isinstance(model, StreamingDepthModel) else {}
    if part not in parts:
        raise CheckpointError(
            f"{type(model).__name__} has no weight part {part!r}; its parts: "
            f"{sorted(parts) or 'none (load one checkpoint into the whole model)'}"
        )
    return parts[part]


def _parts_hint(model: nn.Module, part: str | None) -> str:
    """Advice for a whole-model load into a model assembled from parts."""
    parts = model.weight_parts() if isinstance(model, StreamingDepthModel) else {}
    if part is not None or not parts:
        return ""
    names = ", ".join(sorted(parts))
    return (
        f"  {type(model).__name__} is assembled from parts ({names}): load one checkpoint "
        f"per part, e.g. init_weights: {{{', '.join(f'{p}: FILE' for p in sorted(parts))}}} "
        "in a recipe or load_weights(model, FILE, part=NAME)."
    )


def weights_dirs() -> list[Path]:
    """Folders searched for weight files named in the registry, in order.

    The folders of ``$FLASHDEPTH_WEIGHTS`` (``os.pathsep``-separated), ``./checkpoints``
    of the working directory, then the user cache ``$FLASHDEPTH_CACHE/weights`` (default
    ``~/.cache/flashdepth/weights``).
    """
    dirs = [Path(d) for d in os.environ.get("FLASHDEPTH_WEIGHTS", "").split(os.pathsep) if d]
    cache = Path(os.environ.get("FLASHDEPTH_CACHE") or "~/.cache/flashdepth").expanduser()
    return [*dirs, Path.cwd() / "checkpoints", cache / "weights"]


def registry() -> dict[str, dict[str, Any]]:
    """The entries of the weights registry (``flashdepth/weights_registry.json``) by name."""
    text = files("flashdepth").joinpath(REGISTRY_RESOURCE).read_text(encoding="utf-8")
    return {entry["name"]: entry for entry in json.loads(text)["weights"]}


def resolve_weights(weights: str | Path | dict[str, Any]) -> str | Path | dict[str, Any]:
    """Turn a registry name into a file path; pass paths and dicts through."""
    if isinstance(weights, dict) or Path(weights).is_file():
        return weights
    entries = registry()
    if str(weights) not in entries:
        raise FileNotFoundError(
            f"weights {weights!r} is neither a file nor a registry name; registry names: "
            f"{', '.join(sorted(entries))}"
        )
    entry = entries[str(weights)]
    for folder in weights_dirs():
        candidate = folder / entry["file"]
        if candidate.is_file():
            return candidate
    searched = ", ".join(str(d) for d in weights_dirs())
    raise FileNotFoundError(
        f"weights {weights!r} ({entry['file']}) not found in {searched}. Download it from "
        f"{entry['url']} and put it in one of those folders (or set FLASHDEPTH_WEIGHTS)."
    )
