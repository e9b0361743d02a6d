"""invblocks: invertible building blocks for reversible image conversion."""

from importlib.metadata import PackageNotFoundError, version

from . import blocks, presets
from .block import Block, InverseView, Inversion
from .freia import FreiaBlock, as_block
from .graph import Sequence

try:
    __version__ = version("invblocks")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

__all__ = [
    "Block",
    "FreiaBlock",
    "InverseView",
    "Inversion",
    "Sequence",
    "__version__",
    "as_block",
    "blocks",
    "presets",
]
