"""Quantisation of an embedding to an n-bit image, with training-time gradient surrogates."""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor

from ..block import Block, Dims, Inversion
from ..registry import register_block

__all__ = ["TRAIN_MODES", "Quantizer", "TrainMode", "quantize"]

TrainMode = Literal["noise", "ste", "round", "identity"]
TRAIN_MODES = ("noise", "ste", "round", "identity")


def quantize(x: Tensor, bits: int = 8) -> Tensor:
    """Clamp to ``[0, 1]`` and round to the ``2**bits - 1`` grid: ``round(clamp(x) * L) / L``."""
    levels = float(2**bits - 1)
    return torch.round(x.clamp(0.0, 1.0) * levels) / levels


class Quantizer(Block):
    """Quantise to ``bits``-bit values in ``[0, 1]`` (``STE`` inversion kind).

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

    Shapes:
        ``(B, C, H, W) -> same``

    Example:
        >>> q = Quantizer().eval()
        >>> q(torch.tensor([[[[0.5001, 1.2]]]]))
        tensor([[[[0.5020, 1.0000]]]])
    """

    inversion = Inversion.STE

    def __init__(
        self,
        dims_in: Any = None,
        *,
        bits: int = 8,
        train_mode: TrainMode = "noise",
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(dims_in)
        if not 1 <= bits <= 16:
            raise ValueError(f"Quantizer: bits must be in 1..16; received {bits}")
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

    def extra_repr(self) -> str:
        return f"bits={self.bits}, train_mode={self.train_mode!r}, {super().extra_repr()}"


register_block(Quantizer)
