"""Training configuration: an attrs class read from JSON or TOML, with ``key=value`` overrides."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any, Literal

import attrs
from attrs import validators as v

from . import _deprecated
from ._text import short
from .io import check_regular, parse_json

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["DEFAULT_STEPS", "UNBOUNDED_STEPS", "TrainConfig", "apply_overrides", "load_config"]

DEFAULT_STEPS = 1000
"""The steps of a run that gives neither ``steps`` nor a budget."""

UNBOUNDED_STEPS = 2**40
"""The step bound of a run with a budget and no ``steps``, far beyond any budget's reach."""


_KINDS = {
    "int": (
        "an integer (of at most 63 bits)",
        lambda x: isinstance(x, int) and not isinstance(x, bool) and -(2**63) <= x < 2**63,
    ),
    "float": (
        "a finite number",
        lambda x: (
            isinstance(x, int | float)
            and not isinstance(x, bool)
            and abs(x) < 2**63
            and math.isfinite(x)
        ),
    ),
    "bool": ("true or false", lambda x: isinstance(x, bool)),
    "str": ("a string", lambda x: isinstance(x, str)),
    "table": ("a table of key=value settings", lambda x: isinstance(x, dict)),
    "name or table": (
        "a name or a table of key=value settings",
        lambda x: isinstance(x, str | dict),
    ),
}


def _is(kind: str, *more: Any) -> Any:
    """A validator: the value is of ``kind`` (see ``_KINDS``; ``True`` is not an integer),
    then passes ``more``. The error names the field, what it expects and what it got."""
    what, test = _KINDS[kind]

    def check(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
        if not test(value):
            raise TypeError(
                f"{attribute.name}: expected {what}; received {short(value)} "
                f"({type(value).__name__})"
            )

    return v.and_(check, *more)


def _optional(kind: str, *more: Any) -> Any:
    return v.optional(_is(kind, *more))


def _one_of(*choices: Any) -> Any:
    """A validator: ``None`` or one of ``choices``; the error names the field and them."""

    def check(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
        if value is not None and value not in choices:
            listed = ", ".join(repr(c) for c in choices)
            raise ValueError(f"{attribute.name}: expected one of {listed}; received {short(value)}")

    return check


@attrs.frozen(kw_only=True)
class TrainConfig:
    """Everything a training run needs; ``None`` means "the task's default".

    Arguments:
        task: Registered task name.
        recipe: Whose defaults fill what the config leaves unset: ``"default"`` (the task's
            recipe for getting a useful model within a short budget on a CPU: a small
            network that starts at the trivial solution or a classical hiding, see the
            tasks guide), ``"reference"`` (the papers' networks and hyper-parameters), or
            another recipe the task names (``Task.recipes``; hiding's ``residue``, its
            default, and ``learned``).
        n_inputs: Images per sample.
        network: Keyword arguments for the task's network preset (e.g. ``{"blocks": 4}``;
            tasks that offer several take ``{"preset": "win"}``).
        losses: Weights of loss terms by name, over the task's
            (:class:`~invblocks.ric.losses.LossConfig`; e.g. ``{"embedding": 2.0, "frequency":
            0.0}``; ``--set losses.restoration=1``), and ``reduction``. A name that is no
            term of the run is an error listing the known ones.
        sampling: The task's sampling settings by name, over the recipe's
            (``Task.sampling``; ``--set sampling.frame_step=5``); a name
            the task does not take is an error listing the ones it does.
        steps: Optimisation steps. ``None`` (the default): 1000 without a budget; with a
            budget, as many as the budget allows (the budget alone sets the run's length).
            Given, it bounds a budgeted run too: training ends at whichever comes first.
        cpu_budget: Train for this many seconds of the training process's CPU time (on a
            2-core machine about twice the wall time), counting the steps (data, forward,
            backward, update), not validation or checkpoints. The learning-rate schedule runs
            over the budget instead of the steps: its progress is the larger of the share of
            steps done and the share of the budget used, and training ends when either is
            complete. A budgeted run resumes with the budget it has left, but is not bit for
            bit reproducible (where it stops depends on the machine's speed).
        time_budget: The same in wall-clock seconds.
        batch: Samples per step (per process in distributed training).
        crop: Training crop size.
        lr: Initial learning rate.
        warmup: The share of the run (of its steps, or of its budget) over which the learning
            rate rises linearly from 0 to ``lr`` (``None``: the task's default; 0: none, as
            the papers train).
        optimizer: ``"iicnet"`` (Adam, weight decay 1e-5, lr halved at 20/40/60/80% of the
            steps), ``"win"`` (AdamW, weight decay 1e-4, cosine to 1e-6) or
            ``"invcompress"`` (Adam, no weight decay, lr divided by 10 at 75% and again at
            92% of the run: Enhanced Invertible Encoding's epochs 450 and 550 of 600).
        grad_clip: Global gradient-norm clip (10 in both papers).
        channel: What the embedding goes through before it is restored
            (``RICNet.channel``): a registered channel's name (``"quantizer"``, ``"jpeg"``,
            a plugin's; :data:`invblocks.ric.channel.CHANNELS`) or a table with its arguments
            (``{"type": "quantizer", "train_mode": "ste"}``; ``--set channel=NAME --set
            channel.ARG=VALUE``, and ``--set channel.train_mode=ste`` alone for the
            network's quantiser). ``None``: the recipe's, else the network's own.
        quantizer: Deprecated (0.1): ``channel={"type": "quantizer", "train_mode": ...}``;
            converted to that when given.
        seed: Seeds initialisation, data sampling and quantisation noise.
        val_every: Validate (and log images) every this many steps.
        val_samples: Validation samples per validation.
        ckpt_every: Checkpoint every this many steps (and at the end).
        data: A dataset folder for the task's ``open_data`` (``None``: the default data).
        init: Start from the network and weights of a model folder, a run or a checkpoint
            (fine-tuning; e.g. one written by ``invblocks import-weights``) instead of the
            task's preset. Its task and input count must be the run's; ``network``
            settings are refused with it (the network is the folder's).
        workers: Data-loader worker processes.
        channels_last: Keep weights and batches in channels-last layout (on by default:
            oneDNN's convolutions are faster in it on a CPU, see the benchmarks page; the
            results are the same up to float rounding).
        memory_saving: Train with memory-saving backprop through runs of exact blocks
            (:mod:`invblocks.memory`): much less activation memory, more time.
        compact_dense: Dense blocks keep one feature buffer for the backward pass instead of
            every concatenation (:func:`invblocks.blocks.dense.set_compact_dense`): less
            memory than the default, less time than ``memory_saving``; same results.
        threads: torch CPU threads (``None``: torch's default).
        device: Where to train: ``"auto"`` (default: the GPU when PyTorch sees one, else the
            CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``
            (:func:`invblocks.runtime.resolve_device`). Under ``torchrun`` each process takes
            the GPU of its ``LOCAL_RANK``.
        compile: Run the training step's network through :func:`torch.compile`: ``None``
            (default: off), ``"default"``, ``"reduce-overhead"`` (on a GPU: CUDA graphs, one
            launch per graph instead of thousands of kernel launches: the mode that paid in
            the benchmarks) or ``"max-autotune"`` (torch.compile's modes),
            or ``"eager"`` (dynamo's tracing without code generation: a check that the
            network traces, same arithmetic as eager). The first step compiles. Validation,
            checkpoints, embedding and restoring use the eager network (the same weights).
            On a 2-core CPU compilation does not pay (see the benchmarks).
        autocast: ``"float32"`` trains in float32; ``None`` (default): the recipe's choice
            (float32 unless the recipe says otherwise). ``"bfloat16"`` runs the training
            step's forward computation under :func:`torch.autocast` in bfloat16
            (convolutions in bfloat16, weights, optimiser and losses in float32); ``"auto"``
            chooses bfloat16 where the device has bfloat16 units
            (:func:`invblocks.runtime.fast_bfloat16`) and float32 elsewhere. Validation,
            checkpoints, embedding and restoring stay float32. Faster on CPUs with bfloat16
            instructions, at a measured cost in restoration quality (see the workflow
            guide); not combinable with ``memory_saving`` or ``compact_dense``, whose
            backward passes recompute in float32.
    """

    task: str = attrs.field(validator=_is("str"))
    recipe: str = attrs.field(
        default="default", validator=_is("str", v.matches_re(r"^[a-z][a-z0-9_-]*$"))
    )
    n_inputs: int | None = attrs.field(default=None, validator=_optional("int", v.gt(0)))
    network: dict[str, Any] = attrs.field(factory=dict, validator=_is("table"))
    losses: dict[str, Any] = attrs.field(factory=dict, validator=_is("table"))
    sampling: dict[str, Any] = attrs.field(factory=dict, validator=_is("table"))
    steps: int | None = attrs.field(default=None, validator=_optional("int", v.gt(0)))
    cpu_budget: float | None = attrs.field(default=None, validator=_optional("float", v.gt(0)))
    time_budget: float | None = attrs.field(default=None, validator=_optional("float", v.gt(0)))
    batch: int | None = attrs.field(default=None, validator=_optional("int", v.gt(0)))
    crop: int | None = attrs.field(default=None, validator=_optional("int", v.gt(0)))
    lr: float | None = attrs.field(default=None, validator=_optional("float", v.gt(0)))
    warmup: float | None = attrs.field(default=None, validator=_optional("float", v.ge(0), v.lt(1)))
    optimizer: Literal["iicnet", "win", "invcompress"] | None = attrs.field(
        default=None, validator=_one_of("iicnet", "win", "invcompress")
    )
    grad_clip: float = attrs.field(default=10.0, validator=_is("float", v.gt(0)))
    channel: str | dict[str, Any] | None = attrs.field(
        default=None, validator=_optional("name or table")
    )
    quantizer: Literal["noise", "ste", "round", "identity"] | None = attrs.field(
        default=None, validator=_one_of("noise", "ste", "round", "identity"), repr=False
    )
    seed: int = attrs.field(default=0, validator=_is("int"))
    val_every: int = attrs.field(default=100, validator=_is("int", v.gt(0)))
    val_samples: int = attrs.field(default=2, validator=_is("int", v.gt(0)))
    ckpt_every: int = attrs.field(default=100, validator=_is("int", v.gt(0)))
    data: str | None = attrs.field(default=None, validator=_optional("str"))
    init: str | None = attrs.field(default=None, validator=_optional("str"))
    workers: int = attrs.field(default=0, validator=_is("int", v.ge(0)))
    channels_last: bool = attrs.field(default=True, validator=_is("bool"))
    memory_saving: bool = attrs.field(default=False, validator=_is("bool"))
    compact_dense: bool = attrs.field(default=False, validator=_is("bool"))
    threads: int | None = attrs.field(default=None, validator=_optional("int", v.gt(0)))
    device: str = attrs.field(default="auto", validator=_is("str"))
    compile: Literal["default", "reduce-overhead", "max-autotune", "eager"] | None = attrs.field(
        default=None,
        validator=_one_of("default", "reduce-overhead", "max-autotune", "eager"),
    )
    autocast: Literal["bfloat16", "float32", "auto"] | None = attrs.field(
        default=None, validator=_one_of("bfloat16", "float32", "auto")
    )

    def __attrs_post_init__(self) -> None:
        if self.quantizer is not None:  # 0.1's setting: the channel's training mode
            if self.channel is not None:
                raise ValueError(
                    "give the channel with one setting: channel, not also the deprecated "
                    f"quantizer (received channel={self.channel!r}, quantizer={self.quantizer!r})"
                )
            spec = _deprecated.quantizer_channel(self.quantizer, "TrainConfig", stacklevel=6)
            object.__setattr__(self, "channel", spec)
            object.__setattr__(self, "quantizer", None)
        if self.autocast == "bfloat16" and (self.memory_saving or self.compact_dense):
            switch = "memory_saving" if self.memory_saving else "compact_dense"
            raise ValueError(
                f"autocast={self.autocast!r} cannot be combined with {switch}=True: its "
                "backward pass recomputes in float32, not what the forward pass computed; "
                "turn one of them off"
            )

    @property
    def total_steps(self) -> int:
        """The steps the run may take, ``steps`` where given; else :data:`DEFAULT_STEPS`
        without a budget, :data:`UNBOUNDED_STEPS` (in effect no bound) with one."""
        if self.steps is not None:
            return self.steps
        budgeted = self.cpu_budget is not None or self.time_budget is not None
        return UNBOUNDED_STEPS if budgeted else DEFAULT_STEPS

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (without the deprecated ``quantizer``, which is the channel)."""
        return attrs.asdict(self, filter=lambda a, _: a.name != "quantizer")

    @staticmethod
    def upgrade(data: dict[str, Any]) -> dict[str, Any]:
        """A config written by an earlier invblocks (a run's ``config.json``, a checkpoint's
        training config) in today's form, silently: 0.1's ``quantizer`` setting becomes the
        channel it meant."""
        data = dict(data)
        mode = data.pop("quantizer", None)
        if mode is not None and data.get("channel") is None:
            data["channel"] = {"type": "quantizer", "train_mode": mode}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Build from a dict; unknown keys are an error naming them."""
        if not isinstance(data, dict):
            raise ValueError(
                f"a training config is a table of settings; received a {type(data).__name__}"
            )
        names = {a.name for a in attrs.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            import difflib

            listed = ", ".join(short(k, 30) for k in unknown[:3]) + (
                ", ..." if len(unknown) > 3 else ""
            )
            close = difflib.get_close_matches(str(unknown[0]), sorted(names), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(
                f"unknown training config key(s) {listed}{hint}; the keys are listed by "
                "help(invblocks.TrainConfig) and in the workflow guide"
            )
        try:
            return cls(**data)
        except (TypeError, ValueError) as err:
            raise ValueError(f"invalid training config: {err}") from err


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a ``.json`` or ``.toml`` config file into a dict (a ``[train]`` table is unwrapped)."""
    path = check_regular(path, "config")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(
            f"cannot read config {path}: {getattr(err, 'strerror', None) or err}"
        ) from None
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else parse_json(text, "it")
    except RecursionError:
        raise ValueError(f"cannot parse config {path}: it is nested too deeply") from None
    except (ValueError, tomllib.TOMLDecodeError) as err:
        raise ValueError(f"cannot parse config {path}: {err}") from None
    if isinstance(data, dict) and "train" in data:
        others = sorted(str(k) for k in data if k != "train")
        if others:
            raise ValueError(
                f"config {path}: expected the settings alone or in a table named train; "
                f"received {short(others[0], 30)} beside train"
            )
        data = data["train"]
    if not isinstance(data, dict):
        raise ValueError(
            f"config {path}: expected a table of settings (or one named train); received a "
            f"{type(data).__name__}"
        )
    return data


_PYTHON_WORDS = {"True": True, "False": False, "None": None}


def _parse_value(text: str) -> Any:
    """JSON when the text is JSON (``4``, ``1e-3``, ``true``, ``null``, ``{"a": 1}``), Python's
    ``True``/``False``/``None`` as those values, anything else as the string itself."""
    if text in _PYTHON_WORDS:
        return _PYTHON_WORDS[text]
    try:
        return json.loads(text)
    except ValueError:
        return text
    except RecursionError:
        raise ValueError(f"the value {short(text)} is nested too deeply") from None


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key=value`` strings (values parsed as JSON when they can be, ``True``,
    ``False`` and ``None`` as Python's, else strings); dotted keys set nested entries:
    ``network.blocks=4``. A table given by name takes arguments the same way:
    ``channel=jpeg`` then ``channel.quality=90`` gives ``{"type": "jpeg", "quality": 90}``."""
    data = json.loads(json.dumps(data))
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"an override is key=value; received {short(item)}")
        target = data
        *parents, leaf = key.split(".")
        for p in parents:
            if isinstance(target.get(p), str):  # a table given by its name
                target[p] = {"type": target[p]}
            target = target.setdefault(p, {})
            if not isinstance(target, dict):
                raise ValueError(f"cannot set {short(key)}: {short(p)} is not a table")
        target[leaf] = _parse_value(value)
    return data
