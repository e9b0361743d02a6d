"""Importing the InvCompress authors' checkpoints: the imported network computes what the
authors' code computes.

``fixtures/invcompress_reference.*`` were recorded from the authors' ``InvCompress(N=128)``
(``fixtures/record_invcompress.py``, run by hand against their repository) filled with the
weights of ``fixtures/invcompress_recipe.py`` and run in float64. Here the same weights are
made again from the JSON alone, saved in the authors' two checkpoint formats, imported through
the command line and the Python API, and every recorded quantity is computed by the imported
network from the same inputs: the analysis, the hyper-analysis, the rounding of the
hyper-latent around the file's medians, the hyper-synthesis, the entropy parameters with the
context model, the synthesis and the likelihoods.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch
from invblocks_compress.entropy import gaussian_likelihood
from invblocks_compress.published import (
    INVCOMPRESS_KEYS,
    NOT_NEEDED,
    authors_shapes,
    convert_invcompress,
)
from safetensors.torch import load_file

import invblocks
from invblocks.cli import main
from invblocks.published import convert, import_weights, importers, read_state_dict

FIXTURES = Path(__file__).parent / "fixtures"
REFERENCE = json.loads((FIXTURES / "invcompress_reference.json").read_text())
RECORDED = load_file(FIXTURES / "invcompress_reference.safetensors")


def _recipe():
    spec = importlib.util.spec_from_file_location(
        "invcompress_recipe", FIXTURES / "invcompress_recipe.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


RECIPE = _recipe()


@pytest.fixture(scope="module")
def authors_state():
    state = RECIPE.authors_state_dict(REFERENCE)
    assert RECIPE.digest(state) == REFERENCE["digest"], (
        "this torch makes other random numbers than the one the fixture was recorded with "
        f"({REFERENCE['torch']}): record it again with fixtures/record_invcompress.py"
    )
    return state


@pytest.fixture(scope="module")
def files(tmp_path_factory, authors_state):
    """The state dict as the authors' update_model writes it (bare, its coder's tables
    filled) and as their training script does (under "state_dict", beside the optimisers)."""
    folder = tmp_path_factory.mktemp("invcompress")
    updated = dict(authors_state)
    for name, spec in REFERENCE["updated_buffers"].items():
        dtype = getattr(torch, spec["dtype"])
        updated[name] = torch.arange(torch.Size(spec["shape"]).numel()).reshape(spec["shape"])
        updated[name] = updated[name].to(dtype)
    bare = folder / "checkpoint_updated" / "checkpoint_best_loss-53ff4ccc.pth.tar"
    bare.parent.mkdir()
    torch.save(updated, bare)
    optimizer = {"state": {}, "param_groups": [{"lr": 1e-5, "betas": (0.9, 0.999), "params": [0]}]}
    trained = folder / "checkpoints" / "checkpoint_best_loss.pth.tar"
    trained.parent.mkdir()
    torch.save(
        {
            "epoch": 600,
            "state_dict": authors_state,
            "loss": torch.tensor(0.8125),
            "optimizer": optimizer,
            "aux_optimizer": optimizer,
            "lr_scheduler": {"milestones": Counter({450: 1, 550: 1}), "last_epoch": 600},
        },
        trained,
    )
    return {"bare": bare, "trained": trained}


@pytest.fixture(scope="module")
def imported(files, tmp_path_factory):
    """The bare file imported through the command line, in another process."""
    out = tmp_path_factory.mktemp("models") / "invcompress-q3"
    proc = subprocess.run(
        [sys.executable, "-m", "invblocks", "import-weights", "invcompress", str(files["bare"]),
         "-o", str(out)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"invcompress N=128 model for task 'compression' (1 inputs) written to {out}" in (
        proc.stdout
    )
    return out


def close(ours, theirs, rtol=1e-9):
    """Equal to ``rtol`` of each value, or of the largest where a value is near zero."""
    torch.testing.assert_close(ours, theirs, rtol=rtol, atol=rtol * float(theirs.abs().max()))


def computes_the_authors_outputs(net):
    """Every recorded quantity, computed by ``net`` in float64 from the recorded inputs of
    its stage (so a difference points at the stage that has it)."""
    net = net.double().eval()
    ch = net.channel
    r = RECORDED
    x = RECIPE.authors_input(REFERENCE["recipe"])
    with torch.no_grad():
        (y,), _ = net.body([x])
        close(y, r["y"])
        close(ch.h_a(r["y"]), r["z"])
        _, z_hat = ch._round_z(r["z"])  # around the medians of the file's quantiles
        assert torch.equal(z_hat, r["z_hat"])
        close(ch.h_s(r["z_hat"]), r["params"])
        y_hat = torch.round(r["y"])  # the authors' forward() rounds y without the means
        scales, means = ch._gaussian(r["params"], ch.context_prediction(y_hat))
        close(scales, r["scales"])
        close(means, r["means"])
        (x_hat,), _ = net.body([y_hat], rev=True)
        close(x_hat, r["x_hat"])
        centred = torch.round(r["y"] - r["means"]) + r["means"] - r["means"]
        lik_y = gaussian_likelihood(centred, r["scales"])
        lik_z = ch.density.likelihood(r["z_hat"])
    # the authors' bounds are float32 buffers (0.11 is 0.10999999940395355 there, 1e-9 is
    # 9.9999997e-10), which float64 tells apart from ours: exact away from the bounds
    free = (r["scales"] > 0.11) & (r["likelihoods_y"] > 1e-9)
    close(lik_y[free], r["likelihoods_y"][free])
    close(lik_y, r["likelihoods_y"], rtol=2e-7)
    close(lik_z, r["likelihoods_z"], rtol=1e-8)
    return x


def test_the_authors_layout_is_the_recorded_one():
    recorded = {k: tuple(v) for k, v in REFERENCE["parameters"].items()}
    recorded["context_prediction.mask"] = tuple(
        REFERENCE["buffers"]["context_prediction.mask"]["shape"]
    )
    assert authors_shapes(128) == recorded
    assert set(REFERENCE["order"]) == set(recorded) | set(NOT_NEEDED)
    theirs = [a for a, _ in INVCOMPRESS_KEYS]
    assert len(set(theirs)) == len(theirs) and "context_prediction.mask" in theirs
    assert sum(
        torch.Size(s).numel() for k, s in recorded.items() if k != "context_prediction.mask"
    ) == (43_264_827)


def test_the_command_line_import_computes_the_authors_forward(imported, authors_state):
    config = json.loads((imported / "config.json").read_text())
    assert config["task"] == "compression" and config["n_inputs"] == 1
    assert config["source"]["method"] == "invcompress"
    assert config["source"]["config"] == "invcompress N=128"
    model = invblocks.Model.load(imported, device="cpu")
    assert model.task.name == "compression"
    assert sum(p.numel() for p in model.net.parameters()) == 43_264_827
    ch = model.net.channel
    assert ch.context == "serial" and ch.step == 1.0
    medians = authors_state["entropy_bottleneck.quantiles"][:, 0, 1].double()
    assert torch.equal(ch.z_medians, medians)  # the coder centres z on the file's medians
    x = computes_the_authors_outputs(model.net)
    # and the deployment face codes it: a bitstream decodes to what the encoder computed
    with torch.no_grad():
        y = model.net.double().body([x])[0][0]
        payloads = ch.encode(y)
        _, expected, _, _ = ch._quantize_y(y, ch.h_s(ch._round_z(ch.h_a(y))[1]))
        assert torch.equal(ch.decode(payloads), expected.float())  # decoded as float32


def test_the_training_checkpoint_imports_in_python_to_the_same_model(files, imported, tmp_path):
    assert "invcompress" in importers()
    out = import_weights("invcompress", files["trained"], tmp_path / "m")
    ours = load_file(out / "model.safetensors")
    cli = load_file(imported / "model.safetensors")
    assert ours.keys() == cli.keys()
    assert all(torch.equal(ours[k], cli[k]) for k in ours)
    state = read_state_dict(files["trained"])
    model = convert(state, "invcompress")
    assert (model.task, model.n_inputs, model.config) == ("compression", 1, "invcompress N=128")
    assert torch.equal(
        model.net.state_dict()["body.nodes.17.weight"], state["inv.operations.16.weight"]
    )


def _without(state, key):
    return {k: v for k, v in state.items() if k != key}


def test_keys_missing_unexpected_or_of_the_wrong_shape_are_named(authors_state):
    with pytest.raises(ValueError, match=r"^the file does not fit InvCompress \(N=128\): "
                       r"h_s\.2\.0\.weight \(512, 128, 3, 3\) is missing$"):  # fmt: skip
        convert(_without(authors_state, "h_s.2.0.weight"), "invcompress")
    bad = {**authors_state, "inv.operations.6.weight": torch.zeros(48, 47)}
    with pytest.raises(
        ValueError, match=r"inv\.operations\.6\.weight is \(48, 47\), expected \(48, 48\)$"
    ):
        convert(bad, "invcompress")
    with pytest.raises(ValueError, match=r": g_a\.0\.conv1\.weight is not expected$"):
        convert({**authors_state, "g_a.0.conv1.weight": torch.zeros(1)}, "invcompress")
    mask = authors_state["context_prediction.mask"].clone()
    mask[:, :, 2, 2] = 1  # type B
    with pytest.raises(ValueError, match=r"context_prediction\.mask is not the type-A mask"):
        convert({**authors_state, "context_prediction.mask": mask}, "invcompress")
    with pytest.raises(ValueError, match="--config is for IICNet"):
        convert_invcompress(authors_state, config="q3")
    small = {k: v[:100] if k == "h_a.0.weight" else v for k, v in authors_state.items()}
    with pytest.raises(
        ValueError, match=r"h_a\.0\.weight gives N = 100; .* an even divisor of 768"
    ):
        convert(small, "invcompress")


def test_the_command_line_says_what_is_wrong_in_one_line(authors_state, tmp_path, capsys):
    cases = {
        "missing.pth": (_without(authors_state, "entropy_bottleneck._factor3"),
                        "entropy_bottleneck._factor3 (128, 3, 1) is missing"),
        "shape.pth": ({**authors_state, "h_a.8.bias": torch.zeros(127)},
                      "h_a.8.bias is (127,), expected (128,)"),
        "iicnet.pth": ({"2.operations.0.F.conv1.weight": torch.zeros(32, 6, 3, 3)},
                       "the file holds no InvCompress tensors (expected names like 'h_a.0.weight'"),
    }  # fmt: skip
    for name, (state, needle) in cases.items():
        torch.save(state, tmp_path / name)
        code = main(
            ["import-weights", "invcompress", str(tmp_path / name), "-o", str(tmp_path / "m")]
        )
        err = capsys.readouterr().err
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        assert err.startswith("invblocks import-weights: error: ") and needle in err, err
        assert not (tmp_path / "m").exists()
    (tmp_path / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    assert (
        main(
            [
                "import-weights",
                "invcompress",
                str(tmp_path / "photo.png"),
                "-o",
                str(tmp_path / "m"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "cannot read" in err and len(err.strip().splitlines()) == 1
    assert (
        main(
            ["import-weights", "invcompres", str(tmp_path / "photo.png"), "-o", str(tmp_path / "m")]
        )
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert "unknown method 'invcompres'; expected one of iicnet, win, win-naive, " in err
    assert "invcompress" in err.split("expected one of")[1] and len(err.splitlines()) == 1


def test_the_docs_show_the_key_table():
    page = (Path(__file__).parents[3] / "docs" / "published.md").read_text()
    for theirs, ours in INVCOMPRESS_KEYS:
        row = f"| `{theirs}` | " + (f"`{ours}` |" if ours else "(the type-A mask")
        assert row in page, theirs
