"""Every block family passes check_block over random shapes, dtypes and seeds, plus the
reference formulas computed independently."""

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from invblocks import Inversion, presets, ric
from invblocks import blocks as B
from invblocks.blocks import set_compact_dense
from invblocks.testing import SavedBytes, check_block, perturb_parameters
from invblocks.testing.strategies import dtypes, image_shapes, seeds


def gen(seed):
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------------- the contract
# Each entry: name -> (shape strategy, factory(shape, seed) -> block).
FAMILIES = {
    "haar-reference-ref": (
        image_shapes(channels=st.sampled_from([3, 6]), multiple=2, max_side=6),
        lambda d, s: B.HaarDownscale(order="ref"),
    ),
    "haar-orthonormal-hl": (
        image_shapes(multiple=2, max_side=6),
        lambda d, s: B.HaarDownscale(scale="orthonormal", order="hl"),
    ),
    "haar-channel": (
        image_shapes(multiple=2, max_side=6),
        lambda d, s: B.HaarDownscale(order="channel"),
    ),
    "squeeze-ref": (
        image_shapes(channels=st.sampled_from([2, 4]), multiple=2, max_side=6),
        lambda d, s: B.Squeeze(order="ref", group=2),
    ),
    "squeeze-hl": (image_shapes(multiple=2, max_side=6), lambda d, s: B.Squeeze(order="hl")),
    "conv1x1-lu": (
        image_shapes(channels=st.integers(2, 8), max_side=5),
        lambda d, s: B.InvConv1x1(channels=d[0], generator=gen(s)),
    ),
    "conv1x1-plain": (
        image_shapes(channels=st.integers(1, 8), max_side=5),
        lambda d, s: B.InvConv1x1(d, parameterization="plain", generator=gen(s)),
    ),
    "coupling": (
        image_shapes(channels=st.integers(2, 6), max_side=5),
        lambda d, s: B.AffineCoupling(
            d,
            split=1 + s % (d[0] - 1),
            generator=gen(s),
            subnet_constructor=lambda i, o: B.DenseBlock(i, o, growth=4, generator=gen(s)),
        ),
    ),
    "coupling-keep-first": (
        image_shapes(channels=st.integers(2, 6), max_side=5),
        lambda d, s: B.AffineCoupling(
            d,
            split=1 + s % (d[0] - 1),
            keep_first=True,
            growth=4,
            generator=gen(s),
        ),
    ),
    "relation": (
        image_shapes(channels=st.sampled_from([3, 6, 9]), max_side=5),
        lambda d, s: B.RelationModule(d, width=4, generator=gen(s)),
    ),
    "channel-squeeze": (
        image_shapes(channels=st.sampled_from([3, 6, 12]), max_side=5),
        lambda d, s: B.ChannelSqueeze(d, out_channels=3),
    ),
    "channel-squeeze-first": (
        image_shapes(channels=st.sampled_from([3, 6, 12]), max_side=5),
        lambda d, s: B.ChannelSqueeze(
            d, out_channels=3, mode="first", fill=None if s % 2 else [0, d[0] // 3 - 1]
        ),
    ),
    "conv1x1-identity": (
        image_shapes(channels=st.integers(2, 6), max_side=5),
        lambda d, s: B.InvConv1x1(d, init="identity", parameterization=("lu", "plain")[s % 2]),
    ),
    "conv1x1-luma": (
        image_shapes(channels=st.sampled_from([3, 6]), max_side=5),
        lambda d, s: B.InvConv1x1(d, init="luma", parameterization=("lu", "plain")[s % 2]),
    ),
    "quantizer": (image_shapes(max_side=5), lambda d, s: ric.Quantizer(bits=1 + s % 8)),
    "wic-expanding": (
        image_shapes(channels=st.integers(1, 4), max_side=5),
        lambda d, s: B.WIC(d, out_channels=d[0] + 1 + s % 3, generator=gen(s)),
    ),
    "wic-square": (
        image_shapes(channels=st.integers(1, 4), max_side=5),
        lambda d, s: B.WIC(d, out_channels=d[0], generator=gen(s)),
    ),
    "wic-reducing": (
        image_shapes(channels=st.integers(4, 6), min_side=5, max_side=7),
        lambda d, s: B.WIC(d, out_channels=2 + s % 2, generator=gen(s)),
    ),
    "split": (
        image_shapes(channels=st.integers(2, 6), max_side=5),
        lambda d, s: B.Split(d, sections=[1 + s % (d[0] - 1), d[0] - 1 - s % (d[0] - 1)]),
    ),
    "unsqueeze": (
        image_shapes(channels=st.sampled_from([4, 8]), max_side=4),
        lambda d, s: B.Unsqueeze(order="channel"),
    ),
    "reference-prior": (
        image_shapes(channels=st.sampled_from([3, 6, 9]), max_side=8),
        lambda d, s: B.ReferencePrior(d, channels=3, zoom=1 + s % 4),
    ),
    "upscale-prior": (
        image_shapes(multiple=4, max_side=12),
        lambda d, s: B.UpscalePrior(d, factor=2 + 2 * (s % 2)),
    ),
    "residue-hiding": (
        image_shapes(channels=st.sampled_from([6, 9, 12, 15]), min_side=2, max_side=8),
        lambda d, s: B.ResidueHiding(d, channels=3, levels=8 + s % 121),
    ),
    "jpeg": (
        image_shapes(channels=st.sampled_from([1, 3]), max_side=6),
        lambda d, s: ric.JPEGChannel(quality=10 + s % 90),
    ),
}


@pytest.mark.parametrize("family", sorted(FAMILIES))
@given(data=st.data(), dtype=dtypes(), seed=seeds())
def test_block_contract(family, data, dtype, seed, device):
    shapes, factory = FAMILIES[family]
    dims = data.draw(shapes)
    check_block(factory(dims, seed), dims, dtype=dtype, seed=seed, device=device)


@given(dims=image_shapes(channels=st.sampled_from([9, 12, 14]), min_side=2), seed=seeds())
def test_block_contract_of_the_residue_hiding_of_differences(dims, seed, device):
    """The frames' low bands hidden as differences, the high bands passed through. In
    float64: the compander's fine levels near zero are coarse far from it, so in float32 a
    large difference takes the embedding's rounding (``6e-8`` of its range) times its slope
    ratio, up to about ``5e-5``, past the float32 tolerance."""
    block = B.ResidueHiding(
        dims, channels=3, levels=4 + seed % 125, secrets=1 + seed % 2,
        difference=0.01 * (1 + seed % 30),
    )  # fmt: skip
    check_block(block, dims, dtype=torch.float64, seed=seed, device=device)


def test_channel_mix_is_full_float32_on_every_device(device):
    """The invertible linear blocks' product: no TF32 on GPUs, where PyTorch would run a
    1x1 convolution in it by default."""
    from invblocks.ops import channel_mix

    x, m = torch.rand(2, 7, 9, 11, generator=gen(0)), torch.rand(5, 7, generator=gen(1))
    expected = torch.einsum("oc,bchw->bohw", m.double(), x.double())
    for layout in (torch.contiguous_format, torch.channels_last):
        got = channel_mix(x.to(device).contiguous(memory_format=layout), m.to(device))
        assert got.shape == (2, 5, 9, 11) and got.device.type == device
        assert float((got.double().cpu() - expected).abs().max()) < 1e-5


# ----------------------------------------------------------------------------- Haar
def haar_by_convolution(x, scale):
    """The reference's grouped stride-2 convolution, subband-major ('hl') output."""
    k = torch.tensor(
        [[[1, 1], [1, 1]], [[1, -1], [1, -1]], [[1, 1], [-1, -1]], [[1, -1], [-1, 1]]],
        dtype=x.dtype,
    )
    c = x.shape[1]
    w = (k * scale)[:, None].repeat(c, 1, 1, 1)  # (4C, 1, 2, 2), channel-major
    y = F.conv2d(x, w, stride=2, groups=c)  # channel c, subband k at c*4 + k
    b, _, h, ww = y.shape
    return y.reshape(b, c, 4, h, ww).transpose(1, 2).reshape(b, 4 * c, h, ww)


@given(shape=image_shapes(channels=st.sampled_from([3, 6]), multiple=2, max_side=8), seed=seeds())
def test_haar_matches_reference_convolution(shape, seed):
    x = torch.rand((2, *shape), generator=gen(seed), dtype=torch.float64)
    for scale, name in ((0.25, "reference"), (0.5, "orthonormal")):
        got = B.HaarDownscale(scale=name, order="hl")(x)
        torch.testing.assert_close(got, haar_by_convolution(x, scale))
    # 'ref' regroups each 3-channel image's four subbands together
    hl = B.HaarDownscale(order="hl")(x)
    ref = B.HaarDownscale(order="ref", group=3)(x)
    c = shape[0]
    for f in range(c // 3):
        for k in range(4):
            torch.testing.assert_close(
                ref[:, 12 * f + 3 * k : 12 * f + 3 * k + 3],
                hl[:, k * c + 3 * f : k * c + 3 * f + 3],
            )


def test_haar_ll_is_the_2x2_mean_and_log_det():
    x = torch.rand(1, 3, 4, 6, dtype=torch.float64)
    (y,), log_det = B.HaarDownscale(order="hl")([x])
    torch.testing.assert_close(y[:, :3], F.avg_pool2d(x, 2))
    assert log_det.item() == pytest.approx(-3 * 2 * 3 * math.log(16))
    (_,), log_det = B.HaarDownscale(scale="orthonormal")([x])
    assert log_det.item() == pytest.approx(0.0, abs=1e-12)


@given(shape=image_shapes(multiple=2, max_side=8), seed=seeds())
def test_squeeze_orders(shape, seed):
    x = torch.rand((1, *shape), generator=gen(seed))
    torch.testing.assert_close(
        B.Squeeze(order="channel")(x), F.pixel_unshuffle(x, 2), rtol=0, atol=0
    )
    hl = B.Squeeze(order="hl")(x)
    c = shape[0]
    for dy in range(2):
        for dx in range(2):
            for ch in range(c):
                assert torch.equal(hl[:, (dy * 2 + dx) * c + ch], x[:, ch, dy::2, dx::2])


@pytest.mark.parametrize(
    "block, shape, needle",
    [
        (B.HaarDownscale(), (3, 5, 4), "even height and width"),
        (B.Squeeze(), (4, 4, 4), "divisible by group=3"),
        (B.InvConv1x1(channels=4), (3, 4, 4), "4 channels"),
        (B.AffineCoupling(channels=15, split=3), (12, 8, 8), "15 channels"),
        (B.RelationModule(n_images=2, width=4), (3, 4, 4), "6 channels"),
        (B.ChannelSqueeze(out_channels=3), (7, 4, 4), "divisible by out_channels=3"),
    ],
)
def test_bad_input_names_block_and_shapes(block, shape, needle):
    with pytest.raises(ValueError) as info:
        block(torch.rand(1, *shape))
    msg = str(info.value)
    assert type(block).__name__ in msg and needle in msg and str(shape) in msg


def test_wrong_number_of_inputs():
    x = torch.rand(1, 3, 4, 4)
    with pytest.raises(ValueError, match=r"HaarDownscale takes 1 input\(s\); received 2"):
        B.HaarDownscale()([x, x])


# --------------------------------------------------------------------------- 1x1 conv
@pytest.mark.parametrize("param", ["lu", "plain"])
def test_conv1x1_is_orthogonal_at_init_and_log_det(param):
    conv = B.InvConv1x1(channels=6, parameterization=param, generator=gen(3)).double()
    w = conv.matrix()
    torch.testing.assert_close(w @ w.T, torch.eye(6, dtype=torch.float64))
    with torch.no_grad():
        for p in conv.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=gen(4), dtype=p.dtype))
    x = torch.rand(2, 6, 3, 5, dtype=torch.float64)
    (_,), log_det = conv([x])
    expected = 15 * torch.linalg.slogdet(conv.matrix())[1]
    torch.testing.assert_close(log_det, expected.expand(2))


# --------------------------------------------------------------------------- coupling
def test_coupling_matches_formula_and_is_identity_at_init():
    block = B.AffineCoupling(channels=5, split=2, clamp=0.7, generator=gen(0)).double()
    x = torch.rand(2, 5, 4, 4, dtype=torch.float64)
    assert torch.equal(block(x), x)
    with torch.no_grad():
        for p in block.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen(1), dtype=p.dtype))
    x1, x2 = x[:, :2], x[:, 2:]
    y1 = x1 + block.F(x2)
    s = 0.7 * (2 * torch.sigmoid(block.H(y1)) - 1)
    y2 = x2 * torch.exp(s) + block.G(y1)
    (y,), log_det = block([x])
    torch.testing.assert_close(y, torch.cat([y1, y2], 1))
    torch.testing.assert_close(log_det, s.sum((1, 2, 3)))
    assert float(s.detach().abs().max()) < 0.7


def test_a_coupling_that_keeps_its_first_part_changes_only_the_second():
    block = B.AffineCoupling(channels=5, split=2, keep_first=True, generator=gen(0)).double()
    assert block.F is None and "keep_first=True" in repr(block)
    perturb_parameters(block, 0.1, gen(1))
    x = torch.rand(2, 5, 4, 4, dtype=torch.float64, generator=gen(2))
    y = block(x)
    assert torch.equal(y[:, :2], x[:, :2]) and not torch.allclose(y[:, 2:], x[:, 2:])
    s = 1.0 * (2 * torch.sigmoid(block.H(x[:, :2])) - 1)
    torch.testing.assert_close(y[:, 2:], x[:, 2:] * torch.exp(s) + block.G(x[:, :2]))


def test_dense_block_and_coupling_parameter_counts():
    # The reference: F 73,031, G and H 73,040 each, 219,111 per block for split 3 | 12.
    block = B.AffineCoupling(channels=15, split=3)
    assert [sum(p.numel() for p in m.parameters()) for m in (block.F, block.G, block.H)] == [
        73031,
        73040,
        73040,
    ]
    assert torch.count_nonzero(block.F.out.weight) == 0


def test_custom_subnet_constructor_is_used():
    made = []

    def subnet(c_in, c_out):
        made.append((c_in, c_out))
        return torch.nn.Conv2d(c_in, c_out, 3, padding=1)

    block = B.AffineCoupling(channels=4, split=1, subnet_constructor=subnet)
    assert made == [(3, 1), (1, 3), (1, 3)]
    check_block(block, (4, 3, 3))


# --------------------------------------------------------------------------- relation
def test_relation_parameter_count_and_learned_inverse():
    rel = B.RelationModule(n_images=5)
    assert sum(p.numel() for p in rel.forward_net.parameters()) == 2_307_215
    assert sum(p.numel() for p in rel.inverse_net.parameters()) == 2_307_215
    small = B.RelationModule(n_images=2, width=4, generator=gen(0))
    with torch.no_grad():
        for p in small.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=gen(1)))
    x = torch.rand(1, 6, 5, 5)
    # a learned inverse, not an analytic one: the round trip is not the identity
    assert (small.inverse()(small(x)) - x).abs().max() > 1e-4
    assert small.inversion is Inversion.LEARNED


# ----------------------------------------------------------------------- channel squeeze
def test_channel_squeeze_is_group_mean_and_tiles_back():
    cs = B.ChannelSqueeze([(12, 2, 2)], out_channels=3)
    x = torch.rand(2, 12, 2, 2)
    torch.testing.assert_close(cs(x), (x[:, 0:3] + x[:, 3:6] + x[:, 6:9] + x[:, 9:12]) / 4)
    e = torch.rand(2, 3, 2, 2)
    assert torch.equal(cs.inverse()(e), e.repeat(1, 4, 1, 1))
    with pytest.raises(ValueError, match="built without dims_in"):
        B.ChannelSqueeze(out_channels=3).inverse()(e)


# --------------------------------------------------------------------------- quantizer
@given(seed=seeds(), bits=st.integers(1, 12))
def test_quantizer_eval_is_idempotent_on_its_grid(seed, bits):
    q = ric.Quantizer(bits=bits).eval()
    levels = 2**bits - 1
    grid = torch.randint(0, levels + 1, (2, 3, 4, 4), generator=gen(seed)).double() / levels
    assert torch.equal(q(grid), grid)
    x = torch.rand(2, 3, 4, 4, generator=gen(seed)) * 1.4 - 0.2
    y = q(x)
    assert y.min() >= 0 and y.max() <= 1
    assert float((y - x.clamp(0, 1)).abs().max()) <= 0.5 / levels + 1e-6


def test_quantizer_training_modes_and_gradients():
    x = torch.tensor([[[[-0.1, 0.3, 0.7, 1.2]]]], requires_grad=True)
    q = ric.Quantizer(generator=gen(0)).train()
    y = q(x)
    assert float((y - x.clamp(0, 1)).detach().abs().max()) <= 0.5 / 255 + 1e-7
    y.sum().backward()
    # identity inside (0, 1), zero where the clamp is active
    assert x.grad.tolist() == [[[[0.0, 1.0, 1.0, 0.0]]]]
    assert not torch.equal(q(x), q(x))  # fresh noise each call
    x.grad = None
    ste = ric.Quantizer(train_mode="ste").train()
    y = ste(x)
    assert torch.equal(y, ric.quantize(x))
    y.sum().backward()
    assert x.grad.tolist() == [[[[1.0, 1.0, 1.0, 1.0]]]]


def test_quantizer_noise_from_generator_leaves_global_rng_alone():
    state = torch.get_rng_state()
    a = ric.Quantizer(generator=gen(5)).train()(torch.full((1, 3, 4, 4), 0.5))
    b = ric.Quantizer(generator=gen(5)).train()(torch.full((1, 3, 4, 4), 0.5))
    assert torch.equal(a, b) and torch.equal(state, torch.get_rng_state())


@settings(max_examples=8, deadline=None)
@given(
    shape=image_shapes(channels=st.integers(1, 6), max_side=7),
    c_out=st.integers(1, 5),
    growth=st.integers(1, 6),
    seed=seeds(),
    dtype=dtypes(),
    channels_last=st.booleans(),
)
def test_compact_dense_block_equals_plain_autograd(
    shape, c_out, growth, seed, dtype, channels_last
):
    g = gen(seed)
    block = B.DenseBlock(shape[0], c_out, growth, generator=g).to(dtype)
    perturb_parameters(block, 0.1, g)
    x = torch.randn(2, *shape, generator=g, dtype=dtype)
    if channels_last:
        block = block.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    weight = torch.randn(2, c_out, *shape[1:], generator=g, dtype=dtype)

    def run(compact):
        block.compact = compact
        xr = x.clone().requires_grad_(True)
        y = block(xr)
        grads = torch.autograd.grad((y * weight).sum(), [xr, *block.parameters()])
        return (y.detach(), *grads)

    tol = 1e-12 if dtype == torch.float64 else 1e-5
    for a, b in zip(run(False), run(True), strict=True):
        assert torch.allclose(a, b, rtol=tol, atol=tol * float(a.abs().max().clamp_min(1)))


def dense_by_definition(block, u):
    """``z_k = lrelu(conv_k([u; z_1..z_{k-1}]))``, ``out = conv5([u; z_1..z_4])``, in NCHW."""
    feats = [u.contiguous()]
    for conv in block.convs:
        x = torch.cat(feats, dim=1)
        w = conv.weight.contiguous()
        feats.append(F.leaky_relu(F.conv2d(x, w, conv.bias, padding=1), 0.2))
    return F.conv2d(torch.cat(feats, 1), block.out.weight.contiguous(), block.out.bias, padding=1)


@settings(max_examples=10, deadline=None)
@given(
    shape=image_shapes(channels=st.integers(2, 6), min_side=2, max_side=7),
    batch=st.integers(1, 3),
    c_out=st.integers(1, 5),
    growth=st.integers(1, 6),
    seed=seeds(),
    dtype=dtypes(),
)
def test_dense_block_channels_last_split_tail_is_the_same_function(
    shape, batch, c_out, growth, seed, dtype
):
    g = gen(seed)
    block = B.DenseBlock(shape[0], c_out, growth, generator=g).to(dtype)
    perturb_parameters(block, 0.1, g)
    block = block.to(memory_format=torch.channels_last)
    x = torch.randn(batch, *shape, generator=g, dtype=dtype)
    x = x.contiguous(memory_format=torch.channels_last)
    weight = torch.randn(batch, c_out, *shape[1:], generator=g, dtype=dtype)

    def run(fn):
        xr = x.clone().requires_grad_(True)
        y = fn(xr)
        grads = torch.autograd.grad((y * weight).sum(), [xr, *block.parameters()])
        return (y.detach(), *grads)

    tol = 1e-12 if dtype == torch.float64 else 1e-5
    assert not x.is_contiguous()  # C, H, W >= 2: really channels-last, so the split path runs
    for a, b in zip(run(block), run(lambda u: dense_by_definition(block, u)), strict=True):
        assert torch.allclose(a, b, rtol=tol, atol=tol * float(a.abs().max().clamp_min(1)))


def test_dense_block_splits_its_tail_only_in_channels_last_on_cpu(monkeypatch):
    block = B.DenseBlock(3, 4).to(memory_format=torch.channels_last)
    calls = []
    monkeypatch.setattr(block, "_forward_split_tail", lambda u: calls.append(u) or u[:, :4])
    block(torch.rand(1, 3, 8, 8).contiguous(memory_format=torch.channels_last))
    assert len(calls) == 1
    plain = B.DenseBlock(3, 4)
    monkeypatch.setattr(plain, "_forward_split_tail", lambda u: calls.append(u) or u[:, :4])
    plain(torch.rand(1, 3, 8, 8))
    assert len(calls) == 1  # contiguous weights and input: the concatenating path


def test_compact_dense_keeps_less_for_backward_and_is_set_network_wide():
    net = presets.iicnet(2, blocks=2, width=8, size=(8, 8))
    assert set_compact_dense(net) == 2 * 3 + 2 * 2 * 2  # couplings F, G, H; relation DBs
    block = B.DenseBlock(6, 6)
    x = torch.rand(2, 6, 16, 16, requires_grad=True)

    def saved(compact):
        block.compact = compact
        with SavedBytes() as counter:
            block(x)
        return counter.bytes

    assert saved(True) * 3 < saved(False)
    with torch.no_grad():  # no graph to save: the plain path, same numbers
        block.compact = True
        compact = block(x)
        block.compact = False
        assert torch.equal(compact, block(x))


def test_the_first_group_squeeze_and_its_fill():
    cs = B.ChannelSqueeze([(12, 2, 2)], out_channels=3, mode="first", fill=[0, 2])
    y = torch.rand(1, 12, 2, 2)
    e = cs(y)
    assert torch.equal(e, y[:, :3])
    back = cs.inverse()(e)
    assert torch.equal(back[:, :3], e) and torch.equal(back[:, 6:9], e)
    assert not back[:, 3:6].any() and not back[:, 9:].any()
    with pytest.raises(ValueError, match="fill is for mode='first'"):
        B.ChannelSqueeze(out_channels=3, fill=[0])
    with pytest.raises(ValueError, match=r"fill \[1\] must hold group 0"):
        B.ChannelSqueeze([(6, 2, 2)], out_channels=3, mode="first", fill=[1])


def test_the_luma_initialisation_maps_gray_to_gray():
    conv = B.InvConv1x1(channels=3, init="luma").double()
    rgb = torch.rand(1, 3, 4, 4, dtype=torch.float64)
    ycbcr = conv(rgb)
    luma = 0.299 * rgb[:, 0] + 0.587 * rgb[:, 1] + 0.114 * rgb[:, 2]
    assert torch.allclose(ycbcr[:, 0], luma)
    gray = conv.inverse()(torch.cat([ycbcr[:, :1], torch.zeros_like(ycbcr[:, 1:])], 1))
    assert torch.allclose(gray, luma[:, None].expand(-1, 3, -1, -1))
    with pytest.raises(ValueError, match="groups of 3 channels"):
        B.InvConv1x1(channels=4, init="luma")


@given(data=st.data(), dtype=dtypes(), seed=seeds())
def test_concat_contract(data, dtype, seed):
    shape = data.draw(image_shapes(max_side=5))
    other = (data.draw(st.integers(1, 4)), *shape[1:])
    check_block(B.Concat([shape, other]), [shape, other], dtype=dtype, seed=seed)


def test_the_reference_prior_subtracts_the_zoomed_centre_from_the_other_slots():
    x = torch.rand(2, 9, 8, 12, generator=gen(0))
    prior = B.ReferencePrior([(9, 8, 12)], channels=3, zoom=2)
    y = prior(x)
    centre = x[:, :3, 2:6, 3:9]
    up = torch.nn.functional.interpolate(centre, size=(8, 12), mode="bicubic").clamp(0, 1)
    assert torch.equal(y[:, :3], x[:, :3])
    assert torch.allclose(y[:, 3:6], x[:, 3:6] - up) and torch.allclose(y[:, 6:], x[:, 6:] - up)
    assert torch.allclose(prior.inverse()(y), x, atol=1e-6)
    assert torch.equal(B.ReferencePrior(channels=3)(x[:, :3]), x[:, :3])  # one slot: nothing
    with pytest.raises(ValueError, match="divisible by channels=3"):
        B.ReferencePrior([(4, 8, 8)], channels=3)


@given(
    secrets=st.integers(1, 4),
    levels=st.integers(2, 128),
    side=st.integers(1, 6),
    seed=seeds(),
)
def test_residue_hiding_restores_every_secret_from_the_8_bit_embedding_alone(
    secrets, levels, side, seed
):
    """On 8-bit slots: the rounded embedding is within ``levels / 2`` steps of the cover
    (``levels`` near black and white) and restores, with the other slots zero, the cover as
    itself and each carried secret sample to the nearest of ``levels`` values; the other
    pixels get the secret's carried neighbours interpolated (a 3 x 3 tent)."""
    h, w = 2 * side, 2 * side + 1
    x = torch.randint(0, 256, (2, 3 * (1 + secrets), h, w), generator=gen(seed)) / 255.0
    block = B.ResidueHiding(channels=3, levels=levels)
    y = block(x)
    e = ric.quantize(y[:, :3])
    steps, cover = (e - x[:, :3]).abs() * 255, x[:, :3] * 255
    middle = (cover >= levels / 2) & (cover <= 255 - levels / 2)
    assert float(torch.where(middle, steps, 0).max()) <= levels / 2 + 1e-3
    assert float(steps.max()) < levels  # near black and white it folds back onto the grid
    r = block.inverse()(torch.cat([e, torch.zeros_like(y[:, 3:])], dim=1))
    assert torch.equal(r[:, :3], e)
    phases = B.secret_phases(secrets, h, w)
    assert phases.sum(0).eq(1).all()  # every pixel carries one secret
    for k in range(secrets):
        s, got, mask = x[:, 3 * (k + 1) : 3 * (k + 2)], r[:, 3 * (k + 1) : 3 * (k + 2)], phases[k]
        nearest = torch.round(s * (levels - 1)) / (levels - 1)
        assert float((got - nearest)[..., mask].abs().max()) < 1e-4
        if secrets > 1:  # the mean of the carried neighbours, the nearer ones counting more
            pad = F.pad(nearest * mask, (1, 1, 1, 1))
            weights = F.pad(mask.double(), (1, 1, 1, 1))
            num, den = torch.zeros_like(nearest), torch.zeros(h, w, dtype=torch.float64)
            for di in range(3):
                for dj in range(3):
                    wt = (2 - abs(di - 1)) * (2 - abs(dj - 1))
                    num += wt * pad[..., di : di + h, dj : dj + w]
                    den += wt * weights[di : di + h, dj : dj + w]
            fill = num / den
            assert float((got - fill)[..., ~mask].abs().max()) < 1e-4
    with pytest.raises(ValueError, match="1-4 secrets"):
        B.ResidueHiding([(3, 4, 4)], channels=3)
    with pytest.raises(ValueError, match="at least 2 for 2-4 secrets"):
        B.ResidueHiding([(9, 1, 4)], channels=3)


def test_secret_phases_two_secrets_on_alternate_columns_or_a_checkerboard():
    columns = B.secret_phases(2, 2, 4)[0].int().tolist()
    board = B.secret_phases(2, 2, 4, checkerboard=True)[0].int().tolist()
    assert columns == [[1, 0, 1, 0], [1, 0, 1, 0]]  # the layout saved models decode with
    assert board == [[1, 0, 1, 0], [0, 1, 0, 1]]
    cells = B.secret_phases(3, 2, 2, checkerboard=True).int().tolist()
    assert cells == [[[1, 0], [0, 1]], [[0, 1], [0, 0]], [[0, 0], [1, 0]]]  # 2x2 cells in turn
    assert torch.equal(B.secret_phases(3, 4, 4), B.secret_phases(3, 4, 4, checkerboard=True))


@given(
    secrets=st.integers(1, 4),
    levels=st.integers(4, 64),
    scale=st.floats(0.005, 0.5),
    passed=st.integers(0, 4),
    seed=seeds(),
)
def test_residue_hiding_of_differences_restores_each_to_its_nearest_level(
    secrets, levels, scale, passed, seed
):
    """``difference``: on 8-bit slots, a carried secret restores as the restored cover plus
    the companded level nearest to its difference from the cover, a secret equal to the
    cover as the cover exactly; the channels after the hidden slots pass through."""
    h, w = 6, 7
    g = gen(seed)
    cover = torch.randint(0, 256, (2, 3, h, w), generator=g)
    steps = torch.randint(-40, 41, (2, 3 * secrets, h, w), generator=g)
    same = torch.rand(2, 1, h, w, generator=g) < 0.3  # some secrets equal the cover
    slots = (cover.repeat(1, secrets, 1, 1) + torch.where(same, 0, steps)).clamp(0, 255)
    tail = torch.randn(2, passed, h, w, generator=g, dtype=torch.float64)
    x = torch.cat([cover / 255.0, slots / 255.0, tail], dim=1)
    board = seed % 2 == 0
    block = B.ResidueHiding(
        channels=3, levels=levels, secrets=secrets, difference=scale, checkerboard=board
    )
    y = block(x)
    assert torch.equal(y[:, 3 * (1 + secrets) :], tail)
    e = ric.quantize(y[:, :3])
    assert float((e - x[:, :3]).abs().max()) * 255 < levels
    hidden = y[:, 3 : 3 * (1 + secrets)]
    r = block.inverse()(torch.cat([e, torch.zeros_like(hidden), tail], dim=1))
    assert torch.equal(r[:, :3], e) and torch.equal(r[:, 3 * (1 + secrets) :], tail)
    phases = B.secret_phases(secrets, h, w, checkerboard=board)
    for k in range(secrets):
        s, got = x[:, 3 * (k + 1) : 3 * (k + 2)], r[:, 3 * (k + 1) : 3 * (k + 2)]
        wanted = block._compand(s - x[:, :3])[0][..., phases[k]]
        level = block._compand(got - e)[0][..., phases[k]]
        assert float((level - torch.round(level)).abs().max()) < 1e-6  # a level
        assert float((level - wanted).abs().max()) <= 0.5 + 1e-6  # the nearest one
        zero = same.expand_as(s)[..., phases[k]]
        assert torch.allclose(got[..., phases[k]][zero], e[..., phases[k]][zero], atol=1e-9)
    # a mispredicted offset (a wrong wrap count) moves a difference by 2 per wrap, never
    # to infinity: the compander's expansion stays within its levels
    for offset in (3.0, -3.0, 100.0, -1e4):
        bad = block.inverse()(torch.cat([e, torch.full_like(hidden, offset), tail], dim=1))
        assert bool(torch.isfinite(bad).all())
        wraps = math.floor((offset + 2) / 4)
        assert float(bad[:, 3 : 3 * (1 + secrets)].abs().max()) <= abs(offset) + 2 * abs(wraps) + 3
    with pytest.raises(ValueError, match=r"secrets in 1\.\.4"):
        B.ResidueHiding(channels=3, secrets=5)
    with pytest.raises(ValueError, match="levels in 4"):
        B.ResidueHiding(channels=3, levels=3, difference=0.1)
    with pytest.raises(ValueError, match="2 secrets of channels=3 each first"):
        B.ResidueHiding([(6, 4, 4)], channels=3, secrets=2)


@given(shape=image_shapes(multiple=4, min_side=4, max_side=16), seed=seeds())
def test_the_upscale_prior_keeps_the_block_means_and_removes_the_bicubic_detail(shape, seed):
    x = torch.rand(2, *shape, generator=gen(seed), dtype=torch.float64)
    for f in (2, 4):
        prior = B.UpscalePrior([shape], factor=f)
        y = prior(x)
        means = F.avg_pool2d(x, f)
        assert torch.allclose(F.avg_pool2d(y, f), means, atol=1e-12)
        up = F.interpolate(means, scale_factor=f, mode="bicubic").clamp(0, 1)
        assert torch.allclose(x - y, up - F.interpolate(F.avg_pool2d(up, f), scale_factor=f))
        # the inverse of the block means alone (zero detail) is the corrected bicubic upscale
        flat = F.interpolate(means, scale_factor=f)
        assert torch.allclose(prior.inverse()(flat), up + flat - F.interpolate(
            F.avg_pool2d(up, f), scale_factor=f))  # fmt: skip
    with pytest.raises(ValueError, match="divisible by 4"):
        B.UpscalePrior([(3, 6, 8)], factor=4)


@settings(max_examples=20, deadline=None)
@given(
    channels=st.integers(2, 12),
    parameterization=st.sampled_from(["lu", "plain"]),
    seed=st.integers(0, 2**16),
)
def test_an_invertible_1x1_convolution_takes_any_invertible_matrix(
    channels, parameterization, seed
):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(channels, channels, generator=g, dtype=torch.float64)
    w = w + channels * torch.eye(channels, dtype=torch.float64)  # well conditioned
    w = w[torch.randperm(channels, generator=g)]  # rows permuted: LU needs its pivots
    conv = B.InvConv1x1(channels=channels, parameterization=parameterization).double()
    conv.set_matrix(w)
    assert torch.allclose(conv.matrix(), w, atol=1e-12)
    assert torch.allclose(conv.log_abs_det(), torch.linalg.slogdet(w)[1], atol=1e-10)
    check_block(conv, (channels, 3, 5), dtype=torch.float64)
    with pytest.raises(ValueError, match="invertible"):
        conv.set_matrix(torch.zeros(channels, channels))
    with pytest.raises(ValueError, match=rf"\({channels}, {channels}\) matrix"):
        conv.set_matrix(torch.eye(channels + 1))
