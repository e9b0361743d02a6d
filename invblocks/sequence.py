"""A chain of invertible blocks: :class:`Sequence`."""

from __future__ import annotations

import html
from collections.abc import Iterable, Iterator, Mapping
from collections.abc import Sequence as SequenceABC
from typing import Any, cast

import torch
from torch import Tensor, nn

from .block import Block, Dims, Inversion, as_dims
from .container import (
    Container,
    NodeRow,
    _count,
    _dims_str,
    _html_table,
    _run_node,
    _set_memory_saving,
    _text_table,
)
from .freia import as_block
from .memory import invertible_run
from .registry import block_from_config, config_fields, register_block

__all__ = ["Sequence"]


class Sequence(Container):
    """A chain of invertible blocks with shape inference at build time.

    Arguments:
        *dims: The input shape without the batch dimension, as integers ``Sequence(15, 144,
            144)``, one tuple ``Sequence((15, 144, 144))``, or one tuple per input for chains
            whose first block takes several tensors.

    ``memory_saving=True`` trains with activation memory that does not grow with depth:
    runs of EXACT (forward direction also LEFT) single-tensor nodes keep only their output
    and recompute inputs from outputs in the backward pass (:mod:`invblocks.memory`); other
    nodes with parameters (e.g. the relation module) are checkpointed (their input kept, their
    forward recomputed, RNG state preserved); parameter-free ones use plain autograd. Nested
    sequences of reversible nodes join the enclosing runs; nested graphs and sequences run
    with their own memory saving (setting the flag sets it on every nested container). Only
    active when gradients are enabled.

    Blocks are added with :meth:`append` (a class plus keyword arguments, built for the current
    shape, or an instance) and :meth:`extend`. FrEIA modules are accepted too and wrapped in
    :class:`~invblocks.freia.FreiaBlock`. The chain is itself a :class:`~invblocks.block.Block`: it
    nests, and works inside FrEIA's ``SequenceINN`` / ``GraphINN``. Its inversion kind is the
    weakest of its nodes' (see :meth:`~invblocks.block.Inversion.combine`).

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

    def __init__(self, *dims: Any, memory_saving: bool = False) -> None:
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
        self.memory_saving = memory_saving

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
        if self._memory_saving:
            _set_memory_saving(block, True)
        self.shapes.append(out)
        self.inversion = Inversion.combine([n.inversion for n in self._chain])
        return self

    def extend(self, blocks: Iterable[Any]) -> Sequence:
        """Append every block of ``blocks`` (instances or classes without arguments)."""
        for block in blocks:
            self.append(block)
        return self

    # --------------------------------------------------------------- access
    @property
    def _chain(self) -> SequenceABC[Block]:
        """The nodes in chain order (the ``nodes`` module list, typed as blocks)."""
        return cast(SequenceABC[Block], self.nodes)

    def __len__(self) -> int:
        return len(self.nodes)

    def __iter__(self) -> Iterator[Block]:
        return iter(self._chain)

    def __getitem__(self, item: int | slice) -> Any:
        if isinstance(item, slice):
            start, stop, step = item.indices(len(self.nodes))
            if step != 1:
                raise ValueError("Sequence slices must be contiguous (step 1)")
            sub = Sequence(self.shapes[start], memory_saving=self.memory_saving)
            for node in list(self.nodes)[start:stop]:
                sub.append(node)
            return sub
        return self.nodes[item]

    @property
    def dims_out(self) -> Dims:
        """The output shapes of the chain (batch excluded)."""
        return self.shapes[-1]

    # ------------------------------------------------------------ the block
    def run_members(self, rev: bool) -> list[Block] | None:
        """A chain of one tensor whose nodes all join a run joins flattened (nesting costs
        no extra recomputation); otherwise it runs with its own memory saving."""
        if self.n_inputs != 1 or len(self.dims_out) != 1:
            return None
        members: list[Block] = []
        for node in self._chain:
            found = node.run_members(rev)
            if found is None:
                return None
            members += found
        return members

    def _runs(self, rev: bool) -> list[tuple[bool, list[Block]]]:
        """Consecutive nodes in execution order, grouped into (memory-saving?, nodes).

        Nested sequences whose nodes all join a run are flattened into it.
        """
        runs: list[tuple[bool, list[Block]]] = []
        for node in self._ordered(rev):
            members = node.run_members(rev) if self.memory_saving else None
            saving = members is not None
            if members is None:
                group = [node]
            else:
                group = list(reversed(members)) if rev else members
            if runs and runs[-1][0] == saving:
                runs[-1][1].extend(group)
            else:
                runs.append((saving, group))
        return runs

    def _run(
        self,
        xs: tuple[Tensor, ...],
        c: tuple[Tensor, ...],
        rev: bool,
        aux: dict[str, Tensor] | None = None,
    ) -> tuple[Any, Any]:
        log_det = xs[0].new_zeros(xs[0].shape[0])
        saving = self.memory_saving and torch.is_grad_enabled()
        keys = {id(node): f"nodes.{i}" for i, node in enumerate(self._chain)}
        for grouped, nodes in self._runs(rev) if saving else [(False, self._ordered(rev))]:
            if grouped and not c:
                # nodes are in execution order; invertible_run wants them in chain order
                y, ld = invertible_run(list(reversed(nodes)) if rev else nodes, xs[0], rev=rev)
                xs, log_det = (y,), log_det + ld
                continue
            for node in nodes:
                xs, ld = _run_node(node, xs, c, rev, saving, aux, keys.get(id(node), ""))
                log_det = log_det + ld
        return xs, log_det

    def _ordered(self, rev: bool) -> list[Block]:
        return list(reversed(self._chain)) if rev else list(self._chain)

    def _forward(self, xs: tuple[Tensor, ...], c: tuple[Tensor, ...]) -> tuple[Any, Any]:
        return self._run(xs, c, rev=False)

    def _inverse(self, ys: tuple[Tensor, ...], c: tuple[Tensor, ...]) -> tuple[Any, Any]:
        return self._run(ys, c, rev=True)

    def _forward_aux(
        self, xs: tuple[Tensor, ...], c: tuple[Tensor, ...]
    ) -> tuple[Any, Any, Mapping[str, Tensor]]:
        aux: dict[str, Tensor] = {}
        outs, log_det = self._run(xs, c, rev=False, aux=aux)
        return outs, log_det, aux

    def _output_dims(self, dims: Dims) -> Dims:
        if [d[0] for d in dims] != [d[0] for d in self.dims_in]:
            raise self._shape_error(f"input shape(s) like {_dims_str(self.dims_in)}", dims)
        for node in self._chain:
            dims = node.output_dims(dims)
        return dims

    def _aux_dims(self, dims: Dims) -> dict[str, tuple[int, ...]]:
        found: dict[str, tuple[int, ...]] = {}
        for i, node in enumerate(self._chain):
            found.update({f"nodes.{i}.{k}": v for k, v in node.aux_dims(dims).items()})
            dims = node.output_dims(dims)
        return found

    def _input_dims(self, dims: Dims) -> Dims:
        for node in reversed(self._chain):
            dims = node.input_dims(dims)
        return dims

    # ------------------------------------------------------------ inspection
    def summary_rows(self) -> list[NodeRow]:
        """Per node: ``index``, ``name``, ``inversion``, ``input``, ``output``, ``params``."""
        return [
            NodeRow(
                index=i,
                name=node._name(),
                inversion=node.inversion.name,
                input=_dims_str(self.shapes[i]),
                output=_dims_str(self.shapes[i + 1]),
                params=_count(node),
            )
            for i, node in enumerate(self._chain)
        ]

    def summary(self) -> str:
        """A text table of the nodes with shapes, parameter counts and inversion kinds."""
        head = ["#", "block", "inversion", "input", "output", "params"]
        keys = ["index", "name", "inversion", "input", "output", "params"]
        total = f"total: {_count(self):,} parameters, inversion {self.inversion.name}"
        return "\n".join([*_text_table(head, keys, self.summary_rows()), total])

    def _header(self) -> str:
        return (
            f"Sequence({_dims_str(self.dims_in)} -> {_dims_str(self.dims_out)}, "
            f"{len(self.nodes)} nodes, {_count(self):,} params, inversion={self.inversion.name})"
        )

    def __repr__(self) -> str:
        if not self.nodes:
            return self._header()
        lines = [self._header()[:-1] + ":"]
        for i, node in enumerate(self._chain):
            extra = node.extra_repr()
            lines.append(f"  ({i}) {node._name()}({extra})")
        return "\n".join(lines) + "\n)"

    def _repr_html_(self) -> str:
        keys = ["index", "name", "inversion", "input", "output", "params"]
        head = ["#", "block", "inversion", "input", "output", "params"]
        table = _html_table(head, keys, self.summary_rows())
        return f"<div><p><code>{html.escape(self._header())}</code></p>{table}</div>"

    def extra_repr(self) -> str:
        return f"{_dims_str(self.dims_in)} -> {_dims_str(self.dims_out)}, {super().extra_repr()}"

    def get_config(self) -> dict[str, Any]:
        """The chain as JSON-ready data: input shapes and the nodes' block configs."""
        return {
            "type": "Sequence",
            "dims": [list(d) for d in self.dims_in],
            "nodes": [node.get_config() for node in self._chain],
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Sequence:
        """Rebuild a chain from :meth:`get_config` output (blocks through the registry)."""
        dims, nodes = config_fields(config, "dims", "nodes")
        net = cls([tuple(d) for d in dims])
        for node in nodes:
            net.append(block_from_config(node))
        return net


register_block(Sequence)
