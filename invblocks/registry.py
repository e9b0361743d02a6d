"""Registries: names to objects of one kind, with who registered each.

One idiom for every kind a plugin can add: block classes (:data:`BLOCKS`, so networks
rebuild from JSON configs), channels (:data:`invblocks.ric.channel.CHANNELS`), loss terms
(:data:`invblocks.ric.losses.LOSS_TERMS`), presets (:data:`invblocks.presets.PRESETS`) and
tasks (``Registry.tasks`` of :class:`invblocks.plugins.Registry`). A :class:`NamedRegistry`
is a ``dict`` (read it as one) whose :meth:`~NamedRegistry.register` refuses a name taken by
another object, naming both owners, and whose lookups fail listing the known names.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from ._text import short as _short

__all__ = [
    "BLOCKS",
    "NamedRegistry",
    "block_class",
    "block_from_config",
    "block_owner",
    "config_fields",
    "register_block",
]

T = TypeVar("T")
V = TypeVar("V")


class NamedRegistry(dict[str, V]):
    """Objects of one ``kind`` by name (a ``dict``), with the owner of each.

    Arguments:
        kind: What the registry holds, for messages (``"block"``, ``"channel"``).
        check: ``f(obj) -> None`` raising ``TypeError`` for an object of the wrong kind.

    Example:
        >>> colours = NamedRegistry("colour")
        >>> colours.register("#ff0000", "red")
        '#ff0000'
        >>> colours.lookup("red"), colours.owner("red")
        ('#ff0000', 'invblocks')
        >>> colours.lookup("blue")
        Traceback (most recent call last):
        ...
        KeyError: "unknown colour 'blue'; registered: red"
    """

    def __init__(self, kind: str, *, check: Callable[[Any], None] | None = None) -> None:
        super().__init__()
        self.kind = kind
        self._check = check
        self._owners: dict[str, str] = {}

    def register(self, obj: T, name: str | None = None, *, owner: str = "invblocks") -> T:
        """Register ``obj`` under ``name`` (default: its ``name`` attribute, else its
        ``__name__``); returns ``obj``, so a class can be registered by a decorator.

        Raises:
            ValueError: naming both owners when another object has the name.
            TypeError: when ``obj`` is not of the registry's kind.
        """
        key = name or getattr(obj, "name", None) or getattr(obj, "__name__", None)
        if not isinstance(key, str) or not key:
            raise ValueError(f"a {self.kind} needs a name; received {obj!r}")
        if self._check is not None:
            self._check(obj)
        known = self.get(key)
        if known is not None and known is not obj:
            raise ValueError(
                f"{self.kind} name {key!r} registered twice: by {self._owners.get(key, '?')}"
                f"{_describe(known)} and by {owner}{_describe(obj)}"
            )
        self[key] = obj  # type: ignore[assignment]
        self._owners[key] = owner
        return obj

    def owner(self, name: str) -> str:
        """Who registered ``name``: ``"invblocks"`` or ``"plugin '<name>'"`` (``"?"``
        when unknown)."""
        return self._owners.get(name, "?")

    def lookup(self, name: str) -> V:
        """The object registered as ``name``; ``KeyError`` listing the known names."""
        try:
            return self[name]
        except KeyError:
            known = ", ".join(sorted(self)) or "none"
            raise KeyError(f"unknown {self.kind} {name!r}; registered: {known}") from None


def _describe(obj: Any) -> str:
    """`` (module.qualname)`` of a class or function, nothing for other objects."""
    if isinstance(obj, type) or (callable(obj) and hasattr(obj, "__qualname__")):
        return f" ({obj.__module__}.{obj.__qualname__})"
    return ""


BLOCKS: NamedRegistry[type] = NamedRegistry("block type")
"""Registered block classes by name. Plugins add theirs through the plugin hooks."""


def register_block(cls: T, name: str | None = None, *, owner: str = "invblocks") -> T:
    """Register ``cls`` under ``name`` (default: its class name); usable as a decorator.

    Raises ``ValueError`` naming both owners when the name is already taken by another class.
    """
    return BLOCKS.register(cls, name or getattr(cls, "__name__", None), owner=owner)


def block_owner(name: str) -> str:
    """Who registered the block type ``name`` (``"invblocks"`` or ``"plugin '<name>'"``)."""
    return BLOCKS.owner(name)


def block_class(name: str) -> Any:
    """The class registered as ``name``; ``KeyError`` listing the known names otherwise."""
    return BLOCKS.lookup(name)


def block_from_config(config: dict[str, Any]) -> Any:
    """Rebuild a block (or a container) from :meth:`~invblocks.block.Block.get_config` output."""
    if not isinstance(config, dict) or "type" not in config:
        raise ValueError(f"a block config is a dict with a 'type'; received {_short(config)}")
    cls = block_class(config["type"])
    from_config = getattr(cls, "from_config", None)
    if from_config is not None:
        return from_config(config)
    args = config.get("args", {})
    if not isinstance(args, dict):
        raise ValueError(f"{config['type']}: 'args' must be a dict; received {_short(args)}")
    try:
        return cls(**args)
    except TypeError as err:  # an argument the class does not take, or a missing one
        raise ValueError(f"cannot build {config['type']} from {_short(args)}: {err}") from err


def config_fields(config: dict[str, Any], *keys: str) -> list[Any]:
    """The values of ``keys`` in a container's config; ``ValueError`` naming the missing ones.

    Example:
        >>> config_fields({"type": "Sequence", "dims": [[3, 8, 8]], "nodes": []}, "dims", "nodes")
        [[[3, 8, 8]], []]
    """
    missing = [k for k in keys if k not in config]
    if missing:
        raise ValueError(
            f"a {config.get('type')} config needs the keys {list(keys)}; {missing} missing"
        )
    return [config[k] for k in keys]
