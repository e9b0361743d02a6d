"""Property checks every block and every task must pass, reusable by plugin authors.

:func:`check_block` runs, on one block and one input shape, the checks its
:class:`~invblocks.block.Inversion` kind promises (the table in the design notes); hypothesis
strategies for shapes, dtypes and seeds live in :mod:`invblocks.testing.strategies`.
"""

from __future__ import annotations

import copy
import math
import warnings
from typing import Any

import torch
from torch import Tensor

from ..block import Block, Inversion, as_dims
from ..data import DataSplit
from ..ric.network import RICNet
from ..ric.task import Task
from ..sequence import Sequence

__all__ = [
    "BlockCheckError",
    "CheckNotRun",
    "SavedBytes",
    "check_block",
    "check_task",
    "perturb_parameters",
    "tolerance",
]


class BlockCheckError(AssertionError):
    """A block broke a property its inversion kind promises."""


class CheckNotRun(UserWarning):
    """A check :func:`check_block` could not run on a block (the message says which, why)."""


class SavedBytes:
    """Counts the bytes of the tensors autograd saves for the backward pass inside the block.

    Parameters and views of them are not counted (they are kept anyway); everything else
    saved by autograd nodes and custom functions (``ctx.save_for_backward``) is.
    ``bytes`` counts every save (a tensor saved by three operations counts three times:
    the size of what the graph refers to); :attr:`distinct_bytes` counts each underlying
    storage once, whole, however many saves or views refer to it: the memory the saved
    tensors actually hold while the graph is alive.

    Example:
        >>> x = torch.rand(2, 3, requires_grad=True)
        >>> with SavedBytes() as saved:
        ...     y = (x * x).sum()
        >>> saved.bytes  # x, twice (both factors of the product)
        48
        >>> saved.distinct_bytes  # one storage of 6 float32 values
        24
    """

    def __init__(self) -> None:
        self.bytes = 0
        self._storages: dict[int, int] = {}
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)

    @property
    def distinct_bytes(self) -> int:
        """Bytes of the distinct storages the saved tensors live in."""
        return sum(self._storages.values())

    def _pack(self, t: Tensor) -> Tensor:
        if not isinstance(t, torch.nn.Parameter) and not isinstance(t._base, torch.nn.Parameter):
            self.bytes += t.numel() * t.element_size()
            storage = t.untyped_storage()
            self._storages[storage.data_ptr()] = storage.nbytes()
        return t

    def __enter__(self) -> SavedBytes:
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._hooks.__exit__(*exc)


def tolerance(dtype: torch.dtype) -> float:
    """Round-trip tolerance, relative to the input's magnitude: 1e-5 (fp32), 1e-10 (fp64)."""
    return {torch.float64: 1e-10, torch.float32: 1e-5}.get(dtype, 1e-2)


def perturb_parameters(block: torch.nn.Module, scale: float, generator: torch.Generator) -> None:
    """Add ``scale * N(0, 1)`` noise to every trainable parameter, in place.

    Most blocks start as the identity (zero-initialised last convolutions); a round trip of
    an identity proves nothing, so checks run on perturbed copies. The noise is drawn on
    ``generator``'s device (the CPU for ``torch.Generator()``) and moved to each parameter's,
    so one seed perturbs a block the same way on every device.
    """
    with torch.no_grad():
        for p in block.parameters():
            if not p.requires_grad:  # frozen tensors (e.g. FrEIA's permutations) stay exact
                continue
            noise = torch.randn(
                p.shape, generator=generator, dtype=p.dtype, device=generator.device
            )
            p.add_(noise.to(p.device) * scale)


def _fail(block: Block, what: str) -> BlockCheckError:
    return BlockCheckError(f"{block._name()} ({block.inversion.name}): {what}")


def _max_rel_err(a: Tensor, b: Tensor) -> float:
    """The largest difference relative to ``b``'s magnitude; NaN when either has NaN."""
    if not bool(torch.isfinite(a).all()) or not bool(torch.isfinite(b).all()):
        return float("nan")
    return float((a - b).abs().max() / b.abs().max().clamp_min(1.0))


def _run(block: Block, xs: list[Tensor], rev: bool = False) -> tuple[tuple[Tensor, ...], Tensor]:
    out, log_det = block(xs, rev=rev)
    return tuple(out), log_det


def _check_shapes(block: Block, dims: list, xs: list[Tensor], ys: tuple, log_det: Tensor) -> None:
    batch = xs[0].shape[0]
    expected = block.output_dims(dims)
    got = [tuple(y.shape[1:]) for y in ys]
    if got != [tuple(d) for d in expected]:
        raise _fail(block, f"output_dims says {expected} but forward returned {got}")
    if log_det.shape != (batch,) or log_det.dtype != xs[0].dtype:
        raise _fail(
            block,
            f"log_det must be shape ({batch},) dtype {xs[0].dtype}; "
            f"received {tuple(log_det.shape)} {log_det.dtype}",
        )
    back = block.input_dims(expected)
    if [tuple(d) for d in back] != [tuple(d) for d in dims]:
        raise _fail(block, f"input_dims({expected}) gives {back}, expected {dims}")


def _check_rebuild(block: Block, xs: list[Tensor], ys: tuple) -> str | None:
    """The block rebuilds from its JSON config and its state dict, and then computes the
    same; the reason when it cannot be exported (unregistered, non-JSON arguments)."""
    import json

    from ..registry import block_from_config

    try:
        config = json.loads(json.dumps(block.get_config()))
    except ValueError as err:
        return f"the config round trip ({err})"
    try:
        # Cast before loading: ``load_state_dict`` copies into the existing dtype.
        again = block_from_config(config).to(device=xs[0].device, dtype=xs[0].dtype)
        again.load_state_dict(block.state_dict())
    except (ValueError, TypeError, KeyError, RuntimeError) as err:
        raise _fail(block, f"does not rebuild from its config and state dict: {err}") from err
    again.eval()
    with torch.no_grad():
        outs, _ = _run(again, xs)
    if not all(torch.allclose(a, b, rtol=0, atol=0) for a, b in zip(outs, ys, strict=True)):
        raise _fail(block, "rebuilt from its config and state dict, it computes something else")
    return None


def _check_aux(block: Block, dims: list, xs: list[Tensor], ys: tuple) -> None:
    """``forward_with_aux`` returns the forward outputs and the declared auxiliary outputs."""
    declared = block.aux_dims(dims)
    with torch.no_grad():
        outs, _, aux = block.forward_with_aux(xs)
    # the same function, perhaps computed in another order: equal to the dtype's rounding,
    # relative to the outputs' magnitude (``allclose``'s fixed 1e-8 fails float32 values
    # near zero that a sum in another order moves by 1e-7)
    if not all(
        float((a - b).abs().max()) <= tolerance(b.dtype) * max(1.0, float(b.abs().max()))
        for a, b in zip(outs, ys, strict=True)
        if b.numel()
    ):
        raise _fail(block, "forward_with_aux returns other outputs than forward")
    batch = xs[0].shape[0]
    got = {k: tuple(v.shape[1:]) for k, v in aux.items()}
    if got != {k: tuple(v) for k, v in declared.items()}:
        raise _fail(block, f"aux_dims declares {declared} but forward_with_aux returned {got}")
    wrong = [k for k, v in aux.items() if v.shape[0] != batch or v.dtype != xs[0].dtype]
    if wrong:
        raise _fail(block, f"auxiliary outputs {wrong} are not (B, ...) in the input dtype")


def _check_log_det(block: Block, xs: list[Tensor], log_det: Tensor, tol: float) -> None:
    """Compare the returned log-det with slogdet of the autograd Jacobian, sample by sample
    (all inputs flattened into one vector, all outputs into another)."""
    for i in range(xs[0].shape[0]):
        parts = [x[i : i + 1] for x in xs]
        sizes = [p.numel() for p in parts]

        def f(v: Tensor, sizes: list[int] = sizes, parts: list[Tensor] = parts) -> Tensor:
            chunks = v.split(sizes)
            ins = [c.reshape(p.shape) for c, p in zip(chunks, parts, strict=True)]
            ys, _ = block(ins)
            return torch.cat([y.reshape(-1) for y in ys])

        flat = torch.cat([p.reshape(-1) for p in parts])
        jac = torch.autograd.functional.jacobian(f, flat, vectorize=True)
        if jac.shape[0] != jac.shape[1]:
            raise _fail(block, f"an EXACT block maps {jac.shape[1]} values to {jac.shape[0]}")
        sign, logabs = torch.linalg.slogdet(jac)
        bound = 100 * tol * max(1.0, abs(float(logabs)))
        if sign == 0 or not abs(float(logabs - log_det[i])) <= bound:
            raise _fail(
                block,
                f"log_det {float(log_det[i]):.8g} differs from slogdet of the Jacobian "
                f"{float(logabs):.8g} (sample {i})",
            )


def _probe_dims(block: Block, dims: list, limit: int) -> list | None:
    """Input shapes with at most ``limit`` values in all, that the block accepts, for the
    log-det check: ``dims`` themselves, else the same channels at a smaller spatial size
    (the log-det of the blocks here is a per-pixel sum), else ``None``."""
    if sum(math.prod(d) for d in dims) <= limit:
        return dims
    for side in (8, 6, 4, 2):
        smaller = [(d[0], min(side, d[1]), min(side, d[2])) if len(d) == 3 else d for d in dims]
        if sum(math.prod(d) for d in smaller) > limit:
            continue
        try:
            block.output_dims(smaller)
        except (ValueError, TypeError):
            continue
        return smaller
    return None


def _check_gradients(block: Block, xs: list[Tensor], generator: torch.Generator) -> None:
    """Every trainable parameter gets a non-zero gradient from a loss on both directions."""
    params = [(n, p) for n, p in block.named_parameters() if p.requires_grad]
    if not params:
        return
    block.zero_grad(set_to_none=True)
    ys, log_det = _run(block, xs)
    loss = log_det.sum()
    for y in ys:
        w = torch.randn(y.shape, generator=generator, dtype=y.dtype, device=generator.device)
        loss = loss + (w.to(y.device) * y).sum()
    back, _ = _run(block, list(ys), rev=True)
    for x in back:
        w = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=generator.device)
        loss = loss + (w.to(x.device) * x).sum()
    loss.backward()
    dead = [n for n, p in params if p.grad is None or not bool(p.grad.abs().sum() > 0)]
    if dead:
        raise _fail(block, f"no gradient reaches parameter(s) {dead}")


def check_block(
    block: Block,
    dims: Any,
    *,
    batch: int = 2,
    dtype: torch.dtype = torch.float64,
    seed: int = 0,
    perturb: float = 0.05,
    log_det_max_numel: int = 1024,
    check_gradients: bool = True,
    low: float = -1.0,
    high: float = 1.0,
    device: str | torch.device = "cpu",
) -> list[str]:
    """Check the properties ``block``'s inversion kind promises, on inputs of shape ``dims``.

    The block is copied, cast to ``dtype`` and its parameters perturbed by ``perturb``
    (see :func:`perturb_parameters`); the original is not modified. Inputs are uniform in
    ``[low, high)`` (signed by default: an inverse right only for positive values fails)
    from a generator seeded with ``seed``. The copy and the inputs are then
    moved to ``device`` (the same seed gives the same block and inputs on every device).
    Every kind is checked for: output shapes equal to ``output_dims``, ``input_dims``
    inverting ``output_dims``, a ``(B,)`` log-det in the input dtype, the auxiliary outputs
    of ``forward_with_aux`` with the shapes ``aux_dims`` declares (and its outputs those of
    ``forward``), outputs on ``device``,
    inputs left unmodified, deterministic eval output, the global RNGs (the CPU's and the
    device's) untouched, (optionally) a gradient reaching every trainable parameter, and a
    rebuild from its JSON config and state dict that computes the same (reported as not run
    for a block that cannot be exported: unregistered, or with non-JSON arguments).
    Then, by kind:

    * ``EXACT``: ``inverse(forward(x)) == x`` within :func:`tolerance`, the inverse's log-det
      is the negative of the forward's, and the log-det equals ``slogdet`` of the autograd
      Jacobian, on the inputs when they have at most ``log_det_max_numel`` values in all
      (several inputs flattened together), else on inputs of the same channels at a smaller
      spatial size the block accepts; when there is none, the check is reported as not run;
    * ``LEFT``: ``inverse(forward(x)) == x`` within :func:`tolerance`;
    * ``LOSSY``: ``forward(inverse(y)) == y`` within :func:`tolerance`;
    * ``STE``: eval forward is idempotent (``f(f(x)) == f(x)`` exactly; left out for blocks
      that declare ``idempotent = False``, such as a JPEG codec) and the inverse maps the
      output back to itself;
    * ``LEARNED``: the *unperturbed* block is the identity in both directions (as the
      reference initialises it; left out for blocks that declare ``starts_as_identity =
      False``, such as CompressAI's attention block, which no initialisation makes the
      identity);
    * ``AUGMENTED``: the common checks only.

    A :class:`~invblocks.sequence.Sequence` is checked as a whole (the kind checks only when it is
    EXACT or LEFT throughout) and then node by node at the shapes it infers; a
    :class:`~invblocks.ric.network.RICNet` as a whole, then its body and its channel.

    Returns the checks that could not run on this block (each also warned as
    :class:`CheckNotRun`), e.g. the idempotence of an ``STE`` block that declares
    ``idempotent = False`` (a codec).

    Raises:
        BlockCheckError: naming the block, its kind and the property that failed.
    """
    dims = as_dims(dims)
    device = torch.device(device)
    gen = torch.Generator().manual_seed(seed)
    tol = tolerance(dtype)
    original = block
    block = copy.deepcopy(block).to(dtype).eval()
    if perturb:
        perturb_parameters(block, perturb, gen)
    block = block.to(device)
    xs = [
        (low + (high - low) * torch.rand((batch, *d), generator=gen, dtype=dtype)).to(device)
        for d in dims
    ]
    saved = [x.clone() for x in xs]
    rng_state = _rng_states(device)
    skipped: list[str] = []

    with torch.no_grad():
        ys, log_det = _run(block, xs)
        if not all(torch.equal(a, b) for a, b in zip(xs, saved, strict=True)):
            raise _fail(block, "forward modified its input in place")
        ys_again, _ = _run(block, xs)
    if not all(torch.equal(a, b) for a, b in zip(ys, ys_again, strict=True)):
        raise _fail(block, "forward is not deterministic in eval mode")
    _check_shapes(block, dims, xs, ys, log_det)
    _check_aux(block, dims, xs, ys)
    misplaced = [str(t.device) for t in (*ys, log_det) if t.device != xs[0].device]
    if misplaced:
        raise _fail(block, f"outputs on {misplaced}, expected them on the input's {device}")

    kind: Inversion | None = block.inversion
    composite = isinstance(original, Sequence | RICNet)
    if composite and kind not in (Inversion.EXACT, Inversion.LEFT):
        kind = None  # a mixed chain promises nothing as a whole; its parts are checked below
    with torch.no_grad():
        if kind in (Inversion.EXACT, Inversion.LEFT):
            back, log_det_rev = _run(block, list(ys), rev=True)
            for x, xb in zip(xs, back, strict=True):
                err = _max_rel_err(xb, x)
                if not err <= tol:  # NaN fails too
                    raise _fail(block, f"inverse(forward(x)) differs from x by {err:.3g} > {tol:g}")
            if kind is Inversion.EXACT:
                scale = max(1.0, float(log_det.abs().max()))
                if not float((log_det + log_det_rev).abs().max()) <= tol * scale * 10:
                    raise _fail(block, "the inverse's log_det is not the negative of the forward's")
        elif kind is Inversion.LOSSY:
            back, _ = _run(block, list(ys), rev=True)
            again, _ = _run(block, list(back))
            for y, ya in zip(ys, again, strict=True):
                err = _max_rel_err(ya, y)
                if not err <= tol:
                    raise _fail(block, f"forward(inverse(y)) differs from y by {err:.3g} > {tol:g}")
        elif kind is Inversion.STE:
            again, _ = _run(block, list(ys))
            back, _ = _run(block, list(ys), rev=True)
            if not getattr(block, "idempotent", True):
                skipped.append("idempotence (the block declares idempotent = False)")
            elif not all(torch.equal(a, b) for a, b in zip(again, ys, strict=True)):
                raise _fail(block, "quantisation is not idempotent: f(f(x)) != f(x)")
            if not all(torch.equal(a, b) for a, b in zip(back, ys, strict=True)):
                raise _fail(block, "the inverse does not return the quantised values unchanged")
        elif kind is Inversion.LEARNED and not getattr(block, "starts_as_identity", True):
            skipped.append("identity at initialisation (starts_as_identity = False)")
        elif kind is Inversion.LEARNED:
            fresh = copy.deepcopy(original).to(device=device, dtype=dtype).eval()
            fy, _ = _run(fresh, xs)
            fb, _ = _run(fresh, xs, rev=True)
            if not all(torch.equal(a, b) for a, b in zip(fy + fb, xs + xs, strict=False)):
                raise _fail(
                    block, "a LEARNED block must be the identity at initialisation both ways"
                )

    if kind is Inversion.EXACT:
        probe = _probe_dims(block, dims, log_det_max_numel)
        if probe is None:
            skipped.append(
                f"the log-det (no input of at most {log_det_max_numel} values is accepted)"
            )
        else:
            px = (
                xs
                if probe == dims
                else [
                    (low + (high - low) * torch.rand((batch, *d), generator=gen, dtype=dtype)).to(
                        device
                    )
                    for d in probe
                ]
            )
            with torch.no_grad():
                _, probe_log_det = _run(block, px)
            _check_log_det(block, px, probe_log_det, tol)
    if not all(torch.equal(a, b) for a, b in zip(rng_state, _rng_states(device), strict=True)):
        raise _fail(block, "the block touched torch's global random generator")
    if check_gradients:
        _check_gradients(block.train(), [x.clone() for x in xs], gen)
    block.eval()
    reason = _check_rebuild(block, xs, ys)
    if reason:
        skipped.append(reason)
    for what in skipped:
        warnings.warn(
            f"check_block: {block._name()}: {what} not checked", CheckNotRun, stacklevel=2
        )
    parts: list[tuple[Block, Any]] = []
    if isinstance(original, Sequence):
        parts = list(zip(original, original.shapes, strict=False))
    elif isinstance(original, RICNet):
        parts = [(original.body, dims), (original.channel, [original.embedding_dims])]
    for part, part_dims in parts:
        skipped += check_block(
            part,
            part_dims,
            batch=batch,
            dtype=dtype,
            seed=seed,
            perturb=perturb,
            log_det_max_numel=log_det_max_numel,
            check_gradients=check_gradients,
            low=low,
            high=high,
            device=device,
        )
    return skipped


def _check_rebuilds(net: Block, dims: tuple[int, ...], fail: Any) -> None:
    """The network rebuilds from its JSON config, and with its weights computes the same."""
    import json

    from ..registry import block_from_config

    try:
        config = json.loads(json.dumps(net.get_config()))
        again = block_from_config(config)
        again.load_state_dict(net.state_dict())
    except (ValueError, TypeError, KeyError, RuntimeError) as err:
        raise fail(f"its network cannot be rebuilt from its config: {err}") from err
    first = next(net.parameters(), None)
    device = first.device if first is not None else torch.device("cpu")
    again = again.to(device).eval()
    was = net.training
    x = torch.rand((1, *dims), generator=torch.Generator().manual_seed(0)).to(device)
    with torch.no_grad():
        same = torch.equal(net.eval()([x])[0][0], again([x])[0][0])
    net.train(was)
    if not same:
        raise fail("its network rebuilt from its config computes something else")


def _rng_states(device: torch.device) -> list[Tensor]:
    """The global generators' states a block must leave alone: the CPU's, and the GPU's."""
    states = [torch.get_rng_state()]
    if device.type == "cuda":
        states.append(torch.cuda.get_rng_state(device))
    return states


def check_task(
    task: Task,
    *,
    network: Block | None = None,
    crop: int | None = None,
    steps: int = 2,
    batch: int = 2,
    seed: int = 0,
    source: DataSplit | None = None,
    device: str | torch.device = "cpu",
) -> dict[str, float]:
    """Validate a task end to end on small crops of its default data (or ``source``).

    Checks that the data load and give deterministic samples of shape ``(n*C, crop, crop)``
    in ``[0, 1]`` for the smallest, default and largest input counts; that
    :meth:`~invblocks.ric.task.Task.stack` and :meth:`~invblocks.ric.task.Task.unstack` invert each
    other; that the reference has shape ``(B, embed_channels, crop/scale, crop/scale)``; that
    the network (``network`` or the task's default, a :class:`~invblocks.ric.network.RICNet`)
    maps a sample to an embedding of the reference's shape, with the auxiliary outputs its
    blocks declare; that the objective's names are known and every loss term is finite and
    reaches at least one parameter, and their total every trainable parameter; and that
    ``steps`` training steps give finite losses. The network and the steps run on
    ``device`` (the network is moved there in place), so a task whose reference or losses
    create tensors on the wrong device fails here. Returns the last step's loss terms.

    Raises:
        AssertionError: naming the task and the broken property; data errors propagate.
    """
    from ..ric.network import as_ricnet
    from ..ric.step import ric_step

    def fail(what: str) -> AssertionError:
        return AssertionError(f"task {task.name!r}: {what}")

    crop = crop or max(
        task.min_crop, 32 // (task.multiple * task.scale) * task.multiple * task.scale
    )
    source = source or task.default_data()
    if not source.train or not source.val:
        raise fail("the default data have no training or no validation items")
    lo, hi = task.inputs
    for n in sorted({lo, task.default_inputs, hi}):
        for split in ("train", "val"):
            data = task.dataset(source, split, n_inputs=n, crop=crop, length=2, seed=seed)
            (a, given), (b, given_b) = _pair(data[0]), _pair(data[0])
            if a.shape != (n * task.image_channels, crop, crop):
                raise fail(f"{split} sample has shape {tuple(a.shape)} for {n} inputs, crop {crop}")
            if not torch.equal(a, b) or (
                given is not None and (given_b is None or not torch.equal(given, given_b))
            ):
                raise fail(f"{split} samples are not deterministic")
            if a.dtype != torch.float32 or float(a.min()) < 0 or float(a.max()) > 1:
                raise fail(f"{split} samples must be float32 in [0, 1]")
            back = task.stack(task.unstack(a, n))
            if not torch.equal(back, a):
                raise fail("stack(unstack(x)) != x")
            r = task.reference_of(a[None], n, None if given is None else given[None])
            if r is None:
                continue  # a task without a reference
            size = crop // task.scale
            if tuple(r.shape) != (1, task.embed_channels, size, size):
                raise fail(
                    f"reference has shape {tuple(r.shape)}; expected "
                    f"(1, {task.embed_channels}, {size}, {size})"
                )
    n = task.default_inputs
    try:  # the trainer builds the network with a seeded generator
        built = task.build_network(n, generator=torch.Generator().manual_seed(seed))
    except TypeError as err:
        raise fail(f"its network function does not take the trainer's generator=: {err}") from err
    net = as_ricnet(network if network is not None else built)
    net = net.to(device)
    _check_rebuilds(net, (n * task.image_channels, crop, crop), fail)
    objective = task.objective(net)
    data = task.dataset(source, "train", n_inputs=n, crop=crop, length=batch * steps, seed=seed)
    net.eval()
    with torch.no_grad():
        x, ref = _batch(data, 0, batch, device)
        result = net.round_trip(x)
    reference = task.reference_of(x, n, ref)
    if reference is not None and result.embedding.shape != reference.shape:
        raise fail(
            f"the network's embedding {tuple(result.embedding.shape)} does not match the reference"
        )
    declared = net.aux_dims([tuple(x.shape[1:])])
    got = {k: tuple(v.shape[1:]) for k, v in result.aux.items()}
    if got != {k: tuple(v) for k, v in declared.items()}:
        raise fail(f"the network declares auxiliary outputs {declared}; it returned {got}")
    net.train()
    params = [p for p in net.parameters() if p.requires_grad]
    terms = ric_step(task, net, x, n, objective=objective, reference=ref)
    reached: set[int] = set()
    for name, value in terms.items():
        hit: set[int] = set()
        if value.requires_grad:
            grads = torch.autograd.grad(value, params, retain_graph=True, allow_unused=True)
            hit = {i for i, g in enumerate(grads) if g is not None}
        if params and not hit:
            raise fail(f"loss term {name!r} reaches no parameter of the network")
        reached |= hit
    reached_ids = {id(params[i]) for i in reached}
    unreached = [
        name for name, p in net.named_parameters() if p.requires_grad and id(p) not in reached_ids
    ]
    if unreached:
        raise fail(f"no loss term reaches the parameters {unreached[:5]}")
    opt = torch.optim.Adam(params, lr=1e-4)
    for step in range(steps):
        x, ref = _batch(data, step * batch, batch, device)
        terms = ric_step(task, net, x, n, objective=objective, reference=ref)
        opt.zero_grad(set_to_none=True)
        torch.stack([v for k, v in terms.items() if k.startswith("total")]).sum().backward()
        opt.step()
    return {k: float(v.detach()) for k, v in terms.items()}


def _pair(sample: Any) -> tuple[Tensor, Tensor | None]:
    """``(x, reference)`` of a data set's sample (``reference`` ``None`` unless paired)."""
    return (sample[0], sample[1]) if isinstance(sample, tuple | list) else (sample, None)


def _batch(data: Any, start: int, batch: int, device: Any) -> tuple[Tensor, Tensor | None]:
    """Samples ``start .. start + batch`` stacked: ``(x, references or None)``."""
    pairs = [_pair(data[start + i]) for i in range(batch)]
    x = torch.stack([p[0] for p in pairs]).to(device)
    if pairs[0][1] is None:
        return x, None
    return x, torch.stack([p[1] for p in pairs if p[1] is not None]).to(device)
