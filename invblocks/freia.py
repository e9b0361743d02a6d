"""Interoperability with FrEIA: wrap any FrEIA ``InvertibleModule`` as an invblocks block.

The other direction needs no adapter: every :class:`~invblocks.block.Block` *is* a FrEIA
``InvertibleModule`` and takes ``dims_in`` first, so ``SequenceINN.append(HaarDownscale)``
and ``Node(..., HaarDownscale, {})`` in a ``GraphINN`` work as they are. To leave invblocks
altogether, :func:`coupling_to_freia` rewrites an IICNet coupling as FrEIA's own
``GLOWCouplingBlock`` computing the same function.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from ._freia_base import InvertibleModule
from .block import Block, Dims, Inversion

if TYPE_CHECKING:
    from FrEIA.modules import GLOWCouplingBlock

    from .blocks.coupling import AffineCoupling

__all__ = ["FreiaBlock", "as_block", "coupling_to_freia"]


def _clone_output(module: nn.Module, args: Any, output: Tensor) -> Tensor:
    return output.clone()


class FreiaBlock(Block):
    """A FrEIA module seen as an invblocks :class:`~invblocks.block.Block`.

    The log-determinant FrEIA returns (a scalar, a number or a ``(B,)`` tensor) is normalised
    to a ``(B,)`` tensor in the input dtype, and shape errors name the wrapped module.

    FrEIA 0.2's ``AllInOneBlock`` scales its subnet's output in place (``a *= 0.1``). When the
    subnet ends in an activation whose backward needs its own output (``Tanh``, ``Sigmoid``),
    torch 2.x raises "one of the variables needed for gradient computation has been modified
    by an inplace operation" in ``backward``. The adapter registers a forward hook on such a
    block's ``subnet`` that returns a copy of the output, which makes the in-place scaling
    harmless; parameter names and state dicts are unchanged.

    Arguments:
        module: The FrEIA module (its ``dims_in`` must be set, as FrEIA requires).
        inversion: The inversion kind it promises (FrEIA's modules are bijections: ``EXACT``).
    """

    def __init__(self, module: InvertibleModule, inversion: Inversion = Inversion.EXACT) -> None:
        dims_in = list(getattr(module, "dims_in", []))
        self.n_inputs = len(dims_in) or 1
        super().__init__(dims_in or None)
        self.module = module
        self.inversion = inversion
        from FrEIA.modules import AllInOneBlock  # FrEIA itself is imported when it is used

        if isinstance(module, AllInOneBlock):
            module.subnet.register_forward_hook(_clone_output)

    def _forward(self, xs: tuple[Tensor, ...], c: tuple[Tensor, ...]) -> tuple[Any, Any]:
        return self.module(list(xs), c=list(c), rev=False, jac=True)

    def _inverse(self, ys: tuple[Tensor, ...], c: tuple[Tensor, ...]) -> tuple[Any, Any]:
        return self.module(list(ys), c=list(c), rev=True, jac=True)

    def _output_dims(self, dims: Dims) -> Dims:
        if self.dims_in and [d[0] for d in dims] != [d[0] for d in self.dims_in]:
            raise self._shape_error(f"input shape(s) like {self.dims_in}", dims)
        try:
            return [tuple(d) for d in self.module.output_dims(dims)]
        except (ValueError, AssertionError, RuntimeError) as err:
            raise self._shape_error(f"shapes FrEIA accepts ({err})", dims) from err

    def _input_dims(self, dims: Dims) -> Dims:
        # FrEIA has no inverse shape inference: answer for the built shapes, and for any
        # shape when the module preserves shapes (most FrEIA modules do).
        dims = [tuple(d) for d in dims]
        if self.dims_in:
            built_out = [tuple(d) for d in self.module.output_dims(self.dims_in)]
            if dims == built_out:
                return list(self.dims_in)
            if built_out == [tuple(d) for d in self.dims_in] and [d[0] for d in dims] == [
                d[0] for d in built_out
            ]:
                return dims
        raise self._shape_error(
            f"output shape(s) {self.module.output_dims(self.dims_in)} in the inverse "
            "(FrEIA modules that change shapes invert only at the shapes they were built for)",
            dims,
        )

    def _name(self) -> str:
        return f"FreiaBlock({type(self.module).__name__})"


def as_block(module: nn.Module, inversion: Inversion = Inversion.EXACT) -> Block:
    """Return ``module`` if it is a :class:`~invblocks.block.Block`, else wrap a FrEIA module."""
    if isinstance(module, Block):
        return module
    if isinstance(module, InvertibleModule):
        return FreiaBlock(module, inversion)
    raise TypeError(
        f"expected an invblocks Block or a FrEIA InvertibleModule; received {type(module).__name__}"
    )


class _ShiftOnly(nn.Module):
    """``u -> [0; F(u)]``: GLOW's scale-and-shift subnet for an additive half (scale 0)."""

    def __init__(self, shift: nn.Module, channels: int) -> None:
        super().__init__()
        self.shift, self.channels = shift, channels

    def forward(self, u: Tensor) -> Tensor:
        t = self.shift(u)
        return torch.cat((t.new_zeros(t.shape[0], self.channels, *t.shape[2:]), t), dim=1)


class _ScaleShift(nn.Module):
    """``u -> [H(u); G(u)]``: two subnets as one GLOW scale-and-shift subnet."""

    def __init__(self, scale: nn.Module, shift: nn.Module) -> None:
        super().__init__()
        self.scale, self.shift = scale, shift

    def forward(self, u: Tensor) -> Tensor:
        return torch.cat((self.scale(u), self.shift(u)), dim=1)


def coupling_to_freia(coupling: AffineCoupling, *, share: bool = False) -> GLOWCouplingBlock:
    """The IICNet coupling as FrEIA 0.2's ``GLOWCouplingBlock``, computing the same function.

    GLOW's coupling is ``y1 = x1 e^{s2(x2)} + t2(x2)``, ``y2 = x2 e^{s1(y1)} + t1(y1)``, with
    ``s = clamp * f(.)``. With ``clamp_activation="SIGMOID"`` (``f(u) = 2 sigmoid(u) - 1``),
    ``[s2; t2] = [0; F(x2)]`` and ``[s1; t1] = [H(y1); G(y1)]`` it is IICNet's
    ``y1 = x1 + F(x2)``, ``y2 = x2 e^{s(y1)} + G(y1)``, log-det included.

    Arguments:
        coupling: An :class:`~invblocks.blocks.coupling.AffineCoupling` with ``dims_in`` set.
        share: Reuse the coupling's subnets (parameters shared) instead of copies.

    Returns:
        A FrEIA module whose forward and inverse equal the coupling's to float precision.
    """
    if not coupling.dims_in:
        raise ValueError("coupling_to_freia needs a coupling built with dims_in")
    take = (lambda m: m) if share else copy.deepcopy
    c1 = coupling.split
    subnets = iter(
        [_ScaleShift(take(coupling.H), take(coupling.G)), _ShiftOnly(take(coupling.F), c1)]
    )
    from FrEIA.modules import GLOWCouplingBlock

    return GLOWCouplingBlock(
        [tuple(d) for d in coupling.dims_in],
        subnet_constructor=lambda c_in, c_out: next(subnets),
        clamp=coupling.clamp,
        clamp_activation="SIGMOID",
        split_len=c1,
    )
