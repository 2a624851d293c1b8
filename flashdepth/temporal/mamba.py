"""FlashDepth's Mamba temporal component: pre-norm blocks around a Mamba2 mixer.

:class:`Mamba2` has mamba-ssm's parameter names and shapes, so the released
FlashDepth weights (``mamba.blocks.{slot}.{i}.mamba.*``) load without renaming. Its
semantics are those the weights were trained with: each frame's tokens are scanned in
one pass that starts from the previous frame's SSM state, while the short depthwise
convolution restarts with zero padding on every frame (its window is not carried).

The scan is the pure-PyTorch chunked SSD of :mod:`flashdepth.temporal.ssd`; on CUDA,
when mamba-ssm imports, its fused Triton kernel is used instead (``use_triton``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from flashdepth.temporal.base import TemporalModule
from flashdepth.temporal.ssd import load_triton_chunk_scan, ssd_chunked_scan


def _wants_triton(use_triton: bool, x: Tensor) -> bool:
    """Whether to try mamba-ssm's kernel: asked for, and the tensors live on CUDA."""
    return use_triton and x.is_cuda


class GatedRMSNorm(nn.Module):
    """RMSNorm applied after a SiLU gate: ``rmsnorm(y * silu(z)) * weight``, per group.

    Args:
        dim: Channels.
        group_size: Channels normalised together (``dim`` for one group).
        eps: Added to the mean square.
    """

    def __init__(self, dim: int, group_size: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.group_size = group_size
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, y: Tensor, z: Tensor) -> Tensor:
        """``rmsnorm(y * silu(z)) * weight`` per group, computed in float32, in ``y``'s dtype."""
        gated = (y.float() * F.silu(z.float())).unflatten(-1, (-1, self.group_size))
        # (..., dim) -> (..., groups, group_size) -> normalise each group -> (..., dim)
        normed = gated * torch.rsqrt(gated.pow(2).mean(dim=-1, keepdim=True) + self.eps)
        return (normed.flatten(-2) * self.weight.float()).to(y.dtype)


class Mamba2(nn.Module):
    """The Mamba2 mixer (mamba-ssm's ``Mamba2`` layout, no projection biases).

    Args:
        d_model: Token channels.
        d_state: SSM state size ``N`` per head.
        d_conv: Width of the causal depthwise convolution.
        expand: ``d_inner = expand * d_model``.
        headdim: Channels per head ``P``; ``nheads = d_inner / headdim``.
        ngroups: Groups sharing one ``B``/``C`` projection.
        chunk_size: Chunk length of the SSD scan.
        A_init_range: ``A = -Uniform(A_init_range)`` at initialisation.
        dt_min: Lower end of the initial step sizes (log-uniform).
        dt_max: Upper end of the initial step sizes.
        dt_init_floor: Smallest initial step size.
        norm_eps: Epsilon of the gated RMSNorm.
        use_triton: Use mamba-ssm's Triton scan for CUDA tensors when it imports.
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 256,
        d_conv: int = 4,
        expand: int = 2,
        headdim: int = 64,
        ngroups: int = 1,
        chunk_size: int = 256,
        A_init_range: tuple[float, float] = (1.0, 16.0),
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        dt_init_floor: float = 1e-4,
        norm_eps: float = 1e-5,
        use_triton: bool = True,
    ) -> None:
        super().__init__()
        self.d_inner = expand * d_model
        if self.d_inner % headdim:
            raise ValueError(
                f"d_inner = expand * d_model = {expand} * {d_model} = {self.d_inner} is not a "
                f"multiple of headdim = {headdim}; pick a headdim that divides it"
            )
        self.nheads = self.d_inner // headdim
        if self.nheads % ngroups or self.d_inner % ngroups:
            raise ValueError(f"ngroups = {ngroups} must divide the {self.nheads} heads")
        self.d_state, self.headdim, self.ngroups = d_state, headdim, ngroups
        self.chunk_size = chunk_size
        self.use_triton = use_triton
        conv_dim = self.d_inner + 2 * ngroups * d_state

        # in_proj output, in order: z (d_inner) | xBC (conv_dim) | dt (nheads)
        self.in_proj = nn.Linear(d_model, self.d_inner + conv_dim + self.nheads, bias=False)
        self.conv1d = nn.Conv1d(
            conv_dim, conv_dim, d_conv, groups=conv_dim, padding=d_conv - 1, bias=True
        )
        dt = torch.exp(
            torch.rand(self.nheads) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        ).clamp(min=dt_init_floor)
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))  # softplus(dt_bias) = dt
        self.A_log = nn.Parameter(torch.log(torch.empty(self.nheads).uniform_(*A_init_range)))
        self.D = nn.Parameter(torch.ones(self.nheads))
        self.norm = GatedRMSNorm(self.d_inner, self.d_inner // ngroups, eps=norm_eps)
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=False)

    def state_shape(self, batch_size: int) -> tuple[int, int, int, int]:
        """Shape of the SSM state: ``(B, nheads, headdim, d_state)``."""
        return (batch_size, self.nheads, self.headdim, self.d_state)

    def forward(self, u: Tensor, ssm_state: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Mix the tokens of one frame, or of several frames in order.

        Args:
            u: One frame's tokens ``(B, L, d_model)``, or ``(B, T, L, d_model)`` for ``T``
                frames: the convolution restarts at every frame, the scan runs through
                all ``T * L`` tokens (the same as ``T`` calls with the state carried).
            ssm_state: State before the first token, ``(B, nheads, headdim, d_state)``;
                zeros when ``None``.

        Returns:
            ``(out, final_ssm_state)``: ``out`` shaped like ``u``; the state in float32.
        """
        if u.dim() not in (3, 4):
            raise ValueError(f"Mamba2 expects (B, L, C) or (B, T, L, C) tokens, got {u.shape}")
        batch = u.shape[0]
        if ssm_state is not None and ssm_state.shape != self.state_shape(batch):
            raise ValueError(
                f"ssm_state must be (B, nheads, headdim, d_state) = {self.state_shape(batch)}, "
                f"got {tuple(ssm_state.shape)}; start a video from None or init_state"
            )
        frames = u.unsqueeze(1) if u.dim() == 3 else u  # (B, T, L, d_model)
        length = frames.shape[2]
        z, xBC, dt = self.in_proj(frames).split(
            [self.d_inner, self.conv1d.in_channels, self.nheads], dim=-1
        )
        # Causal conv per frame, zero left padding: (B, T, L, conv_dim) -> (B*T, conv_dim, L).
        conv_out = self.conv1d(xBC.flatten(0, 1).transpose(1, 2))[..., :length]
        # (B*T, conv_dim, L) -> (B, T*L, conv_dim): the tokens of all frames in order.
        xBC = F.silu(conv_out).transpose(1, 2).reshape(batch, -1, self.conv1d.in_channels)
        x, B, C = xBC.split(
            [self.d_inner, self.ngroups * self.d_state, self.ngroups * self.d_state], dim=-1
        )
        x = x.unflatten(-1, (self.nheads, self.headdim))  # (B, T*L, H, P)
        B = B.unflatten(-1, (self.ngroups, self.d_state))  # (B, T*L, G, N)
        C = C.unflatten(-1, (self.ngroups, self.d_state))
        y, final_state = self._scan(x, dt.flatten(1, 2), B, C, ssm_state)
        y = self.norm(y.flatten(-2), z.flatten(1, 2))  # (B, T*L, d_inner)
        return self.out_proj(y).reshape(u.shape), final_state

    def _scan(
        self, x: Tensor, dt_raw: Tensor, B: Tensor, C: Tensor, ssm_state: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        """SSM with skip term: ``(y (B, L, H, P), final_state (B, H, P, N) float32)``."""
        A = -torch.exp(self.A_log.float())
        if ssm_state is not None:
            ssm_state = ssm_state.float()
        kernel = load_triton_chunk_scan() if _wants_triton(self.use_triton, x) else None
        if kernel is not None:
            y, final_state = kernel(
                x,
                dt_raw,
                A,
                B,
                C,
                self.chunk_size,
                D=self.D,
                dt_bias=self.dt_bias,
                dt_softplus=True,
                initial_states=ssm_state,
                return_final_states=True,
            )
            return y, final_state.float()
        dt = F.softplus(dt_raw.float() + self.dt_bias.float())
        y, final_state = ssd_chunked_scan(x, dt, A, B, C, self.chunk_size, ssm_state)
        y = y + x * self.D.to(x.dtype).unsqueeze(-1)
        return y, final_state.float()


class MambaBlock(nn.Module):
    """Pre-norm residual block: ``x += Mamba2(LN x); x += MLP(LN x)`` (MLP 4x, GELU).

    Args:
        dim: Token channels.
        expand: Mamba2 expansion.
        headdim: Mamba2 channels per head.
        d_state: SSM state size per head.
        d_conv: Width of the causal depthwise convolution.
        chunk_size: Chunk length of the SSD scan.
        use_triton: Use mamba-ssm's Triton scan on CUDA when it imports.
    """

    def __init__(
        self,
        dim: int,
        expand: int,
        headdim: int,
        d_state: int = 256,
        d_conv: int = 4,
        chunk_size: int = 256,
        use_triton: bool = True,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.mamba = Mamba2(
            dim,
            d_state=d_state,
            d_conv=d_conv,
            expand=expand,
            headdim=headdim,
            chunk_size=chunk_size,
            use_triton=use_triton,
        )
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: Tensor, ssm_state: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Tokens ``(B, L, dim)`` or ``(B, T, L, dim)`` -> same shape, and the new SSM state."""
        mixed, ssm_state = self.mamba(self.norm1(x), ssm_state)
        x = x + mixed
        return x + self.mlp(self.norm2(x)), ssm_state


class MambaTemporal(TemporalModule):
    """FlashDepth's temporal module: Mamba blocks over the row-major tokens of the grid.

    The state is one float32 tensor ``(B, num_blocks, nheads, headdim, d_state)``: the
    SSM state of every block. FlashDepth-S uses ``dim=64, expand=4,
    headdim=32``; FlashDepth-L ``dim=256, expand=2, headdim=64`` (8 heads each).

    Args:
        dim: Channels of the feature grid.
        num_blocks: Mamba blocks in sequence.
        expand: Mamba2 expansion.
        headdim: Mamba2 channels per head.
        d_state: SSM state size per head.
        d_conv: Width of the causal depthwise convolution.
        chunk_size: Chunk length of the SSD scan.
        use_triton: Use mamba-ssm's Triton scan on CUDA when it imports.
    """

    def __init__(
        self,
        dim: int,
        num_blocks: int = 4,
        expand: int = 2,
        headdim: int = 64,
        d_state: int = 256,
        d_conv: int = 4,
        chunk_size: int = 256,
        use_triton: bool = True,
    ) -> None:
        super().__init__(dim)
        self.blocks = nn.ModuleList(
            MambaBlock(dim, expand, headdim, d_state, d_conv, chunk_size, use_triton)
            for _ in range(num_blocks)
        )

    def init_state(
        self,
        batch_size: int,
        grid: tuple[int, int] | None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> Tensor:
        """Zeros ``(B, num_blocks, nheads, headdim, d_state)``, always float32.

        ``dtype`` is ignored: the recurrence is kept in full precision. ``grid`` is unused and
        may be ``None``: only map-shaped states need it.
        """
        return torch.zeros(
            self._state_shape(batch_size), device=self._param_device(device), dtype=torch.float32
        )

    def _state_shape(self, batch_size: int) -> tuple[int, ...]:
        batch, *per_block = self.blocks[0].mamba.state_shape(batch_size)
        return (batch, len(self.blocks), *per_block)

    def step(self, x: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        """One frame ``(B, C, h, w)`` -> ``(features (B, C, h, w), new_state)``."""
        if x.dim() != 4:
            raise ValueError(
                f"MambaTemporal.step expects a frame (B, C, h, w), got {tuple(x.shape)}"
            )
        out, state = self.forward(x.unsqueeze(1), state)
        return out.squeeze(1), state

    def forward(self, clip: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """A clip ``(B, T, C, h, w)``, all frames through each block at once.

        Equal to calling :meth:`step` frame after frame (each block's state depends only on
        its own inputs, and the conv restarts per frame), but with one scan per block.
        """
        if clip.dim() != 5:
            raise ValueError(
                f"MambaTemporal expects a clip (B, T, C, h, w), got {tuple(clip.shape)}"
            )
        batch, _, channels, height, width = clip.shape
        if channels != self.dim:
            raise ValueError(f"MambaTemporal(dim={self.dim}) got features with {channels} channels")
        if state is None:
            state = self.init_state(batch, (height, width), clip.device)
        expected = self._state_shape(batch)
        if state.shape != expected:
            raise ValueError(
                f"state must be (B, num_blocks, nheads, headdim, d_state) = {expected}, got "
                f"{tuple(state.shape)}; start each video from init_state(batch_size, grid)"
            )
        tokens = clip.flatten(3).transpose(2, 3)  # (B, T, C, h, w) -> (B, T, h*w, C), row-major
        new_states = []
        for block, block_state in zip(self.blocks, state.unbind(1), strict=True):
            tokens, block_state = block(tokens, block_state)
            new_states.append(block_state)
        out = tokens.transpose(2, 3).unflatten(3, (height, width))  # -> (B, T, C, h, w)
        return out, torch.stack(new_states, dim=1)
