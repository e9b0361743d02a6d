"""A JPEG channel: the embedding travels as a JPEG file (differentiable in training)."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from ..block import Block, Dims, Inversion
from ..registry import register_block
from .quantize import quantize

__all__ = ["JPEGChannel", "jpeg"]


def jpeg(image: Tensor, quality: int) -> Tensor:
    """``(B, C, H, W)`` in ``[0, 1]`` (``C`` 1 or 3) through Pillow's libjpeg at ``quality``
    (4:2:0 chroma subsampling, baseline), decoded back: the real codec, on the CPU, as a
    user's file goes. Values are rounded to 8 bits first."""
    if image.shape[1] not in (1, 3):
        raise ValueError(f"jpeg: expected 1 or 3 channels; received {tuple(image.shape)}")
    arrays = torch.round(quantize(image.detach().float()) * 255).to(torch.uint8).cpu()
    out = []
    for a in arrays:
        pixels = a[0].numpy() if a.shape[0] == 1 else a.permute(1, 2, 0).numpy()
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=int(quality), subsampling=2)
        buffer.seek(0)
        with Image.open(buffer) as decoded:
            back = torch.from_numpy(np.asarray(decoded).copy())
        out.append(back[None] if back.dim() == 2 else back.permute(2, 0, 1))
    return torch.stack(out).to(device=image.device, dtype=image.dtype) / 255


class JPEGChannel(Block):
    """The embedding goes through JPEG at a quality in ``quality`` (``STE`` inversion kind).

    * In training, kornia's differentiable JPEG (``kornia.enhance.jpeg_codec_differentiable``:
      colour conversion, 4:2:0 chroma subsampling, DCT, quantisation with the standard tables
      scaled by the quality, a differentiable rounding) at a quality drawn per sample,
      uniformly from ``quality``; with probability ``plain`` a sample takes the plain 8-bit
      channel (IICNet's uniform noise) instead.
    * In eval mode, the real codec (:func:`jpeg`, Pillow's libjpeg) at ``eval_quality``, so
      validation measures what a user's file gives.
    * The inverse is the identity: the restorer starts from what arrived.

    As an ``STE`` block it is checked for: eval outputs on the 8-bit grid, and an inverse that
    returns its input unchanged. It is not idempotent (JPEG of a JPEG moves a few values), so
    ``check_block`` leaves that check out and says so. A 1-channel (gray) embedding is coded
    as a grayscale JPEG.

    Arguments:
        dims_in: Input shapes (optional): ``(C, H, W)`` with ``C`` 1 or 3.
        quality: The training qualities, one number or an inclusive range ``(lo, hi)`` in
            1..100 (also the string ``"lo-hi"``, as ``--set channel.quality=70-95`` gives).
        eval_quality: The quality in eval mode (default: the middle of ``quality``).
        plain: Probability that a training sample uses the plain 8-bit channel instead.
        generator: Random source for the qualities and the choice (default: torch's).

    Shapes:
        ``(B, C, H, W) -> same``
    """

    inversion = Inversion.STE
    channel_name = "jpeg"
    idempotent = False

    def __init__(
        self,
        dims_in: Any = None,
        *,
        quality: int | str | tuple[int, int] | list[int] = (70, 95),
        eval_quality: int | None = None,
        plain: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(dims_in)
        lo, hi = _quality_range(quality)
        if eval_quality is None:
            eval_quality = (lo + hi) // 2
        if not 1 <= int(eval_quality) <= 100:
            raise ValueError(
                f"JPEGChannel: eval_quality must be in 1..100; received {eval_quality}"
            )
        if not 0.0 <= float(plain) <= 1.0:
            raise ValueError(f"JPEGChannel: plain must be a probability; received {plain!r}")
        self.quality, self.eval_quality = (lo, hi), int(eval_quality)
        self.plain, self.generator = float(plain), generator
        if self.dims_in:
            self.output_dims(self.dims_in)

    def _forward(self, xs: tuple[Tensor, ...], c: tuple[Tensor, ...]) -> tuple[Any, Any]:
        (x,) = xs
        if not self.training:
            return jpeg(x, self.eval_quality), None
        from kornia.enhance import jpeg_codec_differentiable

        b = x.shape[0]
        lo, hi = self.quality
        g = self.generator
        draws = torch.rand(b, generator=g, dtype=torch.float64)
        qualities = (lo + torch.floor(draws * (hi - lo + 1))).clamp(max=hi)
        clamped = x.clamp(0.0, 1.0)
        rgb = clamped.expand(-1, 3, -1, -1) if x.shape[1] == 1 else clamped
        coded = jpeg_codec_differentiable(rgb, qualities.to(device=x.device, dtype=x.dtype))
        coded = coded[:, :1] if x.shape[1] == 1 else coded
        if not self.plain:
            return coded, None
        noise = torch.rand(x.shape, generator=g, dtype=x.dtype).to(x.device)
        quantised = (x * 255 + noise - 0.5).clamp(0.0, 255.0) / 255
        take = (torch.rand(b, generator=g) < self.plain).to(x.device)[:, None, None, None]
        return torch.where(take, quantised, coded), None

    def _inverse(self, ys: tuple[Tensor, ...], c: tuple[Tensor, ...]) -> tuple[Any, Any]:
        return ys[0], None

    def _output_dims(self, dims: Dims) -> Dims:
        self._check_channels(dims, self.dims_in[0][0] if self.dims_in else None)
        if dims[0][0] not in (1, 3):
            raise self._shape_error("a 1- or 3-channel embedding (JPEG codes gray or RGB)", dims)
        return [tuple(dims[0])]

    _input_dims = _output_dims

    def extra_repr(self) -> str:
        lo, hi = self.quality
        span = str(lo) if lo == hi else f"{lo}-{hi}"
        plain = f", plain={self.plain:g}" if self.plain else ""
        return f"quality={span}, eval_quality={self.eval_quality}{plain}, {super().extra_repr()}"


def _quality_range(quality: Any) -> tuple[int, int]:
    """``(lo, hi)`` from ``90``, ``"70-95"``, ``(70, 95)`` or ``[70, 95]``."""
    value = quality
    if isinstance(value, str):
        parts = value.replace(" ", "").split("-")
        try:
            value = tuple(int(p) for p in parts)
        except ValueError:
            raise ValueError(
                f"JPEGChannel: quality is a number or a range like '70-95'; received {quality!r}"
            ) from None
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    if isinstance(value, tuple | list) and len(value) == 1:
        value = (value[0], value[0])
    if (
        not isinstance(value, tuple | list)
        or len(value) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        or not 1 <= value[0] <= value[1] <= 100
    ):
        raise ValueError(
            f"JPEGChannel: quality must be in 1..100, one number or a range lo-hi with "
            f"lo <= hi; received {quality!r}"
        )
    return int(value[0]), int(value[1])


register_block(JPEGChannel)
