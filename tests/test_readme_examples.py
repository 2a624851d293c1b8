"""The README's Python example under "## Models" runs as written and does what it says.

Weights cannot be downloaded here, so ``create_model`` is patched to build the same preset at the
tiny test size (``tests.cli_overrides.tiny_preset_overrides``) with random weights; everything else
(preprocessing, streaming, saving, the clip form) is the README's code, read from the README
itself, so an edit that breaks the example fails this test.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from flashdepth.models import registry
from tests.cli_overrides import tiny_preset_overrides

README = Path(__file__).resolve().parent.parent / "README.md"


def models_example() -> str:
    """The first ``python`` block of the README's "## Models" section."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("\n## Models\n") :]
    match = re.search(r"```python\n(.*?)```", section, flags=re.DOTALL)
    assert match is not None, "README: no python block under '## Models'"
    return match.group(1)


def test_the_models_example_streams_saves_frames_and_runs_a_clip_without_a_graph(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    build = registry.create_model

    def random_weights(name: str, weights: Any = None, **overrides: Any) -> torch.nn.Module:
        assert weights == "flashdepth-s"  # the example names the released weights
        return build(name, **tiny_preset_overrides(name), **overrides)

    # flashdepth.create_model is looked up in the registry on every access
    monkeypatch.setattr(registry, "create_model", random_weights)
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (45, 60, 3), dtype=np.uint8) for _ in range(2)]
    namespace: dict[str, Any] = {"frames": frames}
    exec(compile(models_example(), str(README), "exec"), namespace)

    for index in range(2):
        depth = np.load(tmp_path / f"depth_{index:05d}.npy")
        assert depth.shape == (45, 60) and depth.dtype == np.float32  # the frame's own size
        assert np.isfinite(depth).all() and (depth >= 0).all()
        picture = Image.open(tmp_path / f"depth_{index:05d}.png")
        assert picture.mode == "RGB" and picture.size == (60, 45)
    clip_depth = namespace["clip_depth"]
    assert tuple(clip_depth.shape) == (1, 5, 266, 476)
    assert not clip_depth.requires_grad  # built inside inference_mode: no training graph
