"""One RIC training step: forward, quantise, inverse, the task's losses.

Works with any network whose forward maps the stacked inputs to the embedding: when its
last node is a :class:`~invblocks.blocks.quantize.Quantizer`, the embedding loss sees the
pre-quantisation embedding (as IICNet computes it) and the inverse starts from the
quantised one; when its last dimension-reducing node is a WIC that returns extra channels
in training (WIN), the first ``embed_channels`` are the embedding and the rest feed the
shift constraint.

A network compiled with :func:`torch.compile` works the same: the step splits the compiled
module's original network and runs its body (all but the quantiser) compiled with the same
settings, built once per network.
"""

from __future__ import annotations

from typing import cast

import torch
from torch import Tensor, nn

from .blocks import WIC, Quantizer
from .graph import Sequence
from .losses import ric_losses
from .task import Task

__all__ = ["embedding_forward", "ric_step"]


def _split_quantizer(net: nn.Module) -> tuple[nn.Module, Quantizer | None]:
    """``(body, quantizer)`` of a :class:`Sequence` ending in a quantiser (``(net, None)``
    otherwise). The body shares the network's nodes; it is built once and kept on the
    network (rebuilt when the nodes or the memory-saving switch change). For a
    ``torch.compile``-d network the body is compiled with the network's settings."""
    original = getattr(net, "_orig_mod", None)  # what torch.compile wrapped
    seq = original if original is not None else net
    if not (isinstance(seq, Sequence) and len(seq) and isinstance(seq[len(seq) - 1], Quantizer)):
        return net, None
    nodes = list(seq)[:-1]
    cached = net.__dict__.get("_invblocks_body")
    if (
        cached is None
        or cached[1] != seq.memory_saving
        or len(cached[0]) != len(nodes)
        or any(a is not b for a, b in zip(cached[0], nodes, strict=True))
    ):
        body = seq[: len(seq) - 1]
        if original is not None:
            body = _compile_like(net, body)
        cached = (nodes, seq.memory_saving, body)
        net.__dict__["_invblocks_body"] = cached  # a plain attribute: not a submodule
    return cached[2], seq[len(seq) - 1]


def _compile_like(compiled: nn.Module, module: nn.Module) -> nn.Module:
    """``module`` compiled with the settings ``compiled`` was compiled with."""
    context = getattr(compiled, "dynamo_ctx", None)
    if context is not None:
        try:
            return type(compiled)(module, context)
        except TypeError:  # another torch's constructor: fall back to the default settings
            pass
    return cast(nn.Module, torch.compile(module))


def embedding_forward(
    net: nn.Module, x: Tensor, embed_channels: int
) -> tuple[Tensor, Tensor, Tensor]:
    """``(e, q, v)``: the pre-quantisation embedding, the quantised one and the raw output
    (with any extra training channels of a reducing WIC)."""
    body, quantizer = _split_quantizer(net)
    (v,), _ = body([x])
    e = v[:, :embed_channels]
    q = quantizer([e])[0][0] if quantizer is not None else e
    return e, q, v


def ric_step(
    task: Task, net: nn.Module, x: Tensor, n_inputs: int | None = None
) -> dict[str, Tensor]:
    """The loss terms of one training step on the stacked batch ``x`` (``"total"`` included).

    ``x``: ``(B, n*C, H, W)`` in slot order. The network runs forward (training mode as set
    by the caller), the inverse runs from the quantised embedding, and the losses follow
    ``task.losses``; WIC constraints are added for networks that have WICs.
    """
    n = n_inputs or x.shape[1] // task.image_channels
    e, q, v = embedding_forward(net, x, task.embed_channels)
    (restored,), _ = net([q], rev=True)
    reference = task.reference(x, n)
    if e.shape != reference.shape:
        raise ValueError(
            f"task {task.name!r}: the network's embedding {tuple(e.shape)} does not match the "
            f"reference {tuple(reference.shape)}"
        )
    terms = ric_losses(
        task.losses,
        embedding=e,
        reference=reference,
        restored=restored,
        original=x,
        n_images=n,
        net=net,
    )
    if v.shape[1] > task.embed_channels and task.losses.shift:
        wic = [m for m in net.modules() if isinstance(m, WIC) and m.k > 1]
        if wic:
            shift = task.losses.shift * wic[-1].shift_loss(v, reference)
            terms["shift"] = shift
            terms["total"] = terms["total"] + shift
    if task.extra_losses is not None:
        for name, term in task.extra_losses(x, e, restored, reference).items():
            terms[name] = term
            terms["total"] = terms["total"] + term
    if not all(bool(torch.isfinite(t).all()) for t in terms.values()):
        bad = [k for k, t in terms.items() if not bool(torch.isfinite(t).all())]
        raise FloatingPointError(f"task {task.name!r}: non-finite loss terms {bad}")
    return terms
