"""A differentiable JPEG codec with a choice of chroma subsampling and of rounding.

The steps are baseline JPEG's as libjpeg runs them: full-range YCbCr (JFIF), the chroma
averaged over 2x2 (4:2:0), 2x1 (4:2:2) or not at all (4:4:4), 8x8 blocks (the image
edge-padded to whole blocks as libjpeg pads), the orthonormal 8x8 DCT, division by the
standard tables scaled by the quality as libjpeg scales them (integers in 1..255), a
rounding, the inverse steps, the chroma upsampled by libjpeg's triangular ("fancy") filter,
RGB clamped to ``[0, 255]``. Only the rounding of the coefficients is replaced by a
differentiable one:

* ``"cubic"``: ``r + (x - r)^3`` with ``r = round(x)`` (kornia's; Shin and Song 2017),
* ``"fourier"``: ``x - sum_{k=1..9} (-1)^(k+1) sin(2 pi k x) / (pi k)``, the sawtooth's
  Fourier series truncated after 9 terms (the invertible ISP's),
* ``"ste"``: ``round(x)`` forward, the identity backward.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["ROUNDINGS", "Rounding", "jpeg_differentiable", "quantization_tables", "soft_round"]

Rounding = Literal["cubic", "fourier", "ste"]
ROUNDINGS: tuple[str, ...] = ("cubic", "fourier", "ste")
"""The differentiable roundings :func:`jpeg_differentiable` offers."""

_LUMA = (
    (16, 11, 10, 16, 24, 40, 51, 61),
    (12, 12, 14, 19, 26, 58, 60, 55),
    (14, 13, 16, 24, 40, 57, 69, 56),
    (14, 17, 22, 29, 51, 87, 80, 62),
    (18, 22, 37, 56, 68, 109, 103, 77),
    (24, 35, 55, 64, 81, 104, 113, 92),
    (49, 64, 78, 87, 103, 121, 120, 101),
    (72, 92, 95, 98, 112, 100, 103, 99),
)
_CHROMA = (
    (17, 18, 24, 47, 99, 99, 99, 99),
    (18, 21, 26, 66, 99, 99, 99, 99),
    (24, 26, 56, 99, 99, 99, 99, 99),
    (47, 66, 99, 99, 99, 99, 99, 99),
    *((99,) * 8,) * 4,
)
"""The standard tables (ITU T.81 Annex K), rows the vertical frequency."""

_FACTORS = {"4:4:4": (1, 1), "4:2:2": (1, 2), "4:2:0": (2, 2)}
"""Chroma subsampling: (vertical, horizontal) factors."""
_FOURIER_TERMS = 9


def quantization_tables(quality: Tensor) -> tuple[Tensor, Tensor]:
    """libjpeg's luma and chroma tables ``(B, 8, 8)`` for the qualities ``(B,)`` (1..100):
    the standard tables times ``5000 / q`` (below 50) or ``200 - 2 q`` percent, rounded,
    clipped to 1..255 (baseline)."""
    q = quality.to(torch.float64).clamp(1, 100)
    scale = torch.where(q < 50, torch.floor(5000 / q), 200 - 2 * q)[:, None, None]

    def scaled(table: tuple[tuple[int, ...], ...]) -> Tensor:
        base = torch.tensor(table, dtype=torch.float64, device=quality.device)
        return torch.floor((base * scale + 50) / 100).clamp(1, 255)

    return scaled(_LUMA), scaled(_CHROMA)


def soft_round(x: Tensor, rounding: Rounding = "cubic") -> Tensor:
    """``x`` rounded to integers in a way gradients pass through (see the module)."""
    if rounding == "cubic":
        r = torch.round(x)
        return r + (x - r) ** 3
    if rounding == "fourier":
        k = torch.arange(1, _FOURIER_TERMS + 1, dtype=x.dtype, device=x.device)
        signs = torch.where(k % 2 == 1, 1.0, -1.0).to(x.dtype)
        waves = torch.sin(2 * math.pi * x[..., None] * k) * (signs / (math.pi * k))
        return x - waves.sum(-1)
    if rounding == "ste":
        return x + (torch.round(x) - x).detach()
    raise ValueError(f"rounding must be one of {', '.join(ROUNDINGS)}; received {rounding!r}")


def _dct_matrix(dtype: torch.dtype, device: torch.device) -> Tensor:
    """The orthonormal 8-point DCT-II matrix ``D`` (``coefficients = D x``)."""
    n = torch.arange(8, dtype=torch.float64)
    d = torch.cos((2 * n[None, :] + 1) * n[:, None] * math.pi / 16) * math.sqrt(2 / 8)
    d[0] /= math.sqrt(2)
    return d.to(dtype=dtype, device=device)


def _code_plane(plane: Tensor, table: Tensor, rounding: Rounding) -> Tensor:
    """One level-shifted plane ``(B, H, W)`` (multiples of 8) through DCT, quantisation with
    ``table`` ``(B, 8, 8)``, the rounding, dequantisation and the inverse DCT."""
    b, h, w = plane.shape
    d = _dct_matrix(plane.dtype, plane.device)
    blocks = plane.reshape(b, h // 8, 8, w // 8, 8).permute(0, 1, 3, 2, 4)
    coefficients = d @ blocks @ d.T
    t = table.to(plane.dtype)[:, None, None]
    coded = soft_round(coefficients / t, rounding) * t
    back = d.T @ coded @ d
    return back.permute(0, 1, 3, 2, 4).reshape(b, h, w)


def _upsample(plane: Tensor, factors: tuple[int, int]) -> Tensor:
    """libjpeg's triangular chroma upsampling (weights 3/4 and 1/4, edges repeated):
    bilinear interpolation at half-pixel centres."""
    if factors == (1, 1):
        return plane
    return F.interpolate(
        plane[:, None], scale_factor=factors, mode="bilinear", align_corners=False
    )[:, 0]


def jpeg_differentiable(
    image: Tensor,
    quality: Tensor | float,
    *,
    subsampling: str = "4:2:0",
    rounding: Rounding = "cubic",
) -> Tensor:
    """``(B, 3, H, W)`` RGB in ``[0, 1]`` through a differentiable baseline JPEG at
    ``quality`` (one number, or ``(B,)`` per image) with ``subsampling`` (``"4:4:4"``,
    ``"4:2:2"``, ``"4:2:0"``) and ``rounding`` (:data:`ROUNDINGS`): ``(B, 3, H, W)`` in
    ``[0, 1]``, any ``H`` and ``W``, close to what libjpeg decodes from the file it writes
    (closer than that file is to the image; ``python -m benchmarks.diffjpeg`` measures it)."""
    if image.ndim != 4 or image.shape[1] != 3:
        raise ValueError(
            f"jpeg_differentiable: expected (B, 3, H, W); received {tuple(image.shape)}"
        )
    if subsampling not in _FACTORS:
        raise ValueError(
            f"jpeg_differentiable: subsampling must be one of {', '.join(_FACTORS)}; "
            f"received {subsampling!r}"
        )
    if rounding not in ROUNDINGS:
        raise ValueError(
            f"jpeg_differentiable: rounding must be one of {', '.join(ROUNDINGS)}; "
            f"received {rounding!r}"
        )
    b, _, h, w = image.shape
    dtype = image.dtype if image.dtype in (torch.float32, torch.float64) else torch.float32
    x = image.to(dtype) * 255
    q = torch.as_tensor(quality, dtype=torch.float64, device=image.device).reshape(-1)
    if q.numel() not in (1, b):
        raise ValueError(
            f"jpeg_differentiable: expected one quality or one per image ({b}); "
            f"received {q.numel()}"
        )
    luma_table, chroma_table = quantization_tables(q.expand(b) if q.numel() == 1 else q)
    fy, fx = _FACTORS[subsampling]
    # whole MCUs, the edge repeated as libjpeg pads
    ph, pw = -h % (8 * fy), -w % (8 * fx)
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
    r, g, bl = x.unbind(1)
    y = 0.299 * r + 0.587 * g + 0.114 * bl
    cb = -0.168735892 * r - 0.331264108 * g + 0.5 * bl
    cr = 0.5 * r - 0.418687589 * g - 0.081312411 * bl
    y = _code_plane(y - 128, luma_table, rounding)
    chroma = []
    for c in (cb, cr):
        small = F.avg_pool2d(c[:, None], (fy, fx))[:, 0] if (fy, fx) != (1, 1) else c
        chroma.append(_upsample(_code_plane(small, chroma_table, rounding), (fy, fx)))
    cb, cr = chroma
    y = y + 128
    rgb = torch.stack(
        (y + 1.402 * cr, y - 0.344136286 * cb - 0.714136286 * cr, y + 1.772 * cb), dim=1
    )
    return (rgb[..., :h, :w].clamp(0, 255) / 255).to(image.dtype)
