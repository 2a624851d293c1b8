"""``flashdepth stream`` with every preset built at the tiny test size, for subprocess tests.

``python -m tests.inference.tiny_stream ARGS`` is ``python -m flashdepth stream ARGS`` with
:func:`tests.cli_overrides.shrink_presets` applied; Lightning Fabric relaunches the same
module for the other ranks of ``--devices N``, so every process builds the same tiny model.
"""

from __future__ import annotations

import sys

import pytest

from flashdepth.inference.command import main
from tests.cli_overrides import shrink_presets

if __name__ == "__main__":
    with pytest.MonkeyPatch.context() as patch:
        shrink_presets(patch)
        status = main()
    sys.exit(status)
