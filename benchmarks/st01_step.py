"""The IICNet st-01 training step, side by side: invblocks default, memory-saving, compiled,
and the same layout with FrEIA 0.2's coupling blocks.

st-01: 5 RGB frames at 144x144, relation module, 10 couplings, channel squeeze, noise
quantiser; one step = forward, quantise, inverse, IICNet losses, backward, gradient clipping,
Adam. Each variant runs in its own process (so its peak resident memory is its own), the
variants are interleaved over ``--repeats`` rounds, and the table reports medians and ratios
to the invblocks default measured in the same run.

The ``freia`` variant builds the same network with each coupling replaced by FrEIA's own
``GLOWCouplingBlock`` computing the same function with the same weights
(:func:`invblocks.freia.coupling_to_freia`); its loss at the last step (after Adam updates)
must equal the default's to float rounding (the table prints the relative difference; a
different function shows up there, at initialisation every coupling is the identity).
The ``freia_glow`` variant uses plain GLOW couplings with dense-block subnets (two subnets
per coupling instead of three: a different, cheaper function, for scale). The ``bf16``
variant runs the step under ``torch.autocast("cpu", dtype=torch.bfloat16)``.

Run: ``python -m benchmarks.st01_step [--batch 1] [--size 144] [--repeats 3] [--steps 3]``
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

VARIANTS = (
    "invblocks",
    "channels_last",
    "memory_saving",
    "compiled",
    "bf16",
    "freia",
    "freia_glow",
)


def build(variant: str, n: int, size: int):
    import FrEIA.modules as Fm
    import torch

    from invblocks import Sequence, presets
    from invblocks import blocks as B
    from invblocks.freia import coupling_to_freia

    g = torch.Generator().manual_seed(0)
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


def run_variant(variant: str, batch: int, size: int, steps: int) -> dict:
    import torch

    import invblocks
    from invblocks.training import ric_step

    torch.manual_seed(0)
    task = invblocks.get_task("video")
    n = 5
    net = build(variant, n, size)
    step_fn = ric_step
    if variant == "compiled":
        net = torch.compile(net)  # the first step includes compilation (excluded below)
    opt = torch.optim.Adam(net.parameters(), lr=2e-4, weight_decay=1e-5)
    x = torch.rand(batch, 3 * n, size, size, generator=torch.Generator().manual_seed(1))
    if variant == "channels_last":
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--size", type=int, default=144)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per process")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS))
    parser.add_argument("--out", type=Path, default=Path("outputs/bench/st01_step.json"))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_variant(args.child, args.batch, args.size, args.steps)))
        return
    results: dict[str, list[dict]] = {v: [] for v in args.variants}
    for r in range(args.repeats):
        for v in args.variants:  # interleaved: every round measures every variant
            cmd = [
                sys.executable,
                "-m",
                "benchmarks.st01_step",
                "--child",
                v,
                "--batch",
                str(args.batch),
                "--size",
                str(args.size),
                "--steps",
                str(args.steps),
            ]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode:
                results[v].append({"error": proc.stderr.strip().splitlines()[-1:]})
            else:
                results[v].append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(f"round {r + 1}/{args.repeats} {v}: {results[v][-1]}", file=sys.stderr)
    summary = {}
    for v, runs in results.items():
        ok = [x for x in runs if "error" not in x]
        if ok:
            summary[v] = {
                "step_s": statistics.median(x["step_s"] for x in ok),
                "peak_rss_mb": statistics.median(x["peak_rss_mb"] for x in ok),
            }
        else:
            summary[v] = {"error": runs[-1]["error"]}
    base = summary.get("invblocks", {})
    base_loss = next(
        (x["last_loss"] for x in results.get("invblocks", []) if "error" not in x), None
    )
    print(f"st-01 step, batch {args.batch}, {args.size}x{args.size}, medians of {args.repeats}")
    print(f"{'variant':<15} {'time ratio':>10} {'memory ratio':>13} {'loss rel. diff':>15}")
    for v, s in summary.items():
        if "error" in s or "error" in base:
            print(f"{v:<15} failed: {s.get('error')}")
            continue
        t_ratio = s["step_s"] / base["step_s"]
        m_ratio = s["peak_rss_mb"] / base["peak_rss_mb"]
        loss = next(x["last_loss"] for x in results[v] if "error" not in x)
        s["last_loss_rel_diff"] = abs(loss - base_loss) / abs(base_loss)
        print(f"{v:<15} {t_ratio:>10.2f} {m_ratio:>13.2f} {s['last_loss_rel_diff']:>15.1e}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps({"args": vars(args), "runs": results, "summary": summary}, indent=2, default=str)
    )
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
