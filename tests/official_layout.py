"""Key/shape tables of the official checkpoints, written from the published layouts alone.

These tables are built without the zoo's model code so that loading them proves
the zoo matches the released layouts (DAv2 ``.pth`` and FlashDepth ``{'model': ...}``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

VIT = {  # embed, depth, DPT width, DPT out_channels, mlp hidden (SwiGLU packed for vitg)
    "vits": (384, 12, 64, (48, 96, 192, 384)),
    "vitb": (768, 12, 128, (96, 192, 384, 768)),
    "vitl": (1024, 24, 256, (256, 512, 1024, 1024)),
    "vitg": (1536, 40, 384, (1536, 1536, 1536, 1536)),
}
MAMBA = {"vits": (4, 32), "vitl": (2, 64)}  # expand, headdim
D_STATE, D_CONV = 256, 4


def dav2_shapes(encoder: str) -> dict[str, tuple[int, ...]]:
    """Every key of ``depth_anything_v2_<encoder>.pth`` with its shape."""
    embed, depth, width, outs = VIT[encoder]
    shapes: dict[str, tuple[int, ...]] = {
        "pretrained.cls_token": (1, 1, embed),
        "pretrained.pos_embed": (1, 1 + 37 * 37, embed),
        "pretrained.mask_token": (1, embed),
        "pretrained.patch_embed.proj.weight": (embed, 3, 14, 14),
        "pretrained.patch_embed.proj.bias": (embed,),
        "pretrained.norm.weight": (embed,),
        "pretrained.norm.bias": (embed,),
    }
    if encoder == "vitg":  # DINOv2 SwiGLU: w12 (2*4096, embed), w3 (embed, 4096)
        mlp = {"mlp.w12.weight": (8192, embed), "mlp.w12.bias": (8192,)}
        mlp |= {"mlp.w3.weight": (embed, 4096), "mlp.w3.bias": (embed,)}
    else:
        mlp = {"mlp.fc1.weight": (4 * embed, embed), "mlp.fc1.bias": (4 * embed,)}
        mlp |= {"mlp.fc2.weight": (embed, 4 * embed), "mlp.fc2.bias": (embed,)}
    block = {
        "norm1.weight": (embed,),
        "norm1.bias": (embed,),
        "attn.qkv.weight": (3 * embed, embed),
        "attn.qkv.bias": (3 * embed,),
        "attn.proj.weight": (embed, embed),
        "attn.proj.bias": (embed,),
        "ls1.gamma": (embed,),
        "norm2.weight": (embed,),
        "norm2.bias": (embed,),
        "ls2.gamma": (embed,),
        **mlp,
    }
    for i in range(depth):
        shapes |= {f"pretrained.blocks.{i}.{k}": v for k, v in block.items()}

    head = "depth_head."
    resize = {0: (outs[0], outs[0], 4, 4), 1: (outs[1], outs[1], 2, 2), 3: (outs[3], outs[3], 3, 3)}
    for i, out in enumerate(outs):
        shapes[f"{head}projects.{i}.weight"] = (out, embed, 1, 1)
        shapes[f"{head}projects.{i}.bias"] = (out,)
        if i in resize:
            shapes[f"{head}resize_layers.{i}.weight"] = resize[i]
            shapes[f"{head}resize_layers.{i}.bias"] = (out,)
        shapes[f"{head}scratch.layer{i + 1}_rn.weight"] = (width, out, 3, 3)
        refine = f"{head}scratch.refinenet{i + 1}."
        for unit in ("resConfUnit1", "resConfUnit2"):
            for conv in ("conv1", "conv2"):
                shapes[f"{refine}{unit}.{conv}.weight"] = (width, width, 3, 3)
                shapes[f"{refine}{unit}.{conv}.bias"] = (width,)
        shapes[f"{refine}out_conv.weight"] = (width, width, 1, 1)
        shapes[f"{refine}out_conv.bias"] = (width,)
    shapes[f"{head}scratch.output_conv1.weight"] = (width // 2, width, 3, 3)
    shapes[f"{head}scratch.output_conv1.bias"] = (width // 2,)
    shapes[f"{head}scratch.output_conv2.0.weight"] = (32, width // 2, 3, 3)
    shapes[f"{head}scratch.output_conv2.0.bias"] = (32,)
    shapes[f"{head}scratch.output_conv2.2.weight"] = (1, 32, 1, 1)
    shapes[f"{head}scratch.output_conv2.2.bias"] = (1,)
    return shapes


def release_shapes(encoder: str) -> dict[str, tuple[int, ...]]:
    """Keys of a released FlashDepth-S (``vits``) or -L (``vitl``) state dict."""
    shapes = dav2_shapes(encoder)
    width = VIT[encoder][2]
    expand, headdim = MAMBA[encoder]
    d_inner = expand * width
    nheads = d_inner // headdim
    conv_dim = d_inner + 2 * D_STATE
    mamba = {
        "in_proj.weight": (2 * d_inner + 2 * D_STATE + nheads, width),
        "conv1d.weight": (conv_dim, 1, D_CONV),
        "conv1d.bias": (conv_dim,),
        "dt_bias": (nheads,),
        "A_log": (nheads,),
        "D": (nheads,),
        "norm.weight": (d_inner,),
        "out_proj.weight": (width, d_inner),
    }
    block = {f"mamba.{k}": v for k, v in mamba.items()}
    block |= {"norm1.weight": (width,), "norm1.bias": (width,)}
    block |= {"norm2.weight": (width,), "norm2.bias": (width,)}
    block |= {"mlp.0.weight": (4 * width, width), "mlp.0.bias": (4 * width,)}
    block |= {"mlp.2.weight": (width, 4 * width), "mlp.2.bias": (width,)}
    for i in range(4):
        shapes |= {f"mamba.blocks.0.{i}.{k}": v for k, v in block.items()}
    shapes["mamba.final_layer.1.weight"] = (width, width)
    shapes["mamba.final_layer.1.bias"] = (width,)
    return shapes


def make_state_dict(
    shapes: dict[str, tuple[int, ...]],
    factory: Callable[..., torch.Tensor] = torch.randn,
    **kwargs: object,
) -> dict[str, torch.Tensor]:
    """Tensors of the given shapes (random by default; ``torch.empty`` on meta for big ones)."""
    return {key: factory(*shape, **kwargs) for key, shape in shapes.items()}


def full_shapes() -> dict[str, tuple[int, ...]]:
    """Keys of the released FlashDepth (Full) state dict: 776 tensors.

    239 student (ViT-S + DPT-S, mask token included), 66 Mamba, 64 fusion
    (``hybrid_fusion.blocks.0.{0..3}``, 16 each) and 407 teacher (``teacher_model.*``:
    ViT-L + DPT-L).
    """
    shapes = release_shapes("vits")
    width, context = VIT["vits"][2], VIT["vitl"][2]
    block = {
        "norm1.weight": (width,),
        "norm1.bias": (width,),
        "attention.q.weight": (width, width),
        "attention.kv.weight": (2 * width, width),
        "attention.proj.weight": (width, width),
        "attention.proj.bias": (width,),
        "context_norm.weight": (width,),
        "context_norm.bias": (width,),
        "norm2.weight": (width,),
        "norm2.bias": (width,),
        "mlp.0.weight": (2 * width, width),
        "mlp.0.bias": (2 * width,),
        "mlp.2.weight": (width, 2 * width),
        "mlp.2.bias": (width,),
        "context_proj.weight": (width, context),
        "context_proj.bias": (width,),
    }
    for i in range(4):
        shapes |= {f"hybrid_fusion.blocks.0.{i}.{k}": v for k, v in block.items()}
    shapes |= {f"teacher_model.{k}": v for k, v in dav2_shapes("vitl").items()}
    return shapes
