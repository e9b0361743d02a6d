"""Importing the Invertible-ISP authors' checkpoints: the imported network computes what the
authors' code computes, forward (RAW -> RGB) and reverse (RGB -> RAW).

``fixtures/invisp_reference.*`` were recorded from the authors' ``InvISPNet()``
(``fixtures/record_invisp.py``, run by hand against their repository) filled with the
weights of ``fixtures/invisp_recipe.py`` and run in float64. Here the same weights are made
again from the JSON alone, saved as the authors save them (``torch.save(net.state_dict())``),
imported through the command line and the Python API, and the imported network renders the
recorded RAW and recovers the RAW of the recorded RGB as theirs did.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from invblocks_camera.presets import invertible_isp
from invblocks_camera.published import BLOCKS, INVISP_KEYS, authors_shapes, convert_invisp
from safetensors.torch import load_file

import invblocks
from invblocks.checkpoint import load_checkpoint, load_network
from invblocks.cli import main
from invblocks.published import convert, import_weights, importers, read_state_dict

FIXTURES = Path(__file__).parent / "fixtures"
REFERENCE = json.loads((FIXTURES / "invisp_reference.json").read_text())
RECORDED = load_file(FIXTURES / "invisp_reference.safetensors")
PARAMETERS = 1_413_760
TOLERANCE = 1e-13
"""The largest difference allowed from the authors' float64 outputs (of order one). Measured
when recorded: 0 forward, 3.1e-15 reverse (the authors invert the LU factors with
``torch.inverse``, invblocks with triangular solves)."""


def _recipe():
    spec = importlib.util.spec_from_file_location("invisp_recipe", FIXTURES / "invisp_recipe.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


RECIPE = _recipe()


@pytest.fixture(scope="module")
def authors_state():
    state = RECIPE.authors_state_dict(REFERENCE)
    assert RECIPE.digest(state) == REFERENCE["digest"], (
        "this torch makes other random numbers than the one the fixture was recorded with "
        f"({REFERENCE['torch']}): record it again with fixtures/record_invisp.py"
    )
    return state


@pytest.fixture(scope="module")
def files(tmp_path_factory, authors_state):
    """The state dict as the authors' train.py saves it, and as a DataParallel network would
    (``module.`` before every name)."""
    folder = tmp_path_factory.mktemp("invisp")
    plain = folder / "pretrained" / "nikon.pth"
    plain.parent.mkdir()
    torch.save(authors_state, plain)
    parallel = folder / "checkpoint" / "latest.pth"
    parallel.parent.mkdir()
    torch.save({f"module.{k}": v for k, v in authors_state.items()}, parallel)
    return {"plain": plain, "parallel": parallel}


@pytest.fixture(scope="module")
def imported(files, tmp_path_factory):
    """The authors' file imported through the command line."""
    out = tmp_path_factory.mktemp("models") / "invisp-nikon"
    assert main(["import-weights", "invisp", str(files["plain"]), "-o", str(out)]) == 0
    return out


def inputs():
    recipe = REFERENCE["recipe"]
    raw = RECORDED["raw"].double() / recipe["raw_levels"]
    rgb = RECORDED["rgb"].double() / recipe["rgb_levels"]
    return raw, rgb


def differences(net):
    """The largest differences of ``net``'s float64 forward and reverse from the authors'."""
    net = net.double().eval()
    raw, rgb = inputs()
    with torch.no_grad():
        (rendered,), _ = net.body([raw])
        (recovered,), _ = net.body([rgb], rev=True)
    return (
        float((rendered - RECORDED["forward"]).abs().max()),
        float((recovered - RECORDED["reverse"]).abs().max()),
    )


def computes_the_authors_outputs(net):
    forward, reverse = differences(net)
    assert forward <= TOLERANCE and reverse <= TOLERANCE, (forward, reverse)


def test_the_recorded_inputs_are_the_recipes():
    codes = RECIPE.authors_inputs(REFERENCE["recipe"])
    assert torch.equal(RECORDED["raw"].int(), codes["raw"])
    assert torch.equal(RECORDED["rgb"].int(), codes["rgb"])
    raw, rgb = inputs()
    assert raw.shape == rgb.shape == (1, 3, 32, 48)
    assert 0 <= float(raw.min()) and float(raw.max()) <= 1 and float(rgb.max()) <= 1
    assert 1 < float(RECORDED["forward"].abs().max()) < 10  # a network far from the identity
    assert float((RECORDED["forward"] - raw).abs().mean()) > 0.1


def test_the_authors_layout_is_the_recorded_one():
    recorded = {k: tuple(v) for k, v in REFERENCE["parameters"].items()}
    recorded.update({k: tuple(v["shape"]) for k, v in REFERENCE["buffers"].items()})
    assert authors_shapes() == recorded
    assert list(authors_shapes()) == REFERENCE["order"] and len(REFERENCE["order"]) == 280
    count = sum(torch.Size(s).numel() for s in REFERENCE["parameters"].values())
    assert count == REFERENCE["parameter_count"] == PARAMETERS
    theirs = [a for a, _ in INVISP_KEYS]
    assert len(set(theirs)) == len(theirs)


def test_the_import_computes_the_authors_forward_and_reverse(authors_state):
    model = convert_invisp(authors_state, path=Path("pretrained/nikon.pth"))
    assert (model.task, model.n_inputs, model.config) == ("isp", 1, "invisp 8 blocks")
    assert not model.net.training
    assert sum(p.numel() for p in model.net.parameters()) == PARAMETERS
    own = model.net.state_dict()
    assert set(own) == set(invertible_isp().state_dict())
    for b in range(BLOCKS):
        node = f"body.nodes.{2 * b}"
        theirs = f"operations.{b}.invconv"
        assert torch.equal(own[f"{node}.perm"], authors_state[f"{theirs}.p"])
        assert torch.equal(own[f"{node}.sign_s"], authors_state[f"{theirs}.sign_s"])
        assert torch.equal(own[f"{node}.log_s"], authors_state[f"{theirs}.log_s"])
        # their lower holds its unit diagonal; ours holds the entries below it only
        assert torch.equal(own[f"{node}.lower"] + torch.eye(3), authors_state[f"{theirs}.lower"])
        assert torch.equal(own[f"{node}.lower_mask"], torch.tril(torch.ones(3, 3), -1))
        assert torch.equal(
            own[f"body.nodes.{2 * b + 1}.G.out.weight"],
            authors_state[f"operations.{b}.G.conv5.weight"],
        )
    computes_the_authors_outputs(model.net)


def test_the_lu_entries_the_authors_mask_are_masked_alike(authors_state):
    """The authors' code ignores lower's diagonal and upper triangle and upper's lower
    triangle; so does the import, and so does invblocks' 1x1 convolution by itself."""
    noisy = dict(authors_state)
    for b in range(BLOCKS):
        key = f"operations.{b}.invconv"
        noise = torch.randn(3, 3, generator=torch.Generator().manual_seed(b))
        noisy[f"{key}.lower"] = noisy[f"{key}.lower"] + torch.triu(noise)
        noisy[f"{key}.upper"] = noisy[f"{key}.upper"] + torch.tril(noise)
    clean = convert_invisp(authors_state).net.state_dict()
    dropped = convert_invisp(noisy).net.state_dict()
    assert all(torch.equal(clean[k], dropped[k]) for k in clean)
    # loaded as the authors store it, unit diagonal and all, invblocks masks it at use
    net = convert_invisp(authors_state).net
    with torch.no_grad():
        for b in range(BLOCKS):
            net.body.nodes[2 * b].lower.copy_(authors_state[f"operations.{b}.invconv.lower"])
    computes_the_authors_outputs(net)
    # and the comparison sees a diagonal that is not masked (in the forward: the reverse's
    # unitriangular solve never reads the diagonal)
    with torch.no_grad():
        net.body.nodes[4].lower_mask.copy_(torch.tril(torch.ones(3, 3)))
    assert differences(net)[0] > 1e-3


def test_the_command_line_import_computes_the_authors_outputs(imported, capsys):
    assert "invisp" in importers()
    config = json.loads((imported / "config.json").read_text())
    assert config["task"] == "isp" and config["n_inputs"] == 1
    assert config["source"]["method"] == "invisp"
    assert config["source"]["config"] == "invisp 8 blocks"
    assert config["source"]["file"] == "nikon.pth"
    meta, state, folder = load_checkpoint(imported)
    net = load_network(meta, state, str(folder))
    assert sum(p.numel() for p in net.parameters()) == PARAMETERS
    computes_the_authors_outputs(net)
    model = invblocks.Model.load(imported, device="cpu")
    assert model.task.name == "isp"
    computes_the_authors_outputs(model.net)


def test_a_data_parallel_file_imports_in_python_to_the_same_model(files, imported, tmp_path):
    out = import_weights("invisp", files["parallel"], tmp_path / "m")
    ours = load_file(out / "model.safetensors")
    cli = load_file(imported / "model.safetensors")
    assert ours.keys() == cli.keys()
    assert all(torch.equal(ours[k], cli[k]) for k in ours)
    model = convert(read_state_dict(files["parallel"]), "invisp")
    assert (model.task, model.n_inputs, model.config) == ("isp", 1, "invisp 8 blocks")


def _without(state, key):
    return {k: v for k, v in state.items() if k != key}


def test_keys_missing_unexpected_or_of_the_wrong_shape_are_named(authors_state):
    with pytest.raises(ValueError, match=r"^the file does not fit InvISPNet \(8 blocks\): "
                       r"operations\.3\.H\.conv5\.bias \(2,\) is missing$"):  # fmt: skip
        convert_invisp(_without(authors_state, "operations.3.H.conv5.bias"))
    with pytest.raises(ValueError, match=r": operations\.7\.invconv\.p \(3, 3\) is missing$"):
        convert_invisp(_without(authors_state, "operations.7.invconv.p"))
    bad = {**authors_state, "operations.5.F.conv2.weight": torch.zeros(32, 33, 3, 3)}
    with pytest.raises(
        ValueError,
        match=r": operations\.5\.F\.conv2\.weight is \(32, 33, 3, 3\), expected \(32, 34, 3, 3\)$",
    ):
        convert_invisp(bad)
    extra = {**authors_state, "operations.8.invconv.lower": torch.eye(3)}
    with pytest.raises(ValueError, match=r": operations\.8\.invconv\.lower is not expected$"):
        convert_invisp(extra)
    integer = {**authors_state, "operations.0.invconv.sign_s": torch.ones(3, dtype=torch.int64)}
    with pytest.raises(ValueError, match=r"sign_s is torch\.int64, not floating point$"):
        convert_invisp(integer)
    mixed = authors_state["operations.2.invconv.p"] * 0.5
    with pytest.raises(ValueError, match=r"^operations\.2\.invconv\.p is not a permutation"):
        convert_invisp({**authors_state, "operations.2.invconv.p": mixed})
    with pytest.raises(ValueError, match="--config is for IICNet"):
        convert_invisp(authors_state, config="nikon")
    with pytest.raises(ValueError, match=r"^the file holds no Invertible-ISP tensors"):
        convert_invisp({"h_a.0.weight": torch.zeros(1)})


def test_the_command_line_says_what_is_wrong_in_one_line(authors_state, tmp_path, capsys):
    cases = {
        "missing.pth": (_without(authors_state, "operations.0.invconv.sign_s"),
                        "operations.0.invconv.sign_s (3,) is missing"),
        "shape.pth": ({**authors_state, "operations.6.G.conv1.bias": torch.zeros(31)},
                      "operations.6.G.conv1.bias is (31,), expected (32,)"),
        "compress.pth": ({"h_a.0.weight": torch.zeros(128, 128, 3, 3)},
                         "the file holds no Invertible-ISP tensors"),
    }  # fmt: skip
    for name, (state, needle) in cases.items():
        torch.save(state, tmp_path / name)
        code = main(["import-weights", "invisp", str(tmp_path / name), "-o", str(tmp_path / "m")])
        err = capsys.readouterr().err
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        assert err.startswith("invblocks import-weights: error: ") and needle in err, err
        assert not (tmp_path / "m").exists()
