"""Interoperability with FrEIA 0.2, both ways, and the AllInOneBlock in-place regression."""

import FrEIA.framework as Ff
import FrEIA.modules as Fm
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from invblocks import FreiaBlock, Inversion, Sequence, as_block
from invblocks import blocks as B
from invblocks.freia import coupling_to_freia
from invblocks.testing import check_block, perturb_parameters
from invblocks.testing.strategies import image_shapes, seeds


def conv_subnet(c_in, c_out):
    return nn.Sequential(
        nn.Conv2d(c_in, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, c_out, 3, padding=1)
    )


def tanh_subnet(c_in, c_out):
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.Tanh())


def test_freia_modules_inside_a_sequence():
    net = Sequence(3, 8, 8)
    net.append(Fm.HaarDownsampling)
    net.append(Fm.GLOWCouplingBlock, subnet_constructor=conv_subnet, clamp=1.0)
    net.append(B.AffineCoupling, split=6)
    net.append(Fm.AllInOneBlock, subnet_constructor=conv_subnet)
    assert isinstance(net[0], FreiaBlock) and net[0].inversion is Inversion.EXACT
    assert net.dims_out == [(12, 4, 4)]
    assert "FreiaBlock(GLOWCouplingBlock)" in net.summary()
    x = torch.rand(2, 3, 8, 8, dtype=torch.float64)
    net = net.double()
    with torch.no_grad():
        (y,), log_det = net([x])
        (back,), log_det_rev = net([y], rev=True)
    torch.testing.assert_close(back, x)
    torch.testing.assert_close(log_det, -log_det_rev)
    assert log_det.shape == (2,)


def test_freia_module_passes_check_block():
    check_block(
        as_block(Fm.GLOWCouplingBlock([(4, 3, 3)], subnet_constructor=conv_subnet)), (4, 3, 3)
    )


def test_freia_shape_errors_are_named():
    with pytest.raises(ValueError, match=r"FreiaBlock\(GLOWCouplingBlock\)"):
        as_block(Fm.GLOWCouplingBlock([(4, 3, 3)], subnet_constructor=conv_subnet))(
            torch.rand(1, 6, 3, 3)
        )
    with pytest.raises(TypeError, match="Block or a FrEIA InvertibleModule"):
        as_block(nn.Linear(2, 2))


def test_invblocks_blocks_inside_freia_sequence_inn():
    inn = Ff.SequenceINN(6, 8, 8)
    inn.append(B.HaarDownscale)
    inn.append(B.InvConv1x1)
    inn.append(B.AffineCoupling, split=12)
    inn.append(Fm.AllInOneBlock, subnet_constructor=conv_subnet)
    inn = inn.double()
    x = torch.rand(2, 6, 8, 8, dtype=torch.float64)
    z, log_det = inn(x)
    back, log_det_rev = inn(z, rev=True)
    assert z.shape == (2, 24, 4, 4)
    torch.testing.assert_close(back, x)
    torch.testing.assert_close(log_det, -log_det_rev)
    expected = -6 * 4 * 4 * torch.log(torch.tensor(16.0, dtype=torch.float64))
    torch.testing.assert_close(inn[0]([x])[1], expected.expand(2))


def test_invblocks_blocks_and_sequences_inside_freia_graph_inn():
    inp = Ff.InputNode(6, 8, 8, name="in")
    haar = Ff.Node(inp, B.HaarDownscale, {}, name="haar")
    split = Ff.Node(haar, Fm.Split, {"section_sizes": [12, 12], "dim": 0}, name="split")
    left = Ff.Node(split.out0, B.AffineCoupling, {"split": 3}, name="left")
    chain = Sequence(12, 4, 4).append(B.InvConv1x1)
    right = Ff.Node(split.out1, FreiaWrapped, {"inner": chain}, name="right")
    merge = Ff.Node([left.out0, right.out0], Fm.Concat, {"dim": 0}, name="merge")
    out = Ff.OutputNode(merge, name="out")
    graph = Ff.GraphINN([inp, haar, split, left, right, merge, out]).double()
    x = torch.rand(2, 6, 8, 8, dtype=torch.float64)
    z, log_det = graph(x)
    back, _ = graph(z, rev=True)
    torch.testing.assert_close(back, x)
    assert z.shape == (2, 24, 4, 4) and log_det.shape == (2,)


class FreiaWrapped(Sequence):
    """A prebuilt Sequence placed in a GraphINN node (FrEIA builds nodes from a class)."""

    def __new__(cls, dims_in, inner):
        assert [tuple(d) for d in dims_in] == inner.dims_in
        return inner


def test_all_in_one_block_inplace_regression():
    """FrEIA 0.2 scales the subnet output in place; a Tanh-ended subnet breaks backward."""
    torch.manual_seed(0)
    raw = Fm.AllInOneBlock([(4, 4, 4)], subnet_constructor=tanh_subnet)
    x = torch.rand(2, 4, 4, 4, requires_grad=True)
    (y,), _ = raw([x])
    with pytest.raises(RuntimeError, match="inplace operation"):
        y.sum().backward()
    wrapped = as_block(Fm.AllInOneBlock([(4, 4, 4)], subnet_constructor=tanh_subnet))
    keys = set(wrapped.module.state_dict())
    (y,), log_det = wrapped([x])
    (y.sum() + log_det.sum()).backward()
    trainable = [p for p in wrapped.parameters() if p.requires_grad]
    assert x.grad is not None and all(p.grad is not None for p in trainable)
    assert set(wrapped.module.state_dict()) == keys  # parameter names unchanged
    check_block(wrapped, (4, 3, 3))
    net = Sequence(4, 4, 4).append(Fm.AllInOneBlock, subnet_constructor=tanh_subnet)
    net(x).sum().backward()  # the adapter applies inside a Sequence too


@settings(max_examples=10, deadline=None)
@given(shape=image_shapes(channels=st.integers(2, 7), max_side=6), seed=seeds(), data=st.data())
def test_coupling_to_freia_computes_the_same_function(shape, seed, data):
    split = data.draw(st.integers(1, shape[0] - 1), label="split")
    g = torch.Generator().manual_seed(seed)
    sub = lambda i, o: B.DenseBlock(i, o, growth=4, generator=g)  # noqa: E731
    ours = B.AffineCoupling([shape], split=split, clamp=0.8, subnet_constructor=sub).double()
    perturb_parameters(ours, 0.1, g)
    theirs = coupling_to_freia(ours)
    assert isinstance(theirs, Fm.GLOWCouplingBlock)
    assert sum(p.numel() for p in theirs.parameters()) == sum(p.numel() for p in ours.parameters())
    x = torch.randn(2, *shape, generator=g, dtype=torch.float64)
    for rev in (False, True):
        (a,), ld_a = ours([x], rev=rev)
        (b,), ld_b = theirs([x], rev=rev)
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-12)
        assert torch.allclose(ld_a, ld_b, rtol=1e-12, atol=1e-12)


def test_coupling_to_freia_copies_unless_shared():
    ours = B.AffineCoupling([(4, 4, 4)], split=2)
    copied, shared = coupling_to_freia(ours), coupling_to_freia(ours, share=True)
    ours_ptrs = {p.data_ptr() for p in ours.parameters()}
    assert not ours_ptrs & {p.data_ptr() for p in copied.parameters()}
    assert ours_ptrs == {p.data_ptr() for p in shared.parameters()}
    with pytest.raises(ValueError, match="dims_in"):
        coupling_to_freia(B.AffineCoupling(channels=4))
