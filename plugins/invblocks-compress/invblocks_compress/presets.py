"""Enhanced Invertible Encoding (Xie, Cheng and Chen, ACM MM 2021) as an invblocks network.

.. code-block:: text

    x (B, 3, H, W) -> enhancement (x + 0.2 f(x), a learned inverse)
      -> 4 levels of [squeeze x2, invertible 1x1 convolution, 3 two-sided couplings]
         3 -> 12 -> 48 -> 192 -> 768 channels at H/16 x W/16
      -> mean of the 768/N channel groups (its inverse repeats)
      -> attention (a learned inverse) -> y (B, N, H/16, W/16) -> the entropy-coded channel

and back. ``start="dct"`` (the default) sets the untrained invertible encoding to a 16x16
block DCT of an orthonormal colour transform, whose ``N`` most important coefficients per
tile (``keep``; by default a fixed ranking, luma before chroma and low frequencies before
high) lie along each group's mean and the others across it, and the channel quantises them
with a step of ``step(quality)`` 8-bit levels: an untrained codec is a working transform
codec.
``start="haar"`` does the same with a four-level Haar wavelet and a fixed ranking (coarse
before fine), which keeps no more than a half-resolution image. ``start="random"`` is the
authors' initialisation (random orthogonal 1x1 convolutions).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Literal

import torch

from invblocks import Sequence
from invblocks import blocks as B
from invblocks.ric import RICNet

from .blocks import AttentionPair, TwoSidedCoupling
from .channel import EntropyCoded

__all__ = [
    "LAMBDAS",
    "QUALITIES",
    "STEPS",
    "dct_keep",
    "dct_start",
    "haar_start",
    "invcompress",
    "latent_channels",
]

QUALITIES = range(1, 9)
"""The qualities, lowest rate first."""
LAMBDAS = {1: 0.0018, 2: 0.0035, 3: 0.0067, 4: 0.0130, 5: 0.0250, 6: 0.0483, 7: 0.0932, 8: 0.18}
"""The weight of ``255^2 MSE`` against bits per pixel per quality (CompressAI's MSE table,
which the authors follow)."""
STEPS = {1: 40.0, 2: 28.0, 3: 20.0, 4: 14.0, 5: 10.0, 6: 7.0, 7: 5.0, 8: 3.5}
"""The classical starts' quantisation step per quality, in 8-bit levels."""
_KERNELS = (5, 5, 3, 3)


def latent_channels(quality: int) -> int:
    """``N`` per quality: 128 for 1 to 4, 192 for 5 to 8 (the authors' table gives 128 for 1 to
    3 and 192 for 5 to 8 and names quality 3 twice; 4 is taken as 128)."""
    if quality not in QUALITIES:
        raise ValueError(f"quality must be 1 to 8; received {quality!r}")
    return 128 if quality <= 4 else 192


def invcompress(
    quality: int = 3,
    *,
    n: int | None = None,
    start: Literal["dct", "haar", "random"] = "dct",
    keep: Iterable[int] | None = None,
    step: float | None = None,
    context: str = "serial",
    enhancement: bool = True,
    size: tuple[int, int] = (256, 256),
    generator: torch.Generator | None = None,
) -> RICNet:
    """Enhanced Invertible Encoding's codec (see the module) for ``(B, 3, H, W)`` images,
    ``H`` and ``W`` multiples of 64.

    Arguments:
        quality: 1 to 8; sets ``N`` (:func:`latent_channels`) and the start's step.
        n: ``N``, the latent's channels, over the quality's (an even divisor of 768).
        start: ``"dct"``, ``"haar"`` or ``"random"`` (see the module).
        keep: The DCT start's ``N`` coefficients, most important first (indices as
            :func:`dct_keep`'s; default :func:`dct_keep`).
        step: The classical start's quantisation step in 8-bit levels (default
            :data:`STEPS` of the quality).
        context: The entropy model's context (``"serial"``, the authors'; ``"checkerboard"``;
            ``"none"``): :class:`~invblocks_compress.channel.EntropyCoded`.
        enhancement: The enhancement module (the authors'); ``False`` leaves it out: the
            codec keeps its invertible encoding, attention and entropy model, and a training
            step takes about half the CPU time (the module works at full resolution).
        size: The input size the network is built for (any multiple of 64 runs).
        generator: Random source for the initialisation.

    With ``N = 128`` the network has 43,264,827 parameters, with 192 50,032,618, as the
    authors' modules (``enhancement=False``: 627,974 fewer).
    """
    n = latent_channels(quality) if n is None else int(n)
    if n < 2 or 768 % n or n % 2:
        raise ValueError(f"n must be an even divisor of 768; received {n}")
    if start not in ("dct", "haar", "random"):
        raise ValueError(f"start must be 'dct', 'haar' or 'random'; received {start!r}")
    if not isinstance(enhancement, bool):
        raise ValueError(f"enhancement must be true or false; received {enhancement!r}")
    if keep is not None and start != "dct":
        raise ValueError(f"keep is the DCT start's; received it with start={start!r}")
    h, w = size
    if h % 64 or w % 64 or h < 64 or w < 64:
        raise ValueError(f"size must be multiples of 64; received {tuple(size)}")
    g = generator
    body = Sequence(3, h, w)
    if enhancement:
        body.append(B.RelationModule, n_images=1, width=64, generator=g)
    for kernel in _KERNELS:
        body.append(B.Squeeze, order="hl")
        c = body.dims_out[0][0]
        body.append(B.InvConv1x1, parameterization="plain", init="orthogonal", generator=g)
        for _ in range(3):
            body.append(TwoSidedCoupling, split=c // 4, kernel=kernel, generator=g)
    body.append(B.ChannelSqueeze, out_channels=n, mode="mean")
    body.append(AttentionPair, gate=None if start == "random" else -10.0, generator=g)
    step = STEPS[quality] if step is None else float(step)
    quantum = 1.0
    if start == "dct":
        dct_start(body, n, keep)
    elif start == "haar":
        haar_start(body, n)
    if start != "random":
        quantum = step / 255.0 / math.sqrt(768 // n)
    channel = EntropyCoded(body.dims_out, context=context, step=quantum)
    return RICNet(body, channel, image_channels=3)


# ------------------------------------------------------------------------ the classical starts
_COLOUR = torch.tensor(
    [
        [1 / math.sqrt(3), 1 / math.sqrt(3), 1 / math.sqrt(3)],
        [1 / math.sqrt(2), 0.0, -1 / math.sqrt(2)],
        [1 / math.sqrt(6), -2 / math.sqrt(6), 1 / math.sqrt(6)],
    ],
    dtype=torch.float64,
)
"""An orthonormal colour transform: luma-like mean, then two colour differences."""


def _haar_tile(size: int = 16, levels: int = 4) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """The orthonormal ``levels``-level 2-D Haar analysis of a ``size x size`` tile as a matrix
    ``(size^2, size^2)`` (rows: coefficients; columns: pixels in raster order), and each row's
    ``(level, band)``: level 1 the finest, band 0 the approximation, 1 to 3 the details."""
    eye = torch.eye(size * size, dtype=torch.float64).reshape(-1, 1, size, size)
    rows, labels = [], []
    a = eye
    for level in range(1, levels + 1):
        p, q = a[..., 0::2, 0::2], a[..., 0::2, 1::2]
        r, s = a[..., 1::2, 0::2], a[..., 1::2, 1::2]
        bands = ((p + q + r + s) / 2, (p - q + r - s) / 2, (p + q - r - s) / 2, (p - q - r + s) / 2)
        for band in (1, 2, 3):
            rows.append(bands[band].flatten(1))
            labels += [(level, band)] * bands[band][0].numel()
        a = bands[0]
    rows.append(a.flatten(1))
    labels += [(levels, 0)] * a[0].numel()
    return torch.cat(rows, dim=1).T.contiguous(), labels


def _ranked(levels: int = 4) -> torch.Tensor:
    """The tile's ``3 * 256`` colour-Haar coefficients (index ``colour * 256 + row``), most
    important first: per colour the coarsest bands first, luma before chroma."""
    _, labels = _haar_tile(levels=levels)
    order = [
        (0, 4), (1, 4), (2, 4), (0, 3), (0, 2), (1, 3), (2, 3), (1, 2), (2, 2), (0, 1), (1, 1),
        (2, 1),
    ]  # fmt: skip
    ranked: list[int] = []
    for colour, level in order:
        ranked += [colour * len(labels) + i for i, (lv, _) in enumerate(labels) if lv == level]
    return torch.tensor(ranked)


def _helmert(g: int) -> torch.Tensor:
    """An orthogonal ``g x g`` matrix whose first column is ``1/sqrt(g)``."""
    m = torch.zeros(g, g, dtype=torch.float64)
    m[:, 0] = 1 / math.sqrt(g)
    for k in range(1, g):
        m[:k, k] = 1 / math.sqrt(k * (k + 1))
        m[k, k] = -k / math.sqrt(k * (k + 1))
    return m


def _set_tile_transform(body: Sequence, n: int, ranked: torch.Tensor) -> None:
    """Set ``body``'s four invertible 1x1 convolutions so that, with its couplings, enhancement
    and attention at the identity, latent channel ``m`` is the tile's ``m``-th coefficient
    divided by ``sqrt(768 / n)``: ``ranked`` ``(768, 768)`` holds the orthonormal analysis
    rows (over colour-major tile pixels), most important first; the first ``n`` lie along the
    channel groups' means, the others across them."""
    convs = [m for m in body.modules() if isinstance(m, B.InvConv1x1)]
    squeezes = [m for m in body.modules() if isinstance(m, B.Squeeze)]
    if len(convs) != 4 or len(squeezes) != 4:
        raise ValueError("a classical start expects invcompress's four levels")
    if any(conv.parameterization != "plain" for conv in convs):
        raise ValueError("a classical start sets plain 1x1 convolutions")
    # where each tile pixel (colour, row, column) lands among the 768 channels
    x = torch.eye(768, dtype=torch.float64).reshape(768, 3, 16, 16)
    for sq in squeezes:
        (x,), _ = sq([x])
    place = x.reshape(768, 768).T  # (channel, pixel)
    groups = 768 // n
    helmert = _helmert(groups)
    arrange = torch.zeros(768, 768, dtype=torch.float64)  # (channel, ranked coefficient)
    for m in range(n):
        for r in range(groups):
            coefficient = m if r == 0 else n + (r - 1) * n + m
            for grp in range(groups):
                arrange[grp * n + m, coefficient] = helmert[grp, r]
    weight = arrange @ ranked @ place.T
    for conv in convs[:3]:
        conv.set_matrix(torch.eye(conv.channels, dtype=torch.float64))
    convs[3].set_matrix(weight)


@torch.no_grad()
def haar_start(body: Sequence, n: int) -> None:
    """Set ``body``'s four invertible 1x1 convolutions so that, with its couplings, enhancement
    and attention at the identity, the latent is the tile-wise colour Haar transform (see the
    module): channel ``m`` is the ``m``-th coefficient divided by ``sqrt(768 / n)``.
    ``body`` is :func:`invcompress`'s."""
    haar, _ = _haar_tile()
    _set_tile_transform(body, n, torch.kron(_COLOUR, haar)[_ranked()])


def _dct(size: int = 16) -> torch.Tensor:
    """The orthonormal DCT-II matrix ``(size, size)`` (rows: frequencies)."""
    k = torch.arange(size, dtype=torch.float64)[:, None]
    i = torch.arange(size, dtype=torch.float64)[None]
    m = torch.cos(math.pi * (2 * i + 1) * k / (2 * size)) * math.sqrt(2 / size)
    m[0] /= math.sqrt(2)
    return m


def _tile_dct() -> torch.Tensor:
    """The colour 16x16 DCT of a tile ``(768, 768)``: row ``colour * 256 + 16 * v + u`` is the
    coefficient of vertical frequency ``v`` and horizontal ``u`` of colour ``colour`` (the
    rows of the colour transform), columns the colour-major tile pixels."""
    d = _dct()
    return torch.kron(_COLOUR, torch.kron(d, d))


_COLOUR_WEIGHT = (1.0, 0.2, 0.1)
"""The fixed ranking's weight per colour (luma-like mean, then the two differences)."""


def dct_keep(n: int | None = None) -> list[int]:
    """The DCT start's fixed ranking: the ``n`` (default all 768) tile coefficients, most
    important first, by ``w(colour) / ((u + 1)^2 + (v + 1)^2)`` (``w`` 1, 0.2, 0.1: luma before
    chroma, low frequencies before high), ties in index order. Index ``colour * 256 + 16 * v +
    u``."""
    u = torch.arange(16, dtype=torch.float64).repeat(16)
    v = torch.arange(16, dtype=torch.float64).repeat_interleave(16)
    score = torch.cat([w / ((u + 1) ** 2 + (v + 1) ** 2) for w in _COLOUR_WEIGHT])
    order = sorted(range(768), key=lambda i: (-float(score[i]), i))
    return order[: 768 if n is None else n]


@torch.no_grad()
def dct_start(body: Sequence, n: int, keep: Iterable[int] | None = None) -> None:
    """Set ``body``'s four invertible 1x1 convolutions so that, with its couplings, enhancement
    and attention at the identity, latent channel ``m`` is the tile's colour-DCT coefficient
    ``keep[m]`` divided by ``sqrt(768 / n)`` (see the module; ``keep`` defaults to
    :func:`dct_keep`). ``body`` is :func:`invcompress`'s."""
    chosen = dct_keep(n) if keep is None else [int(i) for i in keep]
    if len(chosen) != n or len(set(chosen)) != n or not all(0 <= i < 768 for i in chosen):
        raise ValueError(
            f"keep must be {n} distinct coefficient indices in 0..767; received "
            f"{len(chosen)} ({len(set(chosen))} distinct)"
        )
    taken = set(chosen)
    order = chosen + [i for i in dct_keep() if i not in taken]
    _set_tile_transform(body, n, _tile_dct()[order])
