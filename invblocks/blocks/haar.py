"""Space-to-depth blocks: the Haar wavelet downscale and the pixel squeeze, with channel orders."""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from torch import Tensor

from ..block import Block, Dims, Inversion
from ..registry import register_block

__all__ = [
    "HaarDownscale",
    "Squeeze",
    "Unsqueeze",
    "haar_downscale",
    "haar_upscale",
    "squeeze",
    "unsqueeze",
]

Order = Literal["ref", "hl", "channel"]
_ORDERS = ("ref", "hl", "channel")


def _split4(x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The four 2x2 phases ``(top-left, top-right, bottom-left, bottom-right)`` of ``x``."""
    b, c, h, w = x.shape
    v = x.reshape(b, c, h // 2, 2, w // 2, 2)
    return v[:, :, :, 0, :, 0], v[:, :, :, 0, :, 1], v[:, :, :, 1, :, 0], v[:, :, :, 1, :, 1]


def _merge4(a: Tensor, b_: Tensor, c_: Tensor, d: Tensor) -> Tensor:
    """Inverse of :func:`_split4`."""
    b, c, h, w = a.shape
    top = torch.stack((a, b_), dim=-1)  # (B, C, h, w, 2)
    bottom = torch.stack((c_, d), dim=-1)
    return torch.stack((top, bottom), dim=3).reshape(b, c, 2 * h, 2 * w)


def _arrange(parts: tuple[Tensor, ...], order: str, group: int) -> Tensor:
    """Stack four ``(B, C, h, w)`` parts into ``(B, 4C, h, w)`` in the given channel order.

    ``hl``: part-major ``k*C + c``; ``ref``: per group of ``group`` channels (one image), its
    four parts contiguous; ``channel``: ``c*4 + k`` (``torch.nn.PixelUnshuffle``'s order).
    """
    s = torch.stack(parts, dim=1)  # (B, 4, C, h, w)
    b, _, c, h, w = s.shape
    if order == "hl":
        return s.reshape(b, 4 * c, h, w)
    g = 1 if order == "channel" else group
    return s.reshape(b, 4, c // g, g, h, w).transpose(1, 2).reshape(b, 4 * c, h, w)


def _unarrange(y: Tensor, order: str, group: int) -> tuple[Tensor, ...]:
    """Inverse of :func:`_arrange`: four ``(B, C, h, w)`` parts."""
    b, c4, h, w = y.shape
    c = c4 // 4
    if order == "hl":
        s = y.reshape(b, 4, c, h, w)
    else:
        g = 1 if order == "channel" else group
        s = y.reshape(b, c // g, 4, g, h, w).transpose(1, 2).reshape(b, 4, c, h, w)
    return tuple(s.unbind(dim=1))


def haar_downscale(
    x: Tensor, *, scale: float = 0.25, order: Order = "ref", group: int = 3
) -> Tensor:
    """One level of the Haar transform, ``(B, C, H, W) -> (B, 4C, H/2, W/2)``.

    Subbands ``LL, A, Bk, D`` use the kernels ``[[1,1],[1,1]]``, ``[[1,-1],[1,-1]]``,
    ``[[1,1],[-1,-1]]``, ``[[1,-1],[-1,1]]`` times ``scale`` (IICNet: 1/4, so LL is the 2x2
    mean; 1/2 is orthonormal).
    """
    a, b, c, d = _split4(x)
    parts = (a + b + c + d, a - b + c - d, a + b - c - d, a - b - c + d)
    return _arrange(tuple(p * scale for p in parts), order, group)


def haar_upscale(y: Tensor, *, scale: float = 0.25, order: Order = "ref", group: int = 3) -> Tensor:
    """Inverse of :func:`haar_downscale`, ``(B, 4C, h, w) -> (B, C, 2h, 2w)``."""
    ll, ha, hb, hd = _unarrange(y, order, group)
    k = 1.0 / (4.0 * scale)
    return _merge4(
        (ll + ha + hb + hd) * k,
        (ll - ha + hb - hd) * k,
        (ll + ha - hb - hd) * k,
        (ll - ha - hb + hd) * k,
    )


def squeeze(x: Tensor, *, order: Order = "ref", group: int = 3) -> Tensor:
    """Space-to-depth by 2, ``(B, C, H, W) -> (B, 4C, H/2, W/2)``; phase ``k = dy*2 + dx``."""
    return _arrange(_split4(x), order, group)


def unsqueeze(y: Tensor, *, order: Order = "ref", group: int = 3) -> Tensor:
    """Inverse of :func:`squeeze`."""
    return _merge4(*_unarrange(y, order, group))


class _SpaceToDepth(Block):
    inversion = Inversion.EXACT

    def __init__(self, dims_in: Any = None, *, order: Order = "ref", group: int = 3) -> None:
        super().__init__(dims_in)
        if order not in _ORDERS:
            raise ValueError(f"{self._name()}: order must be one of {_ORDERS}; received {order!r}")
        if group < 1:
            raise ValueError(f"{self._name()}: group must be >= 1; received {group}")
        self.order, self.group = order, group
        if self.dims_in:
            self.output_dims(self.dims_in)

    def _output_dims(self, dims: Dims) -> Dims:
        self._check_channels(dims, self.dims_in[0][0] if self.dims_in else None)
        c, h, w = dims[0]
        if h % 2 or w % 2:
            raise self._shape_error("even height and width (B, C, 2h, 2w)", dims)
        if self.order == "ref" and c % self.group:
            raise self._shape_error(
                f"a channel count divisible by group={self.group} for order='ref'", dims
            )
        return [(4 * c, h // 2, w // 2)]

    def _input_dims(self, dims: Dims) -> Dims:
        self._check_count(dims, 1, "input")
        c4, h, w = dims[0]
        if c4 % 4 or (self.order == "ref" and (c4 // 4) % self.group):
            raise self._shape_error(
                f"a channel count divisible by 4 (x{self.group} for order='ref') in the inverse",
                dims,
            )
        return [(c4 // 4, 2 * h, 2 * w)]

    def extra_repr(self) -> str:
        return f"order={self.order!r}, group={self.group}, {super().extra_repr()}"


class HaarDownscale(_SpaceToDepth):
    """One Haar wavelet level as an invertible ``(B, C, H, W) -> (B, 4C, H/2, W/2)`` block.

    Arguments:
        dims_in: Input shapes (optional, see :class:`~invblocks.block.Block`).
        scale: ``"reference"`` (kernels divided by 4 as in IICNet: LL is the 2x2 mean and the
            log-determinant is ``-log(16)`` per 2x2 cell and channel) or ``"orthonormal"``
            (divided by 2: log-determinant 0).
        order: Channel order of the output. ``"ref"``: each image of ``group`` channels keeps
            its four subbands together, ``[f1-LL, f1-A, f1-Bk, f1-D, f2-LL, ...]`` (IICNet's
            ``ref``); ``"hl"``: subband-major ``[LL(all); A(all); Bk(all); D(all)]``;
            ``"channel"``: ``c*4 + subband``.
        group: Channels per image for ``order="ref"`` (3 for RGB).

    Example:
        >>> y = HaarDownscale()(torch.rand(1, 6, 4, 4))
        >>> y.shape
        torch.Size([1, 24, 2, 2])
    """

    def __init__(
        self,
        dims_in: Any = None,
        *,
        scale: Literal["reference", "orthonormal"] = "reference",
        order: Order = "ref",
        group: int = 3,
    ) -> None:
        if scale not in ("reference", "orthonormal"):
            raise ValueError(
                f"HaarDownscale: scale must be 'reference' or 'orthonormal'; received {scale!r}"
            )
        super().__init__(dims_in, order=order, group=group)
        self.scale = scale
        self._factor = 0.25 if scale == "reference" else 0.5

    def _log_det(self, x: Tensor) -> float:
        _b, c, h, w = x.shape
        return c * (h // 2) * (w // 2) * (4 * math.log(self._factor) + math.log(16.0))

    def _forward(self, xs: tuple[Tensor, ...], c: tuple[Tensor, ...]) -> tuple[Any, Any]:
        (x,) = xs
        y = haar_downscale(x, scale=self._factor, order=self.order, group=self.group)
        return y, self._log_det(x)

    def _inverse(self, ys: tuple[Tensor, ...], c: tuple[Tensor, ...]) -> tuple[Any, Any]:
        (y,) = ys
        x = haar_upscale(y, scale=self._factor, order=self.order, group=self.group)
        return x, -self._log_det(x)

    def extra_repr(self) -> str:
        return f"scale={self.scale!r}, {super().extra_repr()}"


class Squeeze(_SpaceToDepth):
    """Space-to-depth by 2 (a permutation), ``(B, C, H, W) -> (B, 4C, H/2, W/2)``.

    Arguments:
        dims_in: Input shapes (optional).
        order: ``"hl"``: phase-major ``(dy*2 + dx)*C + c`` (IICNet's raw ``SqueezeLayer``);
            ``"ref"``: per image of ``group`` channels, its four phases contiguous (IICNet's
            ``ref``); ``"channel"``: ``c*4 + phase``, identical to ``torch.nn.PixelUnshuffle(2)``
            (WIN's order).
        group: Channels per image for ``order="ref"``.

    Example:
        >>> x = torch.rand(1, 3, 4, 4)
        >>> torch.equal(Squeeze(order="channel")(x), torch.nn.PixelUnshuffle(2)(x))
        True
    """

    def _forward(self, xs: tuple[Tensor, ...], c: tuple[Tensor, ...]) -> tuple[Any, Any]:
        return squeeze(xs[0], order=self.order, group=self.group), None

    def _inverse(self, ys: tuple[Tensor, ...], c: tuple[Tensor, ...]) -> tuple[Any, Any]:
        return unsqueeze(ys[0], order=self.order, group=self.group), None


class Unsqueeze(Block):
    """Depth-to-space by 2, the inverse of :class:`Squeeze`: ``(B, 4C, h, w) -> (B, C, 2h, 2w)``.

    With ``order="channel"`` it equals ``torch.nn.PixelShuffle(2)`` (WIN's order).

    Example:
        >>> y = torch.rand(1, 8, 2, 2)
        >>> torch.equal(Unsqueeze(order="channel")(y), torch.nn.PixelShuffle(2)(y))
        True
    """

    inversion = Inversion.EXACT

    def __init__(self, dims_in: Any = None, *, order: Order = "ref", group: int = 3) -> None:
        super().__init__(dims_in)
        self.squeeze = Squeeze(order=order, group=group)
        self.order, self.group = order, group
        if self.dims_in:
            self.output_dims(self.dims_in)

    def _forward(self, xs: tuple[Tensor, ...], c: tuple[Tensor, ...]) -> tuple[Any, Any]:
        return unsqueeze(xs[0], order=self.order, group=self.group), None

    def _inverse(self, ys: tuple[Tensor, ...], c: tuple[Tensor, ...]) -> tuple[Any, Any]:
        return squeeze(ys[0], order=self.order, group=self.group), None

    def _output_dims(self, dims: Dims) -> Dims:
        self._check_channels(dims, self.dims_in[0][0] if self.dims_in else None)
        return self.squeeze.input_dims(dims)

    def _input_dims(self, dims: Dims) -> Dims:
        return self.squeeze.output_dims(dims)

    def extra_repr(self) -> str:
        return f"order={self.order!r}, group={self.group}, {super().extra_repr()}"


register_block(HaarDownscale)
register_block(Squeeze)
register_block(Unsqueeze)
