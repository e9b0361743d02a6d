"""The differentiable JPEG: libjpeg's steps, each chroma subsampling, each rounding."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import invblocks
from invblocks import ric
from invblocks.ops import to_float
from invblocks.ric.diffjpeg import (
    ROUNDINGS,
    jpeg_differentiable,
    quantization_tables,
    soft_round,
)
from invblocks.ric.jpeg import jpeg_round_trip

SUBSAMPLINGS = ("4:4:4", "4:2:2", "4:2:0")


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return 10 * math.log10(1 / float(((a.double() - b.double()) ** 2).mean()))


def _photo(h: int, w: int, top: int = 0, left: int = 0) -> torch.Tensor:
    photo = invblocks.data.default_photos().val[0]
    return to_float(photo[:, top : top + h, left : left + w])[None]


@settings(max_examples=40, deadline=None)
@given(
    quality=st.integers(30, 98),
    subsampling=st.sampled_from(SUBSAMPLINGS),
    h=st.integers(32, 96),
    w=st.integers(32, 96),
    top=st.integers(0, 100),
)
def test_it_decodes_what_libjpeg_decodes(quality, subsampling, h, w, top):
    x = _photo(h, w, top, top)
    real = jpeg_round_trip(x, quality, subsampling)
    ours = jpeg_differentiable(x, quality, subsampling=subsampling, rounding="ste")
    assert ours.shape == x.shape
    # closer to the file libjpeg writes than that file is to the image, over a few blocks: a
    # 9x9 image is one block, where a coefficient within float error of a half step, rounded
    # the other way, moves all of it by a step (seen at quality 46). Near quality 100 the
    # file is within a level of the image, as close as libjpeg's integer transforms and
    # rounding are to float ones (quality 97, 32x32: 51.9 dB against 51.8): the bar stops
    # at 44 dB (measured: 46.6 dB or more wherever the file is within 44 dB of the image), far
    # above what a wrong table or transform gives
    assert _psnr(ours, real) > max(38.0, min(_psnr(real, x), 44.0))


def test_each_subsampling_is_the_one_asked_for():
    x = _photo(96, 128, 40, 40)
    for real_kind in SUBSAMPLINGS:
        real = jpeg_round_trip(x, 90, real_kind)
        errors = {
            kind: _psnr(jpeg_differentiable(x, 90, subsampling=kind, rounding="ste"), real)
            for kind in SUBSAMPLINGS
        }
        assert max(errors, key=errors.__getitem__) == real_kind, errors


def test_the_roundings():
    x = torch.linspace(-3, 3, 601, dtype=torch.float64)
    integers = torch.arange(-3, 4, dtype=torch.float64)
    for rounding in ROUNDINGS:
        assert torch.allclose(soft_round(integers, rounding), integers, atol=1e-12)
        y = soft_round(x, rounding)
        assert float((y - torch.round(x)).abs().max()) <= 0.5 + 1e-9
    # the sawtooth's series keeps half-way points and is smooth; the cubic is steep near them
    assert torch.allclose(soft_round(torch.tensor([0.5, 1.5]).double(), "fourier"),
                          torch.tensor([0.5, 1.5]).double(), atol=1e-12)  # fmt: skip
    for rounding in ("cubic", "fourier"):
        t = x.clone().requires_grad_(True)
        soft_round(t, rounding).sum().backward()
        assert t.grad is not None and bool(torch.isfinite(t.grad).all())
        assert float(t.grad.abs().max()) > 0
    with pytest.raises(ValueError, match="rounding"):
        soft_round(x, "floor")  # type: ignore[arg-type]


@pytest.mark.parametrize("rounding", ROUNDINGS)
@pytest.mark.parametrize("subsampling", SUBSAMPLINGS)
def test_gradients_reach_the_image(rounding, subsampling):
    x = _photo(24, 40).double().requires_grad_(True)
    out = jpeg_differentiable(x, torch.tensor([75.0]), subsampling=subsampling, rounding=rounding)
    out.square().mean().backward()
    assert x.grad is not None and bool(torch.isfinite(x.grad).all())
    assert float(x.grad.abs().mean()) > 0


def test_tables_are_libjpegs():
    luma, chroma = quantization_tables(torch.tensor([50.0, 90.0, 100.0, 10.0]))
    assert luma[0, 0, 0] == 16 and chroma[0, 0, 0] == 17  # quality 50: the standard tables
    assert (
        luma[1, 0, 0] == 3 and luma[1, 7, 7] == 20
    )  # (16 * 20 + 50) // 100, (99 * 20 + 50) // 100
    assert bool((luma[2] == 1).all()) and bool((chroma[2] == 1).all())
    assert float(luma[3].max()) == 255  # clipped for baseline


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="expected"):
        jpeg_differentiable(torch.rand(1, 1, 8, 8), 90)
    with pytest.raises(ValueError, match="subsampling"):
        jpeg_differentiable(torch.rand(1, 3, 8, 8), 90, subsampling="4:1:1")


def test_the_channel_trains_through_the_subsampling_and_rounding_it_names():
    x = _photo(32, 48)
    channel = ric.JPEGChannel([(3, 32, 48)], quality=90, subsampling="4:2:2", rounding="fourier")
    assert "rounding='fourier'" in repr(channel) and "4:2:2" in repr(channel)
    channel.train()
    coded, _ = channel._forward((x,), ())
    expected = jpeg_differentiable(x, 90, subsampling="4:2:2", rounding="fourier")
    assert torch.allclose(coded, expected)
    # the file-format twin keeps the options
    twin = channel.for_file(".jpg", 80)
    assert isinstance(twin, ric.JPEGChannel)
    assert (twin.rounding, twin.subsampling, twin.eval_quality) == ("fourier", "4:2:2", 80)
    with pytest.raises(ValueError, match="rounding"):
        ric.JPEGChannel([(3, 8, 8)], rounding="floor")
