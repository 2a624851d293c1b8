"""Export of the streaming step to TorchScript and ONNX, checked against eager PyTorch.

One step of a stream, for any preset, at a network input size fixed at export (``H``,
``W`` multiples of 14; the state's shape depends on them)::

    (frame (B, 3, H, W), state) -> (inverse_depth (B, H, W), next_state)

``frame`` is ImageNet-normalised RGB; ``inverse_depth`` the model's relative inverse
depth (≈ 100/m for our recipes). A video starts from a zero ``state`` and feeds each
``next_state`` back. ``B`` is 1, or a dynamic ``batch`` dimension in ONNX files.

``torch.export`` on the CPU fixes every shape, so the models' Python shape arithmetic
(DINOv2's position-embedding resize, the pooled grid) becomes constants, and Mamba runs
its pure-PyTorch scan (the Triton kernel only takes CUDA tensors). TorchScript is
``torch.jit.trace`` of the exported graph; ONNX (opset 18) comes from
``torch.onnx.export(dynamo=True)`` (needs ``onnxscript``): the legacy exporter can
neither trace the position-embedding resize (a scale factor computed from the traced
patch grid) nor convert the exported graph. A file carries its :class:`ExportInfo` and
gets its final name once :func:`check_export` found it equal to eager PyTorch over
random frames, state carried (tolerance 1e-3 of the output's scale; measured ~1e-6).
Streaming a video through an ONNX file needs only onnxruntime, PyAV and numpy (README,
"Export"); export at the video's aspect ratio (``flashdepth.transforms.resize_shape``).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import re
import sys
import time
import warnings
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType

import torch
from torch import Tensor, nn

from flashdepth.models.encoder import PATCH_SIZE

FORMATS = ("onnx", "torchscript")
INPUT_NAMES = ("frame", "state")
OUTPUT_NAMES = ("inverse_depth", "next_state")
#: ONNX operator set of exported files.
OPSET = 18
#: Largest allowed difference to eager, relative to the largest eager value of an output.
DEFAULT_TOLERANCE = 1e-3
#: The description's ONNX metadata key, and its TorchScript extra file.
METADATA_KEY = "flashdepth"
_EXTRA_FILE = f"{METADATA_KEY}.json"


class ExportError(RuntimeError):
    """An exported step does not reproduce the eager model, or cannot be read."""


@dataclass(frozen=True)
class ExportInfo:
    """What an exported file holds; stored inside it.

    Attributes:
        model: Preset name (or class name) of the exported model.
        format: ``"onnx"`` or ``"torchscript"``.
        image_size: Network input ``(H, W)`` in pixels.
        shapes: Shape of each input and output by name; ``"batch"`` is a dynamic size.
    """

    model: str
    format: str
    image_size: tuple[int, int]
    shapes: dict[str, tuple[int | str, ...]]

    @classmethod
    def from_json(cls, text: str | bytes, path: Path) -> ExportInfo:
        """Read the description stored in the exported file ``path``."""
        if not text:
            raise ExportError(f"{path} holds no flashdepth description: export it with flashdepth")
        fields = json.loads(text)
        shapes = {name: tuple(shape) for name, shape in fields.pop("shapes").items()}
        return cls(**{**fields, "image_size": tuple(fields["image_size"]), "shapes": shapes})


@dataclass(frozen=True)
class ExportCheck:
    """Largest differences between an exported step and eager PyTorch over a stream.

    Attributes:
        frames: Frames streamed, state carried.
        depth_max_abs: Largest ``|eager - exported|`` of the inverse depth.
        state_max_abs: Largest ``|eager - exported|`` of the state (0 for an empty state).
        depth_relative: ``depth_max_abs`` over the largest eager ``|inverse depth|``.
        state_relative: ``state_max_abs`` over the largest eager ``|state|``.
    """

    frames: int
    depth_max_abs: float
    state_max_abs: float
    depth_relative: float
    state_relative: float


class StreamingStep(nn.Module):
    """A model's streaming step as a module: ``forward(frame, state) = model.step(...)``.

    Args:
        model: A :class:`~flashdepth.models.contract.StreamingDepthModel`.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, frame: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        """``(frame (B, 3, H, W), state) -> (inverse_depth (B, H, W), next_state)``."""
        return self.model.step(frame, state)


def parse_resolution(text: str) -> tuple[int, int]:
    """``(H, W)`` from ``HEIGHTxWIDTH`` in pixels (``518x924``), both multiples of 14.

    Raises:
        ValueError: Not two integers, or a side not a positive multiple of 14 (the
            message names the side and the nearest valid value).
    """
    match = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", text)
    if match is None:
        raise ValueError(f"resolution {text!r} is not HEIGHTxWIDTH in pixels, e.g. 518x924")
    height, width = int(match[1]), int(match[2])
    if min(height, width) <= 0 or height % PATCH_SIZE or width % PATCH_SIZE:
        near_h, near_w = (max(1, round(side / PATCH_SIZE)) * PATCH_SIZE for side in (height, width))
        raise ValueError(
            f"resolution {text!r}: height and width must be positive multiples of {PATCH_SIZE} "
            f"(the ViT patch), e.g. {near_h}x{near_w}"
        )
    return height, width


def _require(module: str, purpose: str) -> ModuleType:
    """Import an optional dependency, or say how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(
            f"{purpose} needs {module!r}, which is not installed ({error}); install it with: "
            "pip install 'flashdepth[onnx]'"
        ) from error


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode without autograd (nor tracer warnings), the training mode restored after."""
    training = model.training
    model.eval()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            yield
    finally:
        model.train(training)


def export(
    model: nn.Module,
    path: str | Path,
    image_size: tuple[int, int],
    format: str = "onnx",
    *,
    dynamic_batch: bool = False,
    check: bool = True,
    tolerance: float = DEFAULT_TOLERANCE,
    model_name: str | None = None,
) -> tuple[ExportInfo, ExportCheck | None]:
    """Export the streaming step of ``model`` (module docstring), checked against eager.

    Args:
        model: Any model of the zoo, on the CPU in float32 (its training mode is kept).
        path: The file to write, TorchScript archive or ONNX model.
        image_size: Network input ``(H, W)``, multiples of 14.
        format: ``"onnx"`` or ``"torchscript"``.
        dynamic_batch: ONNX only: a dynamic ``batch`` dimension instead of batch 1.
        check: Run :func:`check_export` before the file gets its final name.
        tolerance: Largest allowed difference, relative to the output's scale.
        model_name: Name stored in the file (default: the model's class name).

    Returns:
        The file's description and the check (``None`` when not checked).

    Raises:
        ExportError: The exported step differs from eager; nothing is left at ``path``.
        ImportError: ONNX export without ``onnxscript`` (``pip install flashdepth[onnx]``).
    """
    if format not in FORMATS or (dynamic_batch and format != "onnx"):
        raise ValueError(f"format {format!r} is not one of {FORMATS} (dynamic_batch: onnx only)")
    if format == "onnx":
        _require("onnxscript", "ONNX export (torch.onnx.export with dynamo=True)")
    if any(p.device.type != "cpu" or p.dtype != torch.float32 for p in model.parameters()):
        raise ValueError("export runs the pure-PyTorch scan in float32: pass model.cpu().float()")
    # a dynamic batch is captured at 2 (torch.export specialises a batch of 1)
    state = model.init_state(2 if dynamic_batch else 1, "cpu", image_size=tuple(image_size))
    if state.count_nonzero():
        raise ValueError(f"{type(model).__name__}.init_state is not zeros, as exports assume")
    frame = torch.randn(state.shape[0], 3, *image_size, generator=torch.Generator().manual_seed(0))
    step, path = StreamingStep(model), Path(path)
    partial = path.with_name(path.name + ".partial")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with _eval_mode(step):
            tensors = (frame, state, *step(frame, state))
            shapes = {
                name: ("batch" if dynamic_batch else 1, *tensor.shape[1:])
                for name, tensor in zip((*INPUT_NAMES, *OUTPUT_NAMES), tensors, strict=True)
            }
            info = ExportInfo(model_name or type(model).__name__, format, tuple(image_size), shapes)
            _write(step, (frame, state), partial, info)
        result = check_export(model, partial, image_size, tolerance=tolerance) if check else None
    except BaseException as error:
        partial.unlink(missing_ok=True)
        if isinstance(error, ExportError):
            raise ExportError(f"{error}; nothing was written to {path}") from error
        raise
    os.replace(partial, path)
    return info, result


def _write(
    step: StreamingStep, example: tuple[Tensor, Tensor], path: Path, info: ExportInfo
) -> None:
    """Capture ``step`` at the example's shapes and write it with its description."""
    description = json.dumps(asdict(info))
    if info.format == "torchscript":  # torch.export fixes the shapes, then trace its graph
        program = torch.export.export(step, example, strict=False)
        traced = torch.jit.trace(program.module(), example, check_trace=False)
        torch.jit.save(traced, str(path), _extra_files={_EXTRA_FILE: description})
        return
    dynamic = info.shapes["frame"][0] == "batch"
    program = torch.onnx.export(
        step,
        example,
        input_names=list(INPUT_NAMES),
        output_names=list(OUTPUT_NAMES),
        opset_version=OPSET,
        dynamo=True,
        dynamic_shapes={name: {0: "batch"} for name in INPUT_NAMES} if dynamic else None,
        verbose=False,
    )
    program.model.metadata_props[METADATA_KEY] = description
    program.save(str(path))


def load_exported(path: str | Path) -> tuple[Callable[..., tuple[Tensor, Tensor]], ExportInfo]:
    """Open an exported file on the CPU: its step on torch tensors, and its description.

    TorchScript runs with ``torch.jit.load``; ONNX with onnxruntime's CPU provider
    (``pip install flashdepth[onnx]``). The format is read from the file itself.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no exported model at {path}; write one with flashdepth export")
    if zipfile.is_zipfile(path):
        extra = {_EXTRA_FILE: ""}
        module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
        return module, ExportInfo.from_json(extra[_EXTRA_FILE], path)
    ort = _require("onnxruntime", "running an exported ONNX model")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def run_onnx(frame: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        feeds = {"frame": frame.numpy(), "state": state.numpy()}
        return tuple(map(torch.from_numpy, session.run(list(OUTPUT_NAMES), feeds)))

    metadata = session.get_modelmeta().custom_metadata_map
    return run_onnx, ExportInfo.from_json(metadata.get(METADATA_KEY, ""), path)


def check_export(
    model: nn.Module,
    path: str | Path,
    image_size: tuple[int, int],
    frames: int = 3,
    tolerance: float = DEFAULT_TOLERANCE,
) -> ExportCheck:
    """Stream random frames through an exported file and the eager model, state carried.

    Both start from ``model.init_state`` and feed back their own states (a dynamic batch:
    two videos); TorchScript runs unoptimised (its first-call recompiling costs seconds).

    Args:
        model: The exported model (CPU, float32).
        path: The exported file.
        image_size: Network input ``(H, W)`` the file was exported for.
        frames: Frames to stream.
        tolerance: Largest allowed ``max |eager - exported|`` over ``max |eager|``.

    Returns:
        The largest differences, absolute and relative to the eager outputs' scale.

    Raises:
        ExportError: A difference exceeds ``tolerance``.
    """
    run, info = load_exported(path)
    if tuple(info.image_size) != tuple(image_size) or frames < 1:
        raise ValueError(f"{path} was exported for {info.image_size} (H, W): check it there")
    batch = 2 if info.shapes["frame"][0] == "batch" else 1
    eager_state = model.init_state(batch, "cpu", image_size=tuple(image_size))
    exported_state = eager_state.clone()
    generator = torch.Generator().manual_seed(1)
    differences, scales = torch.zeros(2), torch.zeros(2)  # (depth, state): max |Δ|, max |eager|
    with _eval_mode(model), torch.jit.optimized_execution(False):
        for _ in range(frames):
            frame = torch.randn(batch, 3, *image_size, generator=generator)
            eager = model.step(frame, eager_state)
            exported = run(frame, exported_state)
            for i, (want, got) in enumerate(zip(eager, exported, strict=True)):
                if want.numel():
                    differences[i] = max(differences[i], (want - got).abs().max())
                    scales[i] = max(scales[i], want.abs().max())
            eager_state, exported_state = eager[1], exported[1]
    relative = torch.where(scales > 0, differences / scales, differences)
    result = ExportCheck(frames, *differences.tolist(), *relative.tolist())
    if relative.max() > tolerance:
        raise ExportError(
            f"{path} differs from the eager model (frames streamed: {frames}): max |Δ| depth "
            f"{result.depth_max_abs:.3g} ({result.depth_relative:.2g} relative), state "
            f"{result.state_max_abs:.3g} ({result.state_relative:.2g}); tolerance {tolerance:g}"
        )
    return result


def format_report(path: Path, info: ExportInfo, check: ExportCheck | None, seconds: float) -> str:
    """What ``flashdepth export`` prints: the file, the inputs and outputs, the check."""
    height, width = info.image_size
    lines = [
        f"wrote {path} ({info.format}, {path.stat().st_size / 2**20:.1f} MiB) in "
        f"{seconds:.1f} s: {info.model} at {height}x{width} (HxW)"
    ]
    for role, name in zip(("input ", "input ", "output", "output"), info.shapes, strict=True):
        lines.append(f"  {role} {name:<14} ({', '.join(map(str, info.shapes[name]))}) float32")
    if check is None:
        lines.append("  not checked against eager PyTorch (--no-check)")
    else:
        lines.append(
            f"  check, {check.frames} frames vs eager: max |Δ| inverse depth "
            f"{check.depth_max_abs:.2e} ({check.depth_relative:.1e} relative), state "
            f"{check.state_max_abs:.2e} ({check.state_relative:.1e} relative)"
        )
    return "\n".join(lines)


def main(args: list[str] | None = None) -> int:
    """Entry point of ``flashdepth export``.

    Args:
        args: Arguments after ``flashdepth export``; ``None`` reads ``sys.argv``.

    Returns:
        0 when written; 1 when the weights, a package or the check failed (reason on stderr).
    """
    from flashdepth.checkpoints import CheckpointError
    from flashdepth.models.registry import create_model, list_models

    parser = argparse.ArgumentParser(
        allow_abbrev=False,  # a renamed option must not silently match a longer one
        prog="flashdepth export",
        description="Export a model's streaming step (frame, state) -> (inverse_depth, "
        "next_state) at a fixed network input size; --check (default) compares it with eager "
        "PyTorch over 3 random frames on the CPU.",
    )
    parser.add_argument("model", help="preset name, e.g. flashdepth-s (flashdepth.list_models())")
    parser.add_argument("--weights", help="checkpoint file or registry name (default: random)")
    parser.add_argument(
        "--resolution", required=True, metavar="HxW", help="network input, e.g. 518x924 (16:9)"
    )
    parser.add_argument("--format", choices=FORMATS, default="onnx", help="default: onnx")
    parser.add_argument("--out", type=Path, required=True, help="the file to write")
    parser.add_argument("--check", action=argparse.BooleanOptionalAction, default=True)
    parsed = parser.parse_args(args)
    name = parsed.model
    if name not in list_models():
        parser.error(f"unknown model {name!r}; available: {', '.join(list_models())}")
    try:
        resolution = parse_resolution(parsed.resolution)
    except ValueError as error:
        parser.error(str(error))
    start = time.perf_counter()
    try:
        model = create_model(name, weights=parsed.weights)
        if parsed.weights is None:
            print(f"no --weights: exporting {name} with random initial weights")
        info, check = export(
            model, parsed.out, resolution, parsed.format, check=parsed.check, model_name=name
        )
    except (CheckpointError, FileNotFoundError, ExportError, ImportError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(format_report(parsed.out, info, check, time.perf_counter() - start))
    return 0
