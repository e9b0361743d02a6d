"""The affine coupling block of IICNet / IRN (also WIN's ``Flow``)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from ..autograd import vjp as _vjp
from ..block import Block, Dims, Inversion
from ..registry import register_block
from .dense import DenseBlock

__all__ = ["AffineCoupling", "SubnetConstructor"]

SubnetConstructor = Callable[..., nn.Module]
"""``f(c_in, c_out) -> nn.Module`` mapping ``(B, c_in, H, W)`` to ``(B, c_out, H, W)``."""


def _build(
    ctor: SubnetConstructor, c_in: int, c_out: int, generator: torch.Generator | None
) -> nn.Module:
    try:
        takes_generator = "generator" in inspect.signature(ctor).parameters
    except (TypeError, ValueError):
        takes_generator = False
    if takes_generator:
        return ctor(c_in, c_out, generator=generator)
    return ctor(c_in, c_out)


def _or_zeros(grad: Tensor | None, like: Tensor) -> Tensor:
    return torch.zeros_like(like) if grad is None else grad


class AffineCoupling(Block):
    """IICNet's coupling: ``x = [x1; x2]`` with ``x1`` the first ``split`` channels,

    .. code-block:: text

        y1 = x1 + F(x2)
        s  = clamp * (2 * sigmoid(H(y1)) - 1)
        y2 = x2 * exp(s) + G(y1)

    and the exact inverse ``x2 = (y2 - G(y1)) * exp(-s)``, ``x1 = y1 - F(x2)``. The
    log-determinant is ``sum(s)`` over ``(C, H, W)``. With ``keep_first=True`` there is no
    ``F``: ``y1 = x1``, and the block changes ``x2`` only, as a function of ``x1``.

    Arguments:
        dims_in: Input shapes; gives ``channels`` when that is not passed.
        channels: ``C``, the total channel count.
        split: Channels in ``x1`` (IICNet: the embedding's channels, e.g. 3); default ``C // 2``.
        clamp: Bound of ``|s|`` (1.0 in IICNet and WIN).
        subnet_constructor: ``f(c_in, c_out) -> nn.Module`` for ``F, G, H``; default
            :class:`~invblocks.blocks.dense.DenseBlock` (5 convolutions, growth 32, last conv zero,
            so the block is the identity at initialisation). A constructor that accepts a
            ``generator`` keyword receives the block's.
        growth: Growth of the default dense-block subnets (32 in IICNet and WIN).
        keep_first: Leave ``x1`` as it is (no ``F``), e.g. an embedding fixed before the
            block, on which the rest is predicted.
        generator: Random source for the subnets' initialisation.

    Shapes:
        ``(B, C, H, W) -> (B, C, H, W)``

    Example:
        >>> block = AffineCoupling(channels=15, split=3)
        >>> x = torch.rand(2, 15, 8, 8)
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
        subnet_constructor: SubnetConstructor | None = None,
        growth: int = 32,
        keep_first: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(dims_in)
        channels = self._channels_from_dims(channels, "channels")
        split = channels // 2 if split is None else split
        if not 0 < split < channels:
            raise ValueError(
                f"AffineCoupling: split must be in 1..{channels - 1} for {channels} channels; "
                f"received {split}"
            )
        if clamp <= 0:
            raise ValueError(f"AffineCoupling: clamp must be > 0; received {clamp}")
        self.channels, self.split, self.clamp = channels, split, float(clamp)
        if subnet_constructor is None:

            def subnet_constructor(
                c_in: int, c_out: int, generator: torch.Generator | None = None
            ) -> nn.Module:
                return DenseBlock(c_in, c_out, growth, generator=generator)

        ctor = subnet_constructor
        c1, c2 = split, channels - split
        self.keep_first = keep_first
        self.F = None if keep_first else _build(ctor, c2, c1, generator)
        self.G = _build(ctor, c1, c2, generator)
        self.H = _build(ctor, c1, c2, generator)

    def _scale(self, y1: Tensor) -> Tensor:
        return self.clamp * (2.0 * torch.sigmoid(self.H(y1)) - 1.0)

    def _forward(self, xs: tuple[Tensor, ...], c: tuple[Tensor, ...]) -> tuple[Any, Any]:
        x1, x2 = xs[0].split((self.split, self.channels - self.split), dim=1)
        y1 = x1 if self.F is None else x1 + self.F(x2)
        s = self._scale(y1)
        y2 = x2 * torch.exp(s) + self.G(y1)
        return torch.cat((y1, y2), dim=1), s.sum(dim=(1, 2, 3))

    def _inverse(self, ys: tuple[Tensor, ...], c: tuple[Tensor, ...]) -> tuple[Any, Any]:
        y1, y2 = ys[0].split((self.split, self.channels - self.split), dim=1)
        s = self._scale(y1)
        x2 = (y2 - self.G(y1)) * torch.exp(-s)
        x1 = y1 if self.F is None else y1 - self.F(x2)
        return torch.cat((x1, x2), dim=1), -s.sum(dim=(1, 2, 3))

    def backward_from_output(
        self, out: Tensor, grad_out: Tensor, grad_log_det: Tensor, rev: bool
    ) -> tuple[Tensor, Tensor, list[tuple[Tensor, Tensor | None]]]:
        """Memory-saving backward: rebuild the input from ``out`` and take the VJP at once.

        Each subnet runs once, with gradients on; the values that rebuild the input are the
        ones differentiated (:mod:`invblocks.memory`). Returns ``(input, grad_input, [(p,
        grad), ...])`` for the direction ``rev`` the block ran in.
        """
        sizes = (self.split, self.channels - self.split)
        a, b = out.detach().split(sizes, dim=1)
        ga, gb = grad_out.split(sizes, dim=1)
        f_params: list[Tensor] = (
            [] if self.F is None else [p for p in self.F.parameters() if p.requires_grad]
        )
        gh_params: list[Tensor] = [
            p for p in (*self.G.parameters(), *self.H.parameters()) if p.requires_grad
        ]
        with torch.enable_grad():
            if not rev:  # out = (y1, y2): x2 = (y2 - G(y1)) e^-s, x1 = y1 - F(x2)
                y1 = a.requires_grad_(True)
                s, g = self._scale(y1), self.G(y1)
                x2 = ((b - g) * torch.exp(-s)).detach().requires_grad_(True)
                found = _vjp(
                    (x2 * torch.exp(s) + g, s.sum(dim=(1, 2, 3))),
                    (y1, x2, *gh_params),
                    (gb, grad_log_det),
                )
                grad_y1 = ga + _or_zeros(found[0], y1)
                f, found_f = self._f_vjp(x2, f_params, grad_y1)
                x = torch.cat((a - f.detach(), x2.detach()), dim=1)
                grad_x2 = _or_zeros(found[1], x2) + _or_zeros(found_f[0], x2)
                grad_x = torch.cat((grad_y1, grad_x2), dim=1)
            else:  # out = (x1, x2): y1 = x1 + F(x2), y2 = x2 e^s + G(y1)
                x2 = b.requires_grad_(True)
                f, found_f = self._f_vjp(x2, f_params, -ga)
                y1 = (a + f.detach()).requires_grad_(True)
                s, g = self._scale(y1), self.G(y1)
                y2 = (b * torch.exp(s) + g).detach().requires_grad_(True)
                found = _vjp(
                    ((y2 - g) * torch.exp(-s), -s.sum(dim=(1, 2, 3))),
                    (y1, y2, *gh_params),
                    (gb + _or_zeros(found_f[0], x2), grad_log_det),
                )
                x = torch.cat((y1.detach(), y2.detach()), dim=1)
                grad_x = torch.cat((ga + _or_zeros(found[0], y1), _or_zeros(found[1], y2)), dim=1)
        pairs = list(zip(gh_params, found[2:], strict=True))
        pairs += list(zip(f_params, found_f[1:], strict=True))
        return x, grad_x, pairs

    def _f_vjp(
        self, x2: Tensor, params: list[Tensor], grad: Tensor
    ) -> tuple[Tensor, list[Tensor | None]]:
        """``F(x2)`` and the VJP of ``grad`` with respect to ``x2`` and ``F``'s parameters
        (zeros and ``None`` without ``F``)."""
        if self.F is None:
            return torch.zeros_like(grad), [None]
        f = self.F(x2)
        return f, _vjp((f,), (x2, *params), (grad,))

    def _output_dims(self, dims: Dims) -> Dims:
        self._check_channels(dims, self.channels)
        return [tuple(dims[0])]

    _input_dims = _output_dims

    def extra_repr(self) -> str:
        keep = ", keep_first=True" if self.keep_first else ""
        return (
            f"{self.channels}, split={self.split}, clamp={self.clamp}{keep}, {super().extra_repr()}"
        )


register_block(AffineCoupling)
