"""invblocks: invertible building blocks for reversible image conversion."""

from importlib.metadata import PackageNotFoundError, version

from . import blocks, data, ops, presets
from .block import Block, InverseView, Inversion
from .freia import FreiaBlock, as_block
from .graph import Graph, GraphError, Sequence
from .hookspecs import hookimpl
from .losses import LossConfig, constraint_losses, total_constraint_loss
from .plugins import get_task, load_plugins, tasks
from .registry import BLOCKS, block_from_config, register_block
from .task import Task, TrainDefaults

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
    "LossConfig",
    "Sequence",
    "Task",
    "TrainDefaults",
    "__version__",
    "as_block",
    "block_from_config",
    "blocks",
    "constraint_losses",
    "data",
    "get_task",
    "hookimpl",
    "load_plugins",
    "ops",
    "presets",
    "register_block",
    "tasks",
    "total_constraint_loss",
]
