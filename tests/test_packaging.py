"""The distribution ships every package the code has (setuptools lists them explicitly)."""

import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).parent.parent


def test_every_subpackage_is_listed_for_the_wheel():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for init in (ROOT / "invblocks").rglob("__init__.py")
    }
    assert found - listed == set(), f"add to [tool.setuptools] packages: {found - listed}"
    assert "invblocks_tasks" in listed and config["package-dir"]["invblocks_tasks"] == "tasks"
