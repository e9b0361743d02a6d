"""What the containers share: the memory-saving switch, running one node, the tables."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any, TypedDict

from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from .block import Block, Dims

__all__ = ["Container", "NodeInfo", "NodeRow"]


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def _dims_str(dims: Dims) -> str:
    return ", ".join(str(tuple(d)) for d in dims)


def _set_memory_saving(module: nn.Module, value: bool) -> None:
    for m in module.modules():
        if getattr(m, "saves_memory_itself", False):
            m.__dict__["_memory_saving"] = value


class Container(Block):
    """Base class of :class:`~invblocks.sequence.Sequence` and :class:`~invblocks.graph.Graph`:
    the memory-saving switch they share.

    Setting :attr:`memory_saving` sets it on every container nested inside (runs are found at
    call time; see the two subclasses and :mod:`invblocks.memory`).
    """

    _memory_saving = False
    saves_memory_itself = True

    @property
    def memory_saving(self) -> bool:
        """Memory-saving backprop on or off; setting it sets every nested container too."""
        return self._memory_saving

    @memory_saving.setter
    def memory_saving(self, value: bool) -> None:
        _set_memory_saving(self, bool(value))


def _run_node(
    node: Block,
    xs: Any,
    c: tuple[Tensor, ...],
    rev: bool,
    saving: bool,
    aux: dict[str, Tensor] | None = None,
    key: str = "",
) -> Any:
    """One node outside the runs: checkpointed when saving and it has parameters. With
    ``aux`` (forward only), the node's auxiliary outputs are added to it under ``key.name``."""
    own = node.saves_memory_itself
    checkpointed = saving and not own and any(p.requires_grad for p in node.parameters())
    if aux is not None and not rev:
        if checkpointed:
            outs, log_det, found = checkpoint(node.forward_with_aux, xs, c, use_reentrant=False)
        else:
            outs, log_det, found = node.forward_with_aux(xs, c)
        aux.update({f"{key}.{name}": value for name, value in found.items()})
        return outs, log_det
    if checkpointed:
        # not invertible: keep only its input, recompute its forward in backward
        return checkpoint(node, xs, c=c, rev=rev, use_reentrant=False)
    return node(xs, c=c, rev=rev)


def _cell(key: str, value: Any) -> str:
    return f"{value:,}" if key == "params" else str(value)


def _text_table(head: list[str], keys: list[str], rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Aligned text rows: the header, a rule, one row per node (the summaries' table)."""
    table = [head] + [[_cell(k, r[k]) for k in keys] for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in table
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


def _html_table(head: list[str], keys: list[str], rows: Sequence[Mapping[str, Any]]) -> str:
    """The same table as HTML (notebooks)."""
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(r[k]))}</td>" for k in keys) + "</tr>" for r in rows
    )
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


class NodeRow(TypedDict, total=False):
    """One row of a container's ``summary_rows()`` (a plain dict with these keys).

    :meth:`Sequence.summary_rows <invblocks.sequence.Sequence.summary_rows>` gives ``index``,
    ``name`` (the block), ``inversion``, ``input``, ``output``, ``params``;
    :meth:`Graph.summary_rows <invblocks.graph.Graph.summary_rows>` gives ``name`` (the
    node), ``block``, ``inversion``, ``inputs`` (its references), ``input``, ``output``,
    ``params``. Shapes are text, e.g. ``"(12, 64, 64)"``.
    """

    index: int
    name: str
    block: str
    inversion: str
    inputs: str
    input: str
    output: str
    params: int


NodeInfo = NodeRow
"""Deprecated name of :class:`NodeRow` (removed in 0.3)."""
