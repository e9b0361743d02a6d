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
``memory_saving``, ``compiled`` (``torch.compile``; the first step, which compiles, is not
timed), ``bf16`` (``torch.autocast("cpu", dtype=torch.bfloat16)``); st-01 only: ``freia``,
the same network with each coupling replaced by FrEIA's own ``GLOWCouplingBlock`` computing
the same function with the same weights (:func:`invblocks.freia.coupling_to_freia`), and
``freia_glow``, plain GLOW couplings with dense-block subnets (two subnets per coupling
instead of three: a different, cheaper function, for scale). The last column is the relative
difference of the loss after the timed Adam updates from the default's: zero (or float
rounding) for variants that compute the same function; at initialisation every coupling is
the identity, so a different function only shows after updates.

Run: ``python -m benchmarks.train_step [--network st01] [--batch 1] [--size 144]
[--repeats 3] [--steps 2] [--variants ...]``
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
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
    "compact_dense",
)


def build(variant: str, network: str, size: int):
    import FrEIA.modules as Fm
    import torch

    import invblocks
    from invblocks import Sequence, presets
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
            for node in net:
                same.append(coupling_to_freia(node) if isinstance(node, B.AffineCoupling) else node)
            net = same
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
    net.append(B.Quantizer)
    return net


def run_variant(variant: str, network: str, batch: int, size: int, steps: int) -> dict:
    import torch

    import invblocks
    from invblocks.training import ric_step

    torch.manual_seed(0)
    if variant == "cli":
        from invblocks.runtime import tune_malloc

        tune_malloc()
    name, n = NETWORKS[network]
    task = invblocks.get_task(name)
    net = build(variant, network, size)
    step_fn = ric_step
    if variant == "compiled":
        net = torch.compile(net)  # the first step includes compilation (excluded below)
    opt = torch.optim.Adam(net.parameters(), lr=2e-4, weight_decay=1e-5)
    x = torch.rand(batch, 3 * n, size, size, generator=torch.Generator().manual_seed(1))
    if variant == "compact_dense":
        from invblocks.blocks import set_compact_dense

        set_compact_dense(net)
    if variant in ("channels_last", "cli", "compact_dense"):
        net = net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    times, first_total = [], None
    for _ in range(steps + 1):
        t = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=variant == "bf16"):
            terms = step_fn(task, net, x, n)
        last_total = float(terms["total"].detach())
        if first_total is None:
            first_total = last_total
        opt.zero_grad(set_to_none=True)
        terms["total"].backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 10.0)
        opt.step()
        times.append(time.perf_counter() - t)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "variant": variant,
        "step_s": statistics.median(times[1:]),
        "peak_rss_mb": peak_kb / 1024,
        "first_loss": first_total,
        "last_loss": last_total,
    }


def summarise(results: dict[str, list[dict]]) -> dict[str, dict]:
    """Per variant: medians of its time and memory over rounds, and the medians of the
    per-round ratios to the ``invblocks`` default measured in the same round."""
    base_runs = results.get("invblocks", [])
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
            "memory_ratio": statistics.median(
                x["peak_rss_mb"] / b["peak_rss_mb"] for x, b in pairs
            ),
            "last_loss_rel_diff": max(
                abs(x["last_loss"] - b["last_loss"]) / abs(b["last_loss"]) for x, b in pairs
            ),
        }
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--network", choices=sorted(NETWORKS), default="st01")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--size", type=int, default=144)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per process")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS))
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="JSON results (default outputs/bench/<network>_step.json)",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        result = run_variant(args.child, args.network, args.batch, args.size, args.steps)
        print(json.dumps(result))
        return
    args.out = args.out or Path(f"outputs/bench/{args.network}_step.json")
    child_args = ["--network", args.network, "--batch", str(args.batch)]
    child_args += ["--size", str(args.size), "--steps", str(args.steps)]
    results = run_interleaved("benchmarks.train_step", args.variants, args.repeats, child_args)
    summary = summarise(results)
    print(
        f"{args.network} step, batch {args.batch}, {args.size}x{args.size}, "
        f"medians over {args.repeats} rounds of per-round ratios to the default"
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
