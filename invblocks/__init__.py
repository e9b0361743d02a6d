"""invblocks: invertible building blocks for reversible image conversion."""

from importlib.metadata import PackageNotFoundError, version

from . import blocks, data, ops, presets
from .block import Block, InverseView, Inversion
from .freia import FreiaBlock, as_block
from .graph import Graph, GraphError, Sequence
from .hookspecs import hookimpl
from .losses import (
    LossConfig,
    LossTerm,
    RICBatch,
    constraint_losses,
    loss_term,
    register_loss_term,
    total_constraint_loss,
)
from .plugins import get_task, load_plugins, tasks
from .registry import BLOCKS, block_from_config, register_block
from .ricnet import RICNet, RICResult
from .task import Task, TrainDefaults


def __getattr__(name: str) -> object:
    # the workflow layer imports lazily: `import invblocks` stays light
    if name == "Model":
        from .model import Model

        return Model
    if name in ("train", "evaluate"):
        from . import trainer

        return getattr(trainer, name)
    if name == "TrainConfig":
        from .config import TrainConfig

        return TrainConfig
    raise AttributeError(f"module 'invblocks' has no attribute {name!r}")


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
    "LossTerm",
    "Model",
    "RICBatch",
    "RICNet",
    "RICResult",
    "Sequence",
    "Task",
    "TrainConfig",
    "TrainDefaults",
    "__version__",
    "as_block",
    "block_from_config",
    "blocks",
    "constraint_losses",
    "data",
    "evaluate",
    "get_task",
    "hookimpl",
    "load_plugins",
    "loss_term",
    "ops",
    "presets",
    "register_block",
    "register_loss_term",
    "tasks",
    "total_constraint_loss",
    "train",
]
