"""Dataset converters: raw dataset folders -> clip shards (``flashdepth data convert NAME``).

Importing this package registers every converter in :data:`CONVERTERS`: the training sets
MVS-Synth, Spring, TartanAir, PointOdyssey and Dynamic Replica, and the evaluation sets Sintel,
ETH3D, Waymo, UnrealStereo4K and UrbanSyn.
"""

from datamodules.convert import (
    dynamic_replica,
    eth3d,
    mvs_synth,
    pointodyssey,
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
    "convert",
    "dynamic_replica",
    "eth3d",
    "get_converter",
    "mvs_synth",
    "pointodyssey",
    "sintel",
    "spring",
    "tartanair",
    "unrealstereo4k",
    "urbansyn",
    "waymo",
]
