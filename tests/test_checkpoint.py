"""invblocks.checkpoint: atomic folders, LATEST, keeping two, format 1 upgraded, errors."""

import json

import pytest
import torch

from invblocks import presets
from invblocks.checkpoint import (
    FORMAT,
    find_checkpoint,
    load_checkpoint,
    load_network,
    save_checkpoint,
    save_model,
    upgrade,
)


def meta(net):
    return {"task": "video", "n_inputs": 2, "network": net.get_config()}


def tiny():
    return presets.iicnet(2, blocks=1, width=4, growth=4, size=(8, 8))


def test_latest_names_the_newest_complete_checkpoint_and_two_are_kept(tmp_path):
    net = tiny()
    for step in (1, 2, 3):
        save_checkpoint(
            tmp_path, step=step, net=net, meta=meta(net), train_state={"x": torch.ones(1)}
        )
    root = tmp_path / "checkpoints"
    assert (root / "LATEST").read_text() == "step-00000003"
    assert sorted(p.name for p in root.iterdir()) == ["LATEST", "step-00000002", "step-00000003"]
    assert find_checkpoint(tmp_path) == find_checkpoint(root) == root / "step-00000003"
    config, state, folder = load_checkpoint(tmp_path)
    assert config["format"] == FORMAT and config["step"] == 3
    again = load_network(config, state, str(folder))
    assert all(
        torch.equal(a, b)
        for a, b in zip(again.state_dict().values(), net.state_dict().values(), strict=True)
    )


def test_a_model_folder_is_a_checkpoint_without_training_state(tmp_path):
    net = tiny()
    folder = save_model(tmp_path / "m", net=net, meta=meta(net))
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    assert find_checkpoint(folder) == folder


def test_missing_and_broken_checkpoints_are_named(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        find_checkpoint(tmp_path / "nothing")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    with pytest.raises(ValueError, match="a symbolic link to nothing"):
        find_checkpoint(tmp_path / "loop")
    (tmp_path / "loop").unlink()
    with pytest.raises(ValueError, match="expected a run folder or a checkpoint folder"):
        find_checkpoint(tmp_path)
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "LATEST").write_text("step-00000009")
    with pytest.raises(ValueError, match="which is not a complete checkpoint"):
        find_checkpoint(tmp_path)
    for escape in ("../../other/checkpoints/step-00000001", "..", "", "/etc"):
        (tmp_path / "checkpoints" / "LATEST").write_text(escape)  # never followed out
        with pytest.raises(ValueError, match="LATEST is damaged: it names"):
            find_checkpoint(tmp_path)


def test_format_1_is_upgraded():
    net = tiny()
    body = net.body.get_config()
    body["nodes"].append(net.channel.get_config())  # 0.1.0: the quantiser was the last node
    old = {"format": "invblocks-checkpoint-1", "task": "video", "n_inputs": 2, "network": body}
    state = {k.removeprefix("body."): v for k, v in net.state_dict().items()}
    config, upgraded = upgrade(old, state)
    assert config["format"] == FORMAT and config["network"]["type"] == "RICNet"
    assert config["network"]["channel"]["type"] == "Quantizer"
    assert set(upgraded) == set(net.state_dict())
    assert json.dumps(config)  # still JSON
    assert upgrade(config, upgraded)[0] is config  # already current: unchanged


@pytest.mark.parametrize("n_inputs", [0, 3, 10**20, "2", True, None, 2.0])
def test_a_model_whose_input_count_is_not_its_networks_is_refused(tmp_path, n_inputs):
    from invblocks.model import Model

    net = tiny()
    folder = save_model(tmp_path / "m", net=net, meta={**meta(net), "n_inputs": n_inputs})
    with pytest.raises(ValueError, match=r"config\.json says n_inputs .*its network takes 2 3-"):
        Model.load(folder, device="cpu")


@pytest.mark.parametrize("trained", [None, "abc", [1, 2]])
def test_eval_and_resume_survive_a_checkpoint_whose_training_config_is_not_a_table(
    tmp_path, trained, capsys
):
    from invblocks.cli import main

    net = presets.iicnet(3, blocks=1, width=4, growth=4, size=(8, 8))
    config = {**meta(net), "n_inputs": 3, "train_config": trained}
    save_checkpoint(tmp_path, step=1, net=net, meta=config, train_state={"x": torch.ones(1)})
    assert main(["eval", "--model", str(tmp_path), "--samples", "1", "--device", "cpu"]) == 0
    assert json.loads(capsys.readouterr().out)["train_crop"] is None
    if trained is not None:  # a resume names the field
        from invblocks.config import TrainConfig
        from invblocks.trainer import _check_resume

        with pytest.raises(ValueError, match="train_config is damaged: expected a table"):
            _check_resume(TrainConfig(task="video"), config, 1)


@pytest.mark.parametrize("word", ["NaN", "Infinity", "-Infinity"])
def test_a_config_holding_nan_or_infinity_is_refused(tmp_path, word):
    """Python's JSON parser takes NaN and Infinity; no file invblocks writes holds them."""
    from invblocks.model import Model

    net = tiny()
    folder = save_model(tmp_path / "m", net=net, meta=meta(net))
    text = (folder / "config.json").read_text()
    assert '"clamp": ' in text
    head, tail = text.split('"clamp": ', 1)
    (folder / "config.json").write_text(head + f'"clamp": {word}' + tail[tail.index(",") :])
    with pytest.raises(ValueError, match=f"it holds {word}, which JSON does not have"):
        Model.load(folder, device="cpu")
