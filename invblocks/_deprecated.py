"""Every name and form of invblocks 0.1 that moved or changed, in one place (removed in 0.3).

Each use warns once per place with a ``DeprecationWarning`` that says what to use instead,
and then works as it did:

* **Modules that moved** (:data:`MOVED_MODULES`): ``import invblocks.ricnet`` and ``from
  invblocks.task import Task`` still import; the names resolve in the new module.
* **Names that moved** (:data:`MOVED_NAMES`): ``invblocks.blocks.Quantizer`` and the like.
* **Forms that changed**, adapted where the new code meets them: a sampler of six positional
  arguments (:func:`request_sampler`), a task's ``extra_losses`` function
  (:func:`extra_losses_term`), the ``quantizer`` setting of recipes, training configs and
  presets (:func:`quantizer_channel`), a network whose last node is its channel, as 0.1's
  presets were (:func:`split_channel`), and iterating a preset's nodes
  (``RICNet.__iter__``).

The modules that do the work carry no compatibility code beyond one call into this one.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import inspect
import sys
import types
import warnings
from collections.abc import Callable
from typing import Any

__all__ = [
    "MOVED_MODULES",
    "MOVED_NAMES",
    "REMOVED_IN",
    "extra_losses_term",
    "getattr_for",
    "quantizer_channel",
    "request_sampler",
    "split_channel",
    "warn",
]

REMOVED_IN = "0.3"

MOVED_MODULES: dict[str, str] = {
    "invblocks.ricnet": "invblocks.ric.network",
    "invblocks.losses": "invblocks.ric.losses",
    "invblocks.task": "invblocks.ric.task",
    "invblocks.step": "invblocks.ric.step",
    "invblocks.training": "invblocks.ric.step",
}
"""Old module path -> the module that now holds its names."""

MOVED_NAMES: dict[str, dict[str, str]] = {
    "invblocks.blocks": {
        "Quantizer": "invblocks.ric.quantizer:Quantizer",
        "quantize": "invblocks.ric.quantizer:quantize",
        "JPEGChannel": "invblocks.ric.jpeg:JPEGChannel",
        "jpeg": "invblocks.ric.jpeg:jpeg_round_trip",
    },
    "invblocks.data": {"Source": "invblocks.data:DataSplit"},
    "invblocks.io": {
        "PHOTOS": "invblocks.data._bundled:PHOTO_FILES",
        "photo_path": "invblocks.data._bundled:default_file",
    },
}
"""Module -> {old name: ``"new.module:name"``}. ``invblocks.io.PHOTOS`` is the table the
bundled photographs' lookup keeps (name -> package, file)."""

_PUBLIC = {
    "invblocks.ric.quantizer:Quantizer": "invblocks.ric.Quantizer",
    "invblocks.ric.quantizer:quantize": "invblocks.ric.quantize",
    "invblocks.ric.jpeg:JPEGChannel": "invblocks.ric.JPEGChannel",
    "invblocks.ric.jpeg:jpeg_round_trip": "invblocks.ric.jpeg_round_trip",
    "invblocks.data:DataSplit": "invblocks.data.DataSplit",
    "invblocks.data._bundled:PHOTO_FILES": "invblocks.data.default_file(name)",
    "invblocks.data._bundled:default_file": "invblocks.data.default_file(name)",
}


def warn(message: str, *, stacklevel: int = 3) -> None:
    """A ``DeprecationWarning``: ``message``, then when the old form goes."""
    warnings.warn(
        f"{message} (the old form is removed in invblocks {REMOVED_IN})",
        DeprecationWarning,
        stacklevel=stacklevel,
    )


def _resolve(target: str) -> Any:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def getattr_for(module: str) -> Callable[[str], Any]:
    """The module ``__getattr__`` of ``module``: its moved names (:data:`MOVED_NAMES`),
    resolved with a warning; ``AttributeError`` for anything else."""

    def __getattr__(name: str) -> Any:
        target = MOVED_NAMES.get(module, {}).get(name)
        if target is None:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        value = _resolve(target)
        warn(f"{module}.{name} is deprecated: use {_PUBLIC.get(target, target)}")
        return value

    return __getattr__


def _new_home(module: str, name: str) -> str:
    """Where to import ``name`` of ``module`` from now: ``invblocks.ric`` when it is public
    there, else the module."""
    ric = importlib.import_module("invblocks.ric")
    return "invblocks.ric" if name in getattr(ric, "__all__", ()) else module


class _MovedModule(types.ModuleType):
    """An old module path: its names are the new module's, each use warns."""

    def __getattr__(self, name: str) -> Any:
        new = MOVED_MODULES[self.__name__]
        if name == "__all__":  # what the old path still offers
            return list(getattr(importlib.import_module(new), "__all__", []))
        if name.startswith("__"):
            raise AttributeError(name)
        value = getattr(importlib.import_module(new), name)
        warn(f"{self.__name__} is deprecated: import {name} from {_new_home(new, name)}")
        return value

    def __dir__(self) -> list[str]:
        return sorted(set(dir(importlib.import_module(MOVED_MODULES[self.__name__]))))


class _MovedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds the old module paths of :data:`MOVED_MODULES` (no file stands behind them)."""

    def find_spec(
        self, fullname: str, path: Any = None, target: Any = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MOVED_MODULES:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        return _MovedModule(spec.name)

    def exec_module(self, module: types.ModuleType) -> None:
        module.__doc__ = f"Deprecated: {module.__name__} moved to {MOVED_MODULES[module.__name__]}."


if not any(isinstance(f, _MovedModuleFinder) for f in sys.meta_path):
    sys.meta_path.append(_MovedModuleFinder())


# ---------------------------------------------------------------- changed forms


def request_sampler(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A task's sampler taking one :class:`~invblocks.sampling.SampleRequest`: ``fn`` itself,
    or, for a sampler of 0.1's six positional arguments (``items, index, n, crop, generator,
    train``), ``fn`` wrapped (with a warning). A wrapped sampler is not wrapped again (an
    ``attrs.evolve`` of its task converts it once more)."""
    if getattr(fn, "_invblocks_request_sampler", False):
        return fn
    try:  # the signature of fn itself: a wrapper's __wrapped__ is not followed
        params = inspect.signature(fn, follow_wrapped=False).parameters.values()
    except (TypeError, ValueError):  # builtins without a signature: the new style
        return fn
    positional = [
        p
        for p in params
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    ]
    if len(positional) < 6:
        return fn
    warn(
        f"sampler {getattr(fn, '__name__', fn)!r} takes (items, index, n, crop, generator, "
        "train), the 0.1 signature, which is deprecated: take one "
        "invblocks.sampling.SampleRequest instead",
        stacklevel=5,
    )

    def sample(request: Any) -> Any:
        r = request
        return fn(r.items, r.index, r.n_inputs, r.crop, r.generator, r.train)

    sample.__wrapped__ = fn  # type: ignore[attr-defined]
    sample._invblocks_request_sampler = True  # type: ignore[attr-defined]
    sample.__name__ = getattr(fn, "__name__", "sample")
    return sample


def extra_losses_term(fn: Callable[..., Any]) -> Any:
    """0.1's ``Task.extra_losses``, ``f(x, embedding, restored, reference) -> {name: weighted
    term}``, as one loss term ``extra_losses`` (weight 1) that sums what ``f`` returns."""
    losses = importlib.import_module("invblocks.ric.losses")
    warn(
        "Task(extra_losses=f) is deprecated: give the task loss terms "
        "(loss_terms=[...], @invblocks.ric.loss_term(name)) and their weights in losses",
        stacklevel=5,
    )

    def total(result: Any, batch: Any) -> Any:
        terms = fn(batch.inputs, result.embedding, result.restored, batch.reference)
        return sum(terms.values()) if terms else None

    return losses.LossTerm("extra_losses", total, "the task's extra_losses (0.1), summed")


def quantizer_channel(mode: str | None, where: str, *, stacklevel: int = 4) -> dict | None:
    """The channel a 0.1 ``quantizer`` setting (a training mode) means, ``{"type":
    "quantizer", "train_mode": mode}`` (with a warning naming ``where``), or ``None``."""
    if mode is None:
        return None
    warn(
        f"{where} quantizer={mode!r} is deprecated: the quantiser is a channel, set "
        f"channel={{'type': 'quantizer', 'train_mode': {mode!r}}} "
        f"(on the command line: --set channel.train_mode={mode})",
        stacklevel=stacklevel,
    )
    return {"type": "quantizer", "train_mode": mode}


def split_channel(body: Any) -> tuple[Any, Any]:
    """A 0.1 network, a ``Sequence`` whose last node is its channel (the quantiser), as
    ``(body, channel)`` (with a warning); ``(body, None)`` for any other network."""
    channel_module = importlib.import_module("invblocks.ric.channel")
    nodes = list(getattr(body, "nodes", []) or [])
    if not nodes or not isinstance(nodes[-1], channel_module.Channel) or len(nodes) < 2:
        return body, None
    warn(
        "a network whose last node is its channel (0.1's layout) is deprecated: build "
        "invblocks.ric.RICNet(body, channel), or pass channel= to the preset",
        stacklevel=5,
    )
    sequence = importlib.import_module("invblocks.sequence")
    rest = sequence.Sequence(*body.dims_in)
    for node in nodes[:-1]:
        rest.append(node)
    return rest, nodes[-1]
