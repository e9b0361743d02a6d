"""RIC training steps side by side: the IICNet st-01 step and the WIN hiding step.

``--network st01`` (default): 5 RGB frames, relation module, 10 couplings, channel squeeze,
noise quantiser, the video task's losses. ``--network win_hiding``: WIN for one secret
(cover + secret, 2.34M parameters), the hiding task's losses plus WIN's WIC constraints. One
step = forward, quantise, inverse, losses, backward, gradient clipping, Adam. Each variant
runs in its own process (so its peak resident memory is its own), the variants are
interleaved over ``--repeats`` rounds, and the table reports, per variant, the median over
rounds of its time and memory divided by the default's *from the same round*, which cancels
most of a shared machine's drift.

Variants: ``invblocks`` (contiguous layout, plain autograd), ``channels_last``, ``cli``
(channels-last and :func:`invblocks.runtime.tune_malloc`: what ``invblocks train`` runs),
``compact_dense`` (channels-last and :func:`invblocks.blocks.dense.set_compact_dense`),
``cli_split_all`` (``cli`` with every dense-block convolution split over its input pieces
instead of the last two: ``benchmarks.dense_block``'s ``split_all_cl`` path),
``memory_saving``, ``compiled`` (``torch.compile``; the first step, which compiles, is not
timed; inductor draws the quantiser's noise with ATen's generator, ``fallback_random``, so the
draws match the other variants'), ``cli_compiled`` (``cli`` compiled that way),
``compiled_graphs`` (``torch.compile(mode="reduce-overhead")``: on a GPU the compiled graphs
are replayed as CUDA graphs, one launch instead of thousands of kernel launches), ``bf16``
(``torch.autocast("cpu", dtype=torch.bfloat16)``), ``cli_bf16`` (``cli`` under that autocast:
what ``invblocks train --set autocast=bfloat16`` runs); st-01 only:
``freia``, the same network with each coupling replaced by FrEIA's own
``GLOWCouplingBlock`` computing the same function with the same weights
(:func:`invblocks.freia.coupling_to_freia`), and
``freia_glow``, plain GLOW couplings with dense-block subnets (two subnets per coupling
instead of three: a different, cheaper function, for scale), and ``reference``: the IICNet
authors' own modules (relation module, coupling stack, channel squeeze) imported from a
checkout of their repository given with ``--reference-code PATH`` (the folder holding
``codes/``), run as their training step runs them (contiguous layout) with invblocks'
weights copied in, invblocks' quantiser (theirs calls ``.cuda()``) and the same losses.

The last column is the relative difference of the loss after the timed Adam updates from the
default's: zero (or float rounding) for variants that compute the same function; at
initialisation every coupling is the identity, so a different function only shows after
updates.

``--device cuda`` runs every variant on the GPU (the step synchronises before its time is
taken; memory is then the peak of ``torch.cuda.max_memory_allocated``, not the resident set;
PyTorch's default TF32 convolutions stay on, as users get them).

Run: ``python -m benchmarks.train_step [--network st01] [--batch 1] [--size 144]
[--repeats 3] [--steps 2] [--variants ...] [--reference-code PATH] [--device cpu]``
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from pathlib import Path

from ._runner import run_interleaved, write_record

NETWORKS = {"st01": ("video", 5), "win_hiding": ("hiding", 2)}
VARIANTS = (
    "invblocks",
    "channels_last",
    "memory_saving",
    "compiled",
    "bf16",
    "freia",
    "freia_glow",
    "cli",
    "cli_bf16",
    "cli_compiled",
    "compiled_graphs",
    "compact_dense",
    "cli_split_all",
    "reference",
)


def build(variant: str, network: str, size: int):
    import FrEIA.modules as Fm
    import torch

    import invblocks
    from invblocks import RICNet, Sequence, presets
    from invblocks import blocks as B
    from invblocks.freia import coupling_to_freia

    g = torch.Generator().manual_seed(0)
    name, n = NETWORKS[network]
    if network == "win_hiding":
        if variant.startswith("freia"):
            raise ValueError(f"variant {variant!r} exists for --network st01 only")
        net = invblocks.get_task(name).build_network(n, preset="win", generator=g)
        net.memory_saving = variant == "memory_saving"
        return net
    if variant != "freia_glow":
        net = presets.iicnet(n, size=(size, size), generator=g)
        net.memory_saving = variant == "memory_saving"
        if variant == "freia":
            same = Sequence(3 * n, size, size)
            for node in net.body:
                same.append(coupling_to_freia(node) if isinstance(node, B.AffineCoupling) else node)
            net = RICNet(same, net.channel)
        return net
    net = Sequence(3 * n, size, size)
    net.append(B.RelationModule, n_images=n, generator=g)
    for _ in range(10):
        net.append(
            Fm.GLOWCouplingBlock,
            subnet_constructor=lambda c_in, c_out: B.DenseBlock(c_in, c_out, generator=g),
            clamp=1.0,
        )
    net.append(B.ChannelSqueeze, out_channels=3)
    return RICNet(net)


def _copy_dense(src, dst) -> None:
    """invblocks ``DenseBlock`` weights into a module with ``conv1`` ... ``conv5``."""
    for k, conv in enumerate([*src.convs, src.out], start=1):
        getattr(dst, f"conv{k}").load_state_dict(conv.state_dict())


def build_reference(code: Path, size: int):
    """The reference st-01 modules from the checkout ``code``, holding invblocks' weights.

    Returns ``(modules, ours)``: ``modules = (rel, block, cs)`` from the reference code and
    the invblocks network built with the same seed (its quantiser is used for both).
    """
    import torch
    from torch import nn

    from invblocks import presets

    sys.path.insert(0, str(Path(code) / "codes"))
    from models.modules.CSLayer import CSLayer
    from models.modules.InvBlock import InvBlock
    from models.modules.RelModule import RelModule

    n = NETWORKS["st01"][1]
    ours = presets.iicnet(n, size=(size, size), generator=torch.Generator().manual_seed(0))
    rel = RelModule({"use_rel": True, "num_of_frames": n, "nf": 64})
    block = InvBlock({"block_num": 10, "type": "DBNet", "split_len1": 3, "split_len2": 3 * n - 3})
    cs = CSLayer({"out_nc": 3, "in_nc": 3 * n})
    relation = ours.body[0]
    pairs = ((relation.forward_net, rel.forw_rel), (relation.inverse_net, rel.back_rel))
    for mine, theirs in pairs:
        for i in range(n):
            _copy_dense(mine.headers[i][0], theirs.DB_heads[i])
            theirs.conv_1x1_heads[i].load_state_dict(mine.headers[i][1].state_dict())
            theirs.conv_merges[i].load_state_dict(mine.tailers[i][0].state_dict())
            theirs.conv_1x1_tails[i].load_state_dict(mine.tailers[i][1].state_dict())
            _copy_dense(mine.tailers[i][2], theirs.DB_tails[i])
    for coupling, arch in zip(list(ours.body)[1:11], block.operations, strict=True):
        for name in "FGH":
            _copy_dense(getattr(coupling, name), getattr(arch, name))
    counts = [sum(p.numel() for p in m.parameters()) for m in (nn.ModuleList([rel, block]), ours)]
    if counts[0] != counts[1]:
        raise RuntimeError(f"reference: {counts[0]:,} parameters, invblocks: {counts[1]:,}")
    return (rel, block, cs), ours


def reference_step(modules, quantizer, task, x, n: int) -> dict:
    """The reference training step's graph: forward, quantise, inverse, the task's losses."""
    from invblocks.ric import RICBatch, RICResult

    rel, block, cs = modules
    e = cs(block(rel(x)))
    q = quantizer([e])[0][0]
    restored = rel(block(cs(q, rev=True), rev=True), rev=True)
    reference = task.reference(x, n)
    result = RICResult(embedding=e, received=q, restored=restored)
    return task.objective()(result, RICBatch(inputs=x, reference=reference, n_images=n))


def make_step(
    variant: str,
    network: str,
    batch: int,
    size: int,
    reference_code: Path | None = None,
    device: str = "cpu",
):
    """Set up ``variant`` (network, optimiser, input) on ``device`` and return ``step``: one
    training step (forward, quantise, inverse, losses, backward, clipping, Adam) returning the
    loss before the update. Variant-wide switches (``tune_malloc``, the split-all dense
    blocks) apply to this whole process, which is why every variant runs in its own."""
    import torch
    from torch import nn

    import invblocks
    from invblocks.ric import ric_step

    torch.manual_seed(0)
    if variant in ("cli", "cli_bf16", "cli_split_all", "cli_compiled"):
        from invblocks.runtime import tune_malloc

        tune_malloc()
    if variant == "cli_split_all":  # this process only: every dense block splits every conv
        from invblocks.blocks import DenseBlock

        from .dense_block import split_all

        DenseBlock._forward_split_tail = split_all
    name, n = NETWORKS[network]
    task = invblocks.get_task(name)
    if variant == "reference":
        if network != "st01" or reference_code is None:
            raise ValueError("variant 'reference' needs --network st01 and --reference-code PATH")
        modules, ours = build_reference(reference_code, size)
        net = nn.ModuleList(modules)
        quantizer = ours.channel

        def step_fn(task, net, x, n):
            return reference_step(modules, quantizer, task, x, n)

    else:
        net = build(variant, network, size)
        step_fn = ric_step
    torch.manual_seed(0)  # the quantiser's noise: the same draws whatever the build consumed
    if variant in ("compiled", "cli_compiled", "compiled_graphs"):
        import torch._inductor.config

        torch._inductor.config.fallback_random = True  # the same noise draws as eager
        mode = "reduce-overhead" if variant == "compiled_graphs" else None
        net.compile_body(mode=mode)  # the first step compiles (not timed below)
    net = net.to(device)
    opt = torch.optim.Adam(net.parameters(), lr=2e-4, weight_decay=1e-5)
    x = torch.rand(batch, 3 * n, size, size, generator=torch.Generator().manual_seed(1))
    x = x.to(device)
    if variant == "compact_dense":
        from invblocks.blocks import set_compact_dense

        set_compact_dense(net)
    channels_last = ("channels_last", "cli", "cli_bf16", "cli_split_all", "cli_compiled")
    if variant in channels_last or variant == "compact_dense":
        net = net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    bf16 = variant in ("bf16", "cli_bf16")
    cuda = torch.device(device).type == "cuda"

    def step() -> float:
        if variant == "compiled_graphs":
            torch.compiler.cudagraph_mark_step_begin()
        with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=bf16):
            terms = step_fn(task, net, x, n)
        loss = float(terms["total"].detach())
        opt.zero_grad(set_to_none=True)
        terms["total"].backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 10.0)
        opt.step()
        if cuda:
            torch.cuda.synchronize()
        return loss

    return step


def run_variant(
    variant: str,
    network: str,
    batch: int,
    size: int,
    steps: int,
    reference_code: Path | None = None,
    device: str = "cpu",
) -> dict:
    """``steps + 1`` steps of ``variant``; the first (warm-up, compilation) is not timed.

    On a GPU the result also holds ``peak_cuda_mb``, the peak of the memory PyTorch
    allocated there (the ratios use it)."""
    step = make_step(variant, network, batch, size, reference_code, device)
    times, losses = [], []
    for _ in range(steps + 1):
        t = time.perf_counter()
        losses.append(step())
        times.append(time.perf_counter() - t)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = {
        "variant": variant,
        "step_s": statistics.median(times[1:]),
        "peak_rss_mb": peak_kb / 1024,
        "first_loss": losses[0],
        "last_loss": losses[-1],
    }
    if device != "cpu":
        import torch

        result["peak_cuda_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return result


def _memory(run: dict) -> float:
    """The peak memory a run is compared by: the GPU's when it ran on one, else the RSS."""
    return run.get("peak_cuda_mb", run["peak_rss_mb"])


def baseline(variants) -> str:
    """The variant the ratios are taken to: ``invblocks`` when it runs, else the first."""
    variants = list(variants)
    return "invblocks" if "invblocks" in variants or not variants else variants[0]


def summarise(results: dict[str, list[dict]]) -> dict[str, dict]:
    """Per variant: medians of its time and memory over rounds, and the medians of the
    per-round ratios to the :func:`baseline` variant measured in the same round."""
    base_runs = results.get(baseline(results), [])
    summary: dict[str, dict] = {}
    for v, runs in results.items():
        pairs = [
            (x, b)
            for x, b in zip(runs, base_runs, strict=False)
            if "error" not in x and "error" not in b
        ]
        if not pairs:
            failed = [x for x in [*runs, *base_runs] if "error" in x]
            summary[v] = {"error": failed[-1]["error"] if failed else "no default to compare"}
            continue
        summary[v] = {
            "step_s": statistics.median(x["step_s"] for x, _ in pairs),
            "peak_rss_mb": statistics.median(x["peak_rss_mb"] for x, _ in pairs),
            "time_ratio": statistics.median(x["step_s"] / b["step_s"] for x, b in pairs),
            "memory_ratio": statistics.median(_memory(x) / _memory(b) for x, b in pairs),
            "last_loss_rel_diff": max(
                abs(x["last_loss"] - b["last_loss"]) / abs(b["last_loss"]) for x, b in pairs
            ),
        }
        if "peak_cuda_mb" in pairs[0][0]:
            summary[v]["peak_cuda_mb"] = statistics.median(x["peak_cuda_mb"] for x, _ in pairs)
    return summary


def step_parser(description: str, steps: int, variants: list[str]) -> argparse.ArgumentParser:
    """The command line of the per-variant step benchmarks (this one and ``step_profile``)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--network", choices=sorted(NETWORKS), default="st01")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--size", type=int, default=144)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=steps, help="timed steps per process")
    parser.add_argument("--variants", nargs="+", default=variants)
    parser.add_argument("--out", type=Path, default=None, help="JSON results")
    parser.add_argument(
        "--reference-code",
        type=Path,
        default=None,
        help="checkout of the IICNet authors' repository (the folder holding codes/), "
        "for the 'reference' variant",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    return parser


def child_arguments(args: argparse.Namespace) -> list[str]:
    """What every child process is passed; leaves ``reference`` out of ``args.variants``
    (and says so) when no ``--reference-code`` was given."""
    child_args = ["--network", args.network, "--batch", str(args.batch)]
    child_args += ["--size", str(args.size), "--steps", str(args.steps)]
    if args.reference_code is not None:
        child_args += ["--reference-code", str(args.reference_code.resolve())]
    elif "reference" in args.variants:
        args.variants = [v for v in args.variants if v != "reference"]
        print("variant 'reference' left out: no --reference-code given", file=sys.stderr)
    return child_args


def main() -> None:
    parser = step_parser(__doc__.splitlines()[0], steps=3, variants=list(VARIANTS))
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    args = parser.parse_args()
    if args.child:
        result = run_variant(
            args.child,
            args.network,
            args.batch,
            args.size,
            args.steps,
            args.reference_code,
            args.device,
        )
        print(json.dumps(result))
        return
    args.out = args.out or Path(f"outputs/bench/{args.network}_step.json")
    child_args = [*child_arguments(args), "--device", args.device]
    results = run_interleaved("benchmarks.train_step", args.variants, args.repeats, child_args)
    summary = summarise(results)
    print(
        f"{args.network} step, batch {args.batch}, {args.size}x{args.size}, "
        f"medians over {args.repeats} rounds of per-round ratios to {baseline(args.variants)!r}"
        + (f", on {args.device}" if args.device != "cpu" else "")
    )
    print(f"{'variant':<15} {'time ratio':>10} {'memory ratio':>13} {'loss rel. diff':>15}")
    for v, row in summary.items():
        if "error" in row:
            print(f"{v:<15} failed: {row['error']}")
            continue
        print(
            f"{v:<15} {row['time_ratio']:>10.2f} {row['memory_ratio']:>13.2f} "
            f"{row['last_loss_rel_diff']:>15.1e}"
        )
    write_record(args.out, args, results, summary)


if __name__ == "__main__":
    main()
