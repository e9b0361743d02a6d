"""The node contract: :class:`Block`, its :class:`Inversion` kinds and the inverse view."""

from __future__ import annotations

import enum
import functools
import inspect
import json
from collections.abc import Mapping
from collections.abc import Sequence as SequenceABC
from typing import Any, ClassVar

import torch
from torch import Tensor

from ._freia_base import InvertibleModule
from .registry import BLOCKS

__all__ = ["Block", "Dims", "InverseView", "Inversion", "as_dims"]

Dims = list[tuple[int, ...]]
"""Shapes of a node's inputs or outputs, one tuple per tensor, batch dimension excluded."""


class Inversion(enum.Enum):
    """What a block's inverse promises; :func:`invblocks.testing.check_block` checks it.

    ``EXACT``
        A bijection: ``inverse(forward(x)) == x`` to float precision, with a log-determinant.
    ``LEFT``
        Injective: ``inverse(forward(x)) == x`` to float precision (left inverse).
    ``AUGMENTED``
        Dimension-reducing; the inverse rebuilds the dropped dimensions from the output.
    ``LEARNED``
        The inverse is a separately parameterised network (identity at initialisation).
    ``LOSSY``
        Many-to-one with a right inverse: ``forward(inverse(y)) == y``.
    ``STE``
        Non-differentiable forward (quantisation); straight-through or noise gradient.
    """

    EXACT = "exact"
    LEFT = "left"
    AUGMENTED = "augmented"
    LEARNED = "learned"
    LOSSY = "lossy"
    STE = "ste"

    @staticmethod
    def combine(kinds: list[Inversion]) -> Inversion:
        """The kind of a chain of blocks: the weakest promise among ``kinds``.

        The order, strongest first, is EXACT, LEFT, STE, LOSSY, AUGMENTED, LEARNED.
        An empty chain is EXACT (the identity).
        """
        return max(kinds, key=_STRENGTH.index, default=Inversion.EXACT)


_STRENGTH = [
    Inversion.EXACT,
    Inversion.LEFT,
    Inversion.STE,
    Inversion.LOSSY,
    Inversion.AUGMENTED,
    Inversion.LEARNED,
]


def as_dims(dims: Any) -> Dims:
    """Normalise ``(C, H, W)``, ``[(C, H, W), ...]`` or a ``torch.Size`` to a list of tuples."""
    if dims is None:
        return []
    if isinstance(dims, torch.Size) or (
        isinstance(dims, SequenceABC) and dims and all(isinstance(d, int) for d in dims)
    ):
        return [tuple(int(d) for d in dims)]
    return [tuple(int(d) for d in shape) for shape in dims]


def _jsonable(value: Any, owner: str) -> Any:
    """``value`` with tuples as lists; ``ValueError`` naming ``owner`` if it is not JSON."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v, owner) for k, v in value.items()}
    if isinstance(value, list | tuple | torch.Size):
        return [_jsonable(v, owner) for v in value]
    if isinstance(value, enum.Enum):
        return value.value
    try:
        json.dumps(value)
    except TypeError:
        raise ValueError(
            f"{owner}: constructor argument {value!r} cannot be exported to JSON"
        ) from None
    return value


def _fmt(dims: Dims) -> str:
    return ", ".join(str(tuple(d)) for d in dims) if dims else "()"


class Block(InvertibleModule):
    """Base class of every invblocks node; call-compatible with FrEIA's ``InvertibleModule``.

    ``block([x, ...], c=[...], rev=False, jac=True)`` returns ``((y, ...), log_det)``, where
    ``log_det`` is a ``(B,)`` tensor in the input dtype (zeros where the kind has none) and
    ``rev=True`` runs the inverse, returning ``-log_det``. ``block(x)`` with a bare tensor is
    a notebook convenience that returns the bare output tensor (a tuple for several outputs).

    Subclasses implement the hooks, never :meth:`forward`:

    * ``_forward(xs, c) -> (outputs, log_det | None)`` and ``_inverse(ys, c) -> (...)``,
      where ``xs`` is a tuple of tensors and ``outputs`` a tensor or a tuple of tensors;
    * ``_output_dims(dims)`` and ``_input_dims(dims)``: shape inference in both directions,
      raising :class:`ValueError` (via ``_shape_error``) on shapes the block cannot take.

    The base class checks input counts and shapes before the hooks run and names the block
    in every error.

    Arguments:
        dims_in: Input shapes ``[(C, H, W), ...]`` (FrEIA convention, batch excluded), or
            ``None`` to take them from the first call. A block that was built with
            ``dims_in`` checks the channel counts of what it receives.
        dims_c: Condition shapes (FrEIA convention); invblocks' own blocks take none.
    """

    inversion: Inversion = Inversion.EXACT
    n_inputs: int = 1

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Record each instance's constructor arguments, for :meth:`get_config`."""
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is None:
            return
        signature = inspect.signature(init)

        @functools.wraps(init)
        def recording_init(self: Block, *args: Any, **kw: Any) -> None:
            if "_init_args" not in self.__dict__:  # the outermost constructor records
                bound = signature.bind(self, *args, **kw)
                recorded = {}
                for name, value in list(bound.arguments.items())[1:]:
                    kind = signature.parameters[name].kind
                    if kind is inspect.Parameter.VAR_KEYWORD:
                        recorded.update(value)
                    elif kind is not inspect.Parameter.VAR_POSITIONAL:
                        recorded[name] = value
                    elif value:
                        recorded[name] = list(value)
                object.__setattr__(self, "_init_args", recorded)
            init(self, *args, **kw)

        cls.__init__ = recording_init  # type: ignore[method-assign]

    def __init__(self, dims_in: Any = None, dims_c: Any = None) -> None:
        super().__init__(as_dims(dims_in), as_dims(dims_c))
        if self.dims_in and len(self.dims_in) != self.n_inputs:
            raise ValueError(
                f"{self._name()} takes {self.n_inputs} input(s); "
                f"received dims_in for {len(self.dims_in)}: {_fmt(self.dims_in)}"
            )

    # ------------------------------------------------------------------ hooks
    def _forward(self, xs: tuple[Tensor, ...], c: tuple[Tensor, ...]) -> tuple[Any, Any]:
        raise NotImplementedError(f"{self._name()} does not implement _forward")

    def _inverse(self, ys: tuple[Tensor, ...], c: tuple[Tensor, ...]) -> tuple[Any, Any]:
        raise NotImplementedError(f"{self._name()} does not implement _inverse")

    def _output_dims(self, dims: Dims) -> Dims:
        return [tuple(d) for d in dims]

    def _input_dims(self, dims: Dims) -> Dims:
        return [tuple(d) for d in dims]

    def _forward_aux(
        self, xs: tuple[Tensor, ...], c: tuple[Tensor, ...]
    ) -> tuple[Any, Any, Mapping[str, Tensor]]:
        """The forward pass and the auxiliary outputs :meth:`_aux_dims` declares; override
        both in blocks that have some (the default: :meth:`_forward`, no auxiliary outputs)."""
        outs, log_det = self._forward(xs, c)
        return outs, log_det, {}

    def _aux_dims(self, dims: Dims) -> dict[str, tuple[int, ...]]:
        return {}

    # ------------------------------------------------------------ public API
    def output_dims(self, input_dims: Any) -> Dims:
        """Output shapes for ``input_dims`` (batch excluded); ``ValueError`` if not accepted."""
        dims = as_dims(input_dims)
        self._check_count(dims, self.n_inputs, "input")
        return self._output_dims(dims)

    def input_dims(self, output_dims: Any) -> Dims:
        """Input shapes that produce ``output_dims`` (inverse shape inference)."""
        return self._input_dims(as_dims(output_dims))

    def forward(
        self,
        x_or_z: Tensor | SequenceABC[Tensor],
        c: SequenceABC[Tensor] | None = None,
        rev: bool = False,
        jac: bool = True,
    ) -> Any:
        """Run the block (``rev=False``) or its inverse (``rev=True``). Do not override."""
        bare, xs, cs = self._arguments(x_or_z, c)
        # the shape checks read sizes as integers: a tracer (torch.export, torch.compile)
        # would fix them, and it checks shapes itself
        check = not torch.compiler.is_compiling()
        if rev:
            if check:
                self._input_dims([tuple(x.shape[1:]) for x in xs])
            outs, log_det = self._inverse(xs, cs)
        else:
            if check:
                self._check_forward_shapes(xs)
            outs, log_det = self._forward(xs, cs)
        outs = (outs,) if isinstance(outs, Tensor) else tuple(outs)
        if bare:
            return outs[0] if len(outs) == 1 else outs
        return outs, self._normalise_log_det(log_det, xs[0])

    def forward_with_aux(
        self, xs: SequenceABC[Tensor], c: SequenceABC[Tensor] | None = None
    ) -> tuple[tuple[Tensor, ...], Tensor, dict[str, Tensor]]:
        """The forward pass with the block's auxiliary outputs: ``(outputs, log_det, aux)``.

        ``outputs`` and ``log_det`` are what :meth:`forward` returns; ``aux`` maps the names
        :meth:`aux_dims` declares to tensors ``(B, *shape)``. Containers return their nodes'
        auxiliary outputs keyed by the node's module path (``"nodes.6.augmented"``), so a
        key names the block that produced it. Blocks without auxiliary outputs return
        ``{}``. Auxiliary outputs exist for training losses (WIN's shift constraint); they
        never change the main outputs, which are the same in training and evaluation.
        """
        _, xs_, cs = self._arguments(xs, c)
        self._check_forward_shapes(xs_)
        outs, log_det, aux = self._forward_aux(xs_, cs)
        outs = (outs,) if isinstance(outs, Tensor) else tuple(outs)
        return outs, self._normalise_log_det(log_det, xs_[0]), dict(aux)

    def aux_dims(self, input_dims: Any) -> dict[str, tuple[int, ...]]:
        """The auxiliary outputs :meth:`forward_with_aux` returns for ``input_dims``: shapes
        (batch excluded) by name. Empty for blocks that have none."""
        return self._aux_dims(as_dims(input_dims))

    def constraint_losses(
        self, aux: Mapping[str, Tensor] | None = None, target: Tensor | None = None
    ) -> dict[str, Tensor]:
        """This block's constraint losses (scalars) by name; ``{}`` for most blocks.

        The protocol by which blocks add terms to a training objective: a block lists the
        names it may return, with default weights, in :attr:`constraint_weights`, and
        computes them here from its parameters and, optionally, its own auxiliary outputs
        ``aux`` (the names :meth:`aux_dims` declares, without the module-path prefix) and
        ``target``, what its output should be when that is known (the reference image for
        the block that makes the embedding). Never from state kept by ``forward``.
        :func:`invblocks.ric.losses.constraint_losses` collects them over a network; each name
        becomes a loss term of the same name (WIC: ``gram_det`` and ``shift``).
        """
        return {}

    constraint_weights: ClassVar[Mapping[str, float]] = {}
    """The constraint losses the block may return, with their default weights."""

    # -------------------------------------------------- memory-saving backprop
    def reversible(self, rev: bool) -> bool:
        """Whether this block may join a memory-saving run in direction ``rev``
        (:mod:`invblocks.memory`): its input must be recomputable from its output.

        Forward: EXACT and LEFT blocks (``inverse(forward(x)) == x``); inverse direction:
        EXACT only (a left inverse's output does not determine its input). One tensor in
        and out, and no auxiliary outputs. Override to refuse (a block whose forward is not a
        function of its input and parameters alone)."""
        allowed = (Inversion.EXACT,) if rev else (Inversion.EXACT, Inversion.LEFT)
        if self.inversion not in allowed or self.n_inputs != 1 or len(self.dims_in) > 1:
            return False
        if self.dims_in:
            # a run keeps nothing but its output: a block with auxiliary outputs stays outside
            return len(self.output_dims(self.dims_in)) == 1 and not self.aux_dims(self.dims_in)
        return len(getattr(self, "sections", (None,))) == 1

    def run_members(self, rev: bool) -> list[Block] | None:
        """The blocks this node contributes to a memory-saving run, in chain order, or
        ``None`` when it runs on its own. A plain block joins as itself when
        :meth:`reversible`; containers override this (a chain of reversible blocks joins
        flattened, a graph runs itself)."""
        return [self] if self.reversible(rev) else None

    #: ``True`` for blocks that apply memory saving inside themselves (containers): a
    #: memory-saving run leaves them to it instead of checkpointing them.
    saves_memory_itself: ClassVar[bool] = False

    def backward_from_output(
        self, out: Tensor, grad_out: Tensor, grad_log_det: Tensor, rev: bool
    ) -> tuple[Tensor, Tensor, list[tuple[Tensor, Tensor | None]]] | None:
        """The one-pass backward of a memory-saving run: from the block's output and its
        gradient, ``(input, grad_input, [(parameter, grad), ...])``, or ``None`` (the
        default) for the generic pass: rebuild the input with the inverse, run the block
        again with gradients, take the vector-Jacobian product. The affine coupling
        overrides it to evaluate its subnets once, reusing the values that rebuild its input
        (as reversible residual networks do)."""
        return None

    def inverse(self) -> InverseView:
        """A module that runs this block backwards (shares its parameters)."""
        return InverseView(self)

    def get_config(self) -> dict[str, Any]:
        """``{"type": name, "args": {...}}``: the registered name and constructor arguments.

        Rebuild with :func:`invblocks.registry.block_from_config`; weights travel separately (state
        dict). A ``generator`` argument is dropped (it only seeds the initialisation).
        Raises ``ValueError`` when the class is not registered or an argument is not JSON
        (e.g. a subnet constructor function).
        """
        name = next((k for k, v in BLOCKS.items() if v is type(self)), None)
        if name is None:
            raise ValueError(
                f"{self._name()} is not registered; call invblocks.register_block on its class "
                "to export networks that contain it"
            )
        args = {k: v for k, v in self.__dict__.get("_init_args", {}).items() if k != "generator"}
        args = _jsonable(args, self._name())
        return {"type": name, "args": args}

    # --------------------------------------------------------------- helpers
    def _arguments(
        self, x_or_z: Tensor | SequenceABC[Tensor], c: SequenceABC[Tensor] | None
    ) -> tuple[bool, tuple[Tensor, ...], tuple[Tensor, ...]]:
        """``(bare, inputs, conditions)``; ``TypeError`` naming the block for non-float inputs."""
        bare = isinstance(x_or_z, Tensor)
        xs = (x_or_z,) if bare else tuple(x_or_z)
        for x in xs:
            if not x.is_floating_point():
                raise TypeError(
                    f"{self._name()} expects floating-point tensors (8-bit images: divide by "
                    f"255); received {x.dtype}"
                )
        return bare, xs, tuple(c) if c is not None else ()

    def _check_forward_shapes(self, xs: tuple[Tensor, ...]) -> None:
        shapes = [tuple(x.shape[1:]) for x in xs]
        self._check_count(shapes, self.n_inputs, "input")
        self._output_dims(shapes)

    def _name(self) -> str:
        return type(self).__name__

    def _shape_error(self, expected: str, received: Any) -> ValueError:
        """A ``ValueError`` naming this block, what it expected and what it received."""
        return ValueError(
            f"{self._name()} expects {expected}; received input shape(s) {_fmt(as_dims(received))}"
        )

    def _check_count(self, dims: Dims, n: int, what: str) -> None:
        if len(dims) != n:
            raise ValueError(
                f"{self._name()} takes {n} {what}(s); received {len(dims)}: {_fmt(dims)}"
            )

    def _channels_from_dims(self, channels: int | None, arg: str = "channels") -> int:
        """``channels``, or the channel count of ``dims_in`` if ``None``; they must agree."""
        if channels is None:
            if not self.dims_in:
                raise ValueError(f"{self._name()} needs `{arg}` or `dims_in`")
            channels = self.dims_in[0][0]
        if self.dims_in:
            self._check_channels(self.dims_in, channels)
        return channels

    def _check_channels(self, dims: Dims, channels: int | None, *, spatial: bool = True) -> None:
        """Check one ``(C, H, W)`` input against the channel count the block was built for."""
        self._check_count(dims, 1, "input")
        (shape,) = dims
        if spatial and len(shape) != 3:
            raise self._shape_error("one image tensor of shape (B, C, H, W)", dims)
        if channels is not None and shape[0] != channels:
            raise self._shape_error(f"{channels} channels, shape (B, {channels}, H, W)", dims)

    @staticmethod
    def _normalise_log_det(log_det: Any, like: Tensor) -> Tensor:
        batch = like.shape[0]
        if log_det is None:
            return like.new_zeros(batch)
        if not isinstance(log_det, Tensor):
            return like.new_full((batch,), float(log_det))
        log_det = log_det.to(like.dtype)
        if log_det.dim() == 0:
            return log_det.expand(batch)
        return log_det.reshape(batch)

    def extra_repr(self) -> str:
        return f"inversion={self.inversion.name}"


class InverseView(Block):
    """A block run backwards: ``InverseView(b)(y) == b(y, rev=True)``; parameters shared.

    Its inversion kind is the wrapped block's (an exact block's inverse is exact; for the
    one-sided kinds the roles of forward and inverse swap, which the kind still describes).
    """

    def __init__(self, block: Block) -> None:
        super().__init__()
        self.block = block
        self.inversion = block.inversion
        self.n_inputs = len(block.output_dims(block.dims_in)) if block.dims_in else 1
        if block.dims_in:
            self.dims_in = block.output_dims(block.dims_in)

    def _forward(self, xs: tuple[Tensor, ...], c: tuple[Tensor, ...]) -> tuple[Any, Any]:
        return self.block(xs, c=c, rev=True)

    def _inverse(self, ys: tuple[Tensor, ...], c: tuple[Tensor, ...]) -> tuple[Any, Any]:
        return self.block(ys, c=c, rev=False)

    def _output_dims(self, dims: Dims) -> Dims:
        return self.block.input_dims(dims)

    def _input_dims(self, dims: Dims) -> Dims:
        return self.block.output_dims(dims)

    def _check_count(self, dims: Dims, n: int, what: str) -> None:
        # The wrapped block checks its own output count in its inverse.
        return None

    def inverse(self) -> Block:
        return self.block

    def _name(self) -> str:
        return f"inverse of {self.block._name()}"
