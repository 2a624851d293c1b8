"""Cross-attention fusion of FlashDepth Full: the student's path_4 attends to the teacher's.

The full-resolution student (FlashDepth-S, DPT width 64) and the low-resolution teacher
(ViT-L + DPT-L, width 256) each produce a DPT ``path_4`` at their own patch grid. Both
are flattened row-major into tokens, without positional embedding; the student's tokens
are the queries, the teacher's the keys and values. The teacher's tokens are projected to
the student's width once, by block 0's ``context_proj``, and every block then applies::

    x = x + proj(attention(q(norm1 x), kv(context_norm context)))
    x = x + mlp(norm2 x)

``attention.proj`` and the last MLP layer start at zero, so an untrained fusion returns
the student's path_4 unchanged. Attribute names are the released checkpoint's keys
(``hybrid_fusion.blocks.0.{i}.*`` there, ``blocks.{i}.*`` here): 16 tensors a block.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from flashdepth.fusion.base import FusionInputs, FusionModule


class CrossAttention(nn.Module):
    """Multi-head attention of query tokens to context tokens of the same width.

    Args:
        dim: Channels of the queries and of the (already projected) context.
        num_heads: Heads; each has ``dim / num_heads`` channels.
    """

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.q = nn.Linear(dim, dim, bias=False)
        # Output rows 0..dim-1 are the keys, rows dim..2*dim-1 the values.
        self.kv = nn.Linear(dim, 2 * dim, bias=False)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, context: Tensor) -> Tensor:
        """Queries ``(N, L, dim)`` attend to ``context`` ``(N, M, dim)``; ``(N, L, dim)`` out."""
        # (N, L, dim) -> (N, L, heads, head_dim) -> (N, heads, L, head_dim)
        q = self.q(x).unflatten(-1, (self.num_heads, self.head_dim)).transpose(1, 2)
        # (N, M, 2*dim) -> (N, M, 2, heads, head_dim) -> (2, N, heads, M, head_dim)
        kv = self.kv(context).unflatten(-1, (2, self.num_heads, self.head_dim))
        k, v = kv.permute(2, 0, 3, 1, 4).unbind(0)
        attended = F.scaled_dot_product_attention(q, k, v, scale=self.head_dim**-0.5)
        # (N, heads, L, head_dim) -> (N, L, heads, head_dim) -> (N, L, dim)
        return self.proj(attended.transpose(1, 2).flatten(2))


class CrossAttentionBlock(nn.Module):
    """One pre-norm block: cross-attention to the context, then an MLP, both residual.

    Args:
        dim: Channels of the query tokens.
        context_dim: Channels of the context before ``context_proj``.
        num_heads: Attention heads.
        mlp_ratio: Hidden width of the MLP relative to ``dim``.
    """

    def __init__(self, dim: int, context_dim: int, num_heads: int, mlp_ratio: float) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim)
        self.attention = CrossAttention(dim, num_heads)
        self.context_norm = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        # Only block 0's projection is applied (see CrossAttentionFusion); every block owns
        # one because the released checkpoint holds one per block.
        self.context_proj = nn.Linear(context_dim, dim)
        for last in (self.attention.proj, self.mlp[2]):
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)

    def forward(self, x: Tensor, context: Tensor) -> Tensor:
        """Refine ``x`` ``(N, L, dim)`` with the projected ``context`` ``(N, M, dim)``."""
        x = x + self.attention(self.norm1(x), self.context_norm(context))
        return x + self.mlp(self.norm2(x))


class CrossAttentionFusion(FusionModule):
    """Refines the student's path_4 by cross-attention to the teacher's path_4.

    The context is projected to ``dim`` once, by ``blocks[0].context_proj``; the
    ``context_proj`` of blocks 1 and later exist only so the released checkpoint loads
    strictly, are never applied and receive no gradient.

    Args:
        dim: Channels of the student's path_4 (its DPT width; 64 for ViT-S).
        context_dim: Channels of the teacher's path_4 (256 for ViT-L).
        num_blocks: Fusion blocks (released 4, paper 2).
        num_heads: Attention heads; must divide ``dim``.
        mlp_ratio: Hidden width of each block's MLP relative to ``dim``.
    """

    produces = "path_4"

    def __init__(
        self,
        dim: int = 64,
        context_dim: int = 256,
        num_blocks: int = 4,
        num_heads: int = 2,
        mlp_ratio: float = 2.0,
    ) -> None:
        super().__init__(dim, context_dim)
        if num_blocks < 1:
            raise ValueError(f"CrossAttentionFusion needs num_blocks >= 1, got {num_blocks}")
        if num_heads < 1 or dim % num_heads != 0:
            raise ValueError(
                f"num_heads={num_heads} must divide dim={dim}; choose a divisor of {dim} "
                "(the released model uses 2 heads of 32 channels)"
            )
        self.blocks = nn.ModuleList(
            CrossAttentionBlock(dim, context_dim, num_heads, mlp_ratio) for _ in range(num_blocks)
        )

    def forward(self, inputs: FusionInputs) -> Tensor:
        """Refine ``inputs.path_4`` ``(N, dim, h, w)`` with ``inputs.context``; same shape out."""
        path_4, context = inputs.path_4, inputs.context
        if path_4 is None or path_4.dim() != 4 or path_4.shape[1] != self.dim:
            shape = None if path_4 is None else tuple(path_4.shape)
            raise ValueError(
                f"CrossAttentionFusion(dim={self.dim}) needs the student's path_4 as "
                f"(N, {self.dim}, h, w) in FusionInputs.path_4, got {shape}"
            )
        if context.dim() != 4 or context.shape[:2] != (path_4.shape[0], self.context_dim):
            raise ValueError(
                f"CrossAttentionFusion(context_dim={self.context_dim}) needs the teacher's "
                f"path_4 as (N, {self.context_dim}, h', w') with N={path_4.shape[0]} in "
                f"FusionInputs.context, got {tuple(context.shape)}"
            )
        height, width = path_4.shape[2:]
        # (N, dim, h, w) -> (N, h*w, dim)
        x = path_4.flatten(2).transpose(1, 2)
        # (N, context_dim, h', w') -> (N, h'*w', context_dim) -> (N, h'*w', dim)
        context = self.blocks[0].context_proj(context.flatten(2).transpose(1, 2))
        for block in self.blocks:
            x = block(x, context)
        # (N, h*w, dim) -> (N, dim, h*w) -> (N, dim, h, w)
        return x.transpose(1, 2).unflatten(2, (height, width))
