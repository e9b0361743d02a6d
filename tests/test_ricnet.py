"""RICNet: body and channel as one object, auxiliary outputs, loss terms, old model folders."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file

import invblocks
from invblocks import RICNet, Sequence, presets, ric
from invblocks import blocks as B
from invblocks.ric import LossConfig, Objective, RICBatch, ric_step
from invblocks.testing import check_block, perturb_parameters

FIXTURES = Path(__file__).parent / "fixtures"
sys.path.insert(0, str(FIXTURES))
import record_ric_step  # noqa: E402  (the set-ups the reference was recorded on)

REFERENCE = json.loads((FIXTURES / "ric_step_reference.json").read_text())


@pytest.mark.parametrize("setup", sorted(REFERENCE))
def test_presets_compute_the_losses_and_gradients_recorded_before_ricnet(setup, monkeypatch):
    # the recorded digests project each gradient on vectors seeded by its 0.1.0 name, which
    # had no "body." prefix: the body's parameters were the network's
    digest = record_ric_step.digest
    monkeypatch.setattr(
        record_ric_step, "digest", lambda g, name: digest(g, name.removeprefix("body."))
    )
    monkeypatch.setattr(record_ric_step, "SETUPS", {setup: record_ric_step.SETUPS[setup]})
    got = record_ric_step.record(ric_step)[setup]
    want = REFERENCE[setup]
    assert set(got["losses"]) == set(want["losses"])
    for name, value in want["losses"].items():
        assert got["losses"][name] == pytest.approx(value, rel=1e-10, abs=0), name
    assert [f"body.{k}" for k in want["grads"]] == list(got["grads"])
    for (name, a), b in zip(want["grads"].items(), got["grads"].values(), strict=True):
        norm = a[0]
        # a difference d shows in each of the 4 random projections as about |d|
        assert max(abs(x - y) for x, y in zip(a, b, strict=True)) <= 1e-10 * norm, name


@pytest.mark.parametrize("name", ["video-0.1.0", "hiding-win-naive-0.1.0"])
def test_model_folders_written_by_0_1_0_load_and_compute_the_same(name, tmp_path):
    folder = FIXTURES / "models" / name
    model = invblocks.Model.load(folder, device="cpu", channels_last=False)
    assert isinstance(model.net, RICNet) and model.net.get_config()["type"] == "RICNet"
    expected = load_file(str(folder / "expected.safetensors"))
    images = list(expected["images"])
    embedding, meta = model.embed(images)
    assert torch.equal(embedding, expected["embedding"])
    restored = torch.stack(model.restore(embedding, meta))
    assert torch.allclose(restored, expected["restored"], atol=1e-6)
    # the WIN network of 0.1.0 had no quantiser: it trained without quantising
    if "win" in name:
        assert model.net.channel.train_mode == "identity"


@pytest.mark.parametrize("name", ["video-quantizer-ste-66cbfdb", "video-jpeg-66cbfdb"])
def test_run_folders_written_before_the_channel_contract_load_and_resume(name, tmp_path):
    """Checkpoint format 2 as 66cbfdb wrote it: a ``quantizer`` setting, a JPEG channel found
    by name. It loads (the config upgraded on read), embeds and restores as it did, and
    resumes from the command line to the losses the uninterrupted run logged."""
    import shutil

    source = FIXTURES / "models" / name
    expected = load_file(str(source / "expected.safetensors"))
    model = invblocks.Model.load(source, device="cpu", channels_last=False)
    lossless = model.channel_for(".png")  # the 8-bit embedding as 66cbfdb's embed made it
    embedding, meta = model.embed(list(expected["images"]), channel=lossless)
    assert torch.equal(embedding, expected["embedding"])
    restored = torch.stack(model.restore(embedding, meta))
    assert torch.allclose(restored, expected["restored"], atol=1e-6)
    run = tmp_path / "run"
    shutil.copytree(source, run)
    proc = subprocess.run(
        [sys.executable, "-m", "invblocks", "train", "--out", str(run), "--resume", "--quiet"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    logged = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = {r["step"]: r for r in logged if "total" in r}
    want = json.loads((source / "expected.json").read_text())["losses"]
    assert sorted(steps) == [3, 4]
    for step in (3, 4):
        for key, value in want[str(step)].items():
            assert steps[step][key] == pytest.approx(value, rel=1e-4), (step, key)
    assert not any("resumed" in r for r in logged)  # nothing changed: the config upgraded


def test_a_checkpoint_of_an_unknown_format_is_one_sentence(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    config = json.loads((FIXTURES / "models" / "video-0.1.0" / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "format": "invblocks-checkpoint-9"}))
    (folder / "model.safetensors").write_bytes(
        (FIXTURES / "models" / "video-0.1.0" / "model.safetensors").read_bytes()
    )
    with pytest.raises(ValueError, match=r"its format is 'invblocks-checkpoint-9', expected"):
        invblocks.Model.load(folder, device="cpu")


def tiny_iicnet(n=2, **kw):
    return presets.iicnet(n, blocks=2, width=4, growth=4, size=(16, 16), **kw)


def test_block_interface_round_trip_and_result_fields():
    net = tiny_iicnet().eval()
    perturb_parameters(net, 0.05, torch.Generator().manual_seed(0))
    x = torch.rand(2, 6, 16, 16, generator=torch.Generator().manual_seed(1))
    (received,), _ = net([x])
    assert torch.equal(received, net.embed(x))  # eval: the channel rounds to 8 bits
    assert torch.equal(received, (received * 255).round() / 255)
    (back,), _ = net([received], rev=True)
    assert torch.equal(back, net.restore(received))
    result = net.round_trip(x)
    assert torch.equal(result.received, received) and torch.equal(result.restored, back)
    assert torch.allclose(result.embedding, net.body([x])[0][0])
    with pytest.raises(AttributeError):
        result.embedding = x  # frozen
    assert net.output_dims([(6, 16, 16)]) == [(3, 16, 16)]
    assert net.input_dims([(3, 16, 16)]) == [(6, 16, 16)]


def test_ricnet_passes_check_block_and_rebuilds_from_its_config():
    net = tiny_iicnet(relation=False)
    check_block(net.body, net.dims_in, batch=1)
    rebuilt = invblocks.block_from_config(json.loads(json.dumps(net.get_config())))
    rebuilt.load_state_dict(net.state_dict())
    x = torch.rand(1, 6, 16, 16)
    assert torch.equal(rebuilt.eval()([x])[0][0], net.eval()([x])[0][0])
    assert "channel: Quantizer" in net.summary() and "<b>RICNet</b>" in net._repr_html_()


def test_a_reducing_wic_has_the_same_output_shape_in_training_and_evaluation():
    net = presets.win_naive(6, 3, blocks=1, size=(16, 16))
    x = torch.rand(1, 6, 16, 16)
    shapes = {mode: net.train(mode)([x])[0][0].shape for mode in (True, False)}
    assert shapes[True] == shapes[False] == (1, 3, 16, 16)
    assert net.output_dims(net.dims_in) == [(3, 16, 16)]
    (_, _, aux) = net.forward_with_aux([x])
    assert {k: tuple(v.shape[1:]) for k, v in aux.items()} == net.aux_dims(net.dims_in)
    assert net.aux_dims(net.dims_in) == {"body.nodes.3.augmented": (6, 16, 16)}


def test_the_shift_constraint_sums_over_every_reducing_wic():
    body = Sequence(12, 16, 16)
    body.append(B.WIC, out_channels=6)  # reducing, K = 2; its output is not the embedding
    body.append(B.AffineCoupling, split=3)
    body.append(B.WIC, out_channels=3)  # reducing, K = 2: the embedding
    net = RICNet(body, ric.Quantizer(train_mode="identity"))
    perturb_parameters(net, 0.1, torch.Generator().manual_seed(0))
    x = torch.rand(2, 12, 16, 16, generator=torch.Generator().manual_seed(1))
    reference = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    result = net.round_trip(x, reference)
    shifts = {k: v for k, v in result.constraints.items() if k.endswith(".shift")}
    assert sorted(shifts) == ["body.nodes.0.shift", "body.nodes.2.shift"]
    first, last = body[0], body[2]
    aux = result.aux
    # the last one against the reference (WIN), the inner one against its own output
    v0, v2 = aux["body.nodes.0.augmented"], aux["body.nodes.2.augmented"]
    assert torch.allclose(shifts["body.nodes.2.shift"], last.shift_loss(v2, reference))
    assert torch.allclose(shifts["body.nodes.0.shift"], first.shift_loss(v0, v0[:, :6]))
    objective = Objective.build(LossConfig(), network=net)
    batch = RICBatch(inputs=x, reference=reference, n_images=4)
    terms = objective(result, batch)
    assert torch.allclose(terms["shift"], sum(shifts.values()))
    assert torch.allclose(
        terms["gram_det"], 0.1 * (first.gram_log_det().abs() + last.gram_log_det().abs())
    )


def test_unknown_loss_names_are_an_error_listing_the_known_ones():
    task = invblocks.get_task("video")
    net = tiny_iicnet(3)
    with pytest.raises(ValueError, match=r"unknown loss term\(s\) \['nope'\]; known: .*embedding"):
        task.objective(net, {"nope": 1.0})
    with pytest.raises(ValueError, match=r"losses\.frequency: expected a number >= 0"):
        task.objective(net, {"frequency": -1})
    objective = task.objective(net, {"frequency": 0, "emb": 2.0})  # 0.1.0 names still read
    assert objective.weights["embedding"] == 2.0 and objective.weights["frequency"] == 0


@given(
    weights=st.fixed_dictionaries(
        {
            "embedding": st.floats(0, 3),
            "frequency": st.sampled_from([0.0, 0.001]),
            "restoration": st.floats(0.1, 3),
        }
    ),
    seed=st.integers(0, 2**16),
)
@settings(deadline=None)
def test_the_total_is_the_weighted_sum_of_the_unweighted_terms(weights, seed):
    task = invblocks.get_task("video")
    net = tiny_iicnet(3).double()
    perturb_parameters(net, 0.05, torch.Generator().manual_seed(seed))
    x = torch.rand(1, 9, 16, 16, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    net.train()
    torch.manual_seed(seed)
    terms = ric_step(task, net, x, 3, objective=task.objective(net, weights))
    torch.manual_seed(seed)
    result = net.round_trip(x, task.reference(x, 3))
    batch = RICBatch(inputs=x, reference=task.reference(x, 3), n_images=3)
    expected = 0.0
    for name, weight in weights.items():
        if weight:
            value = weight * invblocks.ric.losses.LOSS_TERMS[name](result, batch)
            assert torch.allclose(terms[name], value, rtol=1e-12)
            expected = expected + value
        else:
            assert name not in terms
    assert torch.allclose(terms["total"], expected, rtol=1e-12)


def test_a_compiled_body_trains_to_the_eager_losses_without_graph_breaks():
    task = invblocks.get_task("video-x2")
    net = tiny_iicnet(3, downscale="haar")
    perturb_parameters(net, 0.05, torch.Generator().manual_seed(1))
    x = torch.rand(1, 9, 16, 16, generator=torch.Generator().manual_seed(2))
    steps = []
    for compiled in (False, True):
        if compiled:
            net.compile_body(backend="eager")  # dynamo's tracing, eager's arithmetic
        torch.manual_seed(3)
        steps.append({k: float(v.detach()) for k, v in ric_step(task, net, x, 3).items()})
    assert steps[0] == steps[1]
    for fn, arg in ((net._body_forward, x), (net._body_inverse, net.embed(x))):
        explained = torch._dynamo.explain(fn)(arg)
        assert explained.graph_break_count == 0, explained.break_reasons
    assert "_compiled" not in str(net.state_dict().keys())
    net.compile_body(disable=True)
    assert net._compiled is None


def test_bgr_networks_take_and_give_rgb():
    net = tiny_iicnet(2, relation=False).double().eval()
    perturb_parameters(net, 0.05, torch.Generator().manual_seed(0))
    bgr = RICNet(net.body, net.channel, channel_order="bgr").eval()
    x = torch.rand(1, 6, 16, 16, generator=torch.Generator().manual_seed(1), dtype=torch.float64)

    def flip(t):
        return t.reshape(1, -1, 3, 16, 16).flip(2).reshape(t.shape)

    # the same body on channel-flipped images gives the channel-flipped embedding
    assert torch.equal(bgr.embed(x), flip(net.embed(flip(x))))
    assert torch.allclose(bgr.restore(bgr.embed(x)), flip(net.restore(flip(bgr.embed(x)))))
    assert bgr.get_config()["channel_order"] == "bgr"
