"""FlashDepth Full and the low-resolution upsamplers.

Equivalences, teacher rule, gradients, streaming and the released key layout.
"""

from __future__ import annotations

import copy
from functools import partial

import pytest
import torch

from flashdepth import create_model
from flashdepth.checkpoints import CheckpointMismatchError, load_weights
from flashdepth.models.contract import StreamingDepthModel
from flashdepth.models.flashdepth import FlashDepth
from flashdepth.models.hybrid import FlashDepthHybrid, low_resolution_size
from flashdepth.temporal import MambaTemporal
from tests.official_layout import full_shapes, make_state_dict, release_shapes

H, W, T = 70, 126, 3
SMALL_MAMBA = partial(MambaTemporal, expand=4, headdim=32, d_state=16, chunk_size=8)


def randomise(module: torch.nn.Module, std: float = 0.3) -> None:
    """Give zero-initialised output layers weights, so every path matters."""
    with torch.no_grad():
        for p in module.parameters():
            if not p.any():
                p.normal_(0, std)


@pytest.fixture(scope="module")
def clip() -> torch.Tensor:
    return torch.randn(2, T, 3, H, W, generator=torch.Generator().manual_seed(3))


@pytest.fixture(scope="module")
def full() -> FlashDepthHybrid:
    """The released configuration (ViT-S student, ViT-L teacher), teacher input 42 px high."""
    torch.manual_seed(0)
    return create_model("flashdepth-full", teacher_resolution=42, temporal=SMALL_MAMBA).eval()


def test_untrained_hybrid_equals_flashdepth_s_and_a_trained_fusion_changes_it(
    full: FlashDepthHybrid, clip: torch.Tensor
) -> None:
    student = FlashDepth("vits", SMALL_MAMBA, stage=1).eval()
    student.load_state_dict(
        {k: v for k, v in full.state_dict().items() if not k.startswith(("teacher.", "fusion."))}
    )
    randomise(student.temporal_out)
    full.temporal_out.load_state_dict(student.temporal_out.state_dict())
    with torch.no_grad():
        expected = student(clip)
        assert expected.std() > 1e-3
        torch.testing.assert_close(full(clip), expected, atol=1e-6, rtol=0)
        state = full.init_state(2, image_size=(H, W))
        for t in range(T):
            depth, state = full.step(clip[:, t], state)
            torch.testing.assert_close(depth, expected[:, t], atol=1e-6, rtol=0)
        fused = copy.deepcopy(full)
        randomise(fused.fusion)
        assert (fused.eval()(clip) - expected).abs().max() > 1e-3


@pytest.mark.parametrize(
    ("name", "overrides"),
    [
        ("flashdepth-full", {}),
        ("flashdepth-l-unet", {"resolution": 42}),
        ("flashdepth-l-dagf", {"resolution": 42}),
    ],
)
def test_streaming_step_equals_the_clip_forward(
    name: str, overrides: dict, full: FlashDepthHybrid
) -> None:
    torch.manual_seed(1)
    if name == "flashdepth-full":
        model = copy.deepcopy(full)
    else:
        model = create_model(name, temporal=SMALL_MAMBA, **overrides).eval()
    randomise(model)  # zero-initialised fusion and temporal outputs become non-trivial
    assert isinstance(model, StreamingDepthModel)
    clip = torch.randn(1, T, 3, 56, 112)  # multiples of 14 and of 4 (UNet)
    with torch.no_grad():
        whole = model(clip)
        state = model.init_state(1, image_size=(56, 112))
        frames = []
        for t in range(T):
            depth, state = model.step(clip[:, t], state)
            frames.append(depth)
        alone, _ = model.step(clip[:, 2], model.init_state(1, image_size=(56, 112)))
    assert whole.shape == (1, T, 56, 112) and bool((whole >= 0).all())
    torch.testing.assert_close(torch.stack(frames, dim=1), whole, atol=1e-5, rtol=1e-5)
    assert (alone - whole[:, 2]).abs().max() > 1e-5  # the carried state matters


@pytest.mark.parametrize(
    ("height", "width", "expected"),
    [
        (1148, 2044, (490, 868)),  # released 2K: 62x35 teacher patches
        (1092, 1932, (490, 854)),
        (490, 868, (490, 868)),  # equal: kept
        (434, 1022, (434, 1022)),  # below: kept
        (2044, 1148, (490, 266)),  # portrait: the height rule still applies
        (4900, 14, (490, 14)),  # never narrower than one patch
    ],
)
def test_teacher_resize_rule(height: int, width: int, expected: tuple[int, int]) -> None:
    assert low_resolution_size(height, width, 490) == expected
    assert low_resolution_size(1148, 2044, 518) == (518, 910)


def test_the_teacher_sees_the_resized_frame_and_computes_only_path_4(
    full: FlashDepthHybrid, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = []
    layers = full.teacher.pretrained.get_intermediate_layers

    def record(frames: torch.Tensor, indices: list[int] | None = None) -> list[torch.Tensor]:
        seen.append((tuple(frames.shape[-2:]), indices))
        return layers(frames, indices)

    monkeypatch.setattr(full.teacher.pretrained, "get_intermediate_layers", record)
    for level in range(3):  # only the deepest map is reassembled
        monkeypatch.setattr(full.teacher.depth_head.projects[level], "forward", pytest.fail)
    with torch.no_grad():
        full(torch.randn(1, 1, 3, 70, 126))
        full(torch.randn(1, 1, 3, 42, 56))
    assert seen == [((42, 70), [23]), ((42, 56), [23])]


def test_gradients_reach_student_temporal_and_fusion_never_the_teacher(
    full: FlashDepthHybrid, clip: torch.Tensor
) -> None:
    model = copy.deepcopy(full)
    randomise(model.fusion)
    randomise(model.temporal_out)
    model.train()
    assert not model.teacher.training and model.fusion.training
    model(clip[:1, :2]).mean().backward()
    assert all(p.grad is None for p in model.teacher.parameters())
    assert not any(p.requires_grad for p in model.teacher.parameters())
    groups = model.parameter_groups()
    for group in ("vit", "dpt", "temporal", "fusion"):
        with_grad = [p for p in groups[group] if p.grad is not None and p.grad.abs().sum() > 0]
        assert with_grad, group
    unused = {id(p) for b in model.fusion.blocks[1:] for p in b.context_proj.parameters()}
    used = [p for p in groups["fusion"] if id(p) not in unused]
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in used)


def test_released_full_layout_loads_strictly_and_tampering_is_named() -> None:
    with torch.device("meta"):
        model = create_model("flashdepth-full")
    state = make_state_dict(full_shapes(), torch.empty, device="meta")
    model_keys = set(model.state_dict())
    report = load_weights(model, {"model": state})
    assert report.layout == "flashdepth-release" and report.loaded == len(model_keys) == 774
    tampered = dict(state)
    tampered["hybrid_fusion.blocks.0.4.norm1.weight"] = tampered.pop(
        "hybrid_fusion.blocks.0.3.norm1.weight"
    )
    tampered["teacher_model.depth_head.projects.0.weight"] = torch.empty(1, 2, device="meta")
    with pytest.raises(CheckpointMismatchError) as error:
        load_weights(model, {"model": tampered})
    assert error.value.missing == ["fusion.blocks.3.norm1.weight"]
    assert error.value.unexpected == ["fusion.blocks.4.norm1.weight"]
    assert error.value.mismatched == [
        ("teacher.depth_head.projects.0.weight", (1, 2), (256, 1024, 1, 1))
    ]


def test_stage_two_sources_fill_student_and_teacher(tmp_path) -> None:
    model = create_model("flashdepth-full")
    small = make_state_dict(release_shapes("vits"))
    large = make_state_dict(release_shapes("vitl"))
    torch.save({"model": small}, tmp_path / "s.pth")
    torch.save({"model": large}, tmp_path / "l.pth")
    fusion_before = {k: v.clone() for k, v in model.fusion.state_dict().items()}

    student = load_weights(model, tmp_path / "s.pth", part="student")
    teacher = load_weights(model, tmp_path / "l.pth", part="teacher")
    assert student.loaded == 239 - 1 + 66  # mask token dropped
    assert "fusion" in str(student) and "keep their initialisation" in str(student)
    assert teacher.loaded == 407 - 1 and len(teacher.unused) == 66
    assert "dropped 66 checkpoint tensors (temporal, temporal_out)" in str(teacher)
    own = model.state_dict()
    assert torch.equal(
        own["teacher.pretrained.blocks.23.attn.qkv.weight"],
        large["pretrained.blocks.23.attn.qkv.weight"],
    )
    assert torch.equal(
        own["pretrained.blocks.11.attn.qkv.weight"], small["pretrained.blocks.11.attn.qkv.weight"]
    )
    assert torch.equal(own["temporal_out.1.weight"], small["mamba.final_layer.1.weight"])
    for key, value in fusion_before.items():
        assert torch.equal(model.fusion.state_dict()[key], value)

    with pytest.raises(CheckpointMismatchError, match=r"assembled from parts \(student, teacher\)"):
        load_weights(model, tmp_path / "s.pth")
    with pytest.raises(CheckpointMismatchError, match="missing from the checkpoint"):
        load_weights(model, tmp_path / "s.pth", part="teacher")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"teacher_resolution": 500}, "multiple of 14"),
        ({"num_blocks": 2, "fusion": partial(torch.nn.Identity)}, "num_blocks configures"),
    ],
)
def test_hybrid_configuration_errors(kwargs: dict, message: str) -> None:
    with torch.device("meta"), pytest.raises(ValueError, match=message):
        FlashDepthHybrid(**kwargs)
