"""Checkpoint import: official layouts load strictly, mismatches raise a listing error."""

from __future__ import annotations

import collections

import pytest
import torch

from flashdepth.checkpoints import (
    CheckpointError,
    CheckpointMismatchError,
    load_weights,
    resolve_weights,
)
from flashdepth.models.registry import create_model
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


def test_own_and_lightning_checkpoints_round_trip(tmp_path, flashdepth_s: torch.nn.Module) -> None:
    source = create_model("flashdepth-s-gru")
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
    target = create_model("flashdepth-s-gru")
    assert load_weights(target, path).layout == "flashdepth"
    for key, value in source.state_dict().items():
        torch.testing.assert_close(target.state_dict()[key], value)

    plain = tmp_path / "plain.pt"
    torch.save(source.state_dict(), plain)
    assert load_weights(create_model("flashdepth-s-gru"), plain).layout == "flashdepth"
    # a GRU checkpoint does not fit the Mamba preset
    with pytest.raises(CheckpointMismatchError, match="layout: flashdepth"):
        load_weights(flashdepth_s, plain)


class _Payload:
    pass


def test_pickled_objects_are_refused(tmp_path) -> None:
    path = tmp_path / "unsafe.pth"
    torch.save({"model": _Payload()}, path)
    with pytest.raises(CheckpointError, match="weights_only"):
        load_weights(create_model("depth-anything-v2-vits"), path)


def test_missing_file_and_unknown_name(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="checkpoints/README.md"):
        load_weights(create_model("depth-anything-v2-vits"), tmp_path / "nope.pth")
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
