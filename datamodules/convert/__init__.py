"""Dataset converters: raw dataset folders -> clip shards (``flashdepth data convert NAME``).

Importing this package registers every converter in :data:`CONVERTERS`: the training sets
MVS-Synth, Spring, TartanAir, PointOdyssey and Dynamic Replica, the evaluation sets of FlashDepth,
Sintel, ETH3D, Waymo, UnrealStereo4K and UrbanSyn, and those of Video Depth Anything, KITTI, Bonn
RGB-D Dynamic, ScanNet and NYUv2.
"""

from datamodules.convert import (
    bonn,
    dynamic_replica,
    eth3d,
    kitti,
    mvs_synth,
    nyuv2,
    pointodyssey,
    scannet,
    sintel,
    spring,
    tartanair,
    unrealstereo4k,
    urbansyn,
    waymo,
)
from datamodules.convert.base import CONVERTERS, ClipSpec, Converter, get_converter
from datamodules.convert.writer import ConversionReport, convert

__all__ = [
    "CONVERTERS",
    "ClipSpec",
    "ConversionReport",
    "Converter",
    "bonn",
    "convert",
    "dynamic_replica",
    "eth3d",
    "get_converter",
    "kitti",
    "mvs_synth",
    "nyuv2",
    "pointodyssey",
    "scannet",
    "sintel",
    "spring",
    "tartanair",
    "unrealstereo4k",
    "urbansyn",
    "waymo",
]
