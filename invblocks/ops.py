"""Image operations the tasks use: reference images, colour conversion, crops and flips.

All take and return float tensors ``(B, C, H, W)`` (or ``(C, H, W)`` where noted) in ``[0, 1]``;
crops and flips work on any dtype, and :func:`to_float` turns the ``uint8`` values data sets
keep into such floats.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .mixing import channel_mix  # the blocks' channel product, re-exported here

__all__ = [
    "bicubic_downscale",
    "bilinear_downscale",
    "center_crop",
    "channel_mix",
    "random_crop",
    "random_flip",
    "random_flips",
    "random_window",
    "rgb_to_gray",
    "to_float",
]


def rgb_to_gray(x: Tensor) -> Tensor:
    """ITU-R BT.601 luma ``0.299 R + 0.587 G + 0.114 B``: ``(B, 3, H, W) -> (B, 1, H, W)``.

    The weights of OpenCV's ``COLOR_RGB2GRAY`` (IICNet's grayscale reference), without its
    rounding to 8 bits.
    """
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"rgb_to_gray expects (B, 3, H, W); received {tuple(x.shape)}")
    w = x.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    return (x * w).sum(dim=1, keepdim=True)


def _check_factor(x: Tensor, factor: int, name: str) -> None:
    if x.dim() != 4 or x.shape[-1] % factor or x.shape[-2] % factor:
        raise ValueError(
            f"{name} expects (B, C, H, W) with H and W divisible by {factor}; "
            f"received {tuple(x.shape)}"
        )


def bilinear_downscale(x: Tensor, factor: int = 2) -> Tensor:
    """Bilinear downscale by an integer factor without antialiasing (OpenCV ``INTER_LINEAR``).

    For ``factor=2`` every output pixel is the mean of a 2x2 block (IICNet's reference for the
    lower-resolution video embedding).
    """
    _check_factor(x, factor, "bilinear_downscale")
    return F.interpolate(x, scale_factor=1 / factor, mode="bilinear", align_corners=False)


def _cubic(t: Tensor) -> Tensor:
    """Keys' cubic kernel with ``a = -0.5`` (MATLAB ``imresize``, PIL ``BICUBIC``)."""
    a = t.abs()
    a2, a3 = a * a, a * a * a
    return torch.where(
        a <= 1, 1.5 * a3 - 2.5 * a2 + 1, torch.where(a < 2, -0.5 * a3 + 2.5 * a2 - 4 * a + 2, 0.0)
    )


@functools.lru_cache(maxsize=16)
def _bicubic_weights(factor: int) -> Tensor:
    """Tap weights for one output pixel, which covers input ``[f*i, f*(i+1))``.

    The kernel is stretched by ``f`` (antialiasing); taps sit at the integer inputs within
    ``2f`` of the pixel centre ``f*i + (f-1)/2``: ``4f`` taps for even ``f``, ``4f - 1`` for odd.
    """
    if factor % 2 == 0:
        offsets = torch.arange(4 * factor, dtype=torch.float64) - (2 * factor - 0.5)
    else:
        offsets = torch.arange(4 * factor - 1, dtype=torch.float64) - (2 * factor - 1)
    w = _cubic(offsets / factor)
    return w / w.sum()


def bicubic_downscale(x: Tensor, factor: int = 2) -> Tensor:
    """Antialiased bicubic downscale by an integer factor, as MATLAB's ``imresize`` computes it.

    Keys' cubic (``a = -0.5``) stretched by the factor, symmetric padding at the borders. This
    is how DIV2K's ``LR_bicubic`` images were made (IICNet's and WIN's rescaling reference),
    up to their 8-bit rounding. ``(B, C, H, W) -> (B, C, H/f, W/f)``.
    """
    _check_factor(x, factor, "bicubic_downscale")
    if factor == 1:
        return x
    w = _bicubic_weights(factor).to(x)
    taps, pad = w.numel(), (3 * factor) // 2
    b, c, h, wd = x.shape
    v = _symmetric_pad(x.reshape(b * c, 1, h, wd), pad, pad, dim=3)
    v = F.conv2d(v, w.view(1, 1, 1, taps), stride=(1, factor))
    v = _symmetric_pad(v, pad, pad, dim=2)
    v = F.conv2d(v, w.view(1, 1, taps, 1), stride=(factor, 1))
    return v.reshape(b, c, h // factor, wd // factor)


def _symmetric_pad(v: Tensor, left: int, right: int, dim: int) -> Tensor:
    """Pad by mirroring with the edge repeated (MATLAB's ``symmetric``), any pad width."""
    n = v.shape[dim]
    idx = torch.arange(-left, n + right, device=v.device)
    period = 2 * n
    idx = torch.remainder(idx, period)
    idx = torch.where(idx >= n, period - 1 - idx, idx)
    return v.index_select(dim, idx)


def to_float(x: Tensor) -> Tensor:
    """An image or clip as floats in ``[0, 1]``: ``uint8`` values (how data sets keep images
    in memory) divided by 255, floating-point tensors as they are.

    Example:
        >>> to_float(torch.tensor([0, 51, 255], dtype=torch.uint8))
        tensor([0.0000, 0.2000, 1.0000])
    """
    if x.dtype == torch.uint8:
        return x.float().div_(255.0)
    if not x.is_floating_point():
        raise TypeError(f"expected uint8 or floating-point image data; received {x.dtype}")
    return x


def random_window(
    height: int, width: int, size: int | tuple[int, int], generator: torch.Generator
) -> tuple[int, int]:
    """Where a random ``size`` crop of a ``height x width`` image starts: ``(row, column)``
    (two draws from ``generator``); ``ValueError`` if the image is smaller."""
    th, tw = (size, size) if isinstance(size, int) else size
    if height < th or width < tw:
        raise ValueError(f"cannot crop {th}x{tw} from an image of {height}x{width}")
    i = int(torch.randint(0, height - th + 1, (1,), generator=generator))
    j = int(torch.randint(0, width - tw + 1, (1,), generator=generator))
    return i, j


def random_crop(x: Tensor, size: int | tuple[int, int], generator: torch.Generator) -> Tensor:
    """A random ``size`` crop of ``(..., H, W)``; ``ValueError`` if the image is smaller."""
    th, tw = (size, size) if isinstance(size, int) else size
    i, j = random_window(x.shape[-2], x.shape[-1], (th, tw), generator)
    return x[..., i : i + th, j : j + tw]


def center_crop(x: Tensor, size: int | tuple[int, int]) -> Tensor:
    """The centre ``size`` crop of ``(..., H, W)``."""
    th, tw = (size, size) if isinstance(size, int) else size
    h, w = x.shape[-2:]
    if h < th or w < tw:
        raise ValueError(f"cannot crop {th}x{tw} from an image of {h}x{w}")
    i, j = (h - th) // 2, (w - tw) // 2
    return x[..., i : i + th, j : j + tw]


def random_flip(x: Tensor, generator: torch.Generator) -> Tensor:
    """Flip ``(..., H, W)`` horizontally and/or vertically, each with probability 1/2."""
    return random_flips([x], generator)[0]


def random_flips(images: Sequence[Tensor], generator: torch.Generator) -> list[Tensor]:
    """The same random flips of several ``(..., H, W)`` images (any channel counts):
    horizontal and/or vertical, each with probability 1/2, from one draw of ``generator``."""
    flips = torch.rand(2, generator=generator)
    dims = [d for d, f in ((-1, flips[0]), (-2, flips[1])) if f < 0.5]
    return [im.flip(dims) for im in images] if dims else list(images)
