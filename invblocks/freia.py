"""Interoperability with FrEIA: wrap any FrEIA ``InvertibleModule`` as an invblocks block.

The other direction needs no adapter: every :class:`~invblocks.block.Block` *is* a FrEIA
``InvertibleModule`` and takes ``dims_in`` first, so ``SequenceINN.append(HaarDownscale)``
and ``Node(..., HaarDownscale, {})`` in a ``GraphINN`` work as they are.
"""

from __future__ import annotations

from typing import Any

from FrEIA.modules import AllInOneBlock, InvertibleModule
from torch import Tensor, nn

from .block import Block, Dims, Inversion

__all__ = ["FreiaBlock", "as_block"]


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
