"""One RIC training step: the network's round trip, the task's reference, the objective.

``ric_step(task, net, x)`` runs :meth:`~invblocks.ric.network.RICNet.round_trip` (body, channel,
inverse) on the stacked batch, takes the task's reference (computed from the batch, or given
with it for paired data), and returns the weighted loss terms of the objective
(:meth:`~invblocks.ric.task.Task.objective`) by name, with their sum under ``"total"`` (and each
parameter group's under ``"total_<group>"``). A network compiled with
:meth:`~invblocks.ric.network.RICNet.compile_body` trains through the same step.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .losses import Objective, RICBatch
from .network import RICNet
from .task import Task

__all__ = ["ric_step"]


def ric_step(
    task: Task,
    net: RICNet,
    x: Tensor,
    n_inputs: int | None = None,
    *,
    objective: Objective | None = None,
    reference: Tensor | None = None,
) -> dict[str, Tensor]:
    """The loss terms of one training step on the stacked batch ``x`` (``"total"`` included).

    Arguments:
        task: Gives the reference and, unless ``objective`` is given, the objective.
        net: The RIC network (training mode as set by the caller).
        x: ``(B, n*C, H, W)`` in slot order.
        n_inputs: ``n`` (default: from the channel count).
        objective: The loss terms and weights (default: ``task.objective(net)``; build it
            once per run to check its names once).
        reference: The batch's references (paired data); by default the task computes
            them from ``x`` (``Task.reference``), or there are none.

    Raises:
        ValueError: when the embedding does not have the reference's shape.
        FloatingPointError: naming the terms that are not finite.
    """
    if not isinstance(net, RICNet):
        raise TypeError(
            f"ric_step needs a RICNet (Task.build_network returns one); received "
            f"{type(net).__name__}: wrap it with invblocks.RICNet(net)"
        )
    n = n_inputs or x.shape[1] // task.image_channels
    reference = task.reference_of(x, n, reference)
    result = net.round_trip(x, reference)
    if reference is not None and result.embedding.shape != reference.shape:
        raise ValueError(
            f"task {task.name!r}: the network's embedding {tuple(result.embedding.shape)} does "
            f"not match the reference {tuple(reference.shape)}"
        )
    objective = objective or task.objective(net)
    batch = RICBatch(inputs=x, reference=reference, n_images=n, reduction=objective.reduction)
    terms = objective(result, batch)
    bad = [k for k, t in terms.items() if not bool(torch.isfinite(t).all())]
    if bad:
        raise FloatingPointError(f"task {task.name!r}: non-finite loss terms {bad}")
    return terms
