"""Temporal components: carry information across the frames of a video.

Each implements :class:`TemporalModule` (explicit state tensors, one frame per
:meth:`~TemporalModule.step`) and can be swapped in a recipe's YAML.
"""

from flashdepth.temporal.base import TemporalModule
from flashdepth.temporal.gru import GRUTemporal
from flashdepth.temporal.identity import IdentityTemporal
from flashdepth.temporal.mamba import Mamba2, MambaTemporal

__all__ = ["GRUTemporal", "IdentityTemporal", "Mamba2", "MambaTemporal", "TemporalModule"]
