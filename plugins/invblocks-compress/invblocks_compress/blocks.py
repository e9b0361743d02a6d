"""The blocks of the invertible encoder of Enhanced Invertible Encoding (ACM MM 2021).

* :class:`Bottleneck`: the couplings' subnet, ``conv kxk -> LReLU -> conv 1x1 -> LReLU ->
  conv kxk`` with the last convolution zero (so a coupling starts as the identity);
* :class:`TwoSidedCoupling`: an affine coupling that changes both halves, the small half first;
* :class:`AttentionPair`: CompressAI's attention block, with a separately learned inverse
  (``LEARNED``), as the encoder's last stage.

The enhancement stage is invblocks' :class:`~invblocks.blocks.relation.RelationModule` with
one image: the same layers (dense block 3->64, 1x1, 3x3, 1x1, dense block 64->3, residual
scale 0.2).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from invblocks.block import Block, Dims, Inversion
from invblocks.blocks import run_in_dtype
from invblocks.initializers import conv2d

__all__ = ["AttentionBlock", "AttentionPair", "Bottleneck", "TwoSidedCoupling"]


class Bottleneck(nn.Module):
    """``(B, c_in, H, W) -> (B, c_out, H, W)``: ``conv kxk (c_in -> c_out) -> LReLU(0.2) ->
    conv 1x1 -> LReLU(0.2) -> conv kxk``; the first two Xavier-normal times 0.1, the last zero.
    ``compute_dtype`` (``None``): the dtype it computes in
    (:func:`~invblocks.blocks.dense.set_subnet_dtype`).
    """

    def __init__(
        self, c_in: int, c_out: int, kernel: int = 3, *, generator: torch.Generator | None = None
    ) -> None:
        super().__init__()
        self.conv1 = conv2d(c_in, c_out, kernel, init="xavier", scale=0.1, generator=generator)
        self.conv2 = conv2d(c_out, c_out, 1, init="xavier", scale=0.1, generator=generator)
        self.conv3 = conv2d(c_out, c_out, kernel, init="zeros")
        self.act = nn.LeakyReLU(0.2)
        self.compute_dtype: torch.dtype | None = None

    def _forward(self, x: Tensor) -> Tensor:
        return self.conv3(self.act(self.conv2(self.act(self.conv1(x)))))

    def forward(self, x: Tensor) -> Tensor:
        return run_in_dtype(self._forward, x, self.compute_dtype, self)


class TwoSidedCoupling(Block):
    """An affine coupling that transforms both halves of ``x = [x1; x2]`` (``x1``: the first
    ``split`` channels):

    .. code-block:: text

        y1 = x1 * exp(s(G2(x2))) + H2(x2)
        y2 = x2 * exp(s(G1(y1))) + H1(y1)        s(u) = clamp * (2 * sigmoid(u) - 1)

    inverted exactly in the reverse order. The subnets are :class:`Bottleneck` networks with
    ``kernel`` (5 at the first two levels of Enhanced Invertible Encoding, 3 after); their
    last convolutions start at zero, so the block starts as the identity.

    Arguments:
        dims_in: Input shapes; gives ``channels`` when that is not passed.
        channels: ``C``.
        split: Channels in ``x1`` (default ``C // 4``).
        clamp: Bound of the log-scales.
        kernel: The subnets' spatial kernel size (odd).
        generator: Random source for the initialisation.

    Shapes:
        ``(B, C, H, W) -> (B, C, H, W)``

    Example:
        >>> block = TwoSidedCoupling(channels=12)
        >>> x = torch.randn(1, 12, 8, 8)
        >>> torch.equal(block(x), x)  # identity at initialisation
        True
    """

    inversion = Inversion.EXACT

    def __init__(
        self,
        dims_in: Any = None,
        *,
        channels: int | None = None,
        split: int | None = None,
        clamp: float = 1.0,
        kernel: int = 3,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(dims_in)
        channels = self._channels_from_dims(channels, "channels")
        split = channels // 4 if split is None else split
        if not 0 < split < channels:
            raise ValueError(
                f"TwoSidedCoupling: split must be in 1..{channels - 1} for {channels} channels; "
                f"received {split}"
            )
        if clamp <= 0:
            raise ValueError(f"TwoSidedCoupling: clamp must be > 0; received {clamp}")
        if kernel < 1 or kernel % 2 == 0:
            raise ValueError(f"TwoSidedCoupling: kernel must be odd; received {kernel}")
        self.channels, self.split, self.clamp, self.kernel = channels, split, float(clamp), kernel
        c1, c2, g = split, channels - split, generator
        self.G1 = Bottleneck(c1, c2, kernel, generator=g)
        self.G2 = Bottleneck(c2, c1, kernel, generator=g)
        self.H1 = Bottleneck(c1, c2, kernel, generator=g)
        self.H2 = Bottleneck(c2, c1, kernel, generator=g)

    def _s(self, u: Tensor) -> Tensor:
        return self.clamp * (2.0 * torch.sigmoid(u) - 1.0)

    def _forward(self, xs: tuple[Tensor, ...], c: tuple[Tensor, ...]) -> tuple[Any, Any]:
        x1, x2 = xs[0].split((self.split, self.channels - self.split), dim=1)
        s1 = self._s(self.G2(x2))
        y1 = x1 * torch.exp(s1) + self.H2(x2)
        s2 = self._s(self.G1(y1))
        y2 = x2 * torch.exp(s2) + self.H1(y1)
        return torch.cat((y1, y2), dim=1), s1.flatten(1).sum(1) + s2.flatten(1).sum(1)

    def _inverse(self, ys: tuple[Tensor, ...], c: tuple[Tensor, ...]) -> tuple[Any, Any]:
        y1, y2 = ys[0].split((self.split, self.channels - self.split), dim=1)
        s2 = self._s(self.G1(y1))
        x2 = (y2 - self.H1(y1)) * torch.exp(-s2)
        s1 = self._s(self.G2(x2))
        x1 = (y1 - self.H2(x2)) * torch.exp(-s1)
        return torch.cat((x1, x2), dim=1), -(s1.flatten(1).sum(1) + s2.flatten(1).sum(1))

    def _output_dims(self, dims: Dims) -> Dims:
        self._check_channels(dims, self.channels)
        return [tuple(dims[0])]

    _input_dims = _output_dims

    def extra_repr(self) -> str:
        return (
            f"channels={self.channels}, split={self.split}, kernel={self.kernel}, "
            f"clamp={self.clamp}, {super().extra_repr()}"
        )


class _ResidualUnit(nn.Module):
    """``relu(x + [1x1 N->N/2, ReLU, 3x3, ReLU, 1x1 N/2->N](x))``."""

    def __init__(self, n: int, generator: torch.Generator | None) -> None:
        super().__init__()
        g = generator
        self.conv = nn.Sequential(
            conv2d(n, n // 2, 1, generator=g),
            nn.ReLU(),
            conv2d(n // 2, n // 2, 3, generator=g),
            nn.ReLU(),
            conv2d(n // 2, n, 1, generator=g),
        )

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(x + self.conv(x))


class AttentionBlock(nn.Module):
    """CompressAI's attention block: ``x + A(x) * sigmoid(B(x))`` with ``A`` three residual
    units and ``B`` three residual units and a 1x1 convolution. ``gate`` (``None``: PyTorch's
    initialisation) sets the bias of that last convolution, with its weights zero, so that
    the block starts as the identity up to ``sigmoid(gate)`` (``-10``: 5e-5 of ``A(x)``).
    ``compute_dtype`` (``None``): the dtype ``A`` and ``B`` compute in
    (:func:`~invblocks.blocks.dense.set_subnet_dtype`).

    Shapes:
        ``(B, N, H, W) -> (B, N, H, W)``
    """

    def __init__(
        self, n: int, *, gate: float | None = None, generator: torch.Generator | None = None
    ) -> None:
        super().__init__()
        self.conv_a = nn.Sequential(*(_ResidualUnit(n, generator) for _ in range(3)))
        last = conv2d(n, n, 1, generator=generator)
        if gate is not None:
            with torch.no_grad():
                last.weight.zero_()
                last.bias.fill_(gate)  # type: ignore[union-attr]
        self.conv_b = nn.Sequential(*(_ResidualUnit(n, generator) for _ in range(3)), last)
        self.compute_dtype: torch.dtype | None = None

    def _branches(self, x: Tensor) -> Tensor:
        return self.conv_a(x) * torch.sigmoid(self.conv_b(x))

    def forward(self, x: Tensor) -> Tensor:
        # autocast, not kept copies: its residual units add in float32 as they were measured
        # (its weights are under 1% of the codec's, their casts cost little)
        return x + run_in_dtype(self._branches, x, self.compute_dtype)


class AttentionPair(Block):
    """An :class:`AttentionBlock` forward and a second, separately learned one as the
    inverse (``LEARNED``): the last stage of Enhanced Invertible Encoding's analysis and the
    first of its synthesis.

    Arguments:
        dims_in: Input shapes; gives ``channels`` when that is not passed.
        channels: ``N``.
        gate: See :class:`AttentionBlock` (``None``: both start as PyTorch initialises them,
            as the authors' do; a number: both start near the identity).
        generator: Random source for the initialisation.

    Shapes:
        ``(B, N, H, W) -> (B, N, H, W)``
    """

    inversion = Inversion.LEARNED
    starts_as_identity = False  # relu(x + f(x)) units: no initialisation is the identity

    def __init__(
        self,
        dims_in: Any = None,
        *,
        channels: int | None = None,
        gate: float | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(dims_in)
        self.channels = self._channels_from_dims(channels, "channels")
        if self.channels < 2 or self.channels % 2:
            raise ValueError(f"AttentionPair: channels must be even; received {self.channels}")
        self.gate = gate
        self.forward_net = AttentionBlock(self.channels, gate=gate, generator=generator)
        self.inverse_net = AttentionBlock(self.channels, gate=gate, generator=generator)

    def _forward(self, xs: tuple[Tensor, ...], c: tuple[Tensor, ...]) -> tuple[Any, Any]:
        return self.forward_net(xs[0]), None

    def _inverse(self, ys: tuple[Tensor, ...], c: tuple[Tensor, ...]) -> tuple[Any, Any]:
        return self.inverse_net(ys[0]), None

    def _output_dims(self, dims: Dims) -> Dims:
        self._check_channels(dims, self.channels)
        return [tuple(dims[0])]

    _input_dims = _output_dims

    def extra_repr(self) -> str:
        return f"channels={self.channels}, gate={self.gate}, {super().extra_repr()}"
