"""Memory-saving backprop: same gradients as plain autograd, activation memory flat in depth."""

import pytest
import torch

from invblocks import Sequence, presets
from invblocks import blocks as B
from invblocks.testing import perturb_parameters


def gen(seed):
    return torch.Generator().manual_seed(seed)


def gradients(net, x, memory_saving):
    net.memory_saving = memory_saving
    net.zero_grad(set_to_none=True)
    x = x.clone().requires_grad_(True)
    (e,), log_det = net([x])
    (back,), _ = net([e], rev=True)
    loss = (e.square() * torch.linspace(0, 1, e.shape[-1], dtype=e.dtype)).sum()
    loss = loss + (back - x.detach()).abs().sum() + 1e-3 * log_det.sum()
    loss.backward()
    grads = {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}
    return grads, x.grad.clone(), float(loss.detach())


@pytest.mark.parametrize("downscale", [None, "haar"])
def test_gradients_equal_plain_autograd_float64(downscale):
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
    x = torch.rand(2, 6, 8, 8, generator=gen(2), dtype=torch.float64)
    plain, gx_plain, loss_plain = gradients(net, x, False)
    saving, gx_saving, loss_saving = gradients(net, x, True)
    assert loss_plain == pytest.approx(loss_saving, rel=1e-12)
    assert plain.keys() == saving.keys() and len(plain) == len(list(net.parameters()))
    for name, g in plain.items():
        err = float((g - saving[name]).abs().max() / g.abs().max().clamp_min(1e-300))
        assert err < 1e-10, name
    assert float((gx_plain - gx_saving).abs().max() / gx_plain.abs().max()) < 1e-10


def test_runs_group_reversible_nodes():
    net = presets.iicnet(2, blocks=2, width=4, downscale="haar", size=(8, 8))
    net.memory_saving = True
    runs = [(saving, [n._name() for n in nodes]) for saving, nodes in net._runs(rev=False)]
    assert runs == [
        (False, ["RelationModule"]),
        (True, ["HaarDownscale", "InvConv1x1", "AffineCoupling", "AffineCoupling"]),
        (False, ["ChannelSqueeze", "Quantizer"]),
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
    total = 0

    def pack(t):
        nonlocal total
        if not isinstance(t, torch.nn.Parameter):
            total += t.numel() * t.element_size()
        return t

    x = torch.rand(2, 8, 16, 16, requires_grad=True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        (y,), log_det = net([x])
    (y.sum() + log_det.sum()).backward()
    return total


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
