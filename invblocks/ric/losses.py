"""Losses of the reference methods as named terms, and the constraints blocks contribute.

A training objective is a set of **loss terms**, each a named function of one step's
:class:`~invblocks.ric.network.RICResult` and its :class:`RICBatch` returning a scalar, and one
mapping of weights by term name (:class:`LossConfig`). The step logs every weighted term
under its name and their sum as ``"total"``. Built-in terms (:data:`LOSS_TERMS`):

========================== ===========================================================
``embedding``              L2 of the pre-channel embedding against the reference
``embedding_charbonnier``  the same with Charbonnier (WIN's hiding); weight 0 by default
``frequency``              IICNet's FFT loss of the embedding against the reference
``restoration``            Charbonnier of the restored inputs, divided by their number
``restoration_l2``         the same with L2 (what PSNR measures); weight 0 by default
``gram_det``, ``shift``    the WIC constraints, summed over the network's blocks
========================== ===========================================================

Any constraint name a block declares (:attr:`~invblocks.block.Block.constraint_weights`) is a
term of that name; tasks add their own (``Task.loss_terms``) and plugins
register more (:func:`register_loss_term`, or the ``invblocks_register_loss_terms`` hook).

The reference implementations reduce every loss as a **sum over (C, H, W) and a mean over the
batch** (``reduction="sum"``), so magnitudes scale with the patch area and the published
weights and learning rates are tuned for that. ``reduction="mean"`` gives per-element means.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

import attrs
import torch
from torch import Tensor, nn

from ..block import Block
from ..registry import NamedRegistry

if TYPE_CHECKING:
    from .network import RICResult

__all__ = [
    "DEFAULT_WEIGHTS",
    "LOSS_TERMS",
    "LossConfig",
    "LossTerm",
    "Objective",
    "RICBatch",
    "charbonnier_loss",
    "constraint_losses",
    "constraint_term",
    "frequency_loss",
    "l2_loss",
    "loss_term",
    "register_loss_term",
    "total_constraint_loss",
]

Reduction = Literal["sum", "mean"]


def _reduce(per_element: Tensor, reduction: Reduction) -> Tensor:
    if reduction == "sum":
        return per_element.flatten(1).sum(dim=1).mean()
    if reduction == "mean":
        return per_element.mean()
    raise ValueError(f"reduction must be 'sum' or 'mean'; received {reduction!r}")


def l2_loss(a: Tensor, b: Tensor, reduction: Reduction = "sum") -> Tensor:
    """Squared error; ``"sum"``: summed over all but the batch dimension, mean over the batch."""
    return _reduce((a - b).square(), reduction)


def charbonnier_loss(
    a: Tensor, b: Tensor, eps: float = 1e-6, reduction: Reduction = "sum"
) -> Tensor:
    """``sqrt((a - b)^2 + eps)`` (IICNet's and WIN's "L1"), reduced like :func:`l2_loss`."""
    return _reduce(torch.sqrt((a - b).square() + eps), reduction)


def frequency_loss(a: Tensor, b: Tensor, reduction: Reduction = "sum") -> Tensor:
    """IICNet's frequency loss: squared error of the unnormalised one-sided 2-D real FFTs.

    ``view_as_real(rfft2(., norm="backward"))`` per channel, the modern equivalent of the
    reference's ``torch.rfft(..., normalized=False, onesided=True)``. By Parseval it is about
    ``H*W/2`` times :func:`l2_loss` (a re-weighted L2, DC and Nyquist columns counted twice:
    exactly ``H*W/2`` times for an even-width difference whose DC and Nyquist columns are
    zero).
    """
    fa = torch.view_as_real(torch.fft.rfft2(a, norm="backward"))
    fb = torch.view_as_real(torch.fft.rfft2(b, norm="backward"))
    return _reduce((fa - fb).square(), reduction)


@attrs.frozen(kw_only=True)
class RICBatch:
    """What a loss term knows about the batch of one step.

    Arguments:
        inputs: The stacked inputs ``(B, N*C, H, W)``, slots in task order.
        reference: What the embedding must resemble ``(B, c_e, h, w)``, detached; ``None``
            for a task without a reference (a codec's latent resembles nothing): the terms
            that compare the embedding with it do not apply.
        n_images: ``N``, the images per sample.
        reduction: ``"sum"`` (over ``(C, H, W)``, mean over the batch: the papers') or
            ``"mean"`` (per element).
    """

    inputs: Tensor
    reference: Tensor | None = attrs.field(converter=lambda t: None if t is None else t.detach())
    n_images: int
    reduction: Reduction = "sum"


TermFn = Callable[["RICResult", RICBatch], "Tensor | None"]
"""``f(result, batch) -> scalar``, or ``None`` where the term does not apply (e.g. a WIC
constraint in a network without WICs): it is then left out of the step's terms."""


@attrs.frozen
class LossTerm:
    """A named loss term: ``term(result, batch)`` is its unweighted value (a scalar tensor)
    or ``None`` where it does not apply.

    Arguments:
        name: The name the weights, the logs and the report use (lower case, digits, ``_``).
        fn: ``f(result, batch) -> Tensor | None``.
        description: One line for listings and errors.
    """

    name: str = attrs.field(validator=attrs.validators.matches_re(r"^[a-z][a-z0-9_]*$"))
    fn: TermFn
    description: str = ""

    def __call__(self, result: RICResult, batch: RICBatch) -> Tensor | None:
        return self.fn(result, batch)


def loss_term(name: str, description: str = "") -> Callable[[TermFn], LossTerm]:
    """Decorator: ``@loss_term("rendered")`` turns ``f(result, batch)`` into a
    :class:`LossTerm` of that name.

    Example:
        >>> @loss_term("embedding_l1", "L1 of the embedding against the reference")
        ... def embedding_l1(result, batch):
        ...     return (result.embedding - batch.reference).abs().mean()
        >>> embedding_l1.name
        'embedding_l1'
    """

    def wrap(fn: TermFn) -> LossTerm:
        return LossTerm(name, fn, description or (fn.__doc__ or "").strip().split("\n")[0])

    return wrap


def _check_term(term: Any) -> None:
    if not isinstance(term, LossTerm):
        raise TypeError(f"{term!r} is not an invblocks LossTerm (@invblocks.ric.loss_term)")


LOSS_TERMS: NamedRegistry[LossTerm] = NamedRegistry("loss term", check=_check_term)
"""Registered loss terms by name, the built-ins and those plugins register."""


def register_loss_term(term: LossTerm, *, owner: str = "invblocks") -> LossTerm:
    """Register ``term`` under its name for every task; ``ValueError`` naming both owners
    when another term already has the name."""
    try:
        return LOSS_TERMS.register(term, getattr(term, "name", None), owner=owner)
    except TypeError as err:
        raise TypeError(f"{owner} registered {term!r}: {err}") from None


def constraint_term(name: str) -> LossTerm:
    """The term that sums the blocks' constraint losses called ``name`` over the network
    (``None`` when no block contributes one)."""

    def total(result: RICResult, batch: RICBatch) -> Tensor | None:
        found = [v for k, v in result.constraints.items() if k.rsplit(".", 1)[-1] == name]
        return torch.stack(found).sum() if found else None

    return LossTerm(name, total, f"the blocks' {name!r} constraints, summed")


def _embedding(result: RICResult, batch: RICBatch) -> Tensor | None:
    if batch.reference is None:
        return None
    return l2_loss(result.embedding, batch.reference, reduction=batch.reduction)


def _embedding_charbonnier(result: RICResult, batch: RICBatch) -> Tensor | None:
    if batch.reference is None:
        return None
    return charbonnier_loss(result.embedding, batch.reference, reduction=batch.reduction)


def _frequency(result: RICResult, batch: RICBatch) -> Tensor | None:
    if batch.reference is None:
        return None
    return frequency_loss(result.embedding, batch.reference, reduction=batch.reduction)


def _restoration(result: RICResult, batch: RICBatch) -> Tensor:
    value = charbonnier_loss(result.restored, batch.inputs, reduction=batch.reduction)
    return value / batch.n_images


def _restoration_l2(result: RICResult, batch: RICBatch) -> Tensor:
    return l2_loss(result.restored, batch.inputs, reduction=batch.reduction) / batch.n_images


for _term in (
    LossTerm("embedding", _embedding, "L2 of the pre-channel embedding against the reference"),
    LossTerm(
        "embedding_charbonnier",
        _embedding_charbonnier,
        "Charbonnier of the pre-channel embedding against the reference",
    ),
    LossTerm("frequency", _frequency, "IICNet's FFT loss of the embedding"),
    LossTerm("restoration", _restoration, "Charbonnier of the restored inputs, per input"),
    LossTerm("restoration_l2", _restoration_l2, "L2 of the restored inputs, per input"),
    constraint_term("gram_det"),
    constraint_term("shift"),
):
    register_loss_term(_term)

DEFAULT_WEIGHTS: Mapping[str, float] = MappingProxyType(
    {"embedding": 1.0, "frequency": 0.001, "restoration": 3.0, "gram_det": 0.1, "shift": 1.0}
)
"""IICNet's weights (embedding 1, frequency 0.001, restoration 3) and WIN's constraint weights
(Gram determinant 0.1, shift 1)."""

_ALIASES = {"emb": "embedding", "freq": "frequency", "res": "restoration", "det": "gram_det"}
_OPTIONS = ("reduction",)


def _weight(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"losses.{name}: expected a number >= 0; received {value!r}")
    if value < 0:
        raise ValueError(f"losses.{name}: expected a number >= 0; received {value!r}")
    return float(value)


class LossConfig:
    """The weights of a task's loss terms by name, and their reduction.

    ``LossConfig()`` holds :data:`DEFAULT_WEIGHTS`; named weights and a ``weights`` mapping
    replace them (``LossConfig(restoration=0.4)``, ``LossConfig({"frequency": 0.0})``). A
    weight of 0 switches a term off: it is neither computed nor logged. Which names exist is
    checked when the objective is built (:meth:`Objective.build`), against the registered
    terms, the task's own and the network's constraints.

    The names of invblocks 0.1 are read too: ``emb``, ``freq``, ``res``, ``det``, and
    ``emb_kind="charbonnier"`` (which moves the embedding weight to
    ``embedding_charbonnier``).

    Example:
        >>> LossConfig(restoration=0.4).weights["restoration"]
        0.4
        >>> LossConfig(emb=2.0, emb_kind="charbonnier").weights["embedding_charbonnier"]
        2.0
    """

    def __init__(
        self,
        weights: Mapping[str, Any] | None = None,
        *,
        reduction: Reduction = "sum",
        **named: Any,
    ) -> None:
        if reduction not in ("sum", "mean"):
            raise ValueError(f"losses.reduction must be 'sum' or 'mean'; received {reduction!r}")
        merged = dict(DEFAULT_WEIGHTS)
        kind = None
        for name, value in {**(weights or {}), **named}.items():
            if name == "emb_kind":
                kind = value
                continue
            name = _ALIASES.get(name, name)
            merged[name] = _weight(name, value)
        if kind is not None:
            if kind not in ("l2", "charbonnier"):
                raise ValueError(
                    f"losses.emb_kind must be 'l2' or 'charbonnier'; received {kind!r}"
                )
            if kind == "charbonnier":
                merged["embedding_charbonnier"] = merged["embedding"]
                merged["embedding"] = 0.0
        self._weights = MappingProxyType(merged)
        self.reduction: Reduction = reduction

    @property
    def weights(self) -> Mapping[str, float]:
        """Weight by term name (read-only)."""
        return self._weights

    def updated(self, overrides: Mapping[str, Any]) -> LossConfig:
        """A copy with ``overrides`` applied: weights by name, and ``reduction``."""
        overrides = dict(overrides)
        reduction = overrides.pop("reduction", self.reduction)
        return LossConfig({**self.weights, **overrides}, reduction=reduction)

    def to_dict(self) -> dict[str, Any]:
        """The weights and the reduction as one JSON-ready table."""
        return {**self.weights, "reduction": self.reduction}

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LossConfig):
            return NotImplemented
        return dict(self.weights) == dict(other.weights) and self.reduction == other.reduction

    def __hash__(self) -> int:
        return hash((tuple(sorted(self.weights.items())), self.reduction))

    def __repr__(self) -> str:
        on = ", ".join(f"{k}={v:g}" for k, v in self.weights.items() if v)
        return f"LossConfig({on}, reduction={self.reduction!r})"


class Objective:
    """A training objective: loss terms and their weights, built once per run.

    ``objective(result, batch)`` returns every weighted term that applies under its name,
    and their sum under ``"total"``, in the order of the weights. Terms that a parameter
    group minimises (``groups``: term name -> group name, see
    :class:`~invblocks.ric.groups.ParamGroup`) are summed under ``"total_<group>"`` instead.
    """

    def __init__(
        self,
        weights: Mapping[str, float],
        terms: Mapping[str, LossTerm],
        reduction: Reduction,
        groups: Mapping[str, str] | None = None,
    ) -> None:
        missing = sorted(set(weights) - set(terms))
        if missing:
            raise ValueError(f"no loss term for the weights {missing}")
        self.weights = dict(weights)
        self.terms = {name: terms[name] for name in self.weights}
        self.reduction: Reduction = reduction
        self.groups = dict(groups or {})
        unknown = sorted(set(self.groups) - set(self.terms))
        if unknown:
            raise ValueError(
                f"parameter groups minimise {unknown}, which are no loss terms of this run; "
                f"known: {', '.join(sorted(self.terms))}"
            )

    @classmethod
    def build(
        cls,
        config: LossConfig,
        *,
        task_terms: Iterable[LossTerm] = (),
        network: nn.Module | None = None,
        overrides: Mapping[str, Any] | None = None,
        groups: Mapping[str, str] | None = None,
    ) -> Objective:
        """The objective of ``config`` (with ``overrides``: ``--set losses.<name>=<weight>``),
        over the registered terms, ``task_terms`` and the constraints the blocks of
        ``network`` declare (each at its block's default weight unless weighted here);
        ``groups`` maps the terms parameter groups minimise to the groups.

        Raises ``ValueError`` for a weight whose name is no term, listing the known ones.
        """
        overrides = dict(overrides or {})
        terms = {**LOSS_TERMS, **{t.name: t for t in task_terms}}
        declared: dict[str, float] = {}
        for module in network.modules() if network is not None else ():
            if isinstance(module, Block):
                for name, weight in type(module).constraint_weights.items():
                    declared.setdefault(name, weight)
        for name in declared:
            terms.setdefault(name, constraint_term(name))
        given = {_ALIASES.get(k, k) for k in overrides} - {"emb_kind", *_OPTIONS}
        unknown = sorted(given - set(terms))
        if unknown:
            raise ValueError(
                f"unknown loss term(s) {unknown}; known: {', '.join(sorted(terms))} "
                f"(and the option {', '.join(_OPTIONS)})"
            )
        config = config.updated(overrides) if overrides else config
        weights = {
            **config.weights,
            **{k: w for k, w in declared.items() if k not in config.weights},
        }
        return cls(
            {k: w for k, w in weights.items() if k in terms}, terms, config.reduction, groups
        )

    def __call__(self, result: RICResult, batch: RICBatch) -> dict[str, Tensor]:
        out: dict[str, Tensor] = {}
        totals: dict[str, list[Tensor]] = {}
        for name, weight in self.weights.items():
            if not weight:
                continue
            value = self.terms[name](result, batch)
            if value is not None:
                out[name] = weight * value
                totals.setdefault(self.groups.get(name, ""), []).append(out[name])
        if "" not in totals:
            raise ValueError(f"no loss term applies: weights {self.weights}")
        for group, values in totals.items():
            out[f"total_{group}" if group else "total"] = torch.stack(values).sum()
        return out

    def __repr__(self) -> str:
        on = ", ".join(f"{k}={v:g}" for k, v in self.weights.items() if v)
        return f"Objective({on}, reduction={self.reduction!r})"


def constraint_losses(
    net: nn.Module, aux: Mapping[str, Tensor] | None = None, target: Tensor | None = None
) -> dict[str, Tensor]:
    """Every constraint loss of the blocks in ``net``, keyed ``"<module path>.<name>"``.

    Each block's :meth:`~invblocks.block.Block.constraint_losses` receives its own entries
    of ``aux`` (auxiliary outputs keyed by module path, as
    :meth:`~invblocks.block.Block.forward_with_aux` returns them from ``net``) and
    ``target``. Without them, the weight-only constraints (WIC's Gram determinant). Works on
    any module tree: RIC networks, Sequences, Graphs, plain ``nn.Module`` trees.

    Example:
        >>> from invblocks import presets
        >>> sorted(constraint_losses(presets.win_naive(6, 3, blocks=1)))
        ['body.nodes.3.gram_det']
    """
    aux = aux or {}
    by_block: dict[str, dict[str, Tensor]] = {}
    for key, value in aux.items():
        path, _, name = key.rpartition(".")
        by_block.setdefault(path, {})[name] = value
    losses: dict[str, Tensor] = {}
    for path, module in net.named_modules():
        if isinstance(module, Block):
            found = module.constraint_losses(by_block.get(path, {}), target)
            for key, value in found.items():
                losses[f"{path}.{key}" if path else key] = value
    return losses


def total_constraint_loss(net: nn.Module, weights: dict[str, float] | None = None) -> Tensor:
    """The weighted sum of :func:`constraint_losses`; ``weights`` by loss name (default 1)."""
    weights = weights or {}
    first = next(net.parameters(), None)
    total = torch.zeros((), device=first.device if first is not None else None)
    for key, value in constraint_losses(net).items():
        total = total + weights.get(key.rsplit(".", 1)[-1], 1.0) * value
    return total
