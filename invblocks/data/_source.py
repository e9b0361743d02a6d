"""A task's data: training and validation items (:class:`DataSplit`), and the split."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs


@attrs.frozen(kw_only=True)
class DataSplit:
    """Loaded data for a task: training and validation items and a description of their origin.

    What an item is depends on the reader: an image ``(C, H, W)``, a clip ``(T, C, H, W)``, a
    stereo pair ``(left, right)`` or layers ``(foreground, alpha, background)``; the built-in
    readers keep ``uint8`` values (samplers convert with :func:`invblocks.ops.to_float`).
    """

    train: list[Any]
    val: list[Any]
    description: str


def split_items(items: Sequence[Any], val_fraction: float = 0.1) -> tuple[list[Any], list[Any]]:
    """Deterministic split: every ``round(1/val_fraction)``-th item (from the last) validates."""
    items = list(items)
    if len(items) < 2:
        return items, items
    step = max(2, round(1 / val_fraction))
    val_idx = set(range(len(items) - 1, -1, -step))
    return [x for i, x in enumerate(items) if i not in val_idx], [items[i] for i in sorted(val_idx)]
