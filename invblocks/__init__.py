"""invblocks: invertible building blocks for reversible image conversion.

The names below are imported on first use, so ``import invblocks`` (and ``invblocks
--version``) does not load PyTorch until something needs it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from . import _deprecated as _deprecated  # the old module paths (removed in 0.3)
from ._version import VERSION

if TYPE_CHECKING:
    from . import blocks, data, ops, presets, ric
    from .block import Block, InverseView, Inversion
    from .config import TrainConfig
    from .freia import FreiaBlock, as_block
    from .graph import Graph, GraphError
    from .hookspecs import hookimpl
    from .model import Model
    from .plugins import get_task, load_plugins, tasks
    from .published import import_weights
    from .registry import BLOCKS, block_from_config, register_block
    from .ric import (
        Channel,
        LossConfig,
        LossTerm,
        RICBatch,
        RICNet,
        RICResult,
        Task,
        TrainDefaults,
        constraint_losses,
        loss_term,
        register_loss_term,
        total_constraint_loss,
    )
    from .sequence import Sequence
    from .trainer import evaluate, train

_WHERE: dict[str, str | None] = {
    "blocks": None,
    "data": None,
    "ops": None,
    "presets": None,
    "ric": None,
    "Channel": "ric",
    "Block": "block",
    "InverseView": "block",
    "Inversion": "block",
    "FreiaBlock": "freia",
    "as_block": "freia",
    "Graph": "graph",
    "GraphError": "graph",
    "Sequence": "sequence",
    "hookimpl": "hookspecs",
    "LossConfig": "ric",
    "LossTerm": "ric",
    "RICBatch": "ric",
    "constraint_losses": "ric",
    "loss_term": "ric",
    "register_loss_term": "ric",
    "total_constraint_loss": "ric",
    "get_task": "plugins",
    "load_plugins": "plugins",
    "tasks": "plugins",
    "BLOCKS": "registry",
    "block_from_config": "registry",
    "register_block": "registry",
    "RICNet": "ric",
    "RICResult": "ric",
    "Task": "ric",
    "TrainDefaults": "ric",
    "Model": "model",
    "train": "trainer",
    "evaluate": "ric",
    "TrainConfig": "config",
    "import_weights": "published",
}
"""Each public name and the submodule it lives in (``None``: the name is a submodule)."""


_SUBMODULES = {
    "autograd", "block", "checkpoint", "cli", "config", "container", "export", "freia", "graph",
    "hookspecs", "initializers", "io", "losses", "memory", "mixing",
    "metrics", "model", "plugins", "published", "registry", "report", "ric", "ricnet", "runtime",
    "sampling", "sequence", "steganalysis", "step", "task", "testing", "tiling", "trainer",
    "training",
}  # fmt: skip
"""Submodules reachable as attributes too (``invblocks.io``), imported on first use."""


def __getattr__(name: str) -> object:
    if name not in _WHERE and name not in _SUBMODULES:
        raise AttributeError(f"module 'invblocks' has no attribute {name!r}")
    module = _WHERE.get(name)
    if module is None:
        value: object = importlib.import_module(f".{name}", __name__)
    else:
        value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # the next access is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))


__version__ = VERSION

__all__ = [
    "BLOCKS",
    "Block",
    "Channel",
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
    "import_weights",
    "load_plugins",
    "loss_term",
    "ops",
    "presets",
    "register_block",
    "register_loss_term",
    "ric",
    "tasks",
    "total_constraint_loss",
    "train",
]
