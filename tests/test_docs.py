"""The API reference covers every public name and every plugin hook; the README's and the
guides' self-contained examples run."""

import importlib
import inspect
import pkgutil
import re
from pathlib import Path

import pytest
import torch

import invblocks
from invblocks import hookspecs

ROOT = Path(__file__).parent.parent
API = (ROOT / "docs" / "api.rst").read_text()
DOCUMENTED = set(re.findall(r"\.\. automodule:: ([\w.]+)", API))


def public_modules():
    names = {"invblocks.testing", "invblocks.testing.strategies"}
    for info in pkgutil.walk_packages(invblocks.__path__, "invblocks."):
        if not info.name.rsplit(".", 1)[-1].startswith("_") and info.name not in (
            "invblocks.blocks",
            "invblocks.testing",
        ):
            names.add(info.name)
    return names - {"invblocks.__main__"} - DEPRECATED_ALIASES


DEPRECATED_ALIASES: set[str] = set()  # old module paths have no file (invblocks._deprecated)


def test_every_public_module_is_in_the_api_reference():
    missing = sorted(public_modules() - DOCUMENTED)
    assert not missing, f"add to docs/api.rst: {missing}"


def test_every_top_level_name_is_documented_in_some_module():
    documented = set()
    for name in DOCUMENTED:
        documented |= set(getattr(importlib.import_module(name), "__all__", []))
    subpackages = {"blocks", "data", "ops", "presets", "ric", "__version__"}
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


def python_blocks(path):
    """The ```python code blocks of a Markdown file, in order."""
    return re.findall(r"^```python\n(.*?)^```", (ROOT / path).read_text(), re.S | re.M)


def _readme(ns):
    assert ns["e"].shape == (1, 3, 144, 144)  # what the README's comments say
    assert ns["x_hat"].shape == ns["x"].shape == (1, 15, 144, 144)
    assert torch.equal(ns["e"], (ns["e"] * 255).round() / 255)  # 8-bit values
    # the README's next line quotes the parameter count of the same network
    readme = (ROOT / "README.md").read_text()
    count = f"{sum(p.numel() for p in ns['net'].parameters()):,}"
    assert f"({count} parameters" in readme and count in ns["net"].summary()


def _sequence(ns):
    assert ns["net"].dims_out == [(3, 144, 144)] and len(ns["net"]) == 12


def _ricnet(ns):
    result = ns["result"]
    assert result.embedding.shape == result.received.shape == (2, 3, 64, 64)
    assert result.restored.shape == ns["x"].shape and ns["x_hat"].shape == ns["x"].shape
    assert torch.equal(ns["e8"], (ns["e8"] * 255).round() / 255)  # 8-bit values
    assert ns["net"].summary().splitlines()[-1].startswith("channel: Quantizer")


def _graph(ns):
    assert ns["g"].output_dims([(24, 64, 64)]) == [(32, 64, 64)]


def _tasks(ns):
    assert ns["x"].shape == (15, 144, 144) and sum(p.numel() for p in ns["net"].parameters())


@pytest.mark.parametrize(
    ("path", "index", "check"),
    [
        ("README.md", 0, _readme),
        ("docs/networks.md", 0, _sequence),
        ("docs/networks.md", 1, _graph),
        ("docs/networks.md", 2, _ricnet),
        ("docs/tasks.md", 0, _tasks),
    ],
    ids=["README", "networks-sequence", "networks-graph", "networks-ricnet", "tasks"],
)
def test_documented_examples_run(path, index, check):
    torch.manual_seed(0)
    namespace = {}
    with torch.no_grad():  # the examples' values, without keeping activations for a backward
        exec(compile(python_blocks(path)[index], f"{path}[{index}]", "exec"), namespace)
    check(namespace)
