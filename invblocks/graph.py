"""Containers of blocks: :class:`Sequence` (a chain) and :class:`Graph` (a DAG)."""

from __future__ import annotations

import html
from collections.abc import Iterable, Iterator, Mapping
from collections.abc import Sequence as SequenceABC
from typing import Any, cast

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from .block import Block, Dims, Inversion, as_dims
from .freia import as_block
from .memory import invertible_run, reversible
from .registry import block_from_config, config_fields, register_block

__all__ = ["Container", "Graph", "GraphError", "NodeInfo", "Sequence"]


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def _dims_str(dims: Dims) -> str:
    return ", ".join(str(tuple(d)) for d in dims)


def _run_members(node: Block, rev: bool) -> list[Block] | None:
    """The blocks ``node`` contributes to a memory-saving run (chain order), or ``None``.

    A reversible block joins as itself; a :class:`Sequence` whose nodes all join is
    flattened into the run (so nesting costs no extra recomputation); a :class:`Graph`, or a
    Sequence with other nodes, runs itself with its own memory saving.
    """
    if isinstance(node, Sequence):
        if node.n_inputs != 1 or len(node.dims_out) != 1:
            return None
        members: list[Block] = []
        for inner in node._chain:
            found = _run_members(inner, rev)
            if found is None:
                return None
            members += found
        return members
    if isinstance(node, Graph):
        return None
    return [node] if reversible(node, rev) else None


def _set_memory_saving(module: nn.Module, value: bool) -> None:
    for m in module.modules():
        if isinstance(m, Container):
            m._memory_saving = value


class Container(Block):
    """Base class of :class:`Sequence` and :class:`Graph`: the memory-saving switch they share.

    Setting :attr:`memory_saving` sets it on every container nested inside (runs are found at
    call time; see the two subclasses and :mod:`invblocks.memory`).
    """

    _memory_saving = False

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
    container = isinstance(node, Container)
    checkpointed = saving and not container and any(p.requires_grad for p in node.parameters())
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


def _text_table(head: list[str], keys: list[str], rows: list[NodeInfo]) -> list[str]:
    """Aligned text rows: the header, a rule, one row per node (the summaries' table)."""
    table = [head] + [[_cell(k, r[k]) for k in keys] for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in table
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


def _html_table(head: list[str], keys: list[str], rows: list[NodeInfo]) -> str:
    """The same table as HTML (notebooks)."""
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(r[k]))}</td>" for k in keys) + "</tr>" for r in rows
    )
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


class NodeInfo(dict):
    """One row of :meth:`Sequence.summary_rows`: index, name, kind, shapes, parameters."""


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
    def _runs(self, rev: bool) -> list[tuple[bool, list[Block]]]:
        """Consecutive nodes in execution order, grouped into (memory-saving?, nodes).

        Nested sequences whose nodes all join a run are flattened into it.
        """
        runs: list[tuple[bool, list[Block]]] = []
        for node in self._ordered(rev):
            members = _run_members(node, rev) if self.memory_saving else None
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


class GraphError(ValueError):
    """A graph failed validation; ``problems`` lists every problem found, one per entry."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__(
            f"the graph has {len(problems)} problem(s):\n" + "\n".join(f"- {p}" for p in problems)
        )


def _ref(ref: str) -> tuple[str, int]:
    name, _, index = ref.partition(":")
    return name, int(index) if index else 0


class Graph(Container):
    """A directed acyclic graph of blocks with named nodes, several inputs and outputs.

    Arguments:
        inputs: Graph inputs by name, each with its shape ``(C, H, W)`` (batch excluded).

    Nodes are added with :meth:`add` (a block class with keyword arguments, built for the
    shapes it receives, or an instance) and read other nodes' outputs by reference: ``"name"``
    (output 0) or ``"name:i"``; graph inputs are referenced by their names. :meth:`output`
    declares the graph outputs and builds the graph: it validates everything at once and
    raises :class:`GraphError` listing every problem (unknown references, cycles, shape
    mismatches, an output read twice, dangling outputs), each naming its node.

    Forward runs the nodes in topological order; the inverse runs their inverses in reverse
    order. The log-det is the sum over nodes. A graph is itself a block: it nests in
    :class:`~invblocks.graph.Sequence` and in other graphs.

    ``memory_saving=True`` (or setting ``memory_saving``) trains as
    :class:`Sequence` does: each chain of reversible single-tensor nodes (a node whose only
    input is the previous node's only output) runs as one memory-saving run, other nodes with
    parameters are checkpointed, parameter-free ones (split, concat) use plain autograd.

    Example:
        >>> from invblocks import Graph, blocks as B
        >>> g = Graph({"x": (8, 4, 4)})
        >>> _ = g.add("split", B.Split, "x", sections=[4, 4])
        >>> _ = g.add("flow", B.AffineCoupling, "split:1", split=2)
        >>> _ = g.add("merge", B.Concat, ["split:0", "flow"])
        >>> g.output("merge").dims_out
        [(8, 4, 4)]
    """

    def __init__(self, inputs: dict[str, Any], *, memory_saving: bool = False) -> None:
        if not inputs:
            raise ValueError("Graph needs at least one named input, e.g. Graph({'x': (3, 64, 64)})")
        self.n_inputs = len(inputs)
        self.input_names = list(inputs)
        super().__init__([as_dims(d)[0] for d in inputs.values()])
        for name in self.input_names:
            self._check_name(name)
        self.nodes = nn.ModuleDict()
        self._specs: dict[str, tuple[Any, dict[str, Any], list[str]]] = {}
        self.node_inputs: dict[str, list[str]] = {}
        self.output_refs: list[str] = []
        self.order: list[str] = []
        self.node_outputs: dict[str, list[str]] = {}
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.built = False
        self.inversion = Inversion.EXACT
        self.memory_saving = memory_saving

    # ------------------------------------------------------------- building
    def _check_name(self, name: str) -> None:
        if not name or any(ch in name for ch in ".: ") or not name.isprintable():
            raise ValueError(
                f"Graph: a node or input name may not contain '.', ':' or spaces: {name!r}"
            )

    def add(self, name: str, block: Any, inputs: str | list[str], **kwargs: Any) -> str:
        """Add node ``name`` computing ``block`` on ``inputs`` (references); returns ``name``."""
        self._check_name(name)
        if name in self._specs or name in self.input_names:
            raise ValueError(f"Graph: the name {name!r} is already used")
        refs = [inputs] if isinstance(inputs, str) else list(inputs)
        self._specs[name] = (block, kwargs, [f"{n}:{i}" for n, i in map(_ref, refs)])
        self.built = False
        return name

    def output(self, *refs: str) -> Graph:
        """Declare the graph outputs, then build; raises :class:`GraphError` on any problem."""
        self.output_refs = [f"{n}:{i}" for n, i in map(_ref, refs)]
        problems = self.validate()
        if problems:
            raise GraphError(problems)
        return self

    def validate(self) -> list[str]:
        """Check and build the graph; return every problem found (empty when it is valid)."""
        problems: list[str] = []
        known = set(self.input_names) | set(self._specs)
        for name, (_, _, refs) in self._specs.items():
            for ref in refs:
                if _ref(ref)[0] not in known:
                    problems.append(
                        f"node {name!r}: input {ref!r} refers to no node or graph input"
                    )
        for ref in self.output_refs:
            if _ref(ref)[0] not in known:
                problems.append(f"graph output {ref!r} refers to no node or graph input")
        if not self.output_refs:
            problems.append("the graph has no outputs: call Graph.output(...)")

        # Topological order (Kahn); what remains sits on a cycle.
        deps = {
            n: {_ref(r)[0] for r in refs} & set(self._specs)
            for n, (_, _, refs) in self._specs.items()
        }
        order, ready = [], [n for n in self._specs if not deps[n]]
        remaining = {n: set(d) for n, d in deps.items()}
        while ready:
            n = ready.pop(0)
            order.append(n)
            for m, d in remaining.items():
                if n in d:
                    d.discard(n)
                    if not d and m not in order and m not in ready:
                        ready.append(m)
        cyclic = [n for n in self._specs if n not in order]
        if cyclic:
            problems.append(f"cycle among nodes {cyclic}")

        # Shape inference and construction.
        shapes: dict[str, tuple[int, ...]] = {
            f"{n}:0": tuple(d) for n, d in zip(self.input_names, self.dims_in, strict=True)
        }
        built: dict[str, Block] = {}
        n_out: dict[str, int] = dict.fromkeys(self.input_names, 1)
        for name in order:
            block, kwargs, refs = self._specs[name]
            if any(_ref(r)[0] not in n_out for r in refs):
                continue  # upstream problem, already reported
            bad = [r for r in refs if r not in shapes]
            if bad:
                problems.append(
                    f"node {name!r} reads {bad}, but "
                    + ", ".join(f"{_ref(r)[0]!r} has {n_out[_ref(r)[0]]} output(s)" for r in bad)
                )
                continue
            dims = [shapes[r] for r in refs]
            label = getattr(block, "__name__", type(block).__name__)
            try:
                if isinstance(block, type):
                    block = block(dims, **kwargs)
                block = as_block(block)
                out = block.output_dims(dims)
            except (ValueError, TypeError) as err:
                problems.append(
                    f"node {name!r} ({label}) cannot take input {_dims_str(dims)}: {err}"
                )
                continue
            built[name] = block
            n_out[name] = len(out)
            for i, dim in enumerate(out):
                shapes[f"{name}:{i}"] = tuple(dim)

        # Every output is read exactly once (by a node or as a graph output).
        readers: dict[str, list[str]] = {}
        for name, (_, _, refs) in self._specs.items():
            for ref in refs:
                readers.setdefault(ref, []).append(f"node {name!r}")
        for ref in self.output_refs:
            readers.setdefault(ref, []).append("the graph outputs")
            if ref not in shapes and _ref(ref)[0] in n_out:
                problems.append(f"graph output {ref!r} does not exist")
        for ref, who in readers.items():
            if len(who) > 1:
                problems.append(f"output {ref!r} is used {len(who)} times (by {', '.join(who)})")
        for ref in shapes:
            if ref not in readers:
                problems.append(
                    f"dangling output {ref!r}: no node reads it and it is not a graph output"
                )
        if problems:
            return problems

        self.nodes = nn.ModuleDict({n: built[n] for n in order})
        if self._memory_saving:
            _set_memory_saving(self, True)
        self.node_inputs = {n: self._specs[n][2] for n in order}
        self.node_outputs = {n: [f"{n}:{i}" for i in range(n_out[n])] for n in order}
        self.order, self.shapes, self.built = order, shapes, True
        self.inversion = Inversion.combine([b.inversion for b in built.values()])
        return []

    # ------------------------------------------------------------ the block
    @property
    def _named(self) -> Mapping[str, Block]:
        """The nodes by name (the ``nodes`` module dict, typed as blocks)."""
        return cast(Mapping[str, Block], self.nodes)

    def _require_built(self) -> None:
        if not self.built:
            raise RuntimeError("the graph is not built: call Graph.output(...) after adding nodes")

    def _chains(self, rev: bool) -> dict[str, list[str]]:
        """Memory-saving chains by the node that starts them in execution order.

        A chain is a maximal path of nodes that may join a run (:func:`_run_members`), each
        reading the previous one's only output. Node names are in graph order.
        """
        members = {n: _run_members(self._named[n], rev) for n in self.order}
        joins = {n for n, m in members.items() if m is not None}
        after: dict[str, str] = {}
        for name in joins:
            (ref,) = self.node_inputs[name]
            prev = _ref(ref)[0]
            if prev in joins:
                after[prev] = name
        chains = {}
        for name in self.order:
            if name in joins and name not in after.values():
                chain = [name]
                while chain[-1] in after:
                    chain.append(after[chain[-1]])
                chains[chain[-1] if rev else chain[0]] = chain
        return chains

    def _saving_plan(self, rev: bool) -> tuple[bool, dict[str, list[str]], set[str]]:
        saving = self.memory_saving and torch.is_grad_enabled()
        chains = self._chains(rev) if saving else {}
        skip = {n for chain in chains.values() for n in chain}
        return saving, chains, skip

    def _run_chain(self, chain: list[str], x: Tensor, rev: bool) -> tuple[Tensor, Tensor]:
        blocks: list[Block] = []
        for name in chain:
            blocks += _run_members(self._named[name], rev) or []
        if not blocks:
            return x, x.new_zeros(x.shape[0])
        return invertible_run(blocks, x, rev=rev)

    def _forward(self, xs: tuple[Tensor, ...], c: tuple[Tensor, ...]) -> tuple[Any, Any]:
        return self._run_forward(xs, c)

    def _forward_aux(
        self, xs: tuple[Tensor, ...], c: tuple[Tensor, ...]
    ) -> tuple[Any, Any, Mapping[str, Tensor]]:
        aux: dict[str, Tensor] = {}
        outs, log_det = self._run_forward(xs, c, aux)
        return outs, log_det, aux

    def _aux_dims(self, dims: Dims) -> dict[str, tuple[int, ...]]:
        self._require_built()
        env = {f"{n}:0": tuple(d) for n, d in zip(self.input_names, dims, strict=True)}
        found: dict[str, tuple[int, ...]] = {}
        for name in self.order:
            node, given = self._named[name], [env[r] for r in self.node_inputs[name]]
            found.update({f"nodes.{name}.{k}": v for k, v in node.aux_dims(given).items()})
            env.update({f"{name}:{i}": tuple(d) for i, d in enumerate(node.output_dims(given))})
        return found

    def _run_forward(
        self, xs: tuple[Tensor, ...], c: tuple[Tensor, ...], aux: dict[str, Tensor] | None = None
    ) -> tuple[Any, Any]:
        self._require_built()
        env = {f"{n}:0": x for n, x in zip(self.input_names, xs, strict=True)}
        log_det = xs[0].new_zeros(xs[0].shape[0])
        saving, chains, skip = self._saving_plan(rev=False)
        for name in self.order:
            if name in chains and not c:
                chain = chains[name]
                y, ld = self._run_chain(chain, env.pop(self.node_inputs[name][0]), rev=False)
                outs = (y,)
                name = chain[-1]
            elif name in skip and not c:
                continue
            else:
                inputs = [env.pop(r) for r in self.node_inputs[name]]
                outs, ld = _run_node(
                    self._named[name], inputs, c, False, saving, aux, f"nodes.{name}"
                )
            log_det = log_det + ld
            env.update({f"{name}:{i}": y for i, y in enumerate(outs)})
        return tuple(env[r] for r in self.output_refs), log_det

    def _inverse(self, ys: tuple[Tensor, ...], c: tuple[Tensor, ...]) -> tuple[Any, Any]:
        self._require_built()
        env = dict(zip(self.output_refs, ys, strict=True))
        log_det = ys[0].new_zeros(ys[0].shape[0])
        saving, chains, skip = self._saving_plan(rev=True)
        for name in reversed(self.order):
            if name in chains and not c:
                chain = chains[name]
                (ref,) = self.node_outputs[name]
                x, ld = self._run_chain(chain, env.pop(ref), rev=True)
                outs, name = (x,), chain[0]
            elif name in skip and not c:
                continue
            else:
                given = [env.pop(r) for r in self.node_outputs[name]]
                outs, ld = _run_node(self._named[name], given, c, True, saving)
            log_det = log_det + ld
            env.update(zip(self.node_inputs[name], outs, strict=True))
        return tuple(env[f"{n}:0"] for n in self.input_names), log_det

    def _output_dims(self, dims: Dims) -> Dims:
        self._require_built()
        if [d[0] for d in dims] != [d[0] for d in self.dims_in]:
            raise self._shape_error(f"input shape(s) like {_dims_str(self.dims_in)}", dims)
        env = {f"{n}:0": tuple(d) for n, d in zip(self.input_names, dims, strict=True)}
        for name in self.order:
            out = self._named[name].output_dims([env[r] for r in self.node_inputs[name]])
            env.update({f"{name}:{i}": tuple(d) for i, d in enumerate(out)})
        return [env[r] for r in self.output_refs]

    def _input_dims(self, dims: Dims) -> Dims:
        self._require_built()
        self._check_count(dims, len(self.output_refs), "output")
        env = {r: tuple(d) for r, d in zip(self.output_refs, dims, strict=True)}
        for name in reversed(self.order):
            back = self._named[name].input_dims([env[r] for r in self.node_outputs[name]])
            env.update(zip(self.node_inputs[name], (tuple(d) for d in back), strict=True))
        return [env[f"{n}:0"] for n in self.input_names]

    @property
    def dims_out(self) -> Dims:
        """The output shapes (batch excluded)."""
        self._require_built()
        return [self.shapes[r] for r in self.output_refs]

    # ----------------------------------------------------------- inspection
    def summary_rows(self) -> list[NodeInfo]:
        """Per node: name, block, inversion, inputs (references), input, output, params."""
        self._require_built()
        rows = []
        for name in self.order:
            node = self._named[name]
            rows.append(
                NodeInfo(
                    name=name,
                    block=node._name(),
                    inversion=node.inversion.name,
                    inputs=", ".join(self.node_inputs[name]),
                    input=_dims_str([self.shapes[r] for r in self.node_inputs[name]]),
                    output=_dims_str([self.shapes[r] for r in self.node_outputs[name]]),
                    params=_count(node),
                )
            )
        return rows

    def summary(self) -> str:
        """A text table of the nodes in execution order."""
        rows = self.summary_rows()
        keys = list(rows[0]) if rows else ["name"]
        outputs = ", ".join(self.output_refs)
        total = f"total: {_count(self):,} parameters, inversion {self.inversion.name}"
        return "\n".join([*_text_table(keys, keys, rows), f"outputs: {outputs}; {total}"])

    def to_mermaid(self) -> str:
        """A Mermaid ``flowchart`` of the graph, edges labelled with shapes."""
        self._require_built()
        lines = ["flowchart TD"]
        for n, d in zip(self.input_names, self.dims_in, strict=True):
            lines.append(f'    in_{n}[/"{n} {tuple(d)}"/]')
        for name in self.order:
            lines.append(f'    n_{name}["{name}: {self._named[name]._name()}"]')
        for k, _ in enumerate(self.output_refs):
            lines.append(f'    out_{k}[/"output {k}"/]')

        def src(ref: str) -> str:
            n = _ref(ref)[0]
            return f"in_{n}" if n in self.input_names else f"n_{n}"

        for name in self.order:
            for ref in self.node_inputs[name]:
                lines.append(f'    {src(ref)} -->|"{self.shapes[ref]}"| n_{name}')
        for k, ref in enumerate(self.output_refs):
            lines.append(f'    {src(ref)} -->|"{self.shapes[ref]}"| out_{k}')
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        rows = self.summary_rows()
        keys = list(rows[0]) if rows else []
        return _html_table(keys, keys, rows)

    def __repr__(self) -> str:
        if not self.built:
            return f"Graph(inputs={self.input_names}, {len(self._specs)} nodes, not built)"
        lines = [
            f"Graph({', '.join(self.input_names)} -> {', '.join(self.output_refs)}, "
            f"{len(self.order)} nodes, {_count(self):,} params, inversion={self.inversion.name}:"
        ]
        for name in self.order:
            node = self._named[name]
            sources = ", ".join(self.node_inputs[name])
            lines.append(f"  ({name}) {node._name()}({node.extra_repr()}) <- {sources}")
        return "\n".join(lines) + "\n)"

    def extra_repr(self) -> str:
        if not self.built:
            return "not built"
        return f"{_dims_str(self.dims_in)} -> {_dims_str(self.dims_out)}, {super().extra_repr()}"

    # ----------------------------------------------------------------- JSON
    def get_config(self) -> dict[str, Any]:
        """The structure as JSON-ready data: inputs, nodes (block configs, inputs), outputs."""
        self._require_built()
        return {
            "type": "Graph",
            "inputs": {n: list(d) for n, d in zip(self.input_names, self.dims_in, strict=True)},
            "nodes": [
                {"name": n, "block": self._named[n].get_config(), "inputs": self.node_inputs[n]}
                for n in self.order
            ],
            "outputs": list(self.output_refs),
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Graph:
        """Rebuild a graph from :meth:`get_config` output (blocks through the registry)."""
        inputs, nodes, outputs = config_fields(config, "inputs", "nodes", "outputs")
        graph = cls({n: tuple(d) for n, d in inputs.items()})
        for node in nodes:
            name, block, refs = config_fields(
                {"type": "Graph node", **node}, "name", "block", "inputs"
            )
            graph.add(name, block_from_config(block), refs)
        return graph.output(*outputs)


register_block(Graph)
