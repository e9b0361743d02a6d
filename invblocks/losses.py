"""Losses that blocks contribute on their own, collected from any network."""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["constraint_losses", "total_constraint_loss"]


def constraint_losses(net: nn.Module) -> dict[str, Tensor]:
    """Every weight-only constraint of the blocks in ``net``, keyed ``"<module path>.<name>"``.

    A block contributes by defining ``constraint_losses() -> dict[str, Tensor]``, computed
    from its parameters alone (never from state kept by ``forward``), e.g. the WIC's
    Gram-determinant term. Works on any module tree: Sequences, Graphs, plain ``nn.Module``s.

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
    total = torch.zeros(())
    for key, value in constraint_losses(net).items():
        total = total + weights.get(key.rsplit(".", 1)[-1], 1.0) * value
    return total
