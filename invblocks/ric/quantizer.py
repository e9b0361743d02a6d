"""The 8-bit channel: the embedding is quantised to an n-bit image and sent as a PNG."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
from torch import Tensor

from ..block import Dims, Inversion
from ..io import decode_image, encode_png
from .channel import CHANNELS, Channel, decoded, register_channel
from .payload import META_KEY, Payload, image_channels, meta_from_text

__all__ = ["TRAIN_MODES", "Quantizer", "TrainMode", "quantize"]

TrainMode = Literal["noise", "ste", "round", "identity"]
TRAIN_MODES = ("noise", "ste", "round", "identity")


def quantize(x: Tensor, bits: int = 8) -> Tensor:
    """Clamp to ``[0, 1]`` and round to the ``2**bits - 1`` grid: ``round(clamp(x) * L) / L``."""
    levels = float(2**bits - 1)
    return torch.round(x.clamp(0.0, 1.0) * levels) / levels


class Quantizer(Channel):
    """Quantise to ``bits``-bit values in ``[0, 1]``: the channel of an embedding sent as an
    image file (``STE`` inversion kind).

    In eval mode the forward pass is :func:`quantize` (clamp, round). In training it is
    chosen by ``train_mode``:

    * ``"noise"`` (IICNet): ``clamp(L*x + U(-0.5, 0.5), 0, L) / L`` with ``L = 2**bits - 1``;
      the gradient is the identity inside ``[0, 1]`` and zero where clamped.
    * ``"ste"``: clamp and round forward, identity gradient everywhere (straight-through).
    * ``"round"``: the eval behaviour (zero gradient almost everywhere);
    * ``"identity"`` (WIN's default, ``quantization=False``): no quantisation in training.

    The inverse is the identity: the inverse path starts from the quantised image. Noise is
    drawn from ``generator`` when one is given, otherwise from torch's default generator (as
    dropout does).

    Deployment: the payload is the image's pixel values (``uint8``; the ``2**bits`` levels
    spread over 0..255 for ``bits < 8``), written as a PNG (1- or 3-channel embeddings)
    with the model's metadata in a text chunk; :meth:`for_file` sends the same embedding
    as a JPEG (the JPEG channel's deployment face) for ``.jpg`` files.

    Shapes:
        ``(B, C, H, W) -> same``

    Example:
        >>> q = Quantizer().eval()
        >>> q(torch.tensor([[[[0.5001, 1.2]]]]))
        tensor([[[[0.5020, 1.0000]]]])
    """

    inversion = Inversion.STE
    name = "quantizer"
    suffixes = (".png",)
    writable = (".png", ".jpg", ".jpeg")

    def __init__(
        self,
        dims_in: Any = None,
        *,
        bits: int = 8,
        train_mode: TrainMode = "noise",
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(dims_in)
        if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 16:
            raise ValueError(f"Quantizer: bits must be an integer in 1..16; received {bits!r}")
        if train_mode not in TRAIN_MODES:
            raise ValueError(
                f"Quantizer: train_mode must be one of {', '.join(map(repr, TRAIN_MODES))}; "
                f"received {train_mode!r}"
            )
        self.bits, self.train_mode, self.generator = bits, train_mode, generator
        self.levels = float(2**bits - 1)

    def _forward(self, xs: tuple[Tensor, ...], c: tuple[Tensor, ...]) -> tuple[Any, Any]:
        (x,) = xs
        if not self.training or self.train_mode == "round":
            return quantize(x, self.bits), None
        if self.train_mode == "identity":
            return x, None
        if self.train_mode == "ste":
            return x + (quantize(x, self.bits) - x).detach(), None
        noise = torch.rand(x.shape, generator=self.generator, dtype=x.dtype, device=x.device)
        return (x * self.levels + noise - 0.5).clamp(0.0, self.levels) / self.levels, None

    def _inverse(self, ys: tuple[Tensor, ...], c: tuple[Tensor, ...]) -> tuple[Any, Any]:
        return ys[0], None

    def _output_dims(self, dims: Dims) -> Dims:
        self._check_channels(dims, self.dims_in[0][0] if self.dims_in else None, spatial=False)
        return [tuple(dims[0])]

    _input_dims = _output_dims

    # ---------------------------------------------------------- deployment face
    def _pixels_per_level(self) -> float:
        return 255.0 / self.levels

    def encode(self, e: Tensor) -> list[Payload]:
        """The pixel values of each embedding: ``uint8`` ``(C, h, w)`` for ``bits <= 8``
        (level ``k`` as ``round(k * 255 / L)``), ``int32`` levels above."""
        levels = torch.round(e.detach().float().clamp(0, 1) * self.levels).cpu()
        if self.bits <= 8:
            values = torch.round(levels * self._pixels_per_level()).to(torch.uint8)
        else:
            values = levels.to(torch.int32)
        return [Payload(v, tuple(v.shape)) for v in values]

    def decode(self, payloads: Sequence[Payload], dtype: torch.dtype = torch.float32) -> Tensor:
        """The levels over ``L``, computed in float64 (so that they equal :func:`quantize`
        in float32 and float64 alike)."""
        out = []
        for p in payloads:
            if not isinstance(p.data, Tensor):
                raise ValueError("the quantiser's payload is pixel values, not bytes")
            v = p.data.double()
            if p.data.dtype == torch.uint8:
                v = torch.round(v / self._pixels_per_level())
            out.append(v / self.levels)
        return decoded(payloads, out, dtype)

    def for_file(self, suffix: str, quality: int | None = None) -> Channel:
        """This channel for ``.png``; the JPEG channel at ``quality`` (default 95) for
        ``.jpg``/``.jpeg``: the same embedding, coded lossily."""
        if suffix.lower() in (".jpg", ".jpeg"):
            jpeg: Any = CHANNELS.lookup("jpeg")
            q = 95 if quality is None else quality
            return jpeg(self.dims_in or None, quality=q, eval_quality=q)
        return super().for_file(suffix, quality)

    def dumps(self, payload: Payload, meta: Mapping[str, Any]) -> bytes:
        """A PNG of the payload's pixels, ``meta`` in its ``invblocks`` text chunk."""
        data = payload.data
        if not isinstance(data, Tensor) or data.dtype != torch.uint8:
            raise ValueError(
                f"a {self.bits}-bit embedding has no PNG form here: quantise to 8 bits or "
                "fewer to write files"
            )
        if data.shape[0] not in (1, 3):
            raise ValueError(
                f"a PNG holds 1- or 3-channel images; this embedding has {data.shape[0]} channels"
            )
        return encode_png(data.float() / 255, {META_KEY: json.dumps(dict(meta))})

    def loads(self, data: bytes, where: str) -> tuple[Payload, dict[str, Any]]:
        """The pixels and metadata of an image file (any format Pillow reads: a PNG that
        lost its metadata restores with the original size given by hand)."""
        pixels, mode, text = decode_image(data, where)
        pixels = image_channels(pixels, mode, self.dims_in[0][0] if self.dims_in else None, where)
        return Payload(pixels, tuple(pixels.shape)), meta_from_text(text, where)

    def extra_repr(self) -> str:
        return f"bits={self.bits}, train_mode={self.train_mode!r}, {super().extra_repr()}"


register_channel(Quantizer)
