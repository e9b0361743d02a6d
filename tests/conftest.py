"""What several test modules share."""

from pathlib import Path

import pytest


class Payload:
    """Unpickling this writes ``marker``: a stand-in for code in a malicious checkpoint."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "ran"))


@pytest.fixture(scope="session")
def payload():
    """``payload(marker)``: an object whose unpickling writes the file ``marker``."""
    return Payload


PLUGINS = Path(__file__).parent / "fixtures" / "plugins"


def install_plugin(name: str, site: Path) -> Path:
    """Install the fixture plugin distribution ``name`` (``tests/fixtures/plugins/<name>``)
    into the folder ``site`` as pip installs one for its entry points: its package, and a
    ``.dist-info`` with the metadata and the entry points of its ``pyproject.toml``. Put
    ``site`` on ``PYTHONPATH`` (a subprocess) or ``sys.path``; returns it."""
    import shutil

    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib

    source = PLUGINS / name
    project = tomllib.loads((source / "pyproject.toml").read_text())["project"]
    site.mkdir(parents=True, exist_ok=True)
    for package in source.iterdir():
        if (package / "__init__.py").is_file():
            shutil.copytree(package, site / package.name, dirs_exist_ok=True)
    info = site / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n"
    )
    points = project["entry-points"]["invblocks"]
    (info / "entry_points.txt").write_text(
        "[invblocks]\n" + "".join(f"{k} = {v}\n" for k, v in points.items())
    )
    return site


@pytest.fixture
def plugin_env(tmp_path):
    """``plugin_env(name)``: the environment of a subprocess in which the fixture plugin
    ``name`` is installed (:func:`install_plugin`)."""
    import os

    def env(*names: str) -> dict[str, str]:
        site = tmp_path / "site"
        for name in names:
            install_plugin(name, site)
        path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH")) if p)
        return {**os.environ, "PYTHONPATH": path}

    return env
