"""Parameter groups: parameters trained by their own optimiser, on their own loss terms."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from typing import Literal

import attrs
from attrs import validators as v
from torch import nn

__all__ = ["ParamGroup", "split_parameters"]


def _patterns(value: str | Iterable[str]) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)


@attrs.frozen(kw_only=True)
class ParamGroup:
    """Parameters with their own optimiser and schedule, minimising their own loss terms: an
    entropy model's auxiliary optimiser (the quantiles of its bottleneck), a discriminator.

    The trainer's main optimiser takes every parameter no group claims and minimises the
    loss terms no group claims (``total`` in the log); each group's optimiser takes the
    parameters its ``params`` patterns match and minimises the sum of its ``terms``
    (``total_<name>``), each through its own backward pass, so a group's terms move only its
    parameters. Its state is saved in every checkpoint and resumed bit for bit.

    A channel declares its groups (:meth:`invblocks.ric.channel.Channel.param_groups`, patterns
    relative to the channel), a task its own (``Task.param_groups``, patterns relative to
    the network, e.g. ``"channel.density.*"``).

    Arguments:
        name: The group's name: lower case, digits and ``_``; not ``"main"``.
        params: Parameter names (``fnmatch`` patterns over ``named_parameters``).
        terms: The loss terms it minimises, by name (weighted as every term is).
        optimizer: ``"adam"``, ``"adamw"`` or ``"sgd"``.
        lr: Its learning rate.
        schedule: ``"constant"``, or ``"main"``: the main schedule's shape (its decay and
            warm-up) scaled to ``lr``.
        weight_decay: The optimiser's weight decay.
        grad_clip: Its gradient-norm clip (``None``: none).

    Example:
        >>> aux = ParamGroup(name="aux", params="channel.*quantiles", terms=("quantiles",))
        >>> aux.optimizer, aux.lr
        ('adam', 0.001)
    """

    name: str = attrs.field(validator=v.matches_re(r"^(?!main$)[a-z][a-z0-9_]*$"))
    params: tuple[str, ...] = attrs.field(converter=_patterns)
    terms: tuple[str, ...] = attrs.field(converter=_patterns)
    optimizer: Literal["adam", "adamw", "sgd"] = attrs.field(
        default="adam", validator=v.in_(("adam", "adamw", "sgd"))
    )
    lr: float = attrs.field(default=1e-3, validator=v.gt(0))
    schedule: Literal["constant", "main"] = attrs.field(
        default="constant", validator=v.in_(("constant", "main"))
    )
    weight_decay: float = attrs.field(default=0.0, validator=v.ge(0))
    grad_clip: float | None = attrs.field(default=None, validator=v.optional(v.gt(0)))

    def prefixed(self, prefix: str) -> ParamGroup:
        """The same group with its patterns under the module path ``prefix``
        (``"channel"``)."""
        return attrs.evolve(self, params=tuple(f"{prefix}.{p}" for p in self.params))


def split_parameters(
    net: nn.Module, groups: Iterable[ParamGroup]
) -> tuple[list[nn.Parameter], dict[str, list[nn.Parameter]]]:
    """``(main, {group name: parameters})``: the trainable parameters of ``net`` each group's
    patterns match, and the rest.

    Raises:
        ValueError: for two groups of one name, a group that matches no parameter, or a
            parameter two groups match.
    """
    groups = list(groups)
    names = [g.name for g in groups]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"parameter groups declared twice: {', '.join(twice)}")
    owner: dict[str, str] = {}
    found: dict[str, list[nn.Parameter]] = {g.name: [] for g in groups}
    main: list[nn.Parameter] = []
    for pname, param in net.named_parameters():
        if not param.requires_grad:
            continue
        hits = [g for g in groups if any(fnmatch.fnmatchcase(pname, p) for p in g.params)]
        if len(hits) > 1:
            raise ValueError(
                f"parameter {pname!r} is in the groups {', '.join(g.name for g in hits)}; "
                "a parameter belongs to one optimiser"
            )
        if hits:
            owner[pname] = hits[0].name
            found[hits[0].name].append(param)
        else:
            main.append(param)
    empty = [g for g in groups if not found[g.name]]
    if empty:
        g = empty[0]
        raise ValueError(
            f"parameter group {g.name!r} matches no trainable parameter "
            f"(patterns {', '.join(g.params)})"
        )
    return main, found


def group_of_terms(groups: Iterable[ParamGroup]) -> Mapping[str, str]:
    """Each claimed loss term's group name; ``ValueError`` for a term two groups claim."""
    claimed: dict[str, str] = {}
    for g in groups:
        for term in g.terms:
            if term in claimed:
                raise ValueError(
                    f"loss term {term!r} is minimised by the groups {claimed[term]!r} and "
                    f"{g.name!r}; a term belongs to one optimiser"
                )
            claimed[term] = g.name
    return claimed
