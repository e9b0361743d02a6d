"""Memory-saving backpropagation through runs of invertible blocks.

A run of blocks executes under ``torch.no_grad`` and keeps only its output. In the backward
pass each block's input is recomputed from its output with the block's inverse, the block is
run again with gradients enabled, and its vector-Jacobian product is taken, from the last
block to the first. Activation memory then no longer grows with the run's depth.

Two hooks of the block contract drive it: :meth:`~invblocks.block.Block.run_members` (which
blocks join a run: a reversible block itself, a chain of them flattened; containers decide
for themselves) and :meth:`~invblocks.block.Block.backward_from_output` (a block's one-pass
backward: the affine coupling evaluates each subnet once, reusing the values that rebuild
its input, where the generic path evaluates them twice). This module holds the run
itself; the containers plan which nodes form runs from those hooks.

Pitfalls: a block whose forward is not a function of its input and parameters alone (dropout,
batch statistics in training mode, random noise) recomputes something else; double backward
is not supported; and the recomputed inputs carry the round-trip error of the inverses, so
gradients drift slightly from plain autograd (float64: ~1e-12 relative; float32: see the docs).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from .autograd import vjp
from .block import Block

__all__ = ["invertible_run", "reversible", "run_members", "vjp"]


def reversible(block: Block, rev: bool) -> bool:
    """Whether ``block`` may join a memory-saving run in direction ``rev``
    (:meth:`invblocks.block.Block.reversible`)."""
    return block.reversible(rev)


def run_members(node: Block, rev: bool) -> list[Block] | None:
    """The blocks ``node`` contributes to a memory-saving run (chain order), or ``None``
    (:meth:`invblocks.block.Block.run_members`)."""
    return node.run_members(rev)


def _generic_backward(
    block: Block, y: Tensor, grad_y: Tensor, grad_log_det: Tensor, rev: bool
) -> tuple[Tensor, Tensor, list[tuple[Tensor, Tensor | None]]]:
    """Rebuild the input with the inverse, re-run the block with gradients, take the VJP."""
    with torch.no_grad():
        (x,), _ = block([y], rev=not rev)
    params = [p for p in block.parameters() if p.requires_grad]
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        (out,), ld = block([x], rev=rev)
        found = vjp((out, ld), (x, *params), (grad_y, grad_log_det))
    grad_x = found[0] if found[0] is not None else torch.zeros_like(x)
    return x.detach(), grad_x, list(zip(params, found[1:], strict=True))


class _Run(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any, blocks: tuple[Block, ...], rev: bool, fused: bool, x: Tensor, *params: Tensor
    ) -> Any:
        ctx.blocks, ctx.rev, ctx.fused = blocks, rev, fused
        ctx.param_ids = [id(p) for p in params]
        log_det = x.new_zeros(x.shape[0])
        with torch.no_grad():
            for block in blocks:
                (x,), ld = block([x], rev=rev)
                log_det = log_det + ld
        ctx.save_for_backward(x)
        return x, log_det

    @staticmethod
    def backward(ctx: Any, grad_y: Tensor, grad_log_det: Tensor) -> Any:
        (y,) = ctx.saved_tensors
        grads: dict[int, Tensor] = {}
        for block in reversed(ctx.blocks):
            one_pass = (
                block.backward_from_output(y, grad_y, grad_log_det, ctx.rev) if ctx.fused else None
            )
            if one_pass is not None:
                x, grad_y, found = one_pass
            else:
                x, grad_y, found = _generic_backward(block, y, grad_y, grad_log_det, ctx.rev)
            for p, g in found:
                if g is not None:
                    grads[id(p)] = grads[id(p)] + g if id(p) in grads else g
            y = x
        param_grads = [grads.get(i) for i in ctx.param_ids]
        return (None, None, None, grad_y, *param_grads)


def invertible_run(
    blocks: Iterable[Block], x: Tensor, rev: bool = False, *, fused: bool = True
) -> tuple[Tensor, Tensor]:
    """Run ``blocks`` on ``x`` (in reverse order when ``rev``) with memory-saving backprop.

    Returns ``(y, log_det)``; equal to running the blocks one by one, but only ``y`` is kept
    for the backward pass. Every block must satisfy :func:`reversible`. ``fused=False``
    takes the generic backward (inverse, then forward with gradients) for every block, also
    for blocks that define a fused one.
    """
    blocks = tuple(blocks)
    if rev:
        blocks = tuple(reversed(blocks))
    bad = [b._name() for b in blocks if not reversible(b, rev)]
    if bad:
        raise ValueError(
            f"memory-saving run needs EXACT (or, forward, LEFT) blocks; received {bad}"
        )
    params: list[Tensor] = []
    seen: set[int] = set()
    for block in blocks:
        for p in block.parameters():
            if p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                params.append(p)
    return _Run.apply(blocks, rev, fused, x, *params)
