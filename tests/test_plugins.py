"""The plugin system: entry points, switches, duplicates, and the built-in tasks through it."""

import json
import types

import pytest
import torch

import invblocks
from invblocks import Task, hookimpl
from invblocks.plugins import BLOCK_PLUGINS_ENV, DISABLE_AUTOLOAD_ENV, load_plugins
from invblocks.registry import BLOCKS

BUILT_IN = {
    "video": "video",
    "video-x2": "video",
    "mononizing": "mononizing",
    "dual-view-x2": "dual-view",
    "dual-view-x4": "dual-view",
    "dual-view-x8": "dual-view",
    "composition": "composition",
    "hiding": "hiding",
    "grayscale": "single-image",
    "rescaling-x2": "single-image",
    "rescaling-x4": "single-image",
}


def make_task(name):
    return Task(
        name=name,
        description="test",
        inputs=1,
        default_inputs=1,
        sample=lambda request: [request.items[0]],
        default_data=lambda: invblocks.data.DataSplit(
            train=[torch.rand(3, 8, 8)], val=[torch.rand(3, 8, 8)], description="noise"
        ),
        reference=lambda x, n: x,
        network=lambda n, **kw: invblocks.Sequence(3, 8, 8),
    )


def plugin(**hooks):
    return types.SimpleNamespace(**{k: hookimpl(v) for k, v in hooks.items()})


def test_built_in_tasks_come_through_entry_points():
    registry = load_plugins()
    found = {name: task.plugin for name, task in registry.tasks.items()}
    for name, owner in BUILT_IN.items():
        assert found[name] == owner
    assert set(BUILT_IN.values()) <= set(registry.plugin_names())


def test_autoload_can_be_disabled(monkeypatch):
    monkeypatch.setenv(DISABLE_AUTOLOAD_ENV, "1")
    assert load_plugins().tasks == {}
    extra = plugin(invblocks_register_tasks=lambda registry: registry.add_task(make_task("mine")))
    assert list(load_plugins([(extra, "mine-plugin")]).tasks) == ["mine"]


def test_named_plugins_can_be_blocked(monkeypatch):
    monkeypatch.setenv(BLOCK_PLUGINS_ENV, "video, hiding")
    names = set(load_plugins().tasks)
    assert "video" not in names and "hiding" not in names and "grayscale" in names


def test_duplicate_task_names_name_both_plugins():
    dup = plugin(invblocks_register_tasks=lambda registry: registry.add_task(make_task("hiding")))
    with pytest.raises(
        ValueError, match="'hiding' registered twice: by plugin 'hiding' and by plugin 'copycat'"
    ):
        load_plugins([(dup, "copycat")])


def test_duplicate_block_names_name_both_owners():
    class HaarDownscale(invblocks.Block):
        pass

    dup = plugin(invblocks_register_blocks=lambda registry: registry.add_block(HaarDownscale))
    with pytest.raises(
        ValueError, match=r"'HaarDownscale' registered twice: by invblocks .* by plugin 'blocky'"
    ):
        load_plugins([(dup, "blocky")], autoload=False)


def test_plugin_blocks_rebuild_from_json():
    class Doubler(invblocks.Block):
        def __init__(self, dims_in=None, *, factor=2.0):
            super().__init__(dims_in)
            self.factor = factor

        def _forward(self, xs, c):
            return xs[0] * self.factor, None

        def _inverse(self, ys, c):
            return ys[0] / self.factor, None

    p = plugin(
        invblocks_register_blocks=lambda registry: registry.add_block(Doubler, "test.Doubler")
    )
    try:
        load_plugins([(p, "doubler")], autoload=False)
        net = invblocks.Sequence(3, 4, 4).append(Doubler, factor=3.0)
        clone = invblocks.block_from_config(net.get_config())
        assert clone[0].factor == 3.0
        assert torch.equal(clone(torch.ones(1, 3, 4, 4)), torch.full((1, 3, 4, 4), 3.0))
    finally:
        BLOCKS.pop("test.Doubler", None)


def test_unknown_hooks_are_rejected():
    bad = types.SimpleNamespace(invblocks_register_taks=hookimpl(lambda registry: None))
    with pytest.raises(Exception, match="unknown hook 'invblocks_register_taks'"):
        load_plugins([(bad, "typo")], autoload=False)


def test_unknown_task_lists_known_ones():
    with pytest.raises(KeyError, match=r"unknown task 'vdeo'; registered tasks: .*video"):
        invblocks.get_task("vdeo")


def test_registering_a_non_task_is_an_error():
    p = plugin(invblocks_register_tasks=lambda registry: registry.add_task("video"))
    with pytest.raises(
        TypeError, match=r"plugin 'strings' registered 'video', which is not an invblocks\.Task"
    ):
        load_plugins([(p, "strings")], autoload=False)


@pytest.fixture()
def broken_plugin(tmp_path, monkeypatch):
    """An installed distribution whose ``invblocks`` entry point raises on import."""
    (tmp_path / "broken_invblocks_plugin.py").write_text(
        "raise ImportError('needs the package frobnicate')\n"
    )
    info = tmp_path / "broken_invblocks_plugin-0.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: broken-invblocks-plugin\nVersion: 0.3\n"
    )
    (info / "entry_points.txt").write_text("[invblocks]\nbroken = broken_invblocks_plugin\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv(DISABLE_AUTOLOAD_ENV, raising=False)
    monkeypatch.delenv(BLOCK_PLUGINS_ENV, raising=False)
    return "broken"


def test_a_plugin_that_fails_to_load_is_named_with_the_way_to_skip_it(broken_plugin, monkeypatch):
    from invblocks.plugins import PluginLoadError

    with pytest.raises(PluginLoadError) as info:
        load_plugins()
    message = str(info.value)
    assert "plugin 'broken' (broken_invblocks_plugin from broken-invblocks-plugin 0.3)" in message
    assert "ImportError: needs the package frobnicate" in message
    assert f"{BLOCK_PLUGINS_ENV}=broken" in message
    monkeypatch.setenv(BLOCK_PLUGINS_ENV, broken_plugin)  # the way out the message gives
    assert "video" in load_plugins().tasks


def test_the_command_line_reports_a_broken_plugin_in_one_line(broken_plugin, capsys):
    from invblocks import plugins
    from invblocks.cli import main

    saved = plugins._REGISTRY
    plugins._REGISTRY = None  # load afresh, as a new process would
    try:
        assert main(["tasks"]) == 2
    finally:
        plugins._REGISTRY = saved
    err = capsys.readouterr().err
    assert err.startswith("invblocks tasks: error: the invblocks plugin 'broken'")
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_a_plugin_written_for_0_1_trains_embeds_and_restores_with_deprecation_warnings(
    plugin_env, tmp_path
):
    import subprocess
    import sys

    env = {**plugin_env("legacy01"), "PYTHONWARNINGS": "always::DeprecationWarning"}

    def cli(*args):
        proc = subprocess.run(
            [sys.executable, "-m", "invblocks", *map(str, args)],
            capture_output=True, text=True, env=env, timeout=300,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
        verdict = "warning: restores "  # the closing line on a model two steps old
        warned = [
            line
            for line in proc.stderr.splitlines()
            if "warning" in line.lower() and not line.startswith(verdict)
        ]
        assert warned and all("deprecated" in line for line in warned), warned
        return " ".join(warned)

    run = tmp_path / "run"
    sets = ["steps=2", "val_every=2", "ckpt_every=2", "val_samples=1", "device=cpu"]
    said = cli("train", "--task", "legacy-raw", "--out", run, "--quiet",
               *[a for s in sets for a in ("--set", s)])  # fmt: skip
    for form in (
        "the 0.1 signature",  # a sampler of six arguments
        "extra_losses",
        "metric names",
        "TrainDefaults quantizer='ste'",
        "invblocks.losses is deprecated",
        "invblocks.blocks.Quantizer is deprecated",
        "iterating a network's nodes",
        "whose last node is its channel",
    ):
        assert form in said, form
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert records[0]["extra_losses"] > 0  # 0.1's extra losses take part
    config = json.loads((run / "checkpoints" / "step-00000002" / "config.json").read_text())
    channel = config["network"]["channel"]  # the preset's quantiser became the channel...
    assert channel["type"] == "Quantizer" and channel["args"]["train_mode"] == "ste"  # ...as set
    assert config["network"]["body"]["nodes"][-1]["type"] == "WIC"
    raw = tmp_path / "raw.png"  # 4-channel images travel as RGBA PNGs
    invblocks.io.write_png(torch.rand(4, 32, 40, generator=torch.Generator().manual_seed(0)), raw)
    cli("embed", "--model", run, raw, "-o", tmp_path / "x.png", "--device", "cpu")
    cli("restore", "--model", run, tmp_path / "x.png", "-o", tmp_path / "back")
    back = invblocks.io.read_image(tmp_path / "back" / "restored_0.png", mode="RGBA")
    assert back.shape == (4, 32, 40)


def test_plugins_add_import_weights_methods():
    def convert_mine(state, *, config, path):
        raise ValueError("not a checkpoint of mine")

    mine = plugin(
        invblocks_register_importers=lambda registry: registry.add_importer("mine", convert_mine)
    )
    registry = load_plugins([(mine, "mine-plugin")], autoload=False)
    assert dict(registry.importers) == {"mine": convert_mine}
    assert registry.importers.owner("mine") == "plugin 'mine-plugin'"
    again = plugin(
        invblocks_register_importers=lambda registry: registry.add_importer("mine", lambda s: s)
    )
    with pytest.raises(ValueError, match=r"method name 'mine' registered twice: by plugin") as info:
        load_plugins([(mine, "mine-plugin"), (again, "other")], autoload=False)
    assert "plugin 'mine-plugin'" in str(info.value) and "plugin 'other'" in str(info.value)
    bad = plugin(invblocks_register_importers=lambda registry: registry.add_importer("x", 3))
    with pytest.raises(TypeError, match="plugin 'numbers' registered 3 as the import-weights"):
        load_plugins([(bad, "numbers")], autoload=False)
