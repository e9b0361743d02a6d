"""WIN and WIN-Naive presets: reference parameter counts, exact inversion, constraint losses."""

import pytest
import torch

from invblocks import Inversion, constraint_losses, presets, total_constraint_loss
from invblocks import blocks as B
from invblocks.testing import check_block, perturb_parameters


def count(net):
    return sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize(
    "build, params",
    [
        (lambda: presets.win(6, 3), 2_342_724),  # hiding, 1 secret
        (lambda: presets.win(3, 3, scale=2), 2_343_996),  # rescaling x2
        (lambda: presets.win(3, 1), 2_342_416),  # decolourisation
        (lambda: presets.win(3, 12, scale=4), 13_170_444),  # rescaling x4, 4 LR copies
        (lambda: presets.win_naive(6, 3), 2_025_156),  # hiding, 1 secret
        (lambda: presets.win_naive(3, 3, scale=2), 1_670_016),  # rescaling x2
    ],
)
def test_reference_parameter_counts(build, params):
    assert count(build()) == params


def test_channel_walk_of_hiding():
    net = presets.win(6, 3)
    wics = [m for m in net.modules() if isinstance(m, B.WIC)]
    assert [tuple(w.weight.shape) for w in wics] == [(24, 24), (32, 24), (32, 24), (12, 10)]
    assert wics[-1].inversion is Inversion.AUGMENTED and wics[-1].k == 4
    assert net.dims_out == [(3, 64, 64)]
    assert presets.win(3, 12, scale=4).dims_out == [(12, 16, 16)]


@pytest.mark.parametrize("secrets", [1, 2, 3, 4])
def test_hiding_with_several_secrets_builds(secrets):
    net = presets.win(3 * (secrets + 1), 3, blocks=1, size=(16, 16))
    assert net.dims_out == [(3, 16, 16)]
    assert net.body[:-1].inversion in (Inversion.EXACT, Inversion.LEFT)


@pytest.mark.parametrize(
    "build",
    [
        lambda: presets.win(
            6, 3, blocks=2, size=(16, 16), generator=torch.Generator().manual_seed(0)
        ),
        lambda: presets.win(3, 3, scale=2, blocks=1, size=(16, 16)),
        lambda: presets.win_naive(6, 3, blocks=3, size=(16, 16)),
    ],
)
@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-5), (torch.float64, 1e-10)])
def test_round_trip_exact_without_the_fusion_wic(build, dtype, tol):
    body = build().body[:-1].to(dtype)
    perturb_parameters(body, 0.01, torch.Generator().manual_seed(1))
    x = torch.rand(2, *body.dims_in[0], dtype=dtype)
    with torch.no_grad():
        back = body.inverse()(body(x))
    assert float((back - x).abs().max()) < tol


def test_wicm_passes_check_block():
    g = presets.wicm(
        n=8, modules=2, blocks=1, size=(3, 3), generator=torch.Generator().manual_seed(0)
    )
    assert g.inversion is Inversion.LEFT
    check_block(g, (6, 3, 3), log_det_max_numel=0)


def test_training_outputs_and_constraint_losses():
    net = presets.win(6, 3, blocks=1, size=(16, 16))
    losses = constraint_losses(net)
    assert len(losses) == 4 and all(float(v.detach()) < 1e-5 for v in losses.values())
    perturb_parameters(net, 0.05, torch.Generator().manual_seed(0))
    total = total_constraint_loss(net, {"gram_det": 0.1})
    assert float(total.detach()) > 0
    total.backward()
    assert all(m.weight.grad is not None for m in net.modules() if isinstance(m, B.WIC))
    x = torch.rand(1, 6, 16, 16)
    y, _, aux = net.train().forward_with_aux([x])
    fusion = net.body[-1]
    v = aux["body.nodes.4.augmented"]
    assert v.shape == (1, 12, 16, 16) and torch.equal(v[:, :3], y[0])
    shift = fusion.shift_loss(v, x[:, :3])
    assert shift.shape == () and float(shift.detach()) > 0
    with_aux = constraint_losses(net, aux, x[:, :3])
    assert torch.equal(with_aux["body.nodes.4.shift"], shift)
    y = net.eval()(x)
    assert y.shape == (1, 3, 16, 16)
    assert net.inverse()(y).shape == x.shape


def test_bad_scale():
    with pytest.raises(ValueError, match="power of two"):
        presets.win(3, 3, scale=3)


def test_win_compiles_without_graph_breaks(device):
    net = presets.win(6, 3, blocks=1, size=(16, 16)).eval().to(device)
    x = torch.rand(1, 6, 16, 16, device=device)
    forward = torch._dynamo.explain(lambda v: net([v]))(x)
    assert forward.graph_break_count == 0, forward.break_reasons
    inverse = torch._dynamo.explain(lambda v: net([v], rev=True))(net(x))
    assert inverse.graph_break_count == 0, inverse.break_reasons
    training = torch._dynamo.explain(net.train()._body_forward)(x)  # with the shift channels
    assert training.graph_break_count == 0, training.break_reasons


def test_win_training_step_under_bfloat16_autocast():
    import invblocks
    from invblocks.blocks import WIC
    from invblocks.ric import ric_step

    task = invblocks.get_task("hiding")
    net = task.build_network(2, preset="win", generator=torch.Generator().manual_seed(0))
    wics = [m for m in net.modules() if isinstance(m, WIC)]
    for m in wics:
        perturb_parameters(m, 0.05, torch.Generator().manual_seed(1))
    plain = [m.gram_log_det() for m in wics]
    x = torch.rand(1, 6, 16, 16, generator=torch.Generator().manual_seed(2))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        # the WICs' determinants stay in the weights' precision (slogdet has no bfloat16)
        for m, ref in zip(wics, plain, strict=True):
            assert m.gram().dtype == torch.float32
            torch.testing.assert_close(m.gram_log_det(), ref)
        terms = ric_step(task, net, x, 2)
    terms["total"].backward()
    assert torch.isfinite(terms["total"]) and len(wics) > 0
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in net.parameters())
