"""The JPEG channel: the embedding travels as a JPEG file (differentiable in training)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

import torch
from torch import Tensor

from ..block import Dims, Inversion
from ..io import SUBSAMPLING, decode_image, encode_jpeg, with_jpeg_text
from .channel import CHANNELS, Channel, decoded, register_channel
from .diffjpeg import ROUNDINGS, Rounding, jpeg_differentiable
from .payload import META_KEY, Payload, image_channels, meta_from_text
from .quantizer import quantize

__all__ = ["JPEGChannel", "jpeg_round_trip"]


def jpeg_round_trip(image: Tensor, quality: int, subsampling: str = "4:2:0") -> Tensor:
    """``(B, C, H, W)`` in ``[0, 1]`` (``C`` 1 or 3) through Pillow's libjpeg at ``quality``
    (baseline, 4:2:0 chroma subsampling unless ``subsampling`` says otherwise), decoded back:
    the real codec, on the CPU, as a user's file goes. Values are rounded to 8 bits first."""
    if image.shape[1] not in (1, 3):
        raise ValueError(f"jpeg: expected 1 or 3 channels; received {tuple(image.shape)}")
    out = []
    for a in quantize(image.detach().float()).cpu():
        pixels, _, _ = decode_image(encode_jpeg(a, quality, subsampling=subsampling), "a JPEG")
        out.append(pixels)
    return torch.stack(out).to(device=image.device, dtype=image.dtype) / 255


class JPEGChannel(Channel):
    """The embedding goes through JPEG at a quality in ``quality`` (``STE`` inversion kind).

    * In training, a differentiable JPEG at a quality drawn per sample, uniformly from
      ``quality``: kornia's (``kornia.enhance.jpeg_codec_differentiable``: 4:2:0, its cubic
      rounding) for the default ``subsampling`` and ``rounding``, otherwise
      :func:`~invblocks.ric.diffjpeg.jpeg_differentiable` at the channel's ``subsampling``
      with ``rounding``; with probability ``plain`` a sample takes the plain 8-bit channel
      (IICNet's uniform noise) instead.
    * In eval mode, the real codec (:func:`jpeg_round_trip`, Pillow's libjpeg) at
      ``eval_quality``, so validation measures what a user's file gives.
    * The inverse is the identity: the restorer starts from what arrived.
    * Deployment: the payload is the JPEG file's bytes at ``eval_quality`` (the model's
      metadata goes in a comment segment); ``.png`` files carry the 8-bit embedding before
      the JPEG, losslessly (the quantiser's deployment face).

    It refuses a network that hides its other images in the 8-bit residue of its embedding
    (:class:`~invblocks.blocks.residue.ResidueHiding`): a JPEG destroys that residue.

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
        subsampling: The chroma subsampling (``"4:2:0"``, ``"4:2:2"``, ``"4:4:4"``) of the
            real codec and of training's differentiable one.
        rounding: Training's differentiable rounding of the coefficients: ``"cubic"``
            (kornia's), ``"fourier"`` (the invertible ISP's sawtooth series) or ``"ste"``
            (:data:`~invblocks.ric.diffjpeg.ROUNDINGS`).
        generator: Random source for the qualities and the choice (default: torch's).

    Shapes:
        ``(B, C, H, W) -> same``
    """

    inversion = Inversion.STE
    name = "jpeg"
    suffixes = (".jpg", ".jpeg")
    writable = (".jpg", ".jpeg", ".png")
    idempotent = False

    def __init__(
        self,
        dims_in: Any = None,
        *,
        quality: int | str | tuple[int, int] | list[int] = (70, 95),
        eval_quality: int | None = None,
        plain: float = 0.0,
        subsampling: str = "4:2:0",
        rounding: str = "cubic",
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
        if subsampling not in SUBSAMPLING:
            raise ValueError(
                f"JPEGChannel: subsampling must be one of {', '.join(SUBSAMPLING)}; "
                f"received {subsampling!r}"
            )
        if rounding not in ROUNDINGS:
            raise ValueError(
                f"JPEGChannel: rounding must be one of {', '.join(ROUNDINGS)}; "
                f"received {rounding!r}"
            )
        self.plain, self.generator, self.subsampling = float(plain), generator, subsampling
        self.rounding = rounding
        if self.dims_in:
            self.output_dims(self.dims_in)

    def _forward(self, xs: tuple[Tensor, ...], c: tuple[Tensor, ...]) -> tuple[Any, Any]:
        (x,) = xs
        if not self.training:
            return jpeg_round_trip(x, self.eval_quality, self.subsampling), None
        b = x.shape[0]
        lo, hi = self.quality
        g = self.generator
        draws = torch.rand(b, generator=g, dtype=torch.float64)
        qualities = (lo + torch.floor(draws * (hi - lo + 1))).clamp(max=hi)
        clamped = x.clamp(0.0, 1.0)
        rgb = clamped.expand(-1, 3, -1, -1) if x.shape[1] == 1 else clamped
        coded = self._differentiable(rgb, qualities.to(device=x.device, dtype=x.dtype))
        coded = coded[:, :1] if x.shape[1] == 1 else coded
        if not self.plain:
            return coded, None
        noise = torch.rand(x.shape, generator=g, dtype=x.dtype).to(x.device)
        quantised = (x * 255 + noise - 0.5).clamp(0.0, 255.0) / 255
        take = (torch.rand(b, generator=g) < self.plain).to(x.device)[:, None, None, None]
        return torch.where(take, quantised, coded), None

    def _differentiable(self, rgb: Tensor, qualities: Tensor) -> Tensor:
        if self.subsampling == "4:2:0" and self.rounding == "cubic":
            from kornia.enhance import jpeg_codec_differentiable

            return jpeg_codec_differentiable(rgb, qualities)
        return jpeg_differentiable(
            rgb, qualities, subsampling=self.subsampling, rounding=cast(Rounding, self.rounding)
        )

    def _inverse(self, ys: tuple[Tensor, ...], c: tuple[Tensor, ...]) -> tuple[Any, Any]:
        return ys[0], None

    def _output_dims(self, dims: Dims) -> Dims:
        self._check_channels(dims, self.dims_in[0][0] if self.dims_in else None)
        if dims[0][0] not in (1, 3):
            raise self._shape_error("a 1- or 3-channel embedding (JPEG codes gray or RGB)", dims)
        return [tuple(dims[0])]

    _input_dims = _output_dims

    # ---------------------------------------------------------- deployment face
    def encode(self, e: Tensor) -> list[Payload]:
        """The JPEG file of each embedding, at ``eval_quality``."""
        out = []
        for image in quantize(e.detach().float()).cpu():
            data = encode_jpeg(image, self.eval_quality, subsampling=self.subsampling)
            out.append(Payload(data, tuple(image.shape)))
        return out

    def decode(self, payloads: Sequence[Payload], dtype: torch.dtype = torch.float32) -> Tensor:
        values = []
        for p in payloads:
            if not isinstance(p.data, bytes):
                raise ValueError("the JPEG channel's payload is a JPEG file's bytes")
            pixels, _, _ = decode_image(p.data, "a JPEG payload")
            values.append(pixels.double() / 255)
        return decoded(payloads, values, dtype)

    def for_file(self, suffix: str, quality: int | None = None) -> Channel:
        """This channel (at ``quality`` when given) for ``.jpg``/``.jpeg``; the lossless
        8-bit quantiser for ``.png``."""
        suffix = suffix.lower()
        if suffix == ".png":
            if quality is not None:
                raise ValueError("a quality is for JPEG files; a .png is lossless")
            return CHANNELS.lookup("quantizer")(self.dims_in or None)
        if suffix in self.suffixes and quality is not None and quality != self.eval_quality:
            lo, hi = self.quality
            return JPEGChannel(
                self.dims_in or None,
                quality=(lo, hi),
                eval_quality=quality,
                subsampling=self.subsampling,
                rounding=self.rounding,
            )
        if suffix in self.suffixes:
            return self
        return super().for_file(suffix, quality)

    def dumps(self, payload: Payload, meta: Mapping[str, Any]) -> bytes:
        """The JPEG's bytes with ``meta`` in a comment segment."""
        import json

        if not isinstance(payload.data, bytes):
            raise ValueError("the JPEG channel's payload is a JPEG file's bytes")
        return with_jpeg_text(payload.data, {META_KEY: json.dumps(dict(meta))})

    def loads(self, data: bytes, where: str) -> tuple[Payload, dict[str, Any]]:
        """A JPEG file's bytes (or any image Pillow reads, re-coded by another program) and
        the metadata it carries."""
        pixels, mode, text = decode_image(data, where)
        want = self.dims_in[0][0] if self.dims_in else None
        pixels = image_channels(pixels, mode, want, where)
        return Payload(data, tuple(pixels.shape)), meta_from_text(text, where)

    def problems(self, body: Any) -> list[str]:
        from ..blocks.residue import hides_in_residue

        if hides_in_residue(body):
            return [
                "this network hides its other images in the residue of the 8-bit embedding "
                "(ResidueHiding), which a JPEG destroys; train it without the hiding "
                "(--set network.hiding_levels=null) to send it through a JPEG"
            ]
        return []

    def extra_repr(self) -> str:
        lo, hi = self.quality
        span = str(lo) if lo == hi else f"{lo}-{hi}"
        plain = f", plain={self.plain:g}" if self.plain else ""
        sub = f", subsampling={self.subsampling!r}" if self.subsampling != "4:2:0" else ""
        sub += f", rounding={self.rounding!r}" if self.rounding != "cubic" else ""
        return (
            f"quality={span}, eval_quality={self.eval_quality}{plain}{sub}, {super().extra_repr()}"
        )


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


register_channel(JPEGChannel)
