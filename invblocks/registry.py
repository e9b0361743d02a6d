"""The block registry: names to classes, so networks can be rebuilt from JSON configs."""

from __future__ import annotations

from typing import Any, TypeVar

__all__ = [
    "BLOCKS",
    "block_class",
    "block_from_config",
    "block_owner",
    "config_fields",
    "register_block",
]

T = TypeVar("T", bound=type)

BLOCKS: dict[str, type] = {}
"""Registered block classes by name. Plugins add theirs through the plugin hooks."""

_OWNERS: dict[str, str] = {}


def register_block(cls: T, name: str | None = None, *, owner: str = "invblocks") -> T:
    """Register ``cls`` under ``name`` (default: its class name); usable as a decorator.

    Raises ``ValueError`` naming both owners when the name is already taken by another class.
    """
    key = name or cls.__name__
    if key in BLOCKS and BLOCKS[key] is not cls:
        raise ValueError(
            f"block name {key!r} registered twice: by {_OWNERS[key]} "
            f"({BLOCKS[key].__module__}.{BLOCKS[key].__qualname__}) and by {owner} "
            f"({cls.__module__}.{cls.__qualname__})"
        )
    BLOCKS[key] = cls
    _OWNERS[key] = owner
    return cls


def block_owner(name: str) -> str:
    """Who registered the block type ``name`` (``"invblocks"`` or ``"plugin '<name>'"``)."""
    return _OWNERS.get(name, "?")


def block_class(name: str) -> Any:
    """The class registered as ``name``; ``KeyError`` listing the known names otherwise."""
    try:
        return BLOCKS[name]
    except KeyError:
        raise KeyError(f"unknown block type {name!r}; registered: {sorted(BLOCKS)}") from None


def block_from_config(config: dict[str, Any]) -> Any:
    """Rebuild a block (or a container) from :meth:`~invblocks.block.Block.get_config` output."""
    if not isinstance(config, dict) or "type" not in config:
        raise ValueError(f"a block config is a dict with a 'type'; received {config!r}")
    cls = block_class(config["type"])
    from_config = getattr(cls, "from_config", None)
    if from_config is not None:
        return from_config(config)
    args = config.get("args", {})
    if not isinstance(args, dict):
        raise ValueError(f"{config['type']}: 'args' must be a dict; received {args!r}")
    try:
        return cls(**args)
    except TypeError as err:  # an argument the class does not take, or a missing one
        raise ValueError(f"cannot build {config['type']} from {args!r}: {err}") from err


def config_fields(config: dict[str, Any], *keys: str) -> list[Any]:
    """The values of ``keys`` in a container's config; ``ValueError`` naming the missing ones.

    Example:
        >>> config_fields({"type": "Sequence", "dims": [[3, 8, 8]], "nodes": []}, "dims", "nodes")
        [[[3, 8, 8]], []]
    """
    missing = [k for k in keys if k not in config]
    if missing:
        raise ValueError(
            f"a {config.get('type')} config needs the keys {list(keys)}; {missing} missing in "
            f"{config!r}"
        )
    return [config[k] for k in keys]
