"""Losses of the reference methods, and the constraints blocks contribute on their own.

The reference implementations reduce every loss as a **sum over (C, H, W) and a mean over the
batch** (``reduction="sum"``), so magnitudes scale with the patch area and the published
weights and learning rates are tuned for that. ``reduction="mean"`` gives per-element means.
"""

from __future__ import annotations

from typing import Literal

import attrs
import torch
from torch import Tensor, nn

__all__ = [
    "LossConfig",
    "charbonnier_loss",
    "constraint_losses",
    "frequency_loss",
    "l2_loss",
    "ric_losses",
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
    ``H*W/2`` times :func:`l2_loss` (a re-weighted L2, DC and Nyquist columns counted twice).
    """
    fa = torch.view_as_real(torch.fft.rfft2(a, norm="backward"))
    fb = torch.view_as_real(torch.fft.rfft2(b, norm="backward"))
    return _reduce((fa - fb).square(), reduction)


@attrs.frozen(kw_only=True)
class LossConfig:
    """Weights and kinds of a task's losses (IICNet's defaults).

    ``L = emb * L_emb(e, r) + freq * L_freq(e, r) + res * (1/N) sum_i L_res(x_hat_i, x_i)``
    plus, for networks with WICs, ``det * sum gram_det + shift * shift_loss``.
    """

    emb: float = attrs.field(default=1.0, validator=attrs.validators.ge(0))
    freq: float = attrs.field(default=0.001, validator=attrs.validators.ge(0))
    res: float = attrs.field(default=3.0, validator=attrs.validators.ge(0))
    emb_kind: Literal["l2", "charbonnier"] = attrs.field(
        default="l2", validator=attrs.validators.in_(("l2", "charbonnier"))
    )
    det: float = attrs.field(default=0.1, validator=attrs.validators.ge(0))
    shift: float = attrs.field(default=1.0, validator=attrs.validators.ge(0))
    reduction: Reduction = attrs.field(
        default="sum", validator=attrs.validators.in_(("sum", "mean"))
    )


def ric_losses(
    config: LossConfig,
    *,
    embedding: Tensor,
    reference: Tensor,
    restored: Tensor,
    original: Tensor,
    n_images: int,
    net: nn.Module | None = None,
) -> dict[str, Tensor]:
    """The weighted loss terms of one step and their sum under ``"total"``.

    ``embedding``: the pre-quantisation embedding ``(B, c_e, h, w)`` (IICNet's embedding loss
    uses it, not the quantised image); ``reference``: the target it must resemble (detached
    here); ``restored`` / ``original``: ``(B, N*c, H, W)``. With ``net``, the weight-only
    constraints of its blocks are added (:func:`constraint_losses`, weight ``config.det``).
    """
    r = reference.detach()
    emb = (l2_loss if config.emb_kind == "l2" else charbonnier_loss)(
        embedding, r, reduction=config.reduction
    )
    terms = {"embedding": config.emb * emb}
    if config.freq:
        terms["frequency"] = config.freq * frequency_loss(embedding, r, reduction=config.reduction)
    terms["restoration"] = (
        config.res * charbonnier_loss(restored, original, reduction=config.reduction) / n_images
    )
    if net is not None and config.det:
        constraints = constraint_losses(net)
        if constraints:
            terms["gram_det"] = config.det * torch.stack(list(constraints.values())).sum()
    terms["total"] = torch.stack(list(terms.values())).sum()
    return terms


def constraint_losses(net: nn.Module) -> dict[str, Tensor]:
    """Every weight-only constraint of the blocks in ``net``, keyed by module path and name.

    A block contributes by defining ``constraint_losses() -> dict[str, Tensor]``, computed
    from its parameters alone (never from state kept by ``forward``), e.g. the WIC's
    Gram-determinant term. Works on any module tree: Sequences, Graphs, plain ``nn.Module`` trees.

    Example:
        >>> from invblocks import presets
        >>> sorted(constraint_losses(presets.win_naive(6, 3, blocks=1)))
        ['nodes.3.gram_det']
    """
    losses: dict[str, Tensor] = {}
    for path, module in net.named_modules():
        method = getattr(type(module), "constraint_losses", None)
        if callable(method):
            for key, value in module.constraint_losses().items():
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
