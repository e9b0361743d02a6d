"""Deprecated alias of :mod:`invblocks.step` (removed in 0.3)."""

from __future__ import annotations

import warnings

from .step import ric_step

__all__ = ["ric_step"]

warnings.warn(
    "invblocks.training is deprecated and will be removed in 0.3: use invblocks.step",
    DeprecationWarning,
    stacklevel=2,
)
