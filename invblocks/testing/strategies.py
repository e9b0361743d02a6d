"""Hypothesis strategies for block tests: image shapes, float dtypes and seeds.

Requires the ``hypothesis`` package (``pip install invblocks[testing]``).
"""

from __future__ import annotations

import torch
from hypothesis import strategies as st

__all__ = ["dtypes", "image_shapes", "seeds"]


def dtypes() -> st.SearchStrategy[torch.dtype]:
    """``torch.float32`` or ``torch.float64``."""
    return st.sampled_from([torch.float32, torch.float64])


def seeds() -> st.SearchStrategy[int]:
    """Seeds for ``torch.Generator().manual_seed``."""
    return st.integers(min_value=0, max_value=2**31 - 1)


@st.composite
def image_shapes(
    draw: st.DrawFn,
    *,
    channels: int | st.SearchStrategy[int] | None = None,
    multiple: int = 1,
    min_side: int = 1,
    max_side: int = 8,
) -> tuple[int, int, int]:
    """A ``(C, H, W)`` shape (``C`` from ``channels``, default 1-6); ``H`` and ``W`` are
    multiples of ``multiple`` within ``[min_side, max_side]``."""
    if channels is None:
        channels = st.integers(1, 6)
    c = draw(channels) if isinstance(channels, st.SearchStrategy) else channels
    lo = max(1, -(-min_side // multiple))
    hi = max(lo, max_side // multiple)
    h = draw(st.integers(lo, hi)) * multiple
    w = draw(st.integers(lo, hi)) * multiple
    return (c, h, w)
