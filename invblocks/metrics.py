"""Evaluation metrics as the papers compute them: PSNR and SSIM on 8-bit RGB values.

Images are rounded to 8 bits first (``x * 255``, clamp, round), as IICNet's and WIN's test
scripts do. PSNR is over all channels jointly, data range 255, no border shave unless asked.
SSIM is the Gaussian-window SSIM (11x11, sigma 1.5, K1 0.01, K2 0.03, population
statistics) averaged over channels and over the valid region (5 pixels inside the border),
computed with scikit-image's ``structural_similarity``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

__all__ = ["PSNR_CAP", "mean_psnr", "psnr", "ssim", "to_8bit"]

PSNR_CAP = 100.0
"""The PSNR in dB that identical images count as in a mean (an infinite PSNR averages to
nothing useful, and JSON has no infinity)."""


def to_8bit(x: Tensor) -> np.ndarray:
    """``(C, H, W)`` in ``[0, 1]`` -> ``(H, W, C)`` float64 array of 8-bit values."""
    if x.dim() != 3:
        raise ValueError(f"expected one image (C, H, W); received {tuple(x.shape)}")
    return torch.round(x.detach().double().clamp(0, 1) * 255).permute(1, 2, 0).cpu().numpy()


def _shave(a: np.ndarray, shave: int) -> np.ndarray:
    return a[shave:-shave, shave:-shave] if shave else a


def psnr(a: Tensor, b: Tensor, *, shave: int = 0) -> float:
    """PSNR in dB between two images ``(C, H, W)`` in ``[0, 1]`` after 8-bit rounding.

    Example:
        >>> x = torch.zeros(3, 4, 4)
        >>> round(psnr(x, x + 1 / 255), 2)  # MSE of one 8-bit level
        48.13
    """
    if a.shape != b.shape:
        raise ValueError(f"psnr: shapes differ: {tuple(a.shape)} and {tuple(b.shape)}")
    mse = float(np.mean((_shave(to_8bit(a), shave) - _shave(to_8bit(b), shave)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def mean_psnr(values: list[float]) -> float:
    """The mean of PSNRs in dB, identical images (``inf``) counting as :data:`PSNR_CAP`;
    a NaN stays NaN.

    Example:
        >>> mean_psnr([30.0, float("inf")])
        65.0
    """
    if not values:
        raise ValueError("mean_psnr: no values")
    return sum(min(v, PSNR_CAP) for v in values) / len(values)


def ssim(a: Tensor, b: Tensor, *, shave: int = 0) -> float:
    """SSIM between two images ``(C, H, W)`` in ``[0, 1]`` after 8-bit rounding (see module)."""
    try:
        from skimage.metrics import structural_similarity
    except ImportError as err:  # pragma: no cover - the data extra installs it
        raise ImportError("ssim needs scikit-image: pip install 'invblocks[data]'") from err
    if a.shape != b.shape:
        raise ValueError(f"ssim: shapes differ: {tuple(a.shape)} and {tuple(b.shape)}")
    x, y = _shave(to_8bit(a), shave), _shave(to_8bit(b), shave)
    if min(x.shape[:2]) < 11:
        raise ValueError(f"ssim needs images of at least 11x11 pixels; received {x.shape[:2]}")
    return float(
        structural_similarity(
            x,
            y,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=255.0,
            channel_axis=2,
        )
    )
