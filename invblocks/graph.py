"""Containers of blocks: :class:`Sequence`, a chain with shape inference and inspection."""

from __future__ import annotations

import html
from collections.abc import Iterable, Iterator
from typing import Any

from torch import Tensor, nn

from .block import Block, Dims, Inversion, as_dims
from .freia import as_block

__all__ = ["NodeInfo", "Sequence"]


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def _dims_str(dims: Dims) -> str:
    return ", ".join(str(tuple(d)) for d in dims)


class NodeInfo(dict):
    """One row of :meth:`Sequence.summary_rows`: index, name, kind, shapes, parameters."""


class Sequence(Block):
    """A chain of invertible blocks with shape inference at build time.

    Arguments:
        *dims: The input shape without the batch dimension, as integers ``Sequence(15, 144,
            144)``, one tuple ``Sequence((15, 144, 144))``, or one tuple per input for chains
            whose first block takes several tensors.

    Blocks are added with :meth:`append` (a class plus keyword arguments, built for the current
    shape, or an instance) and :meth:`extend`. FrEIA modules are accepted too and wrapped in
    :class:`~invblocks.freia.FreiaBlock`. The chain is itself a :class:`~invblocks.Block`: it
    nests, and works inside FrEIA's ``SequenceINN`` / ``GraphINN``. Its inversion kind is the
    weakest of its nodes' (see :meth:`Inversion.combine`).

    Example:
        >>> from invblocks import Sequence, blocks as B
        >>> net = Sequence(3, 16, 16)
        >>> _ = net.append(B.HaarDownscale).append(B.AffineCoupling, split=3)
        >>> net.dims_out
        [(12, 8, 8)]
        >>> (y,), log_det = net([torch.rand(2, 3, 16, 16)])
        >>> y.shape, log_det.shape
        (torch.Size([2, 12, 8, 8]), torch.Size([2]))
    """

    def __init__(self, *dims: Any) -> None:
        if len(dims) == 1 and not isinstance(dims[0], int):
            dims = dims[0]
        shapes = as_dims(dims)
        if not shapes:
            raise ValueError("Sequence needs its input shape, e.g. Sequence(3, 64, 64)")
        self.n_inputs = len(shapes)
        super().__init__(shapes)
        self.nodes = nn.ModuleList()
        self.shapes: list[Dims] = [shapes]
        self.inversion = Inversion.EXACT

    # ------------------------------------------------------------- building
    def append(self, block: Any, **kwargs: Any) -> Sequence:
        """Add a block: a class (built as ``cls(dims_in, **kwargs)``) or an instance.

        Raises ``ValueError`` naming the node index and class when the block does not accept
        the current shape. Returns the sequence, so calls chain.
        """
        index = len(self.nodes)
        current = self.shapes[-1]
        label = getattr(block, "__name__", type(block).__name__)
        try:
            if isinstance(block, type):
                block = block(current, **kwargs)
            elif kwargs:
                raise TypeError("keyword arguments are only taken with a block class")
            block = as_block(block)
            out = block.output_dims(current)
        except (ValueError, TypeError) as err:
            raise ValueError(
                f"Sequence node {index} ({label}) cannot take input {_dims_str(current)}: {err}"
            ) from err
        self.nodes.append(block)
        self.shapes.append(out)
        self.inversion = Inversion.combine([n.inversion for n in self.nodes])
        return self

    def extend(self, blocks: Iterable[Any]) -> Sequence:
        """Append every block of ``blocks`` (instances or classes without arguments)."""
        for block in blocks:
            self.append(block)
        return self

    # --------------------------------------------------------------- access
    def __len__(self) -> int:
        return len(self.nodes)

    def __iter__(self) -> Iterator[Block]:
        return iter(self.nodes)

    def __getitem__(self, item: int | slice) -> Any:
        if isinstance(item, slice):
            start, stop, step = item.indices(len(self.nodes))
            if step != 1:
                raise ValueError("Sequence slices must be contiguous (step 1)")
            sub = Sequence(self.shapes[start])
            for node in list(self.nodes)[start:stop]:
                sub.append(node)
            return sub
        return self.nodes[item]

    @property
    def dims_out(self) -> Dims:
        """The output shapes of the chain (batch excluded)."""
        return self.shapes[-1]

    # ------------------------------------------------------------ the block
    def _forward(self, xs: tuple[Tensor, ...], c: tuple[Tensor, ...]) -> tuple[Any, Any]:
        log_det = xs[0].new_zeros(xs[0].shape[0])
        for node in self.nodes:
            xs, ld = node(xs, c=c)
            log_det = log_det + ld
        return xs, log_det

    def _inverse(self, ys: tuple[Tensor, ...], c: tuple[Tensor, ...]) -> tuple[Any, Any]:
        log_det = ys[0].new_zeros(ys[0].shape[0])
        for node in reversed(self.nodes):
            ys, ld = node(ys, c=c, rev=True)
            log_det = log_det + ld
        return ys, log_det

    def _output_dims(self, dims: Dims) -> Dims:
        if [d[0] for d in dims] != [d[0] for d in self.dims_in]:
            raise self._shape_error(f"input shape(s) like {_dims_str(self.dims_in)}", dims)
        for node in self.nodes:
            dims = node.output_dims(dims)
        return dims

    def _input_dims(self, dims: Dims) -> Dims:
        for node in reversed(self.nodes):
            dims = node.input_dims(dims)
        return dims

    # ------------------------------------------------------------ inspection
    def summary_rows(self) -> list[NodeInfo]:
        """Per node: ``index``, ``name``, ``inversion``, ``input``, ``output``, ``params``."""
        return [
            NodeInfo(
                index=i,
                name=node._name(),
                inversion=node.inversion.name,
                input=_dims_str(self.shapes[i]),
                output=_dims_str(self.shapes[i + 1]),
                params=_count(node),
            )
            for i, node in enumerate(self.nodes)
        ]

    def summary(self) -> str:
        """A text table of the nodes with shapes, parameter counts and inversion kinds."""
        rows = self.summary_rows()
        head = ["#", "block", "inversion", "input", "output", "params"]
        table = [head] + [
            [
                str(r["index"]),
                r["name"],
                r["inversion"],
                r["input"],
                r["output"],
                f"{r['params']:,}",
            ]
            for r in rows
        ]
        widths = [max(len(row[k]) for row in table) for k in range(len(head))]
        lines = [
            "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
            for row in table
        ]
        lines.insert(1, "  ".join("-" * w for w in widths))
        total = f"total: {_count(self):,} parameters, inversion {self.inversion.name}"
        return "\n".join([*lines, total])

    def _header(self) -> str:
        return (
            f"Sequence({_dims_str(self.dims_in)} -> {_dims_str(self.dims_out)}, "
            f"{len(self.nodes)} nodes, {_count(self):,} params, inversion={self.inversion.name})"
        )

    def __repr__(self) -> str:
        if not self.nodes:
            return self._header()
        lines = [self._header()[:-1] + ":"]
        for i, node in enumerate(self.nodes):
            extra = node.extra_repr()
            lines.append(f"  ({i}) {node._name()}({extra})")
        return "\n".join(lines) + "\n)"

    def _repr_html_(self) -> str:
        rows = self.summary_rows()
        cells = "".join(
            "<tr>" + "".join(f"<td>{html.escape(str(r[k]))}</td>" for k in r) + "</tr>"
            for r in rows
        )
        head = "".join(
            f"<th>{k}</th>" for k in ("#", "block", "inversion", "input", "output", "params")
        )
        return (
            f"<div><p><code>{html.escape(self._header())}</code></p>"
            f"<table><thead><tr>{head}</tr></thead><tbody>{cells}</tbody></table></div>"
        )

    def extra_repr(self) -> str:
        return f"{_dims_str(self.dims_in)} -> {_dims_str(self.dims_out)}, {super().extra_repr()}"
