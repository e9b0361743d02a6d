"""A directed acyclic graph of invertible blocks: :class:`Graph` (and, for one release, the
names that moved to :mod:`invblocks.sequence` and :mod:`invblocks.container`)."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any, TypeAlias, cast

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
from .sequence import Sequence  # noqa: F401  (re-exported: invblocks.graph.Sequence moved)

__all__ = ["Graph", "GraphError"]

_Plan: TypeAlias = tuple[list[str], dict[str, Block], dict[str, tuple[int, ...]], dict[str, int]]
"""A graph's build: execution order, nodes, output shapes, output counts."""


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
    :class:`~invblocks.sequence.Sequence` and in other graphs.

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
        self.build()
        return self

    def problems(self) -> list[str]:
        """Every problem in the graph as declared so far (empty when it would build); the
        graph is not changed."""
        return self._plan()[0]

    def build(self) -> None:
        """Build the declared graph (:meth:`output` does this): infer the shapes, construct
        the nodes, fix the execution order.

        Raises:
            GraphError: listing every problem found, when there is any.
        """
        problems, plan = self._plan()
        if problems or plan is None:
            raise GraphError(problems)
        order, built, shapes, n_out = plan
        self.nodes = nn.ModuleDict({n: built[n] for n in order})
        if self._memory_saving:
            _set_memory_saving(self, True)
        self.node_inputs = {n: self._specs[n][2] for n in order}
        self.node_outputs = {n: [f"{n}:{i}" for i in range(n_out[n])] for n in order}
        self.order, self.shapes, self.built = order, shapes, True
        self.inversion = Inversion.combine([b.inversion for b in built.values()])

    def validate(self) -> list[str]:
        """Deprecated (removed in 0.3): :meth:`problems` checks, :meth:`build` builds."""
        warnings.warn(
            "Graph.validate() is deprecated: use Graph.problems() to check and Graph.build() "
            "(or Graph.output(...)) to build",
            DeprecationWarning,
            stacklevel=2,
        )
        problems = self.problems()
        if not problems:
            self.build()
        return problems

    def _plan(self) -> tuple[list[str], _Plan | None]:
        """The problems, and when there are none the build: execution order, constructed
        nodes, the shape of every output, the output count of every node."""
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
            return problems, None
        return [], (order, built, shapes, n_out)

    # ------------------------------------------------------------ the block
    def run_members(self, rev: bool) -> list[Block] | None:
        """A graph runs itself, with its own memory saving (its chains form runs)."""
        return None

    @property
    def _named(self) -> Mapping[str, Block]:
        """The nodes by name (the ``nodes`` module dict, typed as blocks)."""
        return cast(Mapping[str, Block], self.nodes)

    def _require_built(self) -> None:
        if not self.built:
            raise RuntimeError("the graph is not built: call Graph.output(...) after adding nodes")

    def _chains(self, rev: bool) -> dict[str, list[str]]:
        """Memory-saving chains by the node that starts them in execution order.

        A chain is a maximal path of nodes that may join a run (``run_members``), each
        reading the previous one's only output. Node names are in graph order.
        """
        members = {n: self._named[n].run_members(rev) for n in self.order}
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
            blocks += self._named[name].run_members(rev) or []
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
    def summary_rows(self) -> list[NodeRow]:
        """Per node: name, block, inversion, inputs (references), input, output, params."""
        self._require_built()
        rows = []
        for name in self.order:
            node = self._named[name]
            rows.append(
                NodeRow(
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
