"""The FusionModule contract, checked on every fusion strategy of the zoo.

Every subclass of :class:`FusionModule` that the package defines is collected
automatically, so a new strategy is tested as soon as it exists.
"""

from __future__ import annotations

import pytest
import torch

import flashdepth.fusion  # noqa: F401  (imports every strategy)
from flashdepth.fusion.base import FusionInputs, FusionModule

STRATEGIES = sorted(FusionModule.__subclasses__(), key=lambda cls: cls.__name__)
N, H, W, CONTEXT = 2, 32, 48, 8  # frames; full resolution (multiple of 16 and 14 not needed)
PATCH = (4, 6)  # the student's path_4 grid
DIM = {"path_4": 16, "depth": 1}


def test_every_strategy_is_collected() -> None:
    names = {cls.__name__ for cls in STRATEGIES}
    assert {"CrossAttentionFusion", "UNetUpsampler", "DAGFUpsampler"} <= names


def build(cls: type[FusionModule]) -> FusionModule:
    """Through the factory interface ``cls(dim, context_dim)``, with non-trivial weights."""
    module = cls(DIM[cls.produces], CONTEXT)
    with torch.no_grad():
        for p in module.parameters():
            if not p.any():  # open zero-initialised outputs and gates
                p.normal_(0, 0.2)
    return module.eval()


def inputs(seed: int = 0, batch: int = N) -> FusionInputs:
    g = torch.Generator().manual_seed(seed)
    return FusionInputs(
        frame=torch.randn(batch, 3, H, W, generator=g),
        context=torch.randn(batch, CONTEXT, 5, 7, generator=g),
        low_res_depth=torch.rand(batch, 12, 18, generator=g) * 50 + 1,
        path_4=torch.randn(batch, DIM["path_4"], *PATCH, generator=g),
    )


@pytest.fixture(params=STRATEGIES, ids=lambda cls: cls.__name__)
def strategy(request: pytest.FixtureRequest) -> type[FusionModule]:
    return request.param


def test_output_shape_follows_what_it_produces(strategy: type[FusionModule]) -> None:
    module = build(strategy)
    assert strategy.produces in ("path_4", "depth")
    assert (module.dim, module.context_dim) == (DIM[strategy.produces], CONTEXT)
    with torch.no_grad():
        out = module(inputs())
    if strategy.produces == "path_4":
        assert out.shape == (N, DIM["path_4"], *PATCH)
    else:
        assert out.shape == (N, H, W) and bool((out >= 0).all())
    assert torch.isfinite(out).all()


def test_frames_of_a_batch_are_independent(strategy: type[FusionModule]) -> None:
    module = build(strategy)
    both = inputs(1)
    with torch.no_grad():
        together = module(both)
        for i in range(N):
            alone = FusionInputs(
                *(None if v is None else v[i : i + 1] for v in vars(both).values())
            )
            torch.testing.assert_close(module(alone)[0], together[i], atol=1e-5, rtol=1e-5)


def test_gradients_reach_the_parameters(strategy: type[FusionModule]) -> None:
    module = build(strategy).train()
    module(inputs(2)).square().mean().backward()
    with_grad = [p for p in module.parameters() if p.grad is not None and p.grad.abs().sum() > 0]
    assert len(with_grad) >= 0.9 * len(list(module.parameters()))


def test_compiled_forward_equals_eager(strategy: type[FusionModule]) -> None:
    module = build(strategy)
    data = inputs(3)
    with torch.no_grad():
        eager = module(data)
        compiled = torch.compile(module, fullgraph=True, backend="aot_eager", dynamic=False)(data)
    torch.testing.assert_close(compiled, eager, atol=1e-5, rtol=1e-5)
