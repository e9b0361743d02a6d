"""Export: torch.export programs and ONNX files of embed and restore, run in onnxruntime and
compared with PyTorch, at other sizes than the example's."""

import contextlib
import io
import json

import pytest
import torch

import invblocks
from invblocks import Model
from invblocks.blocks import InvConv1x1
from invblocks.export import Embed, Restore, export, frozen_linear_algebra
from invblocks.testing import perturb_parameters

ort = pytest.importorskip("onnxruntime")


def model_of(task_name, recipe=None, n=None, **network):
    task = invblocks.get_task(task_name)
    n = n or task.default_inputs
    settings = (
        {} if recipe == "paper" else task.recipes[recipe].network if recipe else task.train.network
    )
    net = task.build_network(
        n, **{**settings, **network, "generator": torch.Generator().manual_seed(0)}
    )
    perturb_parameters(net, 0.02, torch.Generator().manual_seed(1))  # trained-like weights
    return Model(task, net, n, {}, device="cpu")


CASES = {
    # st-01: IICNet's video network of five frames as the paper's (relation module, Haar
    # downscaling, couplings), at 2 of its 10 couplings: the same operators, a fifth of the
    # export time (the whole network exports the same way: docs/benchmarks.md)
    "st-01": lambda: model_of("video", "paper", n=5, blocks=2),
    "win": lambda: model_of("hiding", "win", modules=1, blocks=2),  # WIN's hiding preset
    "residue": lambda: model_of("hiding"),  # the hiding task's default recipe
}


@pytest.fixture(scope="module", params=list(CASES))
def exported(request, tmp_path_factory):
    """``(model, folder, export.json, what the command line said)``: the residue model
    exported by the command line, the others by :func:`export`."""
    model = CASES[request.param]()
    folder = tmp_path_factory.mktemp("export") / request.param
    if request.param != "residue":
        return model, folder, export(model, folder), None
    from invblocks.checkpoint import save_model
    from invblocks.cli import main

    meta = {"task": model.task.name, "n_inputs": model.n_inputs, "network": model.net.get_config()}
    saved = save_model(folder.parent / "model", net=model.net, meta=meta)
    said = io.StringIO()
    with contextlib.redirect_stdout(said):
        assert main(["export", "--model", str(saved), "-o", str(folder)]) == 0
    return model, folder, json.loads((folder / "export.json").read_text()), said.getvalue()


def session(path):
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def test_the_onnx_files_compute_what_the_model_computes(exported):
    model, folder, record, said = exported
    assert record["check"]["embed_identical"] >= 0.9999  # export's own check, recorded
    assert json.loads((folder / "export.json").read_text()) == record
    assert sorted(p.name for p in folder.iterdir()) == [
        "embed.onnx", "embed.pt2", "export.json", "restore.onnx", "restore.pt2"
    ]  # fmt: skip
    if said is not None:  # the command line's summary
        assert "any height and width" in said and "checked in onnxruntime" in said
    embed, restore = session(folder / "embed.onnx"), session(folder / "restore.onnx")
    m = record["multiple"]
    # a size the export never saw (dynamic) or the example's (fixed), one item
    low = record["min_side"]
    h, w = (
        (low + 3 * m, low + 5 * m)
        if record["embed"]["dynamic"]
        else record["check"]["sizes"][0][2:]
    )
    g = torch.Generator().manual_seed(7)
    images = [torch.rand(model.task.image_channels, h, w, generator=g)
              for _ in range(model.n_inputs)]  # fmt: skip
    expected, meta = model.embed(images)
    x = model.task.stack(images)[None].numpy()
    (got,) = embed.run(None, {"x": x})
    assert got.dtype.name == "uint8" and got.shape[1:] == expected.shape
    same = (torch.from_numpy(got[0]).float() == (expected * 255).round()).float().mean()
    assert same >= 0.9999
    (back,) = restore.run(None, {"x": got})
    restored = torch.stack(model.restore(torch.from_numpy(got[0]).float() / 255, meta))
    stacked = model.task.unstack(torch.from_numpy(back[0]), model.n_inputs)
    assert (torch.stack(stacked) - restored).abs().max() <= 1e-4


def test_the_torch_export_programs_load_and_run(exported):
    model, folder, record, _ = exported
    embed = torch.export.load(folder / "embed.pt2").module()
    restore = torch.export.load(folder / "restore.pt2").module()
    size = record["check"]["sizes"][-1]
    x = torch.rand(*size, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        e = embed(x)
        reference = Embed(model.net.float().eval())(model._layout(x))
        assert (e == reference).float().mean() >= 0.9999
        r = restore(e)
        assert r.shape == x.shape
        assert (r - Restore(model.net)(e)).abs().max() <= 1e-4


def test_the_dynamic_sizes_are_said_where_the_network_allows_them(exported):
    model, _, record, _ = exported
    assert record["embed"]["dynamic"] and record["restore"]["dynamic"]
    assert record["multiple"] == model.multiple and record["n_inputs"] == model.n_inputs


def test_frozen_linear_algebra_compute_the_same_and_leave_nothing_behind():
    model = model_of("rescaling-x2", blocks=2)
    net = model.net
    e = torch.rand(1, 3, 24, 24, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        before = net.restore(e)
        with frozen_linear_algebra(net) as count:
            assert count == sum(isinstance(m, InvConv1x1) for m in net.modules()) > 0
            frozen = net.restore(e)
        after = net.restore(e)
    assert torch.equal(before, frozen) and torch.equal(before, after)
    assert not any(name.startswith("_frozen") for name, _ in net.named_buffers())
    assert not any("inverse_matrix" in vars(m) for m in net.modules())


def test_the_command_line_exports_and_says_what_is_missing(tmp_path, capsys, monkeypatch):
    from invblocks.checkpoint import save_model
    from invblocks.cli import main

    model = CASES["residue"]()
    meta = {"task": "hiding", "n_inputs": 2, "network": model.net.get_config()}
    folder = str(save_model(tmp_path / "model", net=model.net, meta=meta))
    import builtins

    real_import = builtins.__import__

    def no_onnxscript(name, *args, **kw):
        if name == "onnxscript":
            raise ImportError("no onnxscript")
        return real_import(name, *args, **kw)

    monkeypatch.setattr(builtins, "__import__", no_onnxscript)
    assert main(["export", "--model", folder, "-o", str(tmp_path / "other")]) == 2
    assert "pip install 'invblocks[export]'" in capsys.readouterr().err
    assert not (tmp_path / "other").exists()
