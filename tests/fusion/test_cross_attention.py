"""CrossAttentionFusion: checkpoint layout, identity at init, the attention equations."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from flashdepth.fusion.base import FusionInputs
from flashdepth.fusion.cross_attention import CrossAttentionFusion

DIM, CONTEXT_DIM, HEAD_DIM = 64, 256, 32
#: Shapes of one block's tensors in the released FlashDepth Full checkpoint, in its order.
BLOCK_SHAPES = {
    "norm1.weight": (64,),
    "norm1.bias": (64,),
    "attention.q.weight": (64, 64),
    "attention.kv.weight": (128, 64),
    "attention.proj.weight": (64, 64),
    "attention.proj.bias": (64,),
    "context_norm.weight": (64,),
    "context_norm.bias": (64,),
    "norm2.weight": (64,),
    "norm2.bias": (64,),
    "mlp.0.weight": (128, 64),
    "mlp.0.bias": (128,),
    "mlp.2.weight": (64, 128),
    "mlp.2.bias": (64,),
    "context_proj.weight": (64, 256),
    "context_proj.bias": (64,),
}


def make_inputs(batch: int = 2) -> FusionInputs:
    """A student path_4 on a 6x8 grid and a teacher path_4 on a 3x4 grid."""
    return FusionInputs(
        frame=torch.randn(batch, 3, 84, 112),
        context=torch.randn(batch, CONTEXT_DIM, 3, 4),
        path_4=torch.randn(batch, DIM, 6, 8),
    )


def randomise(module: nn.Module) -> nn.Module:
    """Move every weight off its initial value (zero-initialised layers included)."""
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return module


def layer_norm(x: Tensor, norm: nn.LayerNorm) -> Tensor:
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + norm.eps) * norm.weight + norm.bias


def reference_fusion(fusion: CrossAttentionFusion, inputs: FusionInputs) -> Tensor:
    """The fusion written out with explicit per-head softmax(q k^T / sqrt(32)) v."""
    n, c, h, w = inputs.path_4.shape
    x = inputs.path_4.permute(0, 2, 3, 1).reshape(n, h * w, c)
    context = inputs.context.permute(0, 2, 3, 1).reshape(n, -1, CONTEXT_DIM)
    first = fusion.blocks[0].context_proj
    context = context @ first.weight.T + first.bias
    for block in fusion.blocks:
        attention = block.attention
        queries = layer_norm(x, block.norm1) @ attention.q.weight.T
        normed = layer_norm(context, block.context_norm)
        keys = normed @ attention.kv.weight[:c].T
        values = normed @ attention.kv.weight[c:].T
        heads = []
        for head in range(c // HEAD_DIM):
            cols = slice(head * HEAD_DIM, (head + 1) * HEAD_DIM)
            scores = queries[..., cols] @ keys[..., cols].transpose(1, 2) / HEAD_DIM**0.5
            weights = torch.exp(scores - scores.amax(-1, keepdim=True))
            weights = weights / weights.sum(-1, keepdim=True)
            heads.append(weights @ values[..., cols])
        x = x + torch.cat(heads, -1) @ attention.proj.weight.T + attention.proj.bias
        hidden = F.gelu(layer_norm(x, block.norm2) @ block.mlp[0].weight.T + block.mlp[0].bias)
        x = x + hidden @ block.mlp[2].weight.T + block.mlp[2].bias
    return x.reshape(n, h, w, c).permute(0, 3, 1, 2)


def test_checkpoint_layout_and_parameter_counts() -> None:
    fusion = CrossAttentionFusion()
    assert fusion.produces == "path_4"
    state = fusion.state_dict()
    expected = {f"blocks.{i}.{k}": shape for i in range(4) for k, shape in BLOCK_SHAPES.items()}
    assert list(state) == list(expected)
    assert {k: tuple(v.shape) for k, v in state.items()} == expected
    assert len(fusion.blocks) == 4 and len(fusion.blocks[0].state_dict()) == 16
    assert sum(p.numel() for p in fusion.blocks[0].parameters()) == 49_856
    assert sum(p.numel() for p in fusion.parameters()) == 199_424
    paper = CrossAttentionFusion(num_blocks=2)
    assert sum(p.numel() for p in paper.parameters()) == 2 * 49_856


def test_released_state_dict_loads_strictly() -> None:
    released = {
        f"hybrid_fusion.blocks.0.{i}.{k}": torch.randn(s)
        for i in range(4)
        for k, s in BLOCK_SHAPES.items()
    }
    own = {k.removeprefix("hybrid_fusion.blocks.0."): v for k, v in released.items()}
    fusion = CrossAttentionFusion()
    fusion.load_state_dict({f"blocks.{k}": v for k, v in own.items()})
    torch.testing.assert_close(fusion.blocks[3].attention.kv.weight, own["3.attention.kv.weight"])


def test_untrained_fusion_returns_path_4_exactly() -> None:
    fusion = CrossAttentionFusion()
    inputs = make_inputs()
    out = fusion(inputs)
    assert out.shape == (2, DIM, 6, 8)
    assert torch.equal(out, inputs.path_4)
    for block in fusion.blocks:
        for zero in (block.attention.proj, block.mlp[2]):
            assert not zero.weight.any() and not zero.bias.any()


def test_nonzero_attention_projection_changes_the_output() -> None:
    fusion = CrossAttentionFusion()
    with torch.no_grad():
        fusion.blocks[2].attention.proj.weight.normal_(0, 0.1)
    inputs = make_inputs()
    out = fusion(inputs)
    assert (out - inputs.path_4).abs().amax() > 1e-3
    other = FusionInputs(inputs.frame, torch.randn_like(inputs.context), path_4=inputs.path_4)
    assert (fusion(other) - out).abs().amax() > 1e-3  # the teacher's features now matter


def test_matches_reference_attention_on_random_weights() -> None:
    # float64: random weights give outputs of size ~30, where float32 rounding alone is ~3e-5
    fusion = randomise(CrossAttentionFusion()).double()
    inputs = make_inputs()
    inputs = FusionInputs(inputs.frame, inputs.context.double(), path_4=inputs.path_4.double())
    torch.testing.assert_close(fusion(inputs), reference_fusion(fusion, inputs), atol=1e-5, rtol=0)


def test_samples_of_a_batch_are_independent() -> None:
    fusion = randomise(CrossAttentionFusion(num_blocks=2))
    inputs = make_inputs(batch=3)
    batched = fusion(inputs)
    for i in range(3):
        single = FusionInputs(
            inputs.frame[i : i + 1], inputs.context[i : i + 1], path_4=inputs.path_4[i : i + 1]
        )
        torch.testing.assert_close(batched[i : i + 1], fusion(single), atol=1e-5, rtol=1e-5)


def test_gradients_reach_every_used_parameter_and_skip_unused_projections() -> None:
    fusion = randomise(CrossAttentionFusion())
    fusion(make_inputs()).square().mean().backward()
    for name, p in fusion.named_parameters():
        if name.startswith("blocks.0.") or ".context_proj." not in name:
            assert p.grad is not None and p.grad.abs().amax() > 0, name
        else:
            assert p.grad is None, f"{name} belongs to an unused context_proj"


def test_zero_initialised_layers_get_gradient_at_init() -> None:
    fusion = CrossAttentionFusion()
    fusion(make_inputs()).square().mean().backward()
    for block in fusion.blocks:
        assert block.attention.proj.weight.grad.abs().amax() > 0
        assert block.mlp[2].weight.grad.abs().amax() > 0


def test_input_validation_names_the_shape() -> None:
    fusion = CrossAttentionFusion()
    inputs = make_inputs()
    with pytest.raises(ValueError, match=r"path_4.*\(N, 64, h, w\).*got None"):
        fusion(FusionInputs(inputs.frame, inputs.context))
    with pytest.raises(ValueError, match=r"\(N, 64, h, w\).*got \(2, 48, 6, 8\)"):
        fusion(FusionInputs(inputs.frame, inputs.context, path_4=torch.randn(2, 48, 6, 8)))
    with pytest.raises(ValueError, match=r"\(N, 256, h', w'\).*got \(2, 128, 3, 4\)"):
        fusion(FusionInputs(inputs.frame, torch.randn(2, 128, 3, 4), path_4=inputs.path_4))
    with pytest.raises(ValueError, match="num_heads=3 must divide dim=64"):
        CrossAttentionFusion(num_heads=3)
    with pytest.raises(ValueError, match="num_blocks >= 1"):
        CrossAttentionFusion(num_blocks=0)


def test_compiled_fullgraph_matches_eager() -> None:
    fusion = randomise(CrossAttentionFusion(num_blocks=2))
    inputs = make_inputs()
    compiled = torch.compile(fusion, fullgraph=True, backend="aot_eager", dynamic=False)
    torch.testing.assert_close(compiled(inputs), fusion(inputs), atol=1e-6, rtol=1e-6)
