"""The reversible-image-conversion framework: the network, its channel, tasks, losses, the
training step and the evaluation.

Modules, each importing only those listed after it:

* ``invblocks.ric.step``: one training step (:func:`~invblocks.ric.step.ric_step`);
  ``.evaluation``: one evaluation for validation, ``invblocks eval`` and the benchmarks;
* ``.task``: the :class:`~invblocks.ric.task.Task` (what is embedded, the reference, losses,
  recipes);
* ``.network``: the :class:`~invblocks.ric.network.RICNet`, an invertible body and the channel;
* ``.losses``: named loss terms, their weights, the objective; ``.jpeg``: the JPEG channel;
* ``.quantizer``: the 8-bit channel;
* ``.channel``: the :class:`~invblocks.ric.channel.Channel` contract and the channel registry;
* ``.groups``, ``.payload``, ``.verdict``: parameter groups; payloads and their files; how
  good a model is against its task's targets.

Every public name is importable from ``invblocks.ric`` itself (``from invblocks.ric import
RICNet, Channel, Task``); the API reference documents each in its module.
"""

from .channel import CHANNELS, Channel, build_channel, channel_class, register_channel
from .evaluation import EvalSample, evaluate
from .groups import ParamGroup
from .jpeg import JPEGChannel, jpeg_round_trip
from .losses import (
    DEFAULT_WEIGHTS,
    LOSS_TERMS,
    LossConfig,
    LossTerm,
    Objective,
    RICBatch,
    charbonnier_loss,
    constraint_losses,
    frequency_loss,
    l2_loss,
    loss_term,
    register_loss_term,
    total_constraint_loss,
)
from .network import RICNet, RICResult, as_ricnet
from .payload import Payload
from .quantizer import Quantizer, quantize
from .step import ric_step
from .task import (
    FIT_SAMPLES,
    FileFormat,
    FitNetwork,
    Task,
    TaskMetric,
    TrainDefaults,
    default_display,
    identity_order,
    middle_first_order,
    repeat_reference,
)
from .verdict import EMBEDDING_TARGET, Verdict, margin

__all__ = [
    "CHANNELS",
    "DEFAULT_WEIGHTS",
    "EMBEDDING_TARGET",
    "FIT_SAMPLES",
    "LOSS_TERMS",
    "Channel",
    "EvalSample",
    "FileFormat",
    "FitNetwork",
    "JPEGChannel",
    "LossConfig",
    "LossTerm",
    "Objective",
    "ParamGroup",
    "Payload",
    "Quantizer",
    "RICBatch",
    "RICNet",
    "RICResult",
    "Task",
    "TaskMetric",
    "TrainDefaults",
    "Verdict",
    "as_ricnet",
    "build_channel",
    "channel_class",
    "charbonnier_loss",
    "constraint_losses",
    "default_display",
    "evaluate",
    "frequency_loss",
    "identity_order",
    "jpeg_round_trip",
    "l2_loss",
    "loss_term",
    "margin",
    "middle_first_order",
    "quantize",
    "register_channel",
    "register_loss_term",
    "repeat_reference",
    "ric_step",
    "total_constraint_loss",
]
