"""Channel split and concatenation, the glue of graphs."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..block import Block, Dims, Inversion
from ..registry import register_block

__all__ = ["Concat", "Split"]


class Split(Block):
    """Split one tensor along channels into ``len(sections)`` tensors (``EXACT``).

    Arguments:
        dims_in: Input shapes (optional).
        sections: Channels of each output; they must add up to the input's channels.

    Shapes:
        ``(B, sum(sections), H, W) -> (B, s_0, H, W), (B, s_1, H, W), ...``

    Example:
        >>> a, b = Split(sections=[1, 2])(torch.rand(1, 3, 2, 2))
        >>> a.shape[1], b.shape[1]
        (1, 2)
    """

    inversion = Inversion.EXACT

    def __init__(self, dims_in: Any = None, *, sections: list[int]) -> None:
        super().__init__(dims_in)
        if len(sections) < 1 or any(int(s) < 1 for s in sections):
            raise ValueError(f"Split: sections must be positive integers; received {sections}")
        self.sections = [int(s) for s in sections]
        if self.dims_in:
            self.output_dims(self.dims_in)

    def _forward(self, xs: tuple[Tensor, ...], c: tuple[Tensor, ...]) -> tuple[Any, Any]:
        return tuple(xs[0].split(self.sections, dim=1)), None

    def _inverse(self, ys: tuple[Tensor, ...], c: tuple[Tensor, ...]) -> tuple[Any, Any]:
        return torch.cat(ys, dim=1), None

    def _output_dims(self, dims: Dims) -> Dims:
        self._check_count(dims, 1, "input")
        c, *rest = dims[0]
        if c != sum(self.sections):
            raise self._shape_error(
                f"{sum(self.sections)} channels (sections {self.sections})", dims
            )
        return [(s, *rest) for s in self.sections]

    def _input_dims(self, dims: Dims) -> Dims:
        if [d[0] for d in dims] != self.sections or len({tuple(d[1:]) for d in dims}) != 1:
            raise self._shape_error(
                f"{len(self.sections)} tensors of {self.sections} channels", dims
            )
        return [(sum(self.sections), *dims[0][1:])]

    def extra_repr(self) -> str:
        return f"sections={self.sections}, {super().extra_repr()}"


class Concat(Block):
    """Concatenate ``n_inputs`` tensors along channels (``EXACT``); the inverse splits.

    Arguments:
        dims_in: Input shapes; needed for the inverse unless ``sections`` is given.
        sections: Channels of each input (alternative to ``dims_in``).

    Shapes:
        ``(B, c_0, H, W), (B, c_1, H, W), ... -> (B, sum c_i, H, W)``

    Example:
        >>> cat = Concat([(1, 2, 2), (2, 2, 2)])
        >>> cat([torch.rand(1, 1, 2, 2), torch.rand(1, 2, 2, 2)])[0][0].shape
        torch.Size([1, 3, 2, 2])
    """

    inversion = Inversion.EXACT

    def __init__(self, dims_in: Any = None, *, sections: list[int] | None = None) -> None:
        if sections is None and dims_in is None:
            raise ValueError("Concat needs `dims_in` or `sections`")
        if sections is None:
            sections = [int(d[0]) for d in dims_in]
        self.n_inputs = len(sections)
        super().__init__(dims_in)
        self.sections = [int(s) for s in sections]
        if self.dims_in:
            self.output_dims(self.dims_in)

    def _forward(self, xs: tuple[Tensor, ...], c: tuple[Tensor, ...]) -> tuple[Any, Any]:
        return torch.cat(xs, dim=1), None

    def _inverse(self, ys: tuple[Tensor, ...], c: tuple[Tensor, ...]) -> tuple[Any, Any]:
        return tuple(ys[0].split(self.sections, dim=1)), None

    def _output_dims(self, dims: Dims) -> Dims:
        self._check_count(dims, self.n_inputs, "input")
        if [d[0] for d in dims] != self.sections or len({tuple(d[1:]) for d in dims}) != 1:
            raise self._shape_error(
                f"{self.n_inputs} tensors of {self.sections} channels and equal H, W", dims
            )
        return [(sum(self.sections), *dims[0][1:])]

    def _input_dims(self, dims: Dims) -> Dims:
        self._check_count(dims, 1, "output")
        c, *rest = dims[0]
        if c != sum(self.sections):
            raise self._shape_error(f"{sum(self.sections)} channels in the inverse", dims)
        return [(s, *rest) for s in self.sections]

    def extra_repr(self) -> str:
        return f"sections={self.sections}, {super().extra_repr()}"


register_block(Split)
register_block(Concat)
