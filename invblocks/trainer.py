"""The training engine: data, optimiser, schedule, validation, logs, checkpoints, resume, DDP.

``train(config, out)`` runs a task's training and writes a run folder::

    out/
      config.json          the training config
      metrics.jsonl        one JSON object per logged step (losses, lr, grad_norm, step_s,
                           data_s: the step's and its data wait's wall seconds) or validation
                           (the metrics, ``margin`` over the trivial answer, ``score``)
      samples/             validation images (reference, embedding, inputs, restored, errors)
      checkpoints/         see invblocks.checkpoint
      report.html          written by invblocks.report (at the end, on rank 0)

It trains on ``config.device`` (the GPU when PyTorch sees one, else the CPU). Launched by
``torchrun`` (``WORLD_SIZE > 1``), it trains data-parallel with PyTorch's
``DistributedDataParallel`` (gloo on CPU, nccl on GPUs, one GPU per process): each process
takes its own share of every global batch, only rank 0 logs and checkpoints, and at the end
the ranks check that their weights are identical.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import DataLoader, Sampler

from .blocks import set_compact_dense
from .checkpoint import (
    BEST,
    find_checkpoint,
    load_checkpoint,
    load_network,
    load_train_state,
    save_checkpoint,
    save_model,
)
from .config import UNBOUNDED_STEPS, TrainConfig
from .data import DataSplit, TaskDataset
from .io import LOCK_NAME, atomic_write, ensure_folder, json_safe, lock_folder
from .model import available_memory, load_for_eval
from .plugins import get_task
from .ric.channel import Channel, build_channel
from .ric.evaluation import evaluate
from .ric.groups import ParamGroup, split_parameters
from .ric.losses import Objective
from .ric.network import RICNet, as_ricnet
from .ric.step import ric_step
from .ric.task import FIT_SAMPLES, Task
from .ric.verdict import Verdict
from .runtime import fast_bfloat16, resolve_device

__all__ = ["StepSampler", "evaluate", "learning_rate", "load_for_eval", "summary", "train"]


class StepSampler(Sampler[int]):
    """Dataset indices for steps ``start..steps``: step ``s`` of rank ``r`` reads indices
    ``(s * world + r) * batch + i``. Every rank sees different samples, a resumed run sees
    exactly the samples the uninterrupted run would have."""

    def __init__(self, start: int, steps: int, batch: int, rank: int = 0, world: int = 1) -> None:
        self.start, self.steps, self.batch, self.rank, self.world = start, steps, batch, rank, world

    def __iter__(self) -> Iterator[int]:
        for s in range(self.start, self.steps):
            base = (s * self.world + self.rank) * self.batch
            yield from range(base, base + self.batch)

    def __len__(self) -> int:
        return (self.steps - self.start) * self.batch


def learning_rate(
    kind: str, base: float, step: int, steps: int, progress: float | None = None
) -> float:
    """The schedule as a function of the step (no scheduler state to save).

    ``iicnet``: halved at 20, 40, 60 and 80% of the steps (the reference: every 100k of 500k).
    ``win``: cosine from ``base`` to 1e-6 over the run (the reference steps it per epoch).
    ``invcompress``: divided by 10 at 75% and again at 92% of the run (the reference's
    epochs 450 and 550 of 600).
    ``progress`` (in ``[0, 1]``) replaces ``step / steps`` (a budgeted run's share used).
    """
    done = step / steps if progress is None else progress
    if kind == "invcompress":
        return base * 0.1 ** sum(done >= f for f in (0.75, 0.92))
    if kind == "iicnet":
        if progress is None:
            return base * 0.5 ** sum(step >= int(f * steps) for f in (0.2, 0.4, 0.6, 0.8))
        return base * 0.5 ** sum(done >= f for f in (0.2, 0.4, 0.6, 0.8))
    eta_min = 1e-6
    return eta_min + (base - eta_min) * 0.5 * (1 + math.cos(math.pi * min(done, 1.0)))


class _Budget:
    """How much of a run is done: steps, and the CPU and wall time its steps used."""

    def __init__(self, config: TrainConfig, cpu_s: float = 0.0, wall_s: float = 0.0) -> None:
        self.config, self.cpu_s, self.wall_s = config, cpu_s, wall_s
        self.limited = config.cpu_budget is not None or config.time_budget is not None

    def progress(self, step: int) -> float:
        shares = [step / self.config.total_steps]
        if self.config.cpu_budget is not None:
            shares.append(self.cpu_s / self.config.cpu_budget)
        if self.config.time_budget is not None:
            shares.append(self.wall_s / self.config.time_budget)
        return max(shares)


def _optimizer(kind: str, params: Any, lr: float) -> torch.optim.Optimizer:
    if kind == "iicnet":
        return torch.optim.Adam(params, lr=lr, betas=(0.9, 0.999), weight_decay=1e-5)
    if kind == "invcompress":
        return torch.optim.Adam(params, lr=lr)
    return torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.999), weight_decay=1e-4)


def _group_optimizer(group: ParamGroup, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    """The optimiser a :class:`~invblocks.ric.groups.ParamGroup` asks for."""
    wd = group.weight_decay
    if group.optimizer == "adam":
        return torch.optim.Adam(params, lr=group.lr, weight_decay=wd)
    if group.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=group.lr, weight_decay=wd)
    return torch.optim.SGD(params, lr=group.lr, weight_decay=wd)


class _Step(nn.Module):
    """One training step as a module, so DDP wraps exactly one forward per backward."""

    def __init__(self, task: Task, net: RICNet, n: int, objective: Objective) -> None:
        super().__init__()
        self.task, self.net, self.n, self.objective = task, net, n, objective

    def forward(self, x: Tensor, reference: Tensor | None = None) -> dict[str, Tensor]:
        return ric_step(
            self.task, self.net, x, self.n, objective=self.objective, reference=reference
        )


def _compile(net: RICNet, mode: str | None) -> None:
    """Compile the training passes of ``net`` as ``TrainConfig.compile`` asks."""
    if mode == "eager":
        net.compile_body(backend="eager")
    elif mode is not None:
        net.compile_body(mode=mode)


def _initial_network(task: Task, n: int, config: TrainConfig) -> RICNet:
    """The task's preset for ``n`` inputs (seeded, with ``config.network``), or the network
    and weights of the model folder ``config.init``."""
    if config.init is None:
        generator = torch.Generator().manual_seed(config.seed)
        return task.build_network(n, generator=generator, **config.network)
    if config.network:
        raise ValueError(
            f"init={config.init!r} gives the network: drop the network settings "
            f"{sorted(config.network)}"
        )
    meta, state, folder = load_checkpoint(config.init)
    if meta.get("task") != task.name or meta.get("n_inputs") != n:
        raise ValueError(
            f"{folder} is a model of task {meta.get('task')!r} with {meta.get('n_inputs')} "
            f"inputs; this run trains {task.name!r} with {n} (set task and n_inputs to match)"
        )
    return as_ricnet(load_network(meta, state, str(folder)), image_channels=task.image_channels)


def _same_weights(
    channel: Channel, net: RICNet, config: TrainConfig, spec: Mapping[str, Any]
) -> Channel:
    """``channel`` (the network's own channel with other arguments) holding the weights of
    the network's channel (a learned entropy model, trained when ``config.init`` gave the
    network), where its arguments leave their shapes as they were; ``ValueError`` when they
    change them and the weights were trained."""
    old = net.channel.state_dict()
    new = channel.state_dict()
    same = old.keys() == new.keys() and all(
        old[k].shape == new[k].shape or old[k].numel() == 0 or new[k].numel() == 0 for k in old
    )
    if same:
        channel.load_state_dict(old)
    elif config.init is not None:
        raise ValueError(
            f"channel settings {sorted(spec)} change the shapes of the "
            f"channel's trained weights from {config.init}; give a channel table with its "
            "type to train a new one"
        )
    return channel


def _with_channel(net: RICNet, config: TrainConfig) -> RICNet:
    """``net`` with the channel the config asks for (``channel``: a name, a table with a
    ``type``, or a table of arguments for the network's own channel), checked against the
    network's body (:meth:`~invblocks.ric.channel.Channel.problems`)."""
    spec: Any = config.channel
    if isinstance(spec, dict) and "type" not in spec:  # arguments of the network's channel
        own = net.channel.get_config()
        spec = {"type": own["type"], **own.get("args", {}), **spec}
        spec.pop("dims_in", None)
        given = config.channel if isinstance(config.channel, Mapping) else {}
        channel = _same_weights(build_channel(spec, net.embedding_dims), net, config, given)
        net = net.with_channel(channel)
    elif spec is not None:
        net = net.with_channel(build_channel(spec, net.embedding_dims))
    problems = net.problems()
    if problems:
        name = net.channel.name or net.channel._name()
        raise ValueError(f"channel {name!r}: {'; '.join(problems)}")
    return net


def _weights_digest(net: nn.Module) -> str:
    h = hashlib.sha256()
    for k, v in sorted(net.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _spent(budget: _Budget, step: int, world: int, device: torch.device) -> bool:
    """Whether a budgeted run's budget is used up after ``step`` (the ranks agree: the
    one whose clock ran out first decides for all)."""
    if not budget.limited:
        return False
    done = budget.progress(step) >= 1.0
    if world > 1:
        flag = torch.tensor([float(done)], device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        done = bool(flag.item())
    return done


def _log(path: Path, record: dict[str, Any]) -> None:
    """Append one record as a line of standard JSON (non-finite numbers as ``null``)."""
    with open(path, "a") as f:
        f.write(json.dumps(json_safe(record), allow_nan=False) + "\n")


def _distributed(device: torch.device) -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)


def _prepare_out(out: Path, resume: bool) -> bool:
    """Check (and make) the run folder; ``True`` when there is a checkpoint to resume.

    A ``resume`` of a run that was stopped before its first checkpoint (its ``config.json``
    is there, or the folder is empty but for temporaries; no checkpoint) starts it again in
    the same folder."""
    if resume:
        started = (out / "config.json").is_file()  # the run's own config, written first
        if out.is_dir() and all(p.name.endswith(".tmp") for p in _contents(out)):
            started = True  # killed before it wrote its config: nothing to keep
        if not started or any(
            (out / name).is_file() for name in ("checkpoints/LATEST", "model.safetensors")
        ):
            find_checkpoint(out)  # a run's latest, a checkpoint folder, or a clear error
            return True
        for leftover in ("metrics.jsonl", "report.html", "losses.png"):
            (out / leftover).unlink(missing_ok=True)
        for folder in ("samples", "checkpoints"):  # no checkpoint was completed
            shutil.rmtree(out / folder, ignore_errors=True)
        _clean_leftovers(out, 0)
        return False
    if out.exists() and (not out.is_dir() or any(_contents(out))):
        raise ValueError(f"{out} exists and is not empty: choose another --out or pass --resume")
    ensure_folder(out)
    try:
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise ValueError(f"cannot write to {out}: {err.strerror or err}") from None
    return False


def _contents(out: Path) -> list[Path]:
    """What a run folder holds, but for the lock of the process writing it."""
    return [p for p in out.iterdir() if p.name != LOCK_NAME]


@contextlib.contextmanager
def _locked(run: _Run, resume: bool) -> Iterator[None]:
    """One writer per run folder: rank 0 holds the folder's lock (made first for a new run,
    remembered in ``run.created``) while the run is set up and trains. A resume of a folder
    that does not exist takes no lock: its error comes from the resume itself."""
    if run.rank != 0:
        yield
        return
    run.created = not run.out.exists()
    if run.created and resume:
        yield
        return
    ensure_folder(run.out)
    try:
        with lock_folder(run.out, "the run folder"):
            yield
    except BaseException:
        if run.created and run.out.is_dir() and not _contents(run.out):
            shutil.rmtree(run.out, ignore_errors=True)  # a start refused leaves nothing
        raise


def _clean_leftovers(out: Path, step: int) -> None:
    """After a kill: remove half-written checkpoint folders and files (the hidden
    ``.NAME.*.tmp`` of :func:`~invblocks.io.atomic_write`), and the log records of steps after
    ``step`` (the resumed run logs them again), rewriting the log atomically."""
    root = out / "checkpoints"
    if root.is_dir():
        for old in root.glob(f".{BEST}.old.*"):  # killed while replacing the best network
            moved = old / BEST
            if moved.is_dir() and not (root / BEST).exists():
                os.replace(moved, root / BEST)
        for tmp in [*root.glob(".step-*"), *root.glob(f".{BEST}.*")]:
            if tmp.is_dir():
                shutil.rmtree(tmp, ignore_errors=True)
    for tmp in out.rglob(".*.tmp"):  # the run's files, its checkpoints' and samples'
        if tmp.is_file():
            tmp.unlink(missing_ok=True)
    log = out / "metrics.jsonl"
    if log.is_file():
        kept = []
        for line in log.read_text().splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a line cut short by the kill
            if isinstance(record, dict) and isinstance(record.get("step"), int):
                if record["step"] <= step and not ("seconds" in record or "world_size" in record):
                    kept.append(line)
        with atomic_write(log) as f:
            f.write("".join(f"{line}\n" for line in kept).encode())


def _check_resume(config: TrainConfig, meta: dict[str, Any], start: int) -> dict[str, Any]:
    """What a resume changes in the run's training config; ``ValueError`` for what it may
    not change: the seed (the run's random streams continue), or ``steps`` below the step
    the run is at. A larger ``steps`` extends the run (the schedule is recomputed over the
    new total from the resumed step on)."""
    trained = meta.get("train_config") or {}
    if not isinstance(trained, dict):
        raise ValueError(
            f"the checkpoint's train_config is damaged: expected a table of settings; "
            f"received a {type(trained).__name__}"
        )
    saved = TrainConfig.upgrade(trained)
    if "seed" in saved and saved["seed"] != config.seed:
        raise ValueError(
            f"the run was trained with seed={saved['seed']}; a resume continues its random "
            f"streams and cannot take seed={config.seed}"
        )
    if config.total_steps < start:
        raise ValueError(
            f"the run is at step {start}; steps={config.total_steps} would end before it "
            "(give steps >= that, or train a new run)"
        )
    current = config.to_dict()
    return {k: current[k] for k in current if k in saved and saved[k] != current[k]}


@attrs.define
class _Run:
    """One training run's state: settings resolved, the network, data and optimiser."""

    config: TrainConfig
    out: Path
    task: Task
    n: int
    device: torch.device
    rank: int
    world: int
    net: RICNet
    objective: Objective
    opt: torch.optim.Optimizer
    layout: torch.memory_format
    main_params: list[nn.Parameter] = attrs.field(factory=list)
    groups: list[tuple[ParamGroup, torch.optim.Optimizer, list[nn.Parameter]]] = attrs.field(
        factory=list
    )
    start: int = 0
    lr_scale: float = 1.0
    bad_in_a_row: int = 0
    skipped: int = 0
    recoveries: int = 0
    budget: _Budget | None = None
    changed: dict[str, Any] = attrs.field(factory=dict)
    created: bool = False
    source: DataSplit | None = None  # the data, where building the network read it
    best_score: float = -math.inf

    @property
    def log_path(self) -> Path:
        return self.out / "metrics.jsonl"

    def meta(self) -> dict[str, Any]:
        return {
            "task": self.task.name,
            "n_inputs": self.n,
            "network": self.net.get_config(),
            "train_config": self.config.to_dict(),
        }


def resolved(config: TrainConfig, task: Task) -> TrainConfig:
    """``config`` with what it leaves unset taken from its recipe (``config.recipe``:
    the task's default recipe or the papers'): batch, crop, learning rate, optimiser,
    warm-up, channel, autocast, network settings, loss weights and sampling settings (the
    config's own over the recipe's, over the task's for sampling; a channel's arguments
    over the recipe's when neither names a channel type; ``autocast`` may stay
    ``"auto"``, which the run resolves for its device). Resolving a resolved config changes
    nothing."""
    recipe = task.recipe(config.recipe)
    own = config.init is not None or "preset" in config.network  # the run chose its network
    network = dict(config.network) if own else {**recipe.network, **config.network}
    channel = config.channel if config.channel is not None else recipe.channel
    if all(isinstance(c, Mapping) and "type" not in c for c in (config.channel, recipe.channel)):
        channel = {**recipe.channel, **config.channel}  # type: ignore[dict-item]
    channel = dict(channel) if isinstance(channel, Mapping) else channel
    return attrs.evolve(
        config,
        batch=config.batch or recipe.batch,
        crop=config.crop or recipe.crop,
        lr=config.lr or recipe.lr,
        optimizer=config.optimizer or recipe.optimizer,
        warmup=recipe.warmup if config.warmup is None else config.warmup,
        channel=channel,
        autocast=config.autocast or recipe.autocast or "float32",
        network=network,
        losses={**recipe.losses, **config.losses},
        sampling={**task.sampling, **recipe.sampling, **config.sampling},
    )


def _fitted(
    task: Task, n: int, config: TrainConfig, source: DataSplit | None
) -> tuple[TrainConfig, DataSplit | None]:
    """``config`` with the network settings the task fits to the run's first training
    samples (``Task.fit_network``) added under its own, and the data it read (for the
    training to use, not read again)."""
    if task.fit_network is None or config.init is not None or "preset" in config.network:
        return config, source
    if source is None:
        source = task.load_data(config.data or None)
    data = task.dataset(
        source, "train", length=FIT_SAMPLES, n_inputs=n, crop=int(config.crop or 0),
        seed=config.seed, options=config.sampling,
    )  # fmt: skip
    drawn = [data[i] for i in range(len(data))]
    x = torch.stack([d[0] if isinstance(d, tuple) else d for d in drawn])
    pairs = [d[1] for d in drawn if isinstance(d, tuple)]
    reference = torch.stack(pairs) if pairs else None
    try:
        fitted = dict(task.fit_network(x, reference, dict(config.network)))
    except (ValueError, RuntimeError) as err:
        raise ValueError(
            f"task {task.name!r}: its start cannot be fitted to the data: {err}"
        ) from None
    return attrs.evolve(config, network={**fitted, **config.network}), source


def _device_autocast(config: TrainConfig, device: torch.device) -> TrainConfig:
    """``autocast="auto"`` made ``"bfloat16"`` where ``device`` has bfloat16 units and
    neither ``memory_saving`` nor ``compact_dense`` is on (their backward passes recompute
    in float32), ``"float32"`` otherwise."""
    if config.autocast != "auto":
        return config
    fast = fast_bfloat16(device) and not (config.memory_saving or config.compact_dense)
    return attrs.evolve(config, autocast="bfloat16" if fast else "float32")


def _setup(
    config: TrainConfig, out: Path, task: Task | None = None, source: DataSplit | None = None
) -> _Run:
    """Resolve the settings and build the network, objective and optimiser (nothing is
    written yet: a bad config leaves no folder behind)."""
    device = resolve_device(config.device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    rank, world = _distributed(device)
    if task is None:
        task = get_task(config.task)
    elif config.task != task.name:
        config = attrs.evolve(config, task=task.name)
    config = _device_autocast(resolved(config, task), device)
    n = config.n_inputs or task.default_inputs
    task.check_inputs(n)
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    built, source = _fitted(task, n, config, source)
    net = _with_channel(_initial_network(task, n, built), config)
    objective = task.objective(net, config.losses)  # unknown loss names fail here
    if config.autocast == "bfloat16" and not fast_bfloat16(device):
        warnings.warn(
            f"autocast=bfloat16 on a {device.type} without bfloat16 matrix units (AMX or "
            "AVX-512 BF16 on a CPU) emulates it, which makes each step several times slower "
            "than float32 (autocast=float32, the default)",
            RuntimeWarning,
            stacklevel=2,
        )
    task.check_sampling(config.sampling)
    if config.memory_saving:
        net.memory_saving = True
    if config.compact_dense:
        set_compact_dense(net)
    _check_training_memory(net, device)
    layout = torch.channels_last if config.channels_last else torch.contiguous_format
    net = net.to(device=device, memory_format=layout)
    declared = [*task.param_groups, *net.param_groups()]
    main, found = split_parameters(net, declared)
    if declared and world > 1:
        raise ValueError(
            "parameter groups with optimisers of their own train in one process only "
            f"(this network declares {', '.join(g.name for g in declared)})"
        )
    opt = _optimizer(str(config.optimizer), main, float(config.lr or 0))
    groups = [(g, _group_optimizer(g, found[g.name]), found[g.name]) for g in declared]
    return _Run(
        config=config, out=out, task=task, n=n, device=device, rank=rank, world=world,
        net=net, objective=objective, opt=opt, layout=layout, main_params=main, groups=groups,
        source=source,
    )  # fmt: skip


def _check_training_memory(net: nn.Module, device: torch.device) -> None:
    """``ValueError`` in one sentence, before anything is allocated for training, when the
    network's weights, gradients and the optimiser's two moments (16 bytes per parameter)
    need more memory than this machine has free (CPU training)."""
    if device.type != "cpu":
        return
    count = sum(p.numel() for p in net.parameters())
    need, free = 16 * count, available_memory()
    if free is not None and need > free:
        raise ValueError(
            f"the network has {count:,} parameters: training it needs about "
            f"{need / 2**30:.1f} GiB for its weights, gradients and optimiser state, and "
            f"{free / 2**30:.1f} GiB are free (use fewer blocks or a narrower network)"
        )


def _resume(run: _Run, resume: bool) -> None:
    """Make the run folder, or load its checkpoint: weights, optimiser, RNG, budget."""
    has_checkpoint = resume
    if run.rank == 0:
        has_checkpoint = _prepare_out(run.out, resume)
    if run.world > 1:
        flags: list[Any] = [has_checkpoint]
        dist.broadcast_object_list(flags, src=0)
        has_checkpoint = bool(flags[0])
    run.budget = _Budget(run.config)
    if not has_checkpoint:
        return
    meta, state, folder = load_checkpoint(run.out)
    if meta.get("task") != run.task.name or meta.get("network") != run.net.get_config():
        raise ValueError(
            f"{folder} was trained for task {meta.get('task')!r} with another network; "
            "it cannot resume this config"
        )
    run.net.load_state_dict(state)
    ts = load_train_state(folder)
    run.opt.load_state_dict(ts["optimizer"])
    saved = ts.get("optimizers", {})
    for group, opt, _ in run.groups:
        if group.name not in saved:
            raise ValueError(
                f"{folder} holds no state of the optimiser of parameter group "
                f"{group.name!r}; it cannot resume this run"
            )
        opt.load_state_dict(saved[group.name])
    torch.set_rng_state(ts["rng"])
    if run.device.type == "cuda" and "cuda_rng" in ts:
        torch.cuda.set_rng_state(ts["cuda_rng"], run.device)
    run.start = int(meta["step"])
    if "lr_scale" in ts:
        run.lr_scale = float(ts["lr_scale"])
    if "budget" in ts:
        run.budget = _Budget(run.config, float(ts["budget"][0]), float(ts["budget"][1]))
    run.changed = _check_resume(run.config, meta, run.start)
    if run.rank == 0:
        _clean_leftovers(run.out, run.start)
    if run.rank == 0:  # the rank that validates
        run.best_score = _best_score(run.out, run.start)


def _data(run: _Run, source: DataSplit | None) -> tuple[DataLoader, TaskDataset]:
    """The training loader (from the resumed step on) and the validation samples."""
    config, task = run.config, run.task
    if source is None:
        source = run.source
    if source is None:
        source = task.load_data(config.data or None)
    batch, crop = int(config.batch or 0), int(config.crop or 0)  # resolved
    kw: dict[str, Any] = {
        "n_inputs": run.n,
        "crop": crop,
        "seed": config.seed,
        "options": config.sampling,
    }
    train_set = task.dataset(source, "train", length=config.total_steps * batch * run.world, **kw)
    val_set = task.dataset(source, "val", length=config.val_samples, **kw)
    if run.rank == 0 and config.data:
        _say_split(source, config.data)
    loader = DataLoader(
        train_set,
        batch_size=batch,
        sampler=StepSampler(run.start, config.total_steps, batch, run.rank, run.world),
        num_workers=config.workers,
        pin_memory=run.device.type == "cuda",
        generator=torch.Generator().manual_seed(config.seed),  # keeps the global RNG untouched
    )
    return loader, val_set


def _say_split(source: DataSplit, folder: str) -> None:
    """Tell how a user's folder was split (on stderr): few items make the split matter."""
    import sys

    shared = [item for item in source.val if any(item is t for t in source.train)]
    note = " (the same item validates and trains: too few to split)" if shared else ""
    print(
        f"data {folder}: {len(source.train)} training and {len(source.val)} validation "
        f"item(s){note}",
        file=sys.stderr,
    )


def _step(
    run: _Run, step: int, x: Tensor, step_module: nn.Module, reference: Tensor | None = None
) -> tuple[float, dict[str, Any], Any]:
    """One optimisation step of every optimiser; ``(lr, losses, grad_norm)`` (the main
    optimiser's learning rate and gradient norm). A step whose losses or gradients are not
    finite changes nothing: its record says ``skipped`` and why (one process; data-parallel
    ranks cannot skip alone, so there it stops the run)."""
    config, budget = run.config, run.budget
    assert budget is not None
    kind, base_lr, warmup = str(config.optimizer), float(config.lr or 0), config.warmup or 0.0
    before = budget.progress(step - 1) if budget.limited else None
    lr = learning_rate(kind, base_lr, step - 1, config.total_steps, before) * run.lr_scale
    if warmup:
        lr *= min(1.0, (budget.progress(step - 1) + 1 / config.total_steps) / warmup)
    for group in run.opt.param_groups:
        group["lr"] = lr
    for declared, opt, _ in run.groups:
        scale = 1.0 if declared.schedule == "constant" else lr / base_lr
        for group in opt.param_groups:
            group["lr"] = declared.lr * scale
    if config.compile == "reduce-overhead":
        torch.compiler.cudagraph_mark_step_begin()  # the last step's graph outputs are free
    run.opt.zero_grad(set_to_none=True)
    try:
        with torch.autocast(x.device.type, torch.bfloat16, enabled=config.autocast == "bfloat16"):
            terms = step_module(x, reference)
    except FloatingPointError as err:  # non-finite loss terms
        if run.world > 1:
            raise
        return lr, {"skipped": str(err)}, float("nan")
    if run.groups:
        _backward_each(run, terms)
        grad_norm = torch.nn.utils.clip_grad_norm_(run.main_params, config.grad_clip)
    else:
        terms["total"].backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(run.net.parameters(), config.grad_clip)
    if not bool(torch.isfinite(grad_norm)) and run.world == 1:
        run.opt.zero_grad(set_to_none=True)
        losses = {k: float(v.detach()) for k, v in terms.items()}
        return lr, {**losses, "skipped": "non-finite gradients"}, grad_norm
    run.opt.step()
    for declared, opt, params in run.groups:
        if declared.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(params, declared.grad_clip)
        opt.step()
    return lr, {k: float(v.detach()) for k, v in terms.items()}, grad_norm  # waits for the GPU


def _backward_each(run: _Run, terms: dict[str, Tensor]) -> None:
    """Each optimiser's loss differentiated for its own parameters only: the main total for
    the main parameters, each group's total for the group's."""
    for _, opt, _ in run.groups:
        opt.zero_grad(set_to_none=True)
    work = [(terms["total"], run.main_params)]
    work += [(terms[f"total_{g.name}"], p) for g, _, p in run.groups if f"total_{g.name}" in terms]
    for i, (loss, params) in enumerate(work):
        if loss.requires_grad:
            loss.backward(inputs=params, retain_graph=i < len(work) - 1)


SKIPS_BEFORE_RECOVERY = 3
"""Steps skipped in a row (non-finite losses or gradients) before the run goes back to its
last checkpoint with half the learning rate."""
RECOVERIES = 3
"""How many times a run goes back before it stops as diverged."""


def _after_skip(run: _Run, step: int, losses: dict[str, Any]) -> dict[str, Any] | None:
    """Count a skipped step; after :data:`SKIPS_BEFORE_RECOVERY` in a row, reload the last
    checkpoint's weights and optimiser state with half the learning rate (said with a
    warning), and return the log record that says so. ``FloatingPointError`` in one
    sentence when there is no checkpoint to go back to, or after :data:`RECOVERIES`."""
    if "skipped" not in losses:
        run.bad_in_a_row = 0
        return None
    run.skipped += 1
    run.bad_in_a_row += 1
    if run.bad_in_a_row < SKIPS_BEFORE_RECOVERY:
        return None
    why = losses["skipped"]
    lr = float(run.config.lr or 0) * run.lr_scale
    if run.recoveries >= RECOVERIES:
        raise FloatingPointError(
            f"training diverged: {run.bad_in_a_row} steps in a row to step {step} were not "
            f"finite ({why}) after the learning rate was halved {run.recoveries} times; "
            "lower lr or check the data"
        )
    try:
        meta, state, folder = load_checkpoint(run.out)
    except ValueError:
        raise FloatingPointError(
            f"training diverged: {run.bad_in_a_row} steps in a row to step {step} were not "
            f"finite ({why}) before the first checkpoint; lower lr (now {lr:g})"
        ) from None
    run.net.load_state_dict(state)
    ts = load_train_state(folder)
    run.opt.load_state_dict(ts["optimizer"])
    for group, opt, _ in run.groups:
        opt.load_state_dict(ts.get("optimizers", {}).get(group.name, opt.state_dict()))
    run.lr_scale *= 0.5
    run.recoveries += 1
    run.bad_in_a_row = 0
    warnings.warn(
        f"step {step}: {SKIPS_BEFORE_RECOVERY} steps in a row were not finite ({why}); went "
        f"back to the checkpoint of step {meta['step']} with half the learning rate "
        f"(x{run.lr_scale:g})",
        RuntimeWarning,
        stacklevel=2,
    )
    return {"step": step, "recovered": {"from_step": int(meta["step"]), "lr_scale": run.lr_scale}}


def _save(run: _Run, step: int) -> None:
    assert run.budget is not None
    run.net.finalize()  # the channel's deployment state (an entropy coder's tables)
    train_state = {
        "optimizer": run.opt.state_dict(),
        "optimizers": {g.name: opt.state_dict() for g, opt, _ in run.groups},
        "rng": torch.get_rng_state(),
        "budget": torch.tensor([run.budget.cpu_s, run.budget.wall_s], dtype=torch.float64),
        "lr_scale": torch.tensor(run.lr_scale, dtype=torch.float64),
    }
    if run.device.type == "cuda":
        train_state["cuda_rng"] = torch.cuda.get_rng_state(run.device)
    save_checkpoint(run.out, step=step, net=run.net, meta=run.meta(), train_state=train_state)


def _validate(run: _Run, step: int, val_set: TaskDataset) -> None:
    """Evaluate on the validation samples, log the metrics with the margin over the trivial
    answer and the score (:meth:`~invblocks.ric.task.Task.verdict`), and keep the network
    as ``checkpoints/best`` when its score is the best so far."""
    samples = [val_set[i] for i in range(len(val_set))]
    tag = f"step{step:08d}-"
    metrics = evaluate(run.task, run.net, samples, run.n, run.out / "samples", tag)
    verdict = run.task.verdict(metrics)
    judged = {"score": verdict.score}
    if verdict.margin is not None:
        judged["margin"] = verdict.margin
    _log(run.log_path, {"step": step, "validation": {**metrics, **judged}})
    if math.isfinite(verdict.score) and verdict.score > run.best_score:
        run.best_score = verdict.score
        run.net.finalize()
        meta = {**run.meta(), "step": step, "validation": judged}
        save_model(run.out / "checkpoints" / BEST, net=run.net, meta=meta)


def _best_score(out: Path, start: int) -> float:
    """The score of a run's ``checkpoints/best``, which a run resumed at step ``start`` keeps
    (``-inf`` where there is none). A best network from after ``start`` is one the resumed
    run may not compute again (its schedule or settings may change): it is removed, and the
    resumed run's next validation starts a new best."""
    folder = out / "checkpoints" / BEST
    try:
        config = json.loads((folder / "config.json").read_text())
        step, score = int(config["step"]), float(config["validation"]["score"])
    except (OSError, ValueError, KeyError, TypeError):
        return -math.inf
    if step > start:
        shutil.rmtree(folder, ignore_errors=True)
        return -math.inf
    return score


def _loop(
    run: _Run,
    loader: DataLoader,
    val_set: TaskDataset,
    progress: bool,
    on_step: Callable[[int, dict[str, Any], RICNet], None] | None,
) -> int:
    """The steps, with logging, validation and checkpoints; the last step done."""
    config, budget = run.config, run.budget
    assert budget is not None
    _compile(run.net, config.compile)
    step_module: nn.Module = _Step(run.task, run.net, run.n, run.objective)
    if run.world > 1:
        ids = [run.device.index] if run.device.type == "cuda" else None
        step_module = nn.parallel.DistributedDataParallel(step_module, device_ids=ids)
    bar = None
    if progress and run.rank == 0:
        from tqdm import tqdm

        total = config.total_steps if config.total_steps != UNBOUNDED_STEPS else None
        bar = tqdm(total=total, initial=run.start, desc=f"train {run.task.name}", unit="step")
    run.net.train()
    t_data = time.perf_counter()
    cpu_mark = time.process_time()
    step = run.start
    for step, batch in enumerate(loader, start=run.start + 1):
        t_step = time.perf_counter()
        data_s = t_step - t_data  # waiting for this batch
        x, reference = batch if isinstance(batch, list | tuple) else (batch, None)
        x = x.to(run.device, non_blocking=True).contiguous(memory_format=run.layout)
        if reference is not None:
            reference = reference.to(run.device, non_blocking=True)
        lr, losses, grad_norm = _step(run, step, x, step_module, reference)
        budget.cpu_s += time.process_time() - cpu_mark
        budget.wall_s += time.perf_counter() - t_data
        last = step == config.total_steps or _spent(budget, step, run.world, run.device)
        recovered = _after_skip(run, step, losses)
        if run.rank == 0:
            record = {"step": step, "lr": lr, "grad_norm": float(grad_norm), **losses}
            if "skipped" in losses:
                record["skipped_total"] = run.skipped
            if recovered is not None:
                _log(run.log_path, recovered)
            record.update(step_s=time.perf_counter() - t_step, data_s=data_s, cpu_s=budget.cpu_s)
            _log(run.log_path, record)
            if bar is not None:
                bar.set_postfix(loss=f"{record.get('total', float('nan')):.4g}")
                bar.update(1)
            if on_step is not None:
                on_step(step, record, run.net)
            if step % config.val_every == 0 or last:
                _validate(run, step, val_set)
            if step % config.ckpt_every == 0 or last:
                _save(run, step)
        t_data = time.perf_counter()
        cpu_mark = time.process_time()
        if last:
            break
    if bar is not None:
        bar.close()
    return step


def _finish(run: _Run, step: int, seconds: float) -> None:
    """Check the replicas agree (data parallel), log the end, write the report."""
    if run.world > 1:
        digests: list[Any] = [None] * run.world
        dist.all_gather_object(digests, _weights_digest(run.net))
        in_sync = len(set(digests)) == 1
        if run.rank == 0:
            record = {"step": step, "world_size": run.world, "replicas_in_sync": in_sync}
            _log(run.log_path, record)
        if not in_sync:
            raise RuntimeError(f"data-parallel replicas diverged: weight digests {digests}")
        dist.barrier()
    if run.rank == 0:
        _log(run.log_path, {"step": step, "seconds": seconds, "device": str(run.device)})
        from .report import write_report

        write_report(run.out)


def train(
    config: TrainConfig,
    out: str | Path,
    *,
    resume: bool = False,
    progress: bool = True,
    source: DataSplit | None = None,
    on_step: Callable[[int, dict[str, Any], RICNet], None] | None = None,
    task: Task | None = None,
) -> Path:
    """Train ``config.task`` and write the run folder ``out``; returns it.

    ``task``: a :class:`~invblocks.ric.task.Task` object to train instead of the registered task
    ``config.task`` names (a task defined in a notebook; :class:`~invblocks.model.Model`
    loads its runs with ``Model.load(run, task=task)``).

    With ``resume``, continues from ``out``'s latest checkpoint; on CPU the result equals an
    uninterrupted run bit for bit (data, noise and schedule are functions of the step and the
    saved RNG states; on a GPU the same holds up to the nondeterminism of its convolution
    kernels). A run with a budget (``cpu_budget``, ``time_budget``) resumes with what it has
    left, but where it stops depends on the machine's speed. A resume may extend ``steps``
    (the schedule is recomputed over the new total from the resumed step on) but not change
    the seed; a run stopped before its first checkpoint resumes from the start. A run that
    fails before its first step leaves no folder behind.

    ``on_step(step, record, net)`` is called after every step (on rank 0) with the step's
    logged record (losses, ``lr``, ``cpu_s``: the CPU seconds the steps used so far) and the
    network, e.g. to evaluate it at points of the budget; time spent in it is not counted.
    """
    run = _setup(config, Path(out), task, source)
    with _locked(run, resume):
        return _train(run, config, resume, progress, source, on_step)


def _train(
    run: _Run,
    config: TrainConfig,
    resume: bool,
    progress: bool,
    source: DataSplit | None,
    on_step: Callable[[int, dict[str, Any], RICNet], None] | None,
) -> Path:
    """:func:`train` once its run folder is locked."""
    _resume(run, resume)
    first_step_done = False
    try:
        loader, val_set = _data(run, source)
        if run.rank == 0:  # the run's config, true after a resume too
            with atomic_write(run.out / "config.json") as f:
                f.write(json.dumps(config.to_dict(), indent=2).encode())
            if run.changed:
                _log(run.log_path, {"step": run.start, "resumed": run.changed})
        t0 = time.perf_counter()

        def counted(step: int, record: dict[str, Any], net: RICNet) -> None:
            nonlocal first_step_done
            first_step_done = True
            if on_step is not None:
                on_step(step, record, net)

        step = _loop(run, loader, val_set, progress, counted)
        _finish(run, step, time.perf_counter() - t0)
    except BaseException:
        if run.rank == 0 and run.created and not first_step_done:
            shutil.rmtree(run.out, ignore_errors=True)  # a failed start leaves nothing
        raise
    return run.out


def summary(out: str | Path, task: Task | None = None) -> tuple[Verdict | None, str]:
    """How the run in ``out`` ended: the verdict on its last validation and one line,
    ``"restores 2.31 dB above the trivial answer on the validation split; embedding 34.20
    dB"``. Where a target is missed the line starts with ``warning:`` and says what to try;
    where an earlier validation scored higher, it names ``checkpoints/best``. ``task``:
    the run's task (default: the registered task its config names). ``(None, "")`` for a
    run without a validation."""
    out = Path(out)
    if task is None:
        saved = json.loads((out / "config.json").read_text())
        task = get_task(str(saved["task"]))
    from .report import read_metrics

    validations = [r for r in read_metrics(out) if isinstance(r.get("validation"), dict)]
    if not validations:
        return None, ""
    last = validations[-1]
    verdict = task.verdict(last["validation"])
    line = verdict.line()
    best = max(validations, key=lambda r: _score(r["validation"]))
    if best["step"] != last["step"] and _score(best["validation"]) > verdict.score:
        kept = task.verdict(best["validation"])
        line += (
            f" (step {best['step']} scored higher: {kept.line('its validation')}; kept in "
            f"{out / 'checkpoints' / BEST})"
        )
    if not verdict.ok:
        line = f"warning: {line}: {verdict.advice()}"
    return verdict, line


def _score(metrics: dict[str, Any]) -> float:
    value = metrics.get("score")
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else -math.inf
