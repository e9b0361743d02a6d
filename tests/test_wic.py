"""WIC in its three cases, the shift augmentation and the two constraint losses."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from invblocks import Inversion
from invblocks import blocks as B
from invblocks.testing import check_block, perturb_parameters
from invblocks.testing.strategies import dtypes, image_shapes, seeds


def gen(seed):
    return torch.Generator().manual_seed(seed)


@given(
    c_in=st.integers(1, 8),
    c_out=st.integers(1, 8),
    data=st.data(),
    dtype=dtypes(),
    seed=seeds(),
)
def test_wic_contract_all_cases(c_in, c_out, data, dtype, seed, device):
    dims = data.draw(image_shapes(channels=c_in, min_side=5, max_side=7))
    wic = B.WIC(dims, out_channels=c_out, generator=gen(seed))
    expected = (
        Inversion.EXACT
        if c_in == c_out
        else Inversion.LEFT
        if c_out > c_in
        else Inversion.AUGMENTED
    )
    assert wic.inversion is expected
    assert wic.weight.shape == (c_out * (math.ceil(c_in / c_out) if c_out < c_in else 1), c_in)
    check_block(wic, dims, dtype=dtype, seed=seed, device=device)


@given(c_in=st.integers(1, 6), extra=st.integers(1, 6), seed=seeds())
def test_left_inverse_round_trip_float32(c_in, extra, seed):
    wic = B.WIC(in_channels=c_in, out_channels=c_in + extra, generator=gen(seed))
    perturb_parameters(wic, 0.1, gen(seed + 1))
    x = torch.rand(2, c_in, 6, 6, generator=gen(seed))
    with torch.no_grad():
        assert float((wic.inverse()(wic(x)) - x).abs().max()) < 1e-5


def test_orthogonal_init_and_gram_constraint():
    wic = B.WIC(in_channels=24, out_channels=32, generator=gen(0))
    torch.testing.assert_close(wic.gram(), torch.eye(24), atol=1e-6, rtol=0)
    assert float(wic.constraint_losses()["gram_det"].detach()) < 1e-5
    perturb_parameters(wic, 0.2, gen(1))
    loss = wic.constraint_losses()["gram_det"]
    w = wic.weight.detach().double()
    assert float(loss.detach()) == pytest.approx(abs(math.log(float(torch.det(w.T @ w)))), rel=1e-4)
    loss.backward()
    assert wic.weight.grad is not None and float(wic.weight.grad.abs().sum()) > 0


def reference_shift(y, a, b):
    """Independent shift: index arithmetic with reflection of out-of-range rows/cols."""
    h, w = y.shape[-2:]

    def src(i, n, size):
        j = i - n
        return -j if j < 0 else 2 * (size - 1) - j if j >= size else j

    rows = torch.tensor([src(i, a, h) for i in range(h)])
    cols = torch.tensor([src(i, b, w) for i in range(w)])
    return y[..., rows, :][..., :, cols]


@given(a=st.integers(-3, 3), b=st.integers(-3, 3), seed=seeds())
def test_shift_matches_reflection_definition(a, b, seed):
    y = torch.rand(1, 2, 7, 8, generator=gen(seed))
    torch.testing.assert_close(B.shift(y, a, b), reference_shift(y, a, b), rtol=0, atol=0)
    if a == 1 and b == 0:
        assert torch.equal(B.shift(y, 1, 0)[..., 0, :], y[..., 1, :])  # row 0 <- old row 1


def test_shift_offsets_of_the_reference():
    assert B.shift_offsets(2) == [(-1, -1)]
    assert B.shift_offsets(4) == [(-1, -1), (-1, 0), (-1, 1)]
    assert B.shift_offsets(10) == [(-2, j) for j in range(-2, 3)] + [(-1, j) for j in range(-2, 2)]
    assert len(B.shift_offsets(14)) == 13 and B.shift_offsets(14)[-1] == (0, 1)
    assert max(max(abs(a), abs(b)) for a, b in B.shift_offsets(27)) == 3


def test_the_augmented_channels_are_an_auxiliary_output_in_both_modes():
    wic = B.WIC(in_channels=10, out_channels=3, generator=gen(0))
    assert wic.k == 4 and wic.weight.shape == (12, 10)
    x = torch.rand(1, 10, 8, 8)
    for mode in (True, False):
        (y,), _, aux = wic.train(mode).forward_with_aux([x])
        assert y.shape == (1, 3, 8, 8) and wic(x).shape == (1, 3, 8, 8)
        v = aux["augmented"]
        assert v.shape == (1, 12, 8, 8) and wic.aux_dims([(10, 8, 8)]) == {"augmented": (12, 8, 8)}
        torch.testing.assert_close(v[:, :3], y)
    assert (
        B.WIC(in_channels=10, out_channels=3, augmented_output=False).aux_dims([(10, 8, 8)]) == {}
    )
    assert B.WIC(in_channels=3, out_channels=10).aux_dims([(3, 8, 8)]) == {}
    # the inverse takes either the output alone or all M channels
    assert wic.inverse()(y).shape == x.shape and wic.inverse()(v).shape == x.shape
    torch.testing.assert_close(wic.inverse()(v), x, atol=1e-5, rtol=0)  # all channels: exact


@given(c_out=st.integers(1, 3), k=st.integers(2, 4), seed=seeds())
def test_augmented_inverse_is_exact_when_hidden_channels_equal_the_shifted_output(c_out, k, seed):
    # With C_in = K * C_out, W is square: u = W^-1 [y; shifts(y)] has exactly those hidden
    # channels, so forward then inverse reproduces u.
    wic = B.WIC(in_channels=k * c_out, out_channels=c_out, generator=gen(seed)).double().eval()
    perturb_parameters(wic, 0.05, gen(seed + 1))
    y = torch.rand(2, c_out, 9, 9, generator=gen(seed), dtype=torch.float64)
    u = wic.inverse()(y)
    v = wic.forward_with_aux([u])[2]["augmented"]
    torch.testing.assert_close(v, wic.augment(y))
    torch.testing.assert_close(wic.eval()(u), y)
    torch.testing.assert_close(wic.inverse()(wic(u)), u)


def test_augmented_reconstruction_error_on_generic_input_is_reported():
    wic = B.WIC(in_channels=6, out_channels=3, generator=gen(0)).eval()
    x = torch.rand(1, 6, 16, 16, generator=gen(1))
    with torch.no_grad():
        err = float((wic.inverse()(wic(x)) - x).abs().mean())
    print(f"untrained AUGMENTED WIC 6->3: mean reconstruction error {err:.4f}")
    assert err > 1e-3  # not exact on arbitrary inputs: only the constraint makes it so


def test_shift_loss():
    wic = B.WIC(in_channels=10, out_channels=3, generator=gen(0))
    target = torch.rand(2, 3, 8, 8)
    v = torch.cat([target, wic.shift_targets(target)], 1)
    assert float(wic.shift_loss(v, target)) == 0.0
    noisy = v + 0.1
    assert float(wic.shift_loss(noisy, target)) == pytest.approx(0.01 * 9 * 64, rel=1e-4)
    charb = float(wic.shift_loss(noisy, target, loss="charbonnier"))
    assert charb == pytest.approx(math.sqrt(0.01 + 1e-6) * 9 * 64, rel=1e-4)
    assert (
        float(B.WIC(in_channels=3, out_channels=4).shift_loss(torch.rand(1, 4, 4, 4), target)) == 0
    )


def test_too_small_for_the_shifts():
    wic = B.WIC(in_channels=10, out_channels=1)  # K = 10, offsets up to 2
    with pytest.raises(ValueError, match=r"WIC expects height and width > 4.*\(1, 4, 9\)"):
        wic.inverse()(torch.rand(1, 1, 4, 9))
    with pytest.raises(ValueError, match="height and width > 4"):
        B.WIC((10, 3, 3), out_channels=1)


def test_wrong_channels():
    with pytest.raises(ValueError, match=r"WIC expects 4 channels.*\(3, 8, 8\)"):
        B.WIC(in_channels=4, out_channels=8)(torch.rand(1, 3, 8, 8))
    with pytest.raises(ValueError, match="3 or 12 channels in the inverse"):
        B.WIC(in_channels=10, out_channels=3).inverse()(torch.rand(1, 5, 8, 8))
