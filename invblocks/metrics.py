"""Evaluation metrics as the papers compute them: PSNR and SSIM on 8-bit values.

Images are rounded to 8 bits first (``x * 255``, clamp, round), as IICNet's and WIN's test
scripts do. PSNR is over all channels jointly, data range 255, no border shave unless asked.
SSIM is the Gaussian-window SSIM (11x11, sigma 1.5, K1 0.01, K2 0.03, population
statistics) averaged over channels and over the valid region (5 pixels inside the border),
computed with scikit-image's ``structural_similarity``.

``space="y"`` measures the luma instead, as the rescaling papers (IRN, WIN) report: BT.601
``Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255`` of the 8-bit values (MATLAB's
``rgb2ycbcr``, in ``[16, 235]``, not rounded), with ``shave`` pixels cut from every border
(they shave the scale factor).
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
from torch import Tensor

__all__ = ["PSNR_CAP", "Space", "luma", "mean_psnr", "psnr", "ssim", "to_8bit"]

Space = Literal["rgb", "y"]
"""What the metrics compare, the RGB (or gray) values or the BT.601 luma."""

PSNR_CAP = 100.0
"""The PSNR in dB that identical images count as in a mean (an infinite PSNR averages to
nothing useful, and JSON has no infinity)."""


def to_8bit(x: Tensor) -> np.ndarray:
    """``(C, H, W)`` in ``[0, 1]`` -> ``(H, W, C)`` float64 array of 8-bit values."""
    if x.dim() != 3:
        raise ValueError(f"expected one image (C, H, W); received {tuple(x.shape)}")
    return torch.round(x.detach().double().clamp(0, 1) * 255).permute(1, 2, 0).cpu().numpy()


def luma(values: np.ndarray) -> np.ndarray:
    """The BT.601 luma of 8-bit RGB values ``(H, W, 3)``: ``(H, W, 1)`` in ``[16, 235]``, as
    MATLAB's ``rgb2ycbcr`` gives it (a gray image ``(H, W, 1)`` is its own luma, scaled the
    same way: ``16 + 219 v / 255``)."""
    if values.shape[-1] == 1:
        return 16.0 + values * (219.0 / 255.0)
    weights = np.array([65.481, 128.553, 24.966]) / 255.0
    return (values @ weights + 16.0)[..., None]


def _prepare(x: Tensor, shave: int, space: Space) -> np.ndarray:
    """``x`` as 8-bit values ``(H, W, C)``, in the metric's space, borders shaved."""
    if space not in ("rgb", "y"):
        raise ValueError(f"space must be 'rgb' or 'y'; received {space!r}")
    if isinstance(shave, bool) or not isinstance(shave, int) or shave < 0:
        raise ValueError(f"shave must be a number of pixels >= 0; received {shave!r}")
    a = to_8bit(x)
    if space == "y":
        a = luma(a)
    if shave and min(a.shape[:2]) <= 2 * shave:
        raise ValueError(f"cannot shave {shave} pixels from an image of {a.shape[:2]}")
    return a[shave:-shave, shave:-shave] if shave else a


def psnr(a: Tensor, b: Tensor, *, shave: int = 0, space: Space = "rgb") -> float:
    """PSNR in dB between two images ``(C, H, W)`` in ``[0, 1]`` after 8-bit rounding, data
    range 255; ``space="y"``: of their BT.601 luma (:func:`luma`); ``shave``: pixels cut from
    every border.

    Example:
        >>> x = torch.zeros(3, 4, 4)
        >>> round(psnr(x, x + 1 / 255), 2)  # MSE of one 8-bit level
        48.13
    """
    if a.shape != b.shape:
        raise ValueError(f"psnr: shapes differ: {tuple(a.shape)} and {tuple(b.shape)}")
    mse = float(np.mean((_prepare(a, shave, space) - _prepare(b, shave, space)) ** 2))
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


def ssim(a: Tensor, b: Tensor, *, shave: int = 0, space: Space = "rgb") -> float:
    """SSIM between two images ``(C, H, W)`` in ``[0, 1]`` after 8-bit rounding (see module);
    ``space`` and ``shave`` as in :func:`psnr`."""
    try:
        from skimage.metrics import structural_similarity
    except ImportError as err:  # pragma: no cover - the data extra installs it
        raise ImportError("ssim needs scikit-image: pip install 'invblocks[data]'") from err
    if a.shape != b.shape:
        raise ValueError(f"ssim: shapes differ: {tuple(a.shape)} and {tuple(b.shape)}")
    x, y = _prepare(a, shave, space), _prepare(b, shave, space)
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
