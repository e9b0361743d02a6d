"""Memory-saving backprop: same gradients as plain autograd, activation memory flat in depth."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from invblocks import Graph, Sequence, presets
from invblocks import blocks as B
from invblocks.memory import invertible_run, reversible
from invblocks.testing import SavedBytes, perturb_parameters
from invblocks.testing.strategies import image_shapes, seeds


def gen(seed):
    return torch.Generator().manual_seed(seed)


def gradients(net, x, memory_saving):
    net.memory_saving = memory_saving
    net.zero_grad(set_to_none=True)
    x = x.clone().requires_grad_(True)
    (e,), log_det = net([x])
    (back,), _ = net([e], rev=True)
    loss = (e.square() * torch.linspace(0, 1, e.shape[-1], dtype=e.dtype, device=e.device)).sum()
    loss = loss + (back - x.detach()).abs().sum() + 1e-3 * log_det.sum()
    loss.backward()
    grads = {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}
    return grads, x.grad.clone(), float(loss.detach())


def assert_same_gradients(plain, other, gx_plain, gx_other, tol=1e-10):
    """Every parameter's and the input's gradient equal to ``tol``, relative to its max."""
    for name, g in plain.items():
        err = float((g - other[name]).abs().max() / g.abs().max().clamp_min(1e-300))
        assert err < tol, name
    assert float((gx_plain - gx_other).abs().max() / gx_plain.abs().max()) < tol


@pytest.mark.parametrize("downscale", [None, "haar"])
def test_gradients_equal_plain_autograd_float64(downscale, device):
    net = presets.iicnet(
        2,
        blocks=4,
        width=4,
        downscale=downscale,
        size=(8, 8),
        conv1x1="lu",
        quantizer="ste",
        generator=gen(0),
    ).double()
    perturb_parameters(net, 0.05, gen(1))
    net = net.to(device)
    x = torch.rand(2, 6, 8, 8, generator=gen(2), dtype=torch.float64).to(device)
    plain, gx_plain, loss_plain = gradients(net, x, False)
    saving, gx_saving, loss_saving = gradients(net, x, True)
    assert loss_plain == pytest.approx(loss_saving, rel=1e-12)
    assert plain.keys() == saving.keys() and len(plain) == len(list(net.parameters()))
    assert_same_gradients(plain, saving, gx_plain, gx_saving)


def test_runs_group_reversible_nodes():
    net = presets.iicnet(2, blocks=2, width=4, downscale="haar", size=(8, 8))
    net.memory_saving = True
    runs = [(saving, [n._name() for n in nodes]) for saving, nodes in net.body._runs(rev=False)]
    assert runs == [
        (False, ["RelationModule"]),
        (True, ["HaarDownscale", "InvConv1x1", "AffineCoupling", "AffineCoupling"]),
        (False, ["ChannelSqueeze"]),
    ]
    wic_net = Sequence(3, 8, 8).append(B.WIC, out_channels=5).append(B.AffineCoupling, split=2)
    wic_net.memory_saving = True
    # a LEFT block joins forward runs but not inverse ones
    assert [s for s, _ in wic_net._runs(rev=False)] == [True]
    assert [s for s, _ in wic_net._runs(rev=True)] == [True, False]


def saved_bytes(depth, memory_saving):
    g = gen(depth)
    net = Sequence(8, 16, 16, memory_saving=memory_saving)
    for _ in range(depth):
        sub = lambda i, o: B.DenseBlock(i, o, growth=8, generator=g)  # noqa: E731
        net.append(B.AffineCoupling, split=4, subnet_constructor=sub)
    return forward_saved_bytes(net, torch.rand(2, 8, 16, 16, requires_grad=True))


def forward_saved_bytes(net, x):
    """Bytes of the tensors autograd keeps for backward in ``net([x])`` (parameters excluded)."""
    with SavedBytes() as saved:
        (y,), log_det = net([x])
    (y.sum() + log_det.sum()).backward()
    return saved.bytes


def test_activation_memory_does_not_grow_with_depth():
    saving = {d: saved_bytes(d, True) for d in (4, 32)}
    plain = {d: saved_bytes(d, False) for d in (4, 32)}
    assert saving[32] <= 1.5 * saving[4]
    assert plain[32] >= 5 * saving[32]
    assert plain[32] > 6 * plain[4]


def test_no_grad_and_eval_paths_are_unchanged():
    net = presets.iicnet(2, blocks=2, width=4, size=(8, 8), generator=gen(0))
    perturb_parameters(net, 0.05, gen(1))
    x = torch.rand(1, 6, 8, 8)
    net.eval()
    plain = net(x)
    net.memory_saving = True
    with torch.no_grad():
        assert torch.equal(net(x), plain)
    assert torch.equal(net(x).detach(), plain.detach())


# ------------------------------------------------ fused coupling backward


def vjp(blocks, x, rev, mode, weight, ld_weight):
    """Gradients of ``<y, weight> + <log_det, ld_weight>`` w.r.t. input and parameters."""
    params = [p for b in blocks for p in b.parameters() if p.requires_grad]
    x = x.clone().requires_grad_(True)
    if mode == "plain":
        y, log_det = x, 0
        for b in reversed(blocks) if rev else blocks:
            (y,), ld = b([y], rev=rev)
            log_det = log_det + ld
    else:
        y, log_det = invertible_run(blocks, x, rev=rev, fused=mode == "fused")
    loss = (y * weight).sum() + (log_det * ld_weight).sum()
    return torch.autograd.grad(loss, [x, *params])


@settings(max_examples=12, deadline=None)
@given(
    shape=image_shapes(channels=st.integers(2, 7), max_side=6),
    seed=seeds(),
    rev=st.booleans(),
    data=st.data(),
)
def test_fused_coupling_backward_equals_plain_autograd(shape, seed, rev, data):
    """The coupling's one-pass backward rebuilds the input and takes the exact VJP (also
    with ``keep_first``, which has no ``F``)."""
    c = shape[0]
    split = data.draw(st.integers(1, c - 1), label="split")
    depth = data.draw(st.integers(1, 3), label="depth")
    keep = data.draw(st.booleans(), label="keep_first")
    g = gen(seed)
    blocks = []
    for _ in range(depth):
        sub = lambda i, o: B.DenseBlock(i, o, growth=4, generator=g)  # noqa: E731
        block = B.AffineCoupling(channels=c, split=split, subnet_constructor=sub, keep_first=keep)
        blocks.append(block.double())
    for b in blocks:
        perturb_parameters(b, 0.1, g)
    x = torch.randn(2, *shape, generator=g, dtype=torch.float64)
    weight = torch.randn(2, *shape, generator=g, dtype=torch.float64)
    ld_weight = torch.randn(2, generator=g, dtype=torch.float64)
    plain = vjp(blocks, x, rev, "plain", weight, ld_weight)
    for mode in ("fused", "generic"):
        other = vjp(blocks, x, rev, mode, weight, ld_weight)
        for a, b in zip(plain, other, strict=True):
            scale = float(a.abs().max().clamp_min(1e-300))
            assert float((a - b).abs().max()) / scale < 1e-10, mode


def test_fused_backward_is_the_one_used_for_couplings(monkeypatch):
    calls = []
    original = B.AffineCoupling.backward_from_output

    def spy(self, *args):
        calls.append(self)
        return original(self, *args)

    monkeypatch.setattr(B.AffineCoupling, "backward_from_output", spy)
    blocks = [B.AffineCoupling(channels=4, split=2) for _ in range(3)]
    x = torch.rand(1, 4, 4, 4, requires_grad=True)
    y, _ = invertible_run(blocks, x)
    y.sum().backward()
    assert calls == blocks[::-1]
    calls.clear()
    y, _ = invertible_run(blocks, x, fused=False)
    y.sum().backward()
    assert calls == []


def test_split_does_not_join_runs():
    split = B.Split((6, 4, 4), sections=[2, 4])
    assert not reversible(split, rev=False) and not reversible(split, rev=True)
    assert not reversible(B.Split(sections=[2, 4]), rev=False)
    assert reversible(B.Split(sections=[6]), rev=False)


# ------------------------------------------------------- graphs and nesting


def branchy_graph(depth, memory_saving=False, growth=4, seed=0):
    """x -> split -> [depth couplings on one branch] -> concat -> coupling."""
    g = gen(seed)
    sub = lambda i, o: B.DenseBlock(i, o, growth=growth, generator=g)  # noqa: E731
    graph = Graph({"x": (8, 8, 8)}, memory_saving=memory_saving)
    graph.add("split", B.Split, "x", sections=[2, 6])
    y = "split:1"
    for i in range(depth):
        y = graph.add(f"c{i}", B.AffineCoupling, y, split=3, subnet_constructor=sub)
    graph.add("merge", B.Concat, ["split:0", y])
    graph.add("tail", B.AffineCoupling, "merge", split=4, subnet_constructor=sub)
    return graph.output("tail")


def test_graph_chains_group_consecutive_reversible_nodes():
    graph = branchy_graph(3, memory_saving=True)
    assert graph._chains(rev=False) == {"c0": ["c0", "c1", "c2"], "tail": ["tail"]}
    assert graph._chains(rev=True) == {"c2": ["c0", "c1", "c2"], "tail": ["tail"]}
    win = presets.win(6, 3, size=(8, 8))
    win.memory_saving = True
    wicm = win.body[2]
    assert isinstance(wicm, Graph) and wicm.memory_saving
    assert wicm.nodes["flows1"].memory_saving  # set on every nested container
    fwd = wicm._chains(rev=False)
    assert fwd["wic1"] == ["wic1"] and fwd["flows1"] == ["flows1", "wic2"]
    back = wicm._chains(rev=True)  # a LEFT block (the WICs) joins forward runs only
    assert back["flows1"] == ["flows1"] and "wic1" not in back and "wic2" not in back
    # the WIN chain's nested graph runs itself; its sequences of couplings join runs flat
    runs = [(saving, [n._name() for n in nodes]) for saving, nodes in win.body._runs(rev=False)]
    assert runs == [
        (True, ["Squeeze", "WIC"]),
        (False, ["Graph"]),
        (True, ["Unsqueeze"]),
        (False, ["WIC"]),
    ]


def test_nested_sequences_are_flattened_into_runs():
    inner = Sequence(4, 4, 4)
    inner.append(B.AffineCoupling, split=2).append(B.AffineCoupling, split=2)
    outer = Sequence(4, 4, 4, memory_saving=True).append(B.AffineCoupling, split=2).append(inner)
    assert inner.memory_saving  # appended to a memory-saving chain
    ((saving, nodes),) = outer._runs(rev=False)
    assert saving and nodes == [outer[0], inner[0], inner[1]]
    ((saving, nodes),) = outer._runs(rev=True)
    assert saving and nodes == [inner[1], inner[0], outer[0]]


def graph_gradients(net, x, memory_saving):
    net.memory_saving = memory_saving
    net.zero_grad(set_to_none=True)
    x = x.clone().requires_grad_(True)
    (y,), log_det = net([x])
    (back,), log_det_back = net([y * 0.9], rev=True)
    loss = (y.square() * torch.linspace(0, 1, y.shape[-1], dtype=y.dtype)).sum()
    loss = loss + back.abs().sum() + 1e-3 * (log_det.sum() + log_det_back.sum())
    loss.backward()
    grads = {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}
    return grads, x.grad.clone()


@pytest.mark.parametrize("which", ["branchy", "win"])
def test_graph_gradients_equal_plain_autograd_float64(which):
    if which == "branchy":
        net, x_shape = branchy_graph(3), (2, 8, 8, 8)
    else:
        net, x_shape = presets.win(6, 3, size=(8, 8), generator=gen(0)), (2, 6, 8, 8)
    net = net.double()
    perturb_parameters(net, 0.05, gen(1))
    x = torch.rand(*x_shape, generator=gen(2), dtype=torch.float64)
    plain, gx_plain = graph_gradients(net, x, False)
    saving, gx_saving = graph_gradients(net, x, True)
    assert plain.keys() == saving.keys() and len(plain) == len(list(net.parameters()))
    assert_same_gradients(plain, saving, gx_plain, gx_saving)


def graph_saved_bytes(depth, memory_saving):
    net = branchy_graph(depth, memory_saving=memory_saving, seed=depth)
    return forward_saved_bytes(net, torch.rand(2, 8, 8, 8, requires_grad=True))


def test_graph_activation_memory_does_not_grow_with_depth():
    saving = {d: graph_saved_bytes(d, True) for d in (4, 32)}
    plain = {d: graph_saved_bytes(d, False) for d in (4, 32)}
    assert saving[32] <= 1.5 * saving[4]
    assert plain[32] >= 5 * saving[32]


class Constant(torch.nn.Module):
    """A subnet whose output does not depend on its input and has no parameters."""

    def __init__(self, c_out):
        super().__init__()
        self.c_out = c_out

    def forward(self, u):
        return torch.full((u.shape[0], self.c_out, *u.shape[2:]), 0.3, dtype=u.dtype)


@pytest.mark.parametrize("rev", [False, True])
def test_fused_backward_with_constant_and_frozen_subnets(rev):
    g = gen(5)

    def sub(c_in, c_out):
        if c_out == 2:  # F (x2 -> x1 channels): constant
            return Constant(c_out)
        net = B.DenseBlock(c_in, c_out, growth=4, generator=g)
        return net.requires_grad_(False)  # G and H frozen

    block = B.AffineCoupling(channels=5, split=2, subnet_constructor=sub).double()
    perturb_parameters(block, 0.1, g)
    x = torch.randn(2, 5, 4, 4, generator=g, dtype=torch.float64)
    weight = torch.randn(2, 5, 4, 4, generator=g, dtype=torch.float64)
    ld_weight = torch.randn(2, generator=g, dtype=torch.float64)
    grads = {mode: vjp([block], x, rev, mode, weight, ld_weight) for mode in ("plain", "fused")}
    (gx_plain,), (gx_fused,) = grads["plain"], grads["fused"]  # no trainable parameters
    assert float((gx_plain - gx_fused).abs().max()) < 1e-10 * float(gx_plain.abs().max())


def test_memory_saving_with_compact_dense_blocks_float64():
    net = presets.iicnet(2, blocks=3, width=4, size=(8, 8), quantizer="ste", generator=gen(0))
    net = net.double()
    perturb_parameters(net, 0.05, gen(1))
    x = torch.rand(2, 6, 8, 8, generator=gen(2), dtype=torch.float64)
    plain, gx_plain, _ = gradients(net, x, False)
    B.set_compact_dense(net)
    both, gx_both, _ = gradients(net, x, True)
    assert_same_gradients(plain, both, gx_plain, gx_both)
