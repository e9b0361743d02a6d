"""The IICNet preset: reference parameter counts and channel bookkeeping for each set-up."""

import pytest
import torch
import torch.nn.functional as F

from invblocks import blocks as B
from invblocks import presets, ric
from invblocks.testing import perturb_parameters


def couplings(net):
    return [n for n in net.body if isinstance(n, B.AffineCoupling)]


def test_st01_matches_reference():
    net = presets.iicnet(5)
    assert sum(p.numel() for p in net.parameters()) == 6_805_540
    assert net.dims_in == [(15, 144, 144)] and net.dims_out == [(3, 144, 144)]
    assert len(couplings(net)) == 10 and {c.split for c in couplings(net)} == {3}
    assert isinstance(net.channel, ric.Quantizer) and net.channel.train_mode == "noise"
    assert isinstance(net.body[-1], B.ChannelSqueeze)


@pytest.mark.parametrize(
    "kwargs, channels, split, out",
    [
        # st-06: 3 frames, Haar x2, order ref -> split 4*3
        (dict(n_images=3, downscale="haar"), 36, 12, (3, 8, 8)),
        # st-07: 5 frames, squeeze x2
        (dict(n_images=5, downscale="squeeze"), 60, 12, (3, 8, 8)),
        # supp-sr rescaling: 1 image, squeeze 'hl' -> split 3 | 9
        (dict(n_images=1, downscale="squeeze", order="hl", blocks=16), 12, 3, (3, 8, 8)),
        # supp-gray: 1 image, no downscale, 1-channel embedding -> split 1 | 2
        (dict(n_images=1, out_channels=1, blocks=16), 3, 1, (1, 16, 16)),
    ],
)
def test_channel_bookkeeping(kwargs, channels, split, out):
    net = presets.iicnet(**kwargs, size=(16, 16), width=4)
    assert {c.channels for c in couplings(net)} == {channels}
    assert {c.split for c in couplings(net)} == {split}
    assert net.dims_out == [out]
    x = torch.rand(1, *net.dims_in[0])
    (e,), _ = net.eval()([x])
    (back,), _ = net([e], rev=True)
    assert e.shape[1:] == out and back.shape == x.shape


def test_without_relation_the_chain_before_the_squeeze_is_exact():
    g = torch.Generator().manual_seed(0)
    net = presets.iicnet(2, blocks=3, relation=False, downscale="haar", conv1x1="lu", generator=g)
    body = net.body[: len(net.body) - 1]
    assert body.inversion.name == "EXACT"
    x = torch.rand(1, 6, 8, 8, dtype=torch.float64)
    body = body.double()
    torch.testing.assert_close(body.inverse()(body(x)), x)


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        (dict(n_images=0), "n_images >= 1"),
        (dict(n_images=2, downscale="bicubic"), "downscale must be"),
        (dict(n_images=2, out_channels=4), "divisible by out_channels=4"),
    ],
)
def test_bad_arguments(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        presets.iicnet(**kwargs, width=4)


def test_seeded_presets_are_identical():
    a = presets.iicnet(2, blocks=2, width=4, generator=torch.Generator().manual_seed(1))
    b = presets.iicnet(2, blocks=2, width=4, generator=torch.Generator().manual_seed(1))
    assert all(torch.equal(a.state_dict()[k], v) for k, v in b.state_dict().items())


@pytest.mark.parametrize(
    "task_name, kwargs",
    [
        ("video", {}),
        ("mononizing", {}),
        ("video-x2", {"downscale": "haar", "order": "hl"}),
        ("video-x2", {"downscale": "haar", "order": "ref"}),
        ("grayscale", {"out_channels": 1}),
        ("rescaling-x2", {"downscale": "haar", "order": "hl"}),
        ("rescaling-x4", {"downscale": "haar", "order": "hl", "levels": 2}),
        ("video", {"prior": 1}),
        ("hiding", {"prior": 1}),
        ("dual-view-x2", {"prior": 2}),
        ("dual-view-x4", {"prior": 4}),
        ("dual-view-x8", {"prior": 8}),
    ],
)
def test_the_trivial_initialisation_starts_at_the_trivial_solution(task_name, kwargs):
    import invblocks

    task = invblocks.get_task(task_name)
    n = task.default_inputs
    net = presets.iicnet(n, blocks=2, width=4, growth=4, init="trivial", size=(16, 16), **kwargs)
    net = net.double().eval()
    x = torch.rand(
        2, 3 * n, 16, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64
    )
    with torch.no_grad():
        e = net.round_trip(x).embedding
        back = net.restore(e)
    reference = task.reference(x, n)
    if task.scale == 1:  # the reference itself: a slot, or the BT.601 luma
        assert torch.allclose(e, reference, atol=1e-12)
    else:  # the Haar low band: a 2x2 (4x4) mean; video-x2's bilinear reference is that mean
        factor = task.scale
        box = torch.nn.functional.avg_pool2d(x[:, :3], factor)
        assert torch.allclose(e, box, atol=1e-12)
    # the restoration: the reference in every slot (with a downscale: the low band upscaled
    # bicubically, corrected to keep its block means: the upscale prior, zeros in the high
    # bands)
    if task.scale == 1:
        expected = task.trivial_restoration(x, n)
    else:
        f = task.scale
        up = torch.nn.functional.interpolate(e, scale_factor=f, mode="bicubic").clamp(0, 1)
        means = torch.nn.functional.avg_pool2d(up, f)
        expected = up + torch.nn.functional.interpolate(e - means, scale_factor=f)
        expected = expected.repeat(1, n, 1, 1)
    assert torch.allclose(back, expected, atol=1e-12)
    if task.scale > 1:  # every slot keeps the embedding as its block means
        assert torch.allclose(
            torch.nn.functional.avg_pool2d(back, task.scale), e.repeat(1, n, 1, 1)
        )


def test_the_box_start_is_still_there_without_the_upscale_prior():
    kw = {"blocks": 1, "width": 4, "growth": 4, "downscale": "haar", "order": "hl"}
    net = presets.iicnet(1, init="trivial", upscale_prior=False, size=(8, 8), **kw)
    net = net.double().eval()
    x = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with torch.no_grad():
        e = net.round_trip(x).embedding
        back = net.restore(e)
    assert torch.allclose(back, torch.nn.functional.interpolate(e, scale_factor=2), atol=1e-12)
    assert "UpscalePrior" not in repr(net)
    with pytest.raises(ValueError, match="upscale_prior needs a downscale"):
        presets.iicnet(1, upscale_prior=True, width=4, size=(8, 8))


@pytest.mark.parametrize("n", [2, 4])
def test_the_hiding_start_hides_and_training_cannot_move_the_embedding(n):
    """``hiding_levels``: the untrained network embeds and restores as its ResidueHiding
    (the other slots zero); with the couplings changed, the embedding stays the same and the
    restoration changes by their prediction only."""
    kw = {"blocks": 2, "width": 4, "growth": 4, "size": (8, 10)}
    net = presets.iicnet(n, init="trivial", hiding_levels=16, **kw).double().eval()
    assert "RelationModule" not in repr(net)
    x = torch.randint(0, 256, (2, 3 * n, 8, 10), generator=torch.Generator().manual_seed(n))
    x = x.double() / 255
    hiding = B.ResidueHiding(channels=3, levels=16, checkerboard=True)
    y = hiding(x)
    e = ric.quantize(y[:, :3])
    expected = hiding.inverse()(torch.cat([e, torch.zeros_like(y[:, 3:])], dim=1))
    with torch.no_grad():
        assert torch.allclose(net.embed(x), e, atol=1e-12)
        assert torch.allclose(net.restore(e), expected, atol=1e-12)
        perturb_parameters(net, 0.05, torch.Generator().manual_seed(1))
        assert torch.allclose(net.embed(x), e, atol=1e-12)
        moved = net.restore(e)
    assert not torch.allclose(moved, expected, atol=1e-3)
    for bad in ({"prior": 1}, {"downscale": "haar"}, {"init": "reference"}):
        with pytest.raises(ValueError, match="hiding_levels needs"):
            presets.iicnet(n, hiding_levels=16, **{"init": "trivial", **bad}, **kw)
    with pytest.raises(ValueError, match="hiding_difference needs hiding_levels"):
        presets.iicnet(n, init="trivial", hiding_difference=0.1, **kw)


def test_the_downscaling_hiding_start_hides_the_low_bands_and_upscales_them():
    """``hiding_levels`` after a Haar downscale (``order="hl"``): the embedding is the hidden
    low bands' cover, fixed whatever the couplings; the untrained network restores each slot
    as the bicubic upscale of its hidden low band (the upscale prior, zero high bands)."""
    kw = {"blocks": 2, "width": 4, "growth": 4, "size": (8, 10)}
    net = presets.iicnet(
        3, downscale="haar", order="hl", init="trivial", hiding_levels=10,
        hiding_difference=0.03, **kw,
    ).double().eval()  # fmt: skip
    assert "InvConv1x1" not in repr(net)
    x = torch.rand(2, 9, 8, 10, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    hiding = B.ResidueHiding(channels=3, levels=10, difference=0.03, checkerboard=True)
    y = hiding(F.avg_pool2d(x, 2))
    e = ric.quantize(y[:, :3])
    lows = hiding.inverse()(torch.cat([e, torch.zeros_like(y[:, 3:])], dim=1))
    bands = torch.cat([lows, torch.zeros(2, 27, 4, 5, dtype=torch.float64)], dim=1)
    haar = B.HaarDownscale([(9, 8, 10)], order="hl")
    expected = B.UpscalePrior([(9, 8, 10)]).inverse()(haar.inverse()(bands))
    with torch.no_grad():
        assert torch.allclose(net.embed(x), e, atol=1e-12)
        assert torch.allclose(net.restore(e), expected, atol=1e-12)
        perturb_parameters(net, 0.05, torch.Generator().manual_seed(1))
        assert torch.allclose(net.embed(x), e, atol=1e-12)
        assert not torch.allclose(net.restore(e), expected, atol=1e-3)
    for bad in ({"order": "ref"}, {"levels": 2}, {"downscale": "squeeze"}):
        with pytest.raises(ValueError, match="order='hl'"):
            presets.iicnet(
                3, **{"downscale": "haar", "order": "hl", **bad}, init="trivial",
                hiding_levels=10, **kw,
            )  # fmt: skip


def test_the_trivial_initialisation_refuses_what_it_cannot_start():
    with pytest.raises(ValueError, match="needs downscale='haar'"):
        presets.iicnet(2, downscale="squeeze", init="trivial", width=4, size=(8, 8))
    with pytest.raises(ValueError, match="init must be"):
        presets.iicnet(2, init="zero", width=4, size=(8, 8))
