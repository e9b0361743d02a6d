"""Fixed predictions subtracted before the learned blocks, so that an untrained network
restores the trivial baseline: the other slots predicted from the reference slot
(:class:`ReferencePrior`), and an image's detail predicted from its block means
(:class:`UpscalePrior`)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ..block import Block, Dims, Inversion
from ..registry import register_block

__all__ = ["ReferencePrior", "UpscalePrior", "reference_prediction", "upscale_detail"]


def reference_prediction(reference: Tensor, zoom: int = 1) -> Tensor:
    """What the other slots are predicted to be from the reference slot ``(B, C, H, W)``:
    the slot itself (``zoom=1``), or its centre, a ``1/zoom`` of each side, upscaled ``zoom``
    times (bicubic, clamped to ``[0, 1]``: the zoomed view of a dual-view pair). Same shape."""
    if zoom == 1:
        return reference
    h, w = reference.shape[-2:]
    th, tw = max(1, h // zoom), max(1, w // zoom)
    i, j = (h - th) // 2, (w - tw) // 2
    centre = reference[..., i : i + th, j : j + tw]
    return F.interpolate(centre, size=(h, w), mode="bicubic", align_corners=False).clamp(0, 1)


class _Shear(Block):
    """A shape-keeping ``EXACT`` block ``y = x - g(x)`` whose inverse is ``x = y + g(y)``:
    ``g`` depends only on a part of its input that the shift leaves alone, so the
    log-determinant is zero. Subclasses give ``_shift(x, sign)`` (``x + sign * g(x)``) and
    ``_output_dims``."""

    inversion = Inversion.EXACT

    def _shift(self, x: Tensor, sign: float) -> Tensor:
        raise NotImplementedError

    def _forward(self, xs: tuple[Tensor, ...], c: tuple[Tensor, ...]) -> tuple[Any, Any]:
        return self._shift(xs[0], -1.0), None

    def _inverse(self, ys: tuple[Tensor, ...], c: tuple[Tensor, ...]) -> tuple[Any, Any]:
        return self._shift(ys[0], 1.0), None

    def _input_dims(self, dims: Dims) -> Dims:
        return self._output_dims(dims)


class ReferencePrior(_Shear):
    """Subtract a fixed prediction from the reference slot from every other slot (``EXACT``).

    ``y_0 = x_0`` and ``y_k = x_k - p(x_0)`` for the slots ``k >= 1`` (``p`` is
    :func:`reference_prediction`); the inverse adds ``p(y_0)`` back. The log-determinant is
    zero (a shear by a function of the slot it leaves alone). Placed first in a body, the
    network sees residuals: with the rest of the body starting at the identity and a channel
    squeeze that keeps the reference slot, the untrained network embeds the reference and
    restores the prediction, which is the task's trivial baseline (the reference repeated, or
    its centre zoomed), so training starts there.

    Arguments:
        dims_in: Input shapes (optional).
        channels: Channels of one slot (3 for RGB).
        zoom: ``1`` predicts the reference itself; ``z > 1`` its centre zoomed ``z`` times.

    Shapes:
        ``(B, n*channels, H, W) -> same``
    """

    def __init__(self, dims_in: Any = None, *, channels: int = 3, zoom: int = 1) -> None:
        super().__init__(dims_in)
        if channels < 1 or zoom < 1:
            raise ValueError(
                f"ReferencePrior: channels and zoom must be >= 1; received {channels}, {zoom}"
            )
        self.channels, self.zoom = channels, zoom
        if self.dims_in:
            self.output_dims(self.dims_in)

    def _shift(self, x: Tensor, sign: float) -> Tensor:
        c = self.channels
        slots = x.shape[1] // c
        if slots == 1:
            return x
        reference = x[:, :c]
        p = reference_prediction(reference, self.zoom)
        return torch.cat([reference, x[:, c:] + sign * p.repeat(1, slots - 1, 1, 1)], dim=1)

    def _output_dims(self, dims: Dims) -> Dims:
        ch = dims[0][0]
        if ch % self.channels:
            raise self._shape_error(f"a channel count divisible by channels={self.channels}", dims)
        return [tuple(dims[0])]

    def extra_repr(self) -> str:
        return f"channels={self.channels}, zoom={self.zoom}, {super().extra_repr()}"


register_block(ReferencePrior)


def upscale_detail(means: Tensor, factor: int) -> Tensor:
    """The detail that bicubic upscaling adds to block means ``(B, C, h, w)``: the bicubic
    upscale (``factor`` times, clamped to ``[0, 1]``) less its own ``factor x factor`` block
    means, ``(B, C, factor*h, factor*w)``; its block means are zero."""
    up = F.interpolate(means, scale_factor=factor, mode="bicubic", align_corners=False)
    up = up.clamp(0, 1)
    return up - F.interpolate(F.avg_pool2d(up, factor), scale_factor=factor, mode="nearest")


class UpscalePrior(_Shear):
    """Subtract from an image the detail that bicubic upscaling predicts from its block
    means (``EXACT``).

    With ``m = avgpool_f(x)`` the ``f x f`` block means, ``y = x - d(m)``, where ``d`` is
    :func:`upscale_detail`. The detail has zero block means, so ``avgpool_f(y) = m`` and the
    inverse adds ``d(avgpool_f(y))`` back; the log-determinant is zero (a shear of the
    detail by a function of the means). Placed before a Haar downscale (whose low band is
    the block means), an untrained network that restores zeros in the high bands restores
    the bicubic upscaling of the low band, corrected to keep its block means, instead of
    repeating each low-band pixel ``f x f`` times: on photographs that is the bicubic
    baseline of rescaling (within about 0.6 dB) rather than 1.5-2 dB below it.

    Arguments:
        dims_in: Input shapes (optional).
        factor: The downscale factor ``f`` (``2`` for one Haar level, ``4`` for two).

    Shapes:
        ``(B, C, H, W) -> same``, with ``H`` and ``W`` multiples of ``factor``.
    """

    def __init__(self, dims_in: Any = None, *, factor: int = 2) -> None:
        super().__init__(dims_in)
        if factor < 2:
            raise ValueError(f"UpscalePrior: factor must be >= 2; received {factor}")
        self.factor = factor
        if self.dims_in:
            self.output_dims(self.dims_in)

    def _shift(self, x: Tensor, sign: float) -> Tensor:
        means = F.avg_pool2d(x, self.factor)
        return x + sign * upscale_detail(means, self.factor)

    def _output_dims(self, dims: Dims) -> Dims:
        _, h, w = dims[0]
        if h % self.factor or w % self.factor:
            raise self._shape_error(f"a height and width divisible by {self.factor}", dims)
        return [tuple(dims[0])]

    def extra_repr(self) -> str:
        return f"factor={self.factor}, {super().extra_repr()}"


register_block(UpscalePrior)
