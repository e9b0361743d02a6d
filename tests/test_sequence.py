"""Sequence: building with shape inference, access, inversion, inspection, compile."""

import pytest
import torch

from invblocks import Inversion, Sequence, presets, ric
from invblocks import blocks as B
from invblocks.data import default_file
from invblocks.io import read_image
from invblocks.testing import check_block, perturb_parameters


def exact_chain(depth, channels=3, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    net = Sequence(channels, size, size)
    net.append(B.HaarDownscale, group=channels)
    net.extend(B.AffineCoupling(net.dims_out, split=channels, generator=g) for _ in range(depth))
    net.append(B.InvConv1x1, generator=g)
    perturb_parameters(net, 0.02, g)
    return net


def test_st01_in_a_few_lines():
    net = Sequence((15, 144, 144))
    net.append(B.RelationModule, n_images=5)
    net.extend(B.AffineCoupling(net.dims_out, split=3) for _ in range(10))
    net.append(B.ChannelSqueeze, out_channels=3)
    net.append(ric.Quantizer)
    assert net.dims_out == [(3, 144, 144)]
    assert sum(p.numel() for p in net.parameters()) == 6_805_540
    assert net.inversion is Inversion.LEARNED
    ref = presets.iicnet(5)
    # the preset is the same chain, with the quantiser as the RIC network's channel
    names = [r["name"] for r in net.summary_rows()]
    assert names == [r["name"] for r in ref.body.summary_rows()] + ["Quantizer"]


@pytest.fixture(scope="module")
def photo():
    img = read_image(default_file("astronaut"))
    return img[:, 64:128, 200:264][None]


@pytest.mark.parametrize("depth", [8, 30])
@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-5), (torch.float64, 1e-10)])
def test_exact_chain_round_trips_a_real_photo(photo, depth, dtype, tol):
    net = exact_chain(depth, size=64, seed=depth).to(dtype)
    x = photo.to(dtype)
    with torch.no_grad():
        (y,), log_det = net([x])
        (back,), log_det_rev = net([y], rev=True)
    assert float((back - x).abs().max()) < tol
    torch.testing.assert_close(log_det, -log_det_rev)
    assert net.inversion is Inversion.EXACT


def test_exact_chain_passes_check_block():
    check_block(exact_chain(2, size=4), (3, 4, 4))


def test_mixed_chain_is_checked_node_by_node():
    net = presets.iicnet(
        2, blocks=2, width=4, size=(6, 6), generator=torch.Generator().manual_seed(0)
    )
    check_block(net, (6, 6, 6))


def test_build_errors_name_the_node_and_shapes():
    net = Sequence(15, 8, 8)
    net.append(B.AffineCoupling, split=3)
    with pytest.raises(ValueError) as info:
        net.append(B.ChannelSqueeze, out_channels=4)
    msg = str(info.value)
    assert "Sequence node 1 (ChannelSqueeze)" in msg and "(15, 8, 8)" in msg
    with pytest.raises(ValueError, match=r"node 1 \(HaarDownscale\).*even height and width"):
        Sequence(3, 4, 6).append(B.Squeeze, group=1).append(B.HaarDownscale)
    with pytest.raises(ValueError, match=r"node 0 \(InvConv1x1\).*4 channels"):
        Sequence(3, 8, 8).append(B.InvConv1x1(channels=4))
    assert len(net) == 1  # the failed append left the chain as it was


def test_call_errors():
    net = Sequence(6, 8, 8).append(B.AffineCoupling, split=3)
    with pytest.raises(ValueError, match=r"Sequence expects .*\(6, 8, 8\).*received.*\(3, 8, 8\)"):
        net(torch.rand(1, 3, 8, 8))
    with pytest.raises(ValueError, match="takes 1 input"):
        net([torch.rand(1, 6, 8, 8)] * 2)
    # spatial size is free: a chain built for 8x8 runs on 4x6
    assert net(torch.rand(1, 6, 4, 6)).shape == (1, 6, 4, 6)


def test_index_slice_inverse_and_nesting():
    net = exact_chain(3, size=8)
    x = torch.rand(2, 3, 8, 8)
    head, tail = net[:2], net[2:]
    assert isinstance(net[0], B.HaarDownscale)
    assert head.dims_out == tail.dims_in
    with torch.no_grad():
        torch.testing.assert_close(tail(head(x)), net(x))
        torch.testing.assert_close(net.inverse()(net(x)), x, atol=1e-5, rtol=0)
        outer = Sequence(3, 8, 8).append(head).append(tail)
        torch.testing.assert_close(outer(x), net(x))
    with pytest.raises(ValueError, match="contiguous"):
        net[::2]


def test_summary_repr_and_html():
    net = presets.iicnet(2, blocks=1, width=4, size=(8, 8), downscale="haar")
    text = net.summary()
    assert "HaarDownscale" in text and "(24, 4, 4)" in text and "LEARNED" in text
    assert f"total: {sum(p.numel() for p in net.parameters()):,} parameters" in text
    assert text.splitlines()[-1].startswith("channel: Quantizer(bits=8, train_mode='noise'")
    body = net.body
    assert repr(body).startswith("Sequence((6, 8, 8) -> (3, 4, 4), 5 nodes")
    assert "(2) InvConv1x1(24" in repr(body) and "(body): Sequence(" in repr(net)
    html = body._repr_html_()
    assert html.count("<tr>") == 1 + len(body) and "AffineCoupling" in html


def test_compile_has_no_graph_breaks(device):
    net = presets.iicnet(2, blocks=2, width=4, size=(8, 8), downscale="haar").eval().to(device)
    x = torch.rand(1, 6, 8, 8, device=device)
    forward = torch._dynamo.explain(lambda v: net([v]))(x)
    assert forward.graph_break_count == 0, forward.break_reasons
    e = net(x)
    inverse = torch._dynamo.explain(lambda v: net([v], rev=True))(e)
    assert inverse.graph_break_count == 0, inverse.break_reasons
