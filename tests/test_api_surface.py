"""The public API, snapshot: a name that disappears or appears shows up here in review.

Regenerate after a deliberate change: ``INVBLOCKS_UPDATE_API=1 pytest tests/test_api_surface.py``.
"""

import importlib
import json
import os
import warnings
from pathlib import Path

import invblocks

SNAPSHOT = Path(__file__).parent / "api_surface.json"
MODULES = sorted(
    [f"invblocks.{name}" for name in invblocks._SUBMODULES if name not in ("cli",)]
    + ["invblocks", "invblocks.blocks", "invblocks.data", "invblocks.ops", "invblocks.presets"]
)


def surface():
    found = {}
    for name in MODULES:
        with warnings.catch_warnings():  # deprecated alias modules are part of it for now
            warnings.simplefilter("ignore", DeprecationWarning)
            module = importlib.import_module(name)
        found[name] = sorted(getattr(module, "__all__", []))
    return found


def test_the_public_api_is_the_snapshot():
    current = surface()
    if os.environ.get("INVBLOCKS_UPDATE_API"):
        SNAPSHOT.write_text(json.dumps(current, indent=1, sort_keys=True) + "\n")
    recorded = json.loads(SNAPSHOT.read_text())
    removed = {m: sorted(set(recorded.get(m, [])) - set(names)) for m, names in current.items()}
    added = {m: sorted(set(names) - set(recorded.get(m, []))) for m, names in current.items()}
    assert not any(removed.values()) and not any(added.values()), (
        f"removed: { {m: v for m, v in removed.items() if v} }; "
        f"added: { {m: v for m, v in added.items() if v} } (INVBLOCKS_UPDATE_API=1 to accept)"
    )
    assert set(recorded) == set(current)
