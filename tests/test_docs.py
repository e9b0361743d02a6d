"""The API reference covers every public name and every plugin hook."""

import importlib
import inspect
import pkgutil
import re
from pathlib import Path

import invblocks
from invblocks import hookspecs

API = (Path(__file__).parent.parent / "docs" / "api.rst").read_text()
DOCUMENTED = set(re.findall(r"\.\. automodule:: ([\w.]+)", API))


def public_modules():
    names = {"invblocks.testing", "invblocks.testing.strategies"}
    for info in pkgutil.walk_packages(invblocks.__path__, "invblocks."):
        if not info.name.rsplit(".", 1)[-1].startswith("_") and info.name not in (
            "invblocks.blocks",
            "invblocks.testing",
        ):
            names.add(info.name)
    return names - {"invblocks.__main__"}


def test_every_public_module_is_in_the_api_reference():
    missing = sorted(public_modules() - DOCUMENTED)
    assert not missing, f"add to docs/api.rst: {missing}"


def test_every_top_level_name_is_documented_in_some_module():
    documented = set()
    for name in DOCUMENTED:
        documented |= set(getattr(importlib.import_module(name), "__all__", []))
    subpackages = {"blocks", "data", "ops", "presets", "__version__"}
    missing = sorted(set(invblocks.__all__) - documented - subpackages)
    assert not missing, f"public names not in any documented module's __all__: {missing}"


def test_every_hookspec_is_documented():
    hooks = [
        n
        for n, f in inspect.getmembers(hookspecs, inspect.isfunction)
        if n.startswith("invblocks_")
    ]
    assert set(hooks) <= set(hookspecs.__all__)
    assert "invblocks.hookspecs" in DOCUMENTED
    for name in hooks:
        doc = inspect.getdoc(getattr(hookspecs, name)) or ""
        assert len(doc) > 40 and "versionadded" in doc, name
    guide = (Path(__file__).parent.parent / "docs" / "tasks.md").read_text()
    assert all(name in guide for name in hooks)
