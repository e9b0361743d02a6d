"""bfloat16 inference: the couplings' subnets in bfloat16, the inverse still exact, the
precision recorded with an embedding and followed by restore."""

import copy
import pickle
import threading

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import invblocks
from invblocks import Model, Sequence, runtime
from invblocks import blocks as B
from invblocks.blocks import DenseBlock, set_subnet_dtype
from invblocks.testing import perturb_parameters


def _copies(module):
    """The low-precision copies a subnet keeps (``None`` when it keeps none)."""
    found = B.dense._SIDE.get(module)
    return found[1].get("tensors") if found else None


def network(task_name="video", n=None, seed=0, **kw):
    task = invblocks.get_task(task_name)
    n = n or task.default_inputs
    net = task.build_network(n, generator=torch.Generator().manual_seed(seed), **kw)
    perturb_parameters(net, 0.05, torch.Generator().manual_seed(seed))  # trained-like weights
    return task, n, net.eval()


def test_resolve_precision(monkeypatch):
    assert runtime.resolve_precision("float32", "cpu") == "float32"
    assert runtime.resolve_precision("bfloat16", "cpu") == "bfloat16"
    monkeypatch.setattr(runtime, "fast_bfloat16", lambda device: True)
    assert runtime.resolve_precision("auto", "cpu") == "bfloat16"
    monkeypatch.setattr(runtime, "fast_bfloat16", lambda device: False)
    assert runtime.resolve_precision("auto", "cpu") == "float32"
    with pytest.raises(ValueError, match="precision must be one of float32, bfloat16, auto"):
        runtime.resolve_precision("half", "cpu")


@given(c=st.integers(1, 6), h=st.integers(3, 17), w=st.integers(3, 17), seed=st.integers(0, 99))
@settings(deadline=None, max_examples=15)
def test_a_dense_block_in_bfloat16_returns_its_inputs_dtype(c, h, w, seed):
    g = torch.Generator().manual_seed(seed)
    block = DenseBlock(c, 2, growth=4)
    perturb_parameters(block, 0.1, g)
    u = torch.randn(2, c, h, w, generator=g)
    full = block(u)
    assert set_subnet_dtype(block, torch.bfloat16) == 1
    low = block(u)
    assert low.dtype == torch.float32 and low.shape == full.shape
    # bfloat16 keeps 8 significant bits: close, and not the float32 result
    assert (low - full).abs().max() <= 0.05 * full.abs().max() + 1e-3
    set_subnet_dtype(block, None)
    assert torch.equal(block(u), full)


class _Opted(torch.nn.Module):
    """A plugin's subnet that opts in to ``set_subnet_dtype`` through ``compute_dtype``."""

    def __init__(self, c):
        super().__init__()
        self.conv = torch.nn.Conv2d(c, c, 3, padding=1)
        self.compute_dtype = None

    def forward(self, x):
        return B.run_in_dtype(lambda u: torch.tanh(self.conv(u)), x, self.compute_dtype)


@given(c=st.integers(1, 6), h=st.integers(3, 17), w=st.integers(3, 17), seed=st.integers(0, 99))
@settings(deadline=None, max_examples=15)
def test_any_subnet_with_a_compute_dtype_opts_in(c, h, w, seed):
    torch.manual_seed(seed)
    net = torch.nn.Sequential(_Opted(c), DenseBlock(c, c, growth=4), torch.nn.Conv2d(c, c, 1))
    x = torch.randn(2, c, h, w)
    with torch.no_grad():
        full = net(x)
        assert set_subnet_dtype(net, torch.bfloat16) == 2  # the plain convolution is not one
        assert net[0].compute_dtype == torch.bfloat16
        low = net[0](x)
        assert low.dtype == torch.float32 and not torch.equal(low, net[0].conv(x).tanh())
        assert (low - net[0].conv(x).tanh()).abs().max() < 0.05
        set_subnet_dtype(net, None)
        assert torch.equal(net(x), full)


@given(
    c=st.integers(1, 6),
    h=st.integers(3, 17),
    w=st.integers(3, 17),
    seed=st.integers(0, 99),
    channels_last=st.booleans(),
)
@settings(deadline=None, max_examples=15)
def test_inference_keeps_low_precision_weights_between_calls(c, h, w, seed, channels_last):
    g = torch.Generator().manual_seed(seed)
    block = DenseBlock(c, 3, growth=4)
    perturb_parameters(block, 0.1, g)
    if channels_last:
        block.to(memory_format=torch.channels_last)
    u = torch.randn(2, c, h, w, generator=g)
    weights = {k: v.clone() for k, v in block.state_dict().items()}
    strides = {k: v.stride() for k, v in block.state_dict().items()}
    set_subnet_dtype(block, torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        autocast = block._forward(u).float()  # what the same subnet gives under autocast
    with torch.no_grad():
        first = block(u)
        copies = _copies(block)
        second = block(u)
        assert _copies(block) is copies  # made once
    assert all(t.dtype == torch.bfloat16 for t in copies)
    assert first.dtype == torch.float32 and torch.equal(first, second)
    assert torch.equal(first, autocast)  # the same arithmetic, without the casts
    # the module's own weights are float32 again and untouched, and the layout kept
    for k, v in block.state_dict().items():
        assert v.dtype == torch.float32 and torch.equal(v, weights[k])
    assert all(t.stride() == strides[k] for k, t in block.state_dict().items())
    assert all(c.stride() == t.stride() for c, t in zip(copies, block.parameters(), strict=True))
    # a weight updated in place is seen by the next call
    with torch.no_grad():
        block.out.bias.add_(1.0)
        moved = block(u)
    assert _copies(block) is not copies
    assert (moved - first - 1.0).abs().max() < 0.05
    # gradients flow through the autocast path, on the float32 weights
    block.zero_grad()
    block(u).sum().backward()
    assert block.out.bias.grad is not None and block.out.bias.grad.dtype == torch.float32
    # an edit through .data counts no version: set_subnet_dtype makes the copies again
    with torch.no_grad():
        block.out.bias.data.add_(1.0)
        assert torch.equal(block(u), moved)  # not seen (documented)
        set_subnet_dtype(block, torch.bfloat16)
        assert (block(u) - moved - 1.0).abs().max() < 0.05
    set_subnet_dtype(block, None)  # back to float32: the copies are dropped
    assert _copies(block) is None


def test_low_precision_copies_are_safe_across_threads_and_copies():
    g = torch.Generator().manual_seed(0)
    block = DenseBlock(4, 4, growth=8)
    perturb_parameters(block, 0.1, g)
    set_subnet_dtype(block, torch.bfloat16)
    u = torch.randn(1, 4, 24, 24, generator=g)
    with torch.no_grad():
        expected = block(u)
    results, errors = [], []

    def work():
        try:
            with torch.no_grad():
                for _ in range(30):
                    results.append(block(u))
        except Exception as err:  # a race shows as a dtype mismatch
            errors.append(err)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 120
    assert all(torch.equal(r, expected) for r in results)
    assert all(p.dtype == torch.float32 for p in block.parameters())  # none left swapped
    # the copies live beside the module: its deep copies and pickles do not carry them
    assert _copies(block) is not None
    twin = copy.deepcopy(block)
    assert _copies(twin) is None and _copies(pickle.loads(pickle.dumps(block))) is None
    assert len(pickle.dumps(block)) < 1.2 * len(pickle.dumps(DenseBlock(4, 4, growth=8)))
    with torch.no_grad():
        assert torch.equal(twin(u), expected)


def test_parameters_made_in_inference_mode_run_under_autocast():
    with torch.inference_mode():  # such tensors count no versions
        block = DenseBlock(3, 3, growth=4)
        perturb_parameters(block, 0.1, torch.Generator().manual_seed(0))
        set_subnet_dtype(block, torch.bfloat16)
        u = torch.randn(1, 3, 9, 9)
        low = block(u)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(low, block._forward(u).float())
    assert _copies(block) is None


def test_the_codecs_subnets_compute_in_bfloat16_what_they_computed_under_autocast():
    from invblocks_compress.blocks import AttentionBlock, Bottleneck

    g = torch.Generator().manual_seed(0)
    bottleneck = Bottleneck(6, 18, 5)
    perturb_parameters(bottleneck, 0.1, g)
    u = torch.randn(1, 6, 12, 12, generator=g)
    set_subnet_dtype(bottleneck, torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        expected = bottleneck._forward(u).float()
    with torch.no_grad():
        assert torch.equal(bottleneck(u), expected)
    assert _copies(bottleneck) is not None  # on the kept copies

    torch.manual_seed(0)
    block = AttentionBlock(8, gate=-30.0)  # the branches nearly closed: out = x + ~1e-11
    x = 100 + torch.randn(1, 8, 6, 6)  # in bfloat16 these would move by up to 0.25
    with torch.no_grad():
        set_subnet_dtype(block, torch.bfloat16)
        low = block(x)
    assert low.dtype == torch.float32 and (low - x).abs().max() < 1e-4  # residual in float32


@given(channels=st.sampled_from([4, 6, 12]), depth=st.integers(2, 5), seed=st.integers(0, 99))
@settings(deadline=None, max_examples=10)
def test_a_round_trip_with_bfloat16_subnets_is_far_closer_than_under_autocast(
    channels, depth, seed
):
    g = torch.Generator().manual_seed(seed)
    chain = Sequence(channels, 24, 24)
    for _ in range(depth):  # the invertible part of every preset: 1x1 mixing and couplings
        chain.append(B.InvConv1x1, generator=g).append(B.AffineCoupling, split=channels // 2)
    perturb_parameters(chain, 0.01, g)
    x = torch.rand(2, channels, 24, 24, generator=g)

    def round_trip():
        (y,), _ = chain([x])
        (back,), _ = chain([y.float()], rev=True)
        return (back.float() - x).abs(), y.float()

    with torch.no_grad():
        full, y_full = round_trip()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            plain, _ = round_trip()
        assert set_subnet_dtype(chain, torch.bfloat16) == 3 * depth
        subnets, y_subnets = round_trip()
    assert full.max() < 1e-5
    assert subnets.mean() * 10 < plain.mean() and subnets.max() < 0.01
    assert not torch.equal(y_subnets, y_full)  # the subnets did run in bfloat16


def test_a_bfloat16_embedding_records_its_precision_and_restores_in_it():
    task, n, net = network("video", blocks=2, width=8)
    g = torch.Generator().manual_seed(4)
    images = [torch.rand(3, 24, 40, generator=g) for _ in range(n)]
    low = Model(task, net, n, {}, device="cpu", precision="bfloat16")
    embedding, meta = low.embed(images)
    assert meta["precision"] == "bfloat16"
    full = Model(task, network("video", blocks=2, width=8)[2], n, {}, device="cpu")
    _, meta32 = full.embed(images)
    assert "precision" not in meta32  # float32 embeddings read as before
    # a float32 model restores a bfloat16 embedding in bfloat16, and is float32 again after
    restored = torch.stack(full.restore(embedding, meta))
    assert torch.allclose(restored, torch.stack(low.restore(embedding, meta)), atol=1e-6)
    assert all(b.compute_dtype is None for b in full.net.modules() if isinstance(b, DenseBlock))
    # and the precision matters: float32 subnets on the bfloat16 embedding restore worse
    wrong = torch.stack(full.restore(embedding, {**meta, "precision": "float32"}))
    original = torch.stack(images)
    assert (wrong - original).abs().mean() > (restored - original).abs().mean()


def test_an_unknown_precision_in_an_embedding_is_refused():
    task, n, net = network("video", blocks=1, width=4)
    model = Model(task, net, n, {}, device="cpu")
    embedding, meta = model.embed([torch.rand(3, 16, 16) for _ in range(n)])
    with pytest.raises(ValueError, match="expected 'precision' to be float32 or bfloat16"):
        model.restore(embedding, {**meta, "precision": "float8"})


def test_the_command_line_takes_a_precision(tmp_path, capsys):
    from invblocks.checkpoint import save_model
    from invblocks.cli import main
    from invblocks.io import write_png

    _, n, net = network("video", blocks=1, width=4)
    meta = {"task": "video", "n_inputs": n, "network": net.get_config()}
    model = str(save_model(tmp_path / "model", net=net, meta=meta))
    frames = []
    for i in range(n):
        write_png(torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(i)),
                  tmp_path / f"{i}.png")  # fmt: skip
        frames.append(str(tmp_path / f"{i}.png"))
    out = tmp_path / "e.png"
    embed = ["embed", "--model", model, *frames, "-o", str(out)]
    assert main([*embed, "--precision", "bfloat16"]) == 0
    assert Model.load(model, device="cpu").read_embedding(out)[1].get("precision") == "bfloat16"
    assert main(["restore", "--model", model, str(out), "-o", str(tmp_path / "back")]) == 0
    with pytest.raises(SystemExit) as exit_info:
        main([*embed, "--precision", "half"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'half'" in capsys.readouterr().err
