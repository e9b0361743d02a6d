"""Loading plugins: the pluggy manager, the task registry and the environment switches.

Plugins come from entry points in the ``invblocks`` group (the built-in tasks too: the core
never imports them by name) and from objects passed to :func:`load_plugins`.

Environment:
    ``INVBLOCKS_DISABLE_PLUGIN_AUTOLOAD``: when set to a non-empty value, entry points are not
    loaded (only plugins passed explicitly are).
    ``INVBLOCKS_BLOCK_PLUGINS``: comma-separated plugin (entry-point) names never to load.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from importlib import metadata
from typing import TYPE_CHECKING, Any

import attrs
import pluggy

from . import hookspecs
from .presets import PRESETS, register_preset
from .registry import BLOCKS, NamedRegistry, block_owner, register_block
from .ric.channel import CHANNELS, Channel, register_channel
from .ric.losses import LOSS_TERMS, LossTerm, register_loss_term

if TYPE_CHECKING:
    from .ric.task import Task

__all__ = [
    "BLOCK_PLUGINS_ENV",
    "DISABLE_AUTOLOAD_ENV",
    "PluginLoadError",
    "PluginRegistrationError",
    "PluginRegistry",
    "Registry",
    "get_registry",
    "get_task",
    "load_plugins",
    "plugin_manager",
    "tasks",
]

DISABLE_AUTOLOAD_ENV = "INVBLOCKS_DISABLE_PLUGIN_AUTOLOAD"
BLOCK_PLUGINS_ENV = "INVBLOCKS_BLOCK_PLUGINS"
ENTRY_POINT_GROUP = "invblocks"


class Registry:
    """Everything the loaded plugins registered: tasks and ``import-weights`` methods by name
    with the plugin of each, and views of the block types, channels, loss terms and presets
    (process-wide, see :attr:`blocks`)."""

    def __init__(self, manager: pluggy.PluginManager) -> None:
        self.manager = manager
        self.tasks: NamedRegistry[Task] = NamedRegistry("task")
        self.importers: NamedRegistry[Any] = NamedRegistry("import-weights method")
        """The plugins' ``import-weights`` methods by name, with the plugin of each
        (:func:`invblocks.published.importers` adds the core's)."""

    def add_task(self, task: Task, plugin: str) -> None:
        from .ric.task import Task

        if not isinstance(task, Task):
            raise PluginRegistrationError(
                f"plugin {plugin!r} registered {task!r}, which is not an invblocks.Task"
            )
        self.tasks.register(
            attrs.evolve(task, plugin=plugin), task.name, owner=f"plugin {plugin!r}"
        )

    def add_importer(self, name: str, fn: Any, plugin: str) -> None:
        if not callable(fn):
            raise PluginRegistrationError(
                f"plugin {plugin!r} registered {fn!r} as the import-weights method {name!r}, "
                "which is not a function"
            )
        self.importers.register(fn, name, owner=f"plugin {plugin!r}")

    def get_task(self, name: str) -> Task:
        """The task called ``name``; ``KeyError`` listing the known tasks otherwise."""
        try:
            return self.tasks[name]
        except KeyError:
            known = ", ".join(sorted(self.tasks)) or "none (are plugins disabled?)"
            raise KeyError(f"unknown task {name!r}; registered tasks: {known}") from None

    def plugin_names(self) -> list[str]:
        """Names of the registered plugins."""
        return sorted(n for n, p in self.manager.list_name_plugin() if p is not None)

    @property
    def blocks(self) -> dict[str, tuple[type, str]]:
        """Every block type by name, with who registered it. Block types are process-wide
        (a network's JSON config names them wherever it is rebuilt), so this is a view of
        :data:`invblocks.registry.BLOCKS` after the plugins' hooks ran."""
        return {name: (cls, block_owner(name)) for name, cls in sorted(BLOCKS.items())}

    @property
    def loss_terms(self) -> dict[str, LossTerm]:
        """Every loss term every task can weight (:data:`invblocks.ric.losses.LOSS_TERMS`)."""
        return dict(sorted(LOSS_TERMS.items()))

    @property
    def channels(self) -> dict[str, tuple[type[Channel], str]]:
        """Every channel by name, with who registered it
        (:data:`invblocks.ric.channel.CHANNELS`)."""
        return {name: (cls, CHANNELS.owner(name)) for name, cls in sorted(CHANNELS.items())}

    @property
    def presets(self) -> dict[str, tuple[Any, str]]:
        """Every network preset by name, with who registered it
        (:data:`invblocks.presets.PRESETS`)."""
        return {name: (fn, PRESETS.owner(name)) for name, fn in sorted(PRESETS.items())}


class PluginRegistry:
    """The registry as one plugin sees it: what it adds is recorded under its name."""

    def __init__(self, registry: Registry, plugin: str) -> None:
        self.registry, self.plugin = registry, plugin

    def add_task(self, task: Task) -> None:
        """Register a :class:`~invblocks.ric.task.Task`."""
        self.registry.add_task(task, self.plugin)

    def add_block(self, cls: type, name: str | None = None) -> None:
        """Register a block class (default name: the class name)."""
        register_block(cls, name, owner=f"plugin {self.plugin!r}")

    def add_loss_term(self, term: LossTerm) -> None:
        """Register a :class:`~invblocks.ric.losses.LossTerm` for every task."""
        register_loss_term(term, owner=f"plugin {self.plugin!r}")

    def add_channel(self, cls: type[Channel], name: str | None = None) -> None:
        """Register a :class:`~invblocks.ric.channel.Channel` class under ``name`` (default: its
        ``name`` attribute) for ``--set channel=NAME``, and as a block type."""
        register_channel(cls, name, owner=f"plugin {self.plugin!r}")

    def add_preset(self, fn: Any, name: str | None = None) -> None:
        """Register a network function (a preset) under ``name`` (default: its name)."""
        register_preset(fn, name, owner=f"plugin {self.plugin!r}")

    def add_importer(self, name: str, fn: Any) -> None:
        """Register ``fn`` as the ``import-weights`` method ``name``: it turns a state dict of
        a paper's published checkpoint into an invblocks network
        (:class:`invblocks.published.Importer`)."""
        self.registry.add_importer(name, fn, self.plugin)


def plugin_manager(
    plugins: Iterable[tuple[Any, str]] = (), *, autoload: bool | None = None
) -> pluggy.PluginManager:
    """A pluggy manager with the hookspecs, ``plugins`` and (unless disabled) entry points.

    ``autoload=None`` follows ``INVBLOCKS_DISABLE_PLUGIN_AUTOLOAD``. Plugins named in
    ``INVBLOCKS_BLOCK_PLUGINS`` are blocked. Unknown hooks in a plugin are an error
    (``check_pending``).
    """
    pm = pluggy.PluginManager("invblocks")
    pm.add_hookspecs(hookspecs)
    for name in os.environ.get(BLOCK_PLUGINS_ENV, "").split(","):
        if name.strip():
            pm.set_blocked(name.strip())
    for plugin, name in plugins:
        if not pm.is_blocked(name):
            pm.register(plugin, name=name)
    if autoload is None:
        autoload = not os.environ.get(DISABLE_AUTOLOAD_ENV)
    if autoload:
        try:
            pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
        except Exception as err:
            raise _load_error(pm, err) from err
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as err:
        raise _hook_error(pm, err) from None
    return pm


def _hook_error(pm: pluggy.PluginManager, err: pluggy.PluginValidationError) -> PluginLoadError:
    """pluggy's refusal of a plugin's hooks as one sentence naming the hooks there are."""
    known = ", ".join(n for n in dir(hookspecs) if n.startswith("invblocks_"))
    message = str(err).split(" in plugin ")[0]
    name = pm.get_name(err.plugin) or repr(err.plugin)
    return PluginLoadError(
        f"the invblocks plugin {name!r} has an {message} (the hooks are: {known}); "
        f"fix or uninstall it, or skip it with {BLOCK_PLUGINS_ENV}={name}"
    )


class PluginLoadError(RuntimeError):
    """An installed plugin's entry point failed to load; the message names it and how to
    skip it."""


class PluginRegistrationError(PluginLoadError, TypeError):
    """A plugin's hook registered something that is not what the hook takes, or failed."""


def _load_error(pm: pluggy.PluginManager, err: Exception) -> Exception:
    """``err`` (raised while loading the entry points) as an error naming the plugin that
    raised it: the first entry point of the group that is neither loaded nor blocked and
    fails to load again. pluggy's errors about a loaded plugin's hooks become one sentence."""
    if isinstance(err, pluggy.PluginValidationError):
        return _hook_error(pm, err)
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if pm.get_plugin(ep.name) is not None or pm.is_blocked(ep.name):
            continue
        try:
            ep.load()
        except Exception as again:
            dist = f" from {ep.dist.name} {ep.dist.version}" if ep.dist is not None else ""
            return PluginLoadError(
                f"the invblocks plugin {ep.name!r} ({ep.value}{dist}) failed to load: "
                f"{type(again).__name__}: {again}. Fix or uninstall it, or skip it with "
                f"{BLOCK_PLUGINS_ENV}={ep.name}"
            )
    return err


def load_plugins(
    plugins: Iterable[tuple[Any, str]] = (), *, autoload: bool | None = None
) -> Registry:
    """Load plugins and call their registration hooks, one plugin at a time, into a new registry."""
    pm = plugin_manager(plugins, autoload=autoload)
    registry = Registry(pm)
    hooks = (
        pm.hook.invblocks_register_blocks,
        pm.hook.invblocks_register_channels,
        pm.hook.invblocks_register_loss_terms,
        pm.hook.invblocks_register_presets,
        pm.hook.invblocks_register_tasks,
        pm.hook.invblocks_register_importers,
    )
    for hook in hooks:
        for impl in reversed(hook.get_hookimpls()):  # in registration order
            view = PluginRegistry(registry, impl.plugin_name)
            try:
                impl.function(**{"registry": view} if "registry" in impl.argnames else {})
            except (PluginLoadError, ValueError):
                raise  # already names the plugin
            except Exception as err:
                raise PluginRegistrationError(
                    f"the invblocks plugin {impl.plugin_name!r} failed in {hook.name}: "
                    f"{type(err).__name__}: {err}"
                ) from err
    return registry


_REGISTRY: Registry | None = None


def get_registry(reload: bool = False) -> Registry:
    """The process-wide registry, loaded on first use (entry points, environment switches)."""
    global _REGISTRY
    if _REGISTRY is None or reload:
        _REGISTRY = load_plugins()
    return _REGISTRY


def tasks() -> dict[str, Task]:
    """All registered tasks by name."""
    return dict(get_registry().tasks)


def get_task(name: str) -> Task:
    """The registered task ``name``; ``KeyError`` listing the known tasks otherwise."""
    return get_registry().get_task(name)
