"""The Block base class: calling conventions, log-det normalisation, errors, RNG hygiene."""

import pytest
import torch

from invblocks import Block, InverseView, Inversion
from invblocks import blocks as B


class Scale2(Block):
    """y = 2x, log-det returned as a python number to test normalisation."""

    def _forward(self, xs, c):
        return xs[0] * 2, xs[0][0].numel() * 0.6931471805599453

    def _inverse(self, ys, c):
        return ys[0] / 2, None


def test_freia_call_convention_and_log_det_normalisation():
    x = torch.rand(3, 2, 4, 4, dtype=torch.float64)
    out, log_det = Scale2()([x])
    assert isinstance(out, tuple) and len(out) == 1
    assert log_det.shape == (3,) and log_det.dtype == torch.float64
    (back,), log_det_rev = Scale2()(out, rev=True)
    assert torch.equal(back, x)
    assert log_det_rev.shape == (3,) and torch.all(log_det_rev == 0)


def test_bare_tensor_convenience_and_inverse_view():
    x = torch.rand(1, 3, 4, 4)
    haar = B.HaarDownscale()
    y = haar(x)
    assert isinstance(y, torch.Tensor) and y.shape == (1, 12, 2, 2)
    inv = haar.inverse()
    assert isinstance(inv, InverseView) and inv.inverse() is haar
    torch.testing.assert_close(inv(y), x)
    assert inv.output_dims([(12, 2, 2)]) == [(3, 4, 4)]


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int32, torch.int64, torch.bool])
@pytest.mark.parametrize("rev", [False, True])
def test_integer_images_are_refused_by_name(dtype, rev):
    from invblocks import Sequence

    net = Sequence(3, 4, 4)
    net.append(B.HaarDownscale)
    net.append(B.AffineCoupling, split=3)
    x = torch.zeros(1, *(net.dims_out[0] if rev else net.dims_in[0]), dtype=dtype)
    with pytest.raises(TypeError, match=rf"Sequence expects floating-point .*received {dtype}"):
        net([x], rev=rev)
    with pytest.raises(TypeError, match=r"HaarDownscale expects floating-point .*divide by 255"):
        B.HaarDownscale()(torch.zeros(1, 3, 4, 4, dtype=dtype))


def test_combine_kinds_takes_the_weakest():
    assert Inversion.combine([]) is Inversion.EXACT
    assert Inversion.combine([Inversion.EXACT, Inversion.LEFT]) is Inversion.LEFT
    assert (
        Inversion.combine([Inversion.STE, Inversion.LEARNED, Inversion.EXACT]) is Inversion.LEARNED
    )


def test_dims_in_count_checked_at_build():
    with pytest.raises(ValueError, match="HaarDownscale takes 1 input"):
        B.HaarDownscale([(3, 4, 4), (3, 4, 4)])
    with pytest.raises(ValueError, match="even height and width"):
        B.HaarDownscale((3, 5, 4))


@pytest.mark.parametrize(
    "factory",
    [
        lambda g: B.InvConv1x1(channels=5, generator=g),
        lambda g: B.AffineCoupling(channels=5, split=2, generator=g),
        lambda g: B.RelationModule(n_images=2, width=4, generator=g),
    ],
)
def test_seeded_init_is_reproducible_and_leaves_global_rng_alone(factory):
    state = torch.get_rng_state()
    a = factory(torch.Generator().manual_seed(7))
    b = factory(torch.Generator().manual_seed(7))
    c = factory(torch.Generator().manual_seed(8))
    assert torch.equal(state, torch.get_rng_state())
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa)


def test_fixed_tensors_are_buffers_not_parameters():
    conv = B.InvConv1x1(channels=4)
    names = {n for n, _ in conv.named_parameters()}
    assert names == {"lower", "upper", "log_s"}
    assert {"perm", "sign_s", "lower_mask"} <= {n for n, _ in conv.named_buffers()}
    assert list(B.HaarDownscale().parameters()) == []
