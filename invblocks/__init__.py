"""invblocks: invertible building blocks for reversible image conversion."""

from importlib.metadata import PackageNotFoundError, version

from . import blocks, presets
from .block import Block, InverseView, Inversion
from .freia import FreiaBlock, as_block
from .graph import Graph, GraphError, Sequence
from .losses import constraint_losses, total_constraint_loss
from .registry import BLOCKS, block_from_config, register_block

try:
    __version__ = version("invblocks")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

__all__ = [
    "BLOCKS",
    "Block",
    "FreiaBlock",
    "Graph",
    "GraphError",
    "InverseView",
    "Inversion",
    "Sequence",
    "__version__",
    "as_block",
    "block_from_config",
    "blocks",
    "constraint_losses",
    "presets",
    "register_block",
    "total_constraint_loss",
]
