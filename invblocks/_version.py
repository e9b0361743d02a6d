"""The installed version of invblocks, without importing the package's modules."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

__all__ = ["VERSION"]

try:
    VERSION = version("invblocks")
except PackageNotFoundError:  # running from a source tree that is not installed
    VERSION = "0.0.0"
