"""Checkpoint import: official layouts, mismatch listings, non-checkpoints, the registry.

Official layouts load strictly, mismatches raise a listing error, files that are not
checkpoints are named as such, and the packaged registry resolves names.
"""

from __future__ import annotations

import collections
import hashlib
import inspect
import io
import os
import pickle
import random
import zipfile
from pathlib import Path

import pytest
import torch

import flashdepth.checkpoints
from flashdepth.checkpoints import (
    CheckpointError,
    CheckpointMismatchError,
    load_weights,
    read_checkpoint,
    registry,
    resolve_weights,
    weights_dirs,
)
from flashdepth.cli import build_cli
from flashdepth.models.registry import create_model
from flashdepth.task import FlashDepthTask
from tests.cli_overrides import tiny_preset
from tests.official_layout import dav2_shapes, make_state_dict, release_shapes


@pytest.fixture(scope="module")
def flashdepth_s() -> torch.nn.Module:
    return create_model("flashdepth-s")


def test_release_s_layout_loads_strictly_with_values(flashdepth_s: torch.nn.Module) -> None:
    state = make_state_dict(release_shapes("vits"))
    report = load_weights(flashdepth_s, {"model": state, "step": torch.tensor(14001)})
    assert report.layout == "flashdepth-release"
    assert report.loaded == len(state) - 1  # all but the unused mask_token
    own = flashdepth_s.state_dict()
    torch.testing.assert_close(
        own["temporal.blocks.2.mamba.A_log"], state["mamba.blocks.0.2.mamba.A_log"]
    )
    torch.testing.assert_close(own["temporal_out.1.weight"], state["mamba.final_layer.1.weight"])
    torch.testing.assert_close(
        own["pretrained.blocks.11.ls2.gamma"], state["pretrained.blocks.11.ls2.gamma"]
    )
    torch.testing.assert_close(
        own["depth_head.scratch.refinenet4.resConfUnit1.conv1.weight"],
        state["depth_head.scratch.refinenet4.resConfUnit1.conv1.weight"],
    )


def test_release_l_layout_loads_strictly() -> None:
    with torch.device("meta"):
        model = create_model("flashdepth-l")
        state = make_state_dict(release_shapes("vitl"), torch.empty)
    wrapped = {"model": {f"module.{k}": v for k, v in state.items()}}  # saved from DDP
    report = load_weights(model, wrapped)
    assert report.layout == "flashdepth-release"
    assert report.loaded == len(state) - 1


@pytest.mark.parametrize("encoder", ["vitb", "vitg"])
def test_dav2_layout_of_big_encoders_loads(encoder: str) -> None:
    with torch.device("meta"):
        model = create_model(f"depth-anything-v2-{encoder}")
        state = make_state_dict(dav2_shapes(encoder), torch.empty)
    assert load_weights(model, state).layout == "dav2"


def test_dav2_into_flashdepth_keeps_temporal_and_reproduces_dav2() -> None:
    state = make_state_dict(dav2_shapes("vits"))
    state = {k: v * 0.02 if v.ndim > 1 else v for k, v in state.items()}  # keep activations sane
    dav2 = create_model("depth-anything-v2-vits").eval()
    flash = create_model("flashdepth-s").eval()
    assert load_weights(dav2, state).kept_initialisation == []
    report = load_weights(flash, state)
    assert report.layout == "dav2"
    temporal_keys = [k for k in flash.state_dict() if k.startswith(("temporal.", "temporal_out."))]
    assert sorted(report.kept_initialisation) == sorted(temporal_keys)
    assert "(temporal, temporal_out) are not in the checkpoint" in str(report)
    clip = torch.randn(1, 2, 3, 42, 56)
    with torch.no_grad():
        expected = torch.stack([dav2(clip[:, t]) for t in range(2)], dim=1)
        torch.testing.assert_close(flash(clip), expected, atol=1e-6, rtol=0)


def test_tampered_release_dict_raises_listing_error(flashdepth_s: torch.nn.Module) -> None:
    state = make_state_dict(release_shapes("vits"))
    del state["mamba.blocks.0.1.mamba.D"]
    state["mamba.blocks.0.1.extra.weight"] = torch.zeros(3)
    state["depth_head.projects.0.weight"] = torch.zeros(49, 384, 1, 1)
    with pytest.raises(CheckpointMismatchError) as caught:
        load_weights(flashdepth_s, {"model": state})
    error = caught.value
    assert error.layout == "flashdepth-release"
    assert error.missing == ["temporal.blocks.1.mamba.D"]
    assert error.unexpected == ["temporal.blocks.1.extra.weight"]
    assert error.mismatched == [("depth_head.projects.0.weight", (49, 384, 1, 1), (48, 384, 1, 1))]
    text = str(error)
    for fragment in ("flashdepth-release", "1 missing", "1 unexpected", "1 shape mismatch"):
        assert fragment in text


def test_wrong_preset_is_reported(flashdepth_s: torch.nn.Module) -> None:
    with torch.device("meta"):
        state = make_state_dict(dav2_shapes("vitl"), torch.empty)
    with pytest.raises(CheckpointMismatchError, match="detected layout: dav2") as caught:
        load_weights(flashdepth_s, state)
    assert len(caught.value.unexpected) > 0 and len(caught.value.mismatched) > 0


def test_non_strict_loads_what_fits(flashdepth_s: torch.nn.Module) -> None:
    state = make_state_dict(release_shapes("vits"))
    state["mamba.blocks.0.0.extra"] = torch.zeros(1)
    report = load_weights(flashdepth_s, {"model": state}, strict=False)
    assert report.ignored == ["temporal.blocks.0.extra"]


def test_own_and_lightning_checkpoints_round_trip(tmp_path) -> None:
    """Our own layouts, plain and Lightning's, at the tiny test size (no official layout here)."""
    source = tiny_preset("flashdepth-s-gru")
    with torch.no_grad():
        for p in source.parameters():
            p.add_(torch.randn_like(p))
    ckpt = {
        "state_dict": collections.OrderedDict(
            ("model." + k, v) for k, v in source.state_dict().items()
        ),
        "pytorch-lightning_version": "2.6.6",
        "global_step": 3,
    }
    path = tmp_path / "last.ckpt"
    torch.save(ckpt, path)
    target = tiny_preset("flashdepth-s-gru")
    assert load_weights(target, path).layout == "flashdepth"
    for key, value in source.state_dict().items():
        torch.testing.assert_close(target.state_dict()[key], value)

    plain = tmp_path / "plain.pt"
    torch.save(source.state_dict(), plain)
    assert load_weights(tiny_preset("flashdepth-s-gru"), plain).layout == "flashdepth"
    # a GRU checkpoint does not fit the Mamba preset
    with pytest.raises(CheckpointMismatchError, match="layout: flashdepth"):
        load_weights(tiny_preset("flashdepth-s"), plain)


class _Payload:
    pass


def test_pickled_objects_are_refused(tmp_path) -> None:
    path = tmp_path / "unsafe.pth"
    torch.save({"model": _Payload()}, path)
    with pytest.raises(CheckpointError) as caught:
        load_weights(tiny_preset("depth-anything-v2-vits"), path)
    text = str(caught.value)
    assert text.startswith(f"{path} is a PyTorch checkpoint that holds Python objects ")
    assert "(e.g. tests.test_checkpoints._Payload)" in text
    assert text.endswith("torch.save(model.state_dict(), path)")
    assert "weights_only=False" not in text and "not a PyTorch checkpoint" not in text


def test_missing_file_and_unknown_name(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="checkpoints/README.md"):
        load_weights(tiny_preset("depth-anything-v2-vits"), tmp_path / "nope.pth")
    with pytest.raises(FileNotFoundError, match="registry names"):
        resolve_weights("no-such-weights")


def test_registry_name_resolves_from_weights_dir(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("FLASHDEPTH_WEIGHTS", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="huggingface.co/depth-anything"):
        resolve_weights("depth-anything-v2-vits")
    torch.save(make_state_dict(dav2_shapes("vits")), tmp_path / "depth_anything_v2_vits.pth")
    assert resolve_weights("depth-anything-v2-vits") == tmp_path / "depth_anything_v2_vits.pth"
    model = create_model("depth-anything-v2-vits", weights="depth-anything-v2-vits")
    assert not model.training


def _torch_saved(obj: object, zip_format: bool = True) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer, _use_new_zipfile_serialization=zip_format)
    return buffer.getvalue()


def _cut_in_half(data: bytes) -> bytes:
    return data[: len(data) // 2]


LEGACY = _torch_saved({"w": torch.ones(64, 64)}, zip_format=False)
ZIPPED = _torch_saved({"w": torch.ones(64, 64)})


NOT_CHECKPOINTS = {  # name -> (bytes of the file, what the message says the file is)
    "random": (random.Random(0).randbytes(4096), "unrecognised data starting with bytes "),
    "text": (b"<!DOCTYPE html>\n<html>404 Not Found</html>\n", "a text file starting with "),
    "truncated-zip": (_cut_in_half(ZIPPED), "a truncated or damaged zip archive"),
    "truncated-legacy": (
        _cut_in_half(LEGACY),
        "a damaged file in torch's legacy format; torch.load fails with",
    ),
    "empty": (b"", "the file is empty"),
    "plain-pickle": (pickle.dumps({"w": [1.0, 2.0]}), "a Python pickle that torch.save did not"),
    # weights_only refuses a cut or altered global name: damage, not Python objects
    "legacy-cut-in-a-global": (
        LEGACY[: LEGACY.index(b"_rebuild_tensor")],
        "a damaged file in torch's legacy format: its pickle ends early or is corrupt",
    ),
    "zip-with-altered-pickle": (
        ZIPPED.replace(b"OrderedDict", b"OrderedDicX"),
        "a damaged zip archive: its pickle ends early or is corrupt",
    ),
}


@pytest.mark.parametrize("case", sorted(NOT_CHECKPOINTS))
def test_a_file_that_is_not_a_checkpoint_is_named(tmp_path: Path, case: str) -> None:
    data, what = NOT_CHECKPOINTS[case]
    path = tmp_path / "weights.pth"
    path.write_bytes(data)
    with pytest.raises(CheckpointError) as caught:
        read_checkpoint(path)
    text = str(caught.value)
    assert text.startswith(f"{path} is not a PyTorch checkpoint ({what}")
    assert (
        f"Download it again, or save it again with torch.save; where its source publishes "
        f"a sha256, compare it with the file's (sha256sum {path})." in text
    )
    assert "weights_only=False" not in text and "Python objects" not in text


def test_text_and_random_files_show_their_start(tmp_path: Path) -> None:
    page = tmp_path / "page.pth"
    page.write_bytes(NOT_CHECKPOINTS["text"][0])
    with pytest.raises(CheckpointError, match=r"\(a text file starting with '<!DOCTYPE html>'\)"):
        read_checkpoint(page)
    noise = tmp_path / "noise.pth"
    noise.write_bytes(NOT_CHECKPOINTS["random"][0])
    first = NOT_CHECKPOINTS["random"][0][:8].hex(" ")
    with pytest.raises(CheckpointError, match=f"starting with bytes {first}\\)"):
        read_checkpoint(noise)


def test_a_broken_registry_file_names_its_entry_and_sha256(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "depth_anything_v2_vits.pth"
    path.write_bytes(NOT_CHECKPOINTS["truncated-zip"][0])
    with pytest.raises(CheckpointError) as caught:
        read_checkpoint(path)
    assert str(caught.value).endswith(
        "It is the file of the registry entry 'depth-anything-v2-vits': download it again from "
        "https://huggingface.co/depth-anything/Depth-Anything-V2-Small/resolve/main/"
        "depth_anything_v2_vits.pth (compare its sha256 with the one that page shows)."
    )
    entries = registry()
    entries["depth-anything-v2-vits"]["sha256"] = "ab" * 32
    monkeypatch.setattr(flashdepth.checkpoints, "registry", lambda: entries)
    with pytest.raises(CheckpointError) as caught:
        read_checkpoint(path)
    actual = hashlib.sha256(path.read_bytes()).hexdigest()
    assert f"(the registry's sha256 is {'ab' * 32}, this file's is {actual})." in str(caught.value)


def test_both_torch_formats_load_and_mmap_reads_the_same(tmp_path: Path) -> None:
    state = {"w": torch.arange(12.0).reshape(3, 4), "step": torch.tensor(7)}
    for zip_format in (True, False):
        path = tmp_path / f"zip_{zip_format}.pth"
        path.write_bytes(_torch_saved(state, zip_format))
        for mmap in (False, True):
            loaded = read_checkpoint(path, mmap=mmap)
            assert loaded.keys() == state.keys()
            torch.testing.assert_close(loaded["w"], state["w"])
            assert int(loaded["step"]) == 7


def test_a_zip_that_torch_did_not_write_is_not_a_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "archive.pth"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "weights are elsewhere")
    with pytest.raises(CheckpointError, match="zip archive without the data.pkl"):
        read_checkpoint(path)


def test_mismatch_advice_names_only_options_that_exist(tmp_path: Path, capsys) -> None:
    with torch.device("meta"):
        model = create_model("depth-anything-v2-vits")
    with pytest.raises(CheckpointMismatchError) as caught:
        load_weights(model, {"extra.weight": torch.zeros(1)})
    advice = str(caught.value).splitlines()[-1]
    for option in (
        "create_model(name, weights=..., strict=False)",
        "load_weights(model, source, strict=False)",
        "`strict_weights: false` in the task's init_args",
        "--model.strict_weights false",
    ):
        assert option in advice
    assert "strict" in inspect.signature(create_model).parameters
    assert "strict" in inspect.signature(load_weights).parameters
    assert inspect.signature(FlashDepthTask).parameters["strict_weights"].default is True
    recipe = str(Path(__file__).resolve().parent.parent / "recipes" / "quickstart.yaml")
    with pytest.raises(SystemExit) as exit_info:
        build_cli(["fit", "-c", recipe, "--model.strict_weights", "false", "--print_config"])
    assert exit_info.value.code in (0, None)
    assert "strict_weights: false" in capsys.readouterr().out


def test_weights_dirs_search_order_ends_in_the_user_cache(tmp_path: Path, monkeypatch) -> None:
    first, second, work = tmp_path / "a", tmp_path / "b", tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("FLASHDEPTH_WEIGHTS", f"{first}{os.pathsep}{second}")
    monkeypatch.setenv("FLASHDEPTH_CACHE", str(tmp_path / "cache"))
    assert weights_dirs() == [first, second, work / "checkpoints", tmp_path / "cache" / "weights"]
    monkeypatch.delenv("FLASHDEPTH_WEIGHTS")
    monkeypatch.delenv("FLASHDEPTH_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    cache = tmp_path / "home" / ".cache" / "flashdepth" / "weights"
    assert weights_dirs() == [work / "checkpoints", cache]

    name, file = "depth-anything-v2-vitb", "depth_anything_v2_vitb.pth"
    cache.mkdir(parents=True)
    (cache / file).write_bytes(b"cached")
    assert resolve_weights(name) == cache / file
    (work / "checkpoints").mkdir()
    (work / "checkpoints" / file).write_bytes(b"local")
    assert resolve_weights(name) == work / "checkpoints" / file


def test_registry_ships_inside_the_package() -> None:
    packaged = Path(flashdepth.checkpoints.__file__).parent / "weights_registry.json"
    assert packaged.is_file()
    entries = registry()
    assert sorted(entries) == [
        "depth-anything-v2-vitb",
        "depth-anything-v2-vitl",
        "depth-anything-v2-vits",
        "flashdepth-full",
        "flashdepth-l",
        "flashdepth-s",
    ]
    files = [entry["file"] for entry in entries.values()]
    assert len(set(files)) == len(files)
    for entry in entries.values():
        assert entry["url"].startswith("https://huggingface.co/")
        assert entry["sha256"] is None or len(entry["sha256"]) == 64
