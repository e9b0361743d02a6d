"""Autograd helpers the blocks and the memory-saving runs share."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["vjp"]


def vjp(
    outputs: tuple[Tensor, ...], inputs: tuple[Tensor, ...], grads: tuple[Tensor, ...]
) -> list[Tensor | None]:
    """``torch.autograd.grad`` that skips outputs without a graph; a gradient that does not
    exist (an input the outputs do not depend on) comes back as ``None``."""
    pairs = [(o, g) for o, g in zip(outputs, grads, strict=True) if o.requires_grad]
    found: list[Tensor | None] = [None] * len(inputs)
    if pairs:
        found = list(
            torch.autograd.grad(
                [o for o, _ in pairs], inputs, [g for _, g in pairs], allow_unused=True
            )
        )
    return found
