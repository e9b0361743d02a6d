"""PSNR and SSIM against known values and an independent implementation of the formula."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from scipy.signal import correlate2d

from invblocks.metrics import psnr, ssim
from invblocks.testing.strategies import seeds


def reference_ssim(x, y):
    """Wang et al. SSIM, written out: 11x11 Gaussian (sigma 1.5), valid region, channel mean."""
    g = np.exp(-((np.arange(11) - 5) ** 2) / (2 * 1.5**2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    out = []
    for ch in range(x.shape[2]):
        a, b = x[..., ch], y[..., ch]
        f = lambda z: correlate2d(z, w, mode="valid")  # noqa: E731
        ma, mb = f(a), f(b)
        va, vb, cov = f(a * a) - ma**2, f(b * b) - mb**2, f(a * b) - ma * mb
        s = ((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma**2 + mb**2 + c1) * (va + vb + c2))
        out.append(s.mean())
    return float(np.mean(out))


def test_known_psnr_values():
    x = torch.zeros(3, 8, 8)
    assert psnr(x, x) == math.inf
    assert psnr(x, x + 1 / 255) == pytest.approx(20 * math.log10(255), abs=1e-9)
    y = x.clone()
    y[0, 0, 0] = 1.0  # one pixel off by 255 in 192 values: MSE 255^2 / 192
    assert psnr(x, y) == pytest.approx(10 * math.log10(192), abs=1e-9)
    assert psnr(x, y, shave=1) == math.inf


@given(seed=seeds())
def test_ssim_matches_the_formula(seed):
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(3, 24, 20, generator=g)
    b = (a + 0.1 * torch.randn(3, 24, 20, generator=g)).clamp(0, 1)
    to8 = lambda t: np.round(t.double().numpy().transpose(1, 2, 0) * 255)  # noqa: E731
    assert ssim(a, b) == pytest.approx(reference_ssim(to8(a), to8(b)), abs=1e-6)
    assert ssim(a, a) == pytest.approx(1.0)


def test_errors():
    with pytest.raises(ValueError, match="shapes differ"):
        psnr(torch.zeros(3, 4, 4), torch.zeros(3, 4, 5))
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(torch.zeros(3, 8, 8), torch.zeros(3, 8, 8))


def test_identical_images_count_as_the_cap_in_a_mean():
    from invblocks.metrics import PSNR_CAP, mean_psnr

    x = torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(0))
    assert psnr(x, x) == math.inf
    assert mean_psnr([psnr(x, x), 20.0]) == (PSNR_CAP + 20.0) / 2
    assert math.isnan(mean_psnr([float("nan"), 20.0]))
    with pytest.raises(ValueError, match="no values"):
        mean_psnr([])


def test_the_luma_psnr_and_the_shave_as_the_rescaling_papers_compute_them():
    a = torch.zeros(3, 8, 8)
    b = a.clone()
    b[0] = 1 / 255  # one level of red everywhere: the luma moves by 65.481 / 255
    assert psnr(a, b, space="y") == pytest.approx(20 * math.log10(255 / (65.481 / 255)))
    c = a.clone()
    c[:, :2, :] = 0.5  # a difference in the two top rows only: shaved away
    assert psnr(a, c, shave=2) == math.inf and psnr(a, c) < 20
    d = a.clone()
    d[2, 2:6, 2:6] = 4 / 255  # blue, inside the shaved border: 16 of the 16 shaved pixels
    mse = (4 * 24.966 / 255) ** 2 * 16 / 16
    assert psnr(a, d, space="y", shave=2) == pytest.approx(10 * math.log10(255**2 / mse))
    gray = torch.zeros(1, 16, 16)
    lighter = gray + 10 / 255  # gray's luma: 16 + 219 v / 255
    assert psnr(gray, lighter, space="y") == pytest.approx(20 * math.log10(255 / (10 * 219 / 255)))
    x = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert 0 < ssim(x, x.flip(-1), space="y", shave=4) < 1
    with pytest.raises(ValueError, match="cannot shave 4 pixels"):
        psnr(a, b, shave=4)
    with pytest.raises(ValueError, match="space must be 'rgb' or 'y'"):
        psnr(a, b, space="ycbcr")
