"""FrEIA's ``InvertibleModule``, without the rest of FrEIA until it is needed.

``import FrEIA`` imports every FrEIA module, and its all-in-one block imports ``scipy.stats``:
0.7 s of a command's start on a 2-core machine, for a base class. This module loads FrEIA's
``modules/base.py`` alone (it imports only torch) under its own name, so that a later ``import
FrEIA`` (the FrEIA adapter, a user's code) finds it in ``sys.modules`` and every
``InvertibleModule`` is this one class.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import TYPE_CHECKING

__all__ = ["InvertibleModule"]


def _load() -> type:
    name = "FrEIA.modules.base"
    module = sys.modules.get(name)
    if module is None:
        spec = importlib.util.find_spec("FrEIA")  # finds the package without importing it
        if spec is None or not spec.submodule_search_locations:
            raise ImportError("invblocks needs FrEIA: pip install FrEIA")
        path = Path(next(iter(spec.submodule_search_locations))) / "modules" / "base.py"
        base = importlib.util.spec_from_file_location(name, path)
        if base is None or base.loader is None:
            raise ImportError(f"cannot load FrEIA's base module from {path}")
        module = importlib.util.module_from_spec(base)
        sys.modules[name] = module
        try:
            base.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
    return module.InvertibleModule  # type: ignore[no-any-return]


if TYPE_CHECKING:
    from FrEIA.modules import InvertibleModule
else:
    InvertibleModule = _load()
