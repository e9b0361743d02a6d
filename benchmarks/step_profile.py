"""Where a training step's time goes, and how much faster it could get with the same kernels.

For each variant of :mod:`benchmarks.train_step` (default ``cli``, what ``invblocks train``
runs, and ``freia``; ``reference`` with ``--reference-code PATH``), in its own process:
``--steps`` timed steps (median), one step under PyTorch's profiler (the share of the step's
CPU time in convolution operators, whatever library runs them) and one step with oneDNN's
verbose mode on (every convolution primitive: direction — forward, backward data, backward
weights —, shape and time, hence its rate in GMAC/s, multiply-accumulates per second).

From these, per variant and round: ``ceiling = variant's step time / cli's time inside
oneDNN's convolution primitives`` (same round). Any change outside the convolution kernels
leaves at least that time, so ``ceiling`` bounds the speed-up over the variant that invblocks
could reach with oneDNN's kernels on this machine. It holds when oneDNN runs all of ``cli``'s
convolutions (``onednn_coverage`` 1.0; PyTorch runs small ones, as in toy sizes, itself).

A separate process measures the machine, at the step's size: a wide 3x3 convolution's forward
rate (128 -> 128 channels) at one thread and at all threads (how far two threads scale), and
two of the step's dense blocks (3 -> 12, forward + backward) run one after the other with all
threads vs at once from two Python threads with one thread each (whether running independent
subnets concurrently could pay).

Run: ``python -m benchmarks.step_profile [--network st01] [--batch 1] [--size 144]
[--repeats 3] [--steps 2] [--variants cli freia reference] [--reference-code PATH]``
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

from ._runner import run_interleaved, write_record
from .train_step import child_arguments, make_step, step_parser

DIRECTIONS = ("forward_training", "backward_data", "backward_weights")
_SHAPE = re.compile(
    r"mb(?P<mb>\d+)_(?:g(?P<g>\d+))?ic(?P<ic>\d+)oc(?P<oc>\d+)"
    r"_ih(?P<ih>\d+)(?:oh(?P<oh>\d+))?kh(?P<kh>\d+)[^_]*"
    r"(?:_iw(?P<iw>\d+)(?:ow(?P<ow>\d+))?kw(?P<kw>\d+))?"
)


def parse_verbose(lines) -> list[dict]:
    """oneDNN verbose ``exec`` lines -> one dict per primitive execution.

    Each: ``kind`` (``convolution``, ``reorder``, ...), ``impl``, ``direction`` and ``ms``;
    convolutions also ``ic, oc, kernel`` and ``macs`` (multiply-accumulates). Lines of other
    kinds (``info``, ``create``) are skipped. Fields are read relative to ``exec`` so that
    both the older (``onednn_verbose,exec,cpu,...``) and the newer (``onednn_verbose,v1,
    primitive,exec,cpu,...``) layouts parse.
    """
    rows = []
    for line in lines:
        fields = line.strip().split(",")
        if not fields[0].endswith("_verbose") or "exec" not in fields:
            continue
        i = fields.index("exec")
        try:
            row = {
                "kind": fields[i + 2],
                "impl": fields[i + 3],
                "direction": fields[i + 4],
                "ms": float(fields[-1]),
            }
        except (IndexError, ValueError):
            continue
        if row["kind"] == "convolution":
            m = _SHAPE.search(fields[-2])
            if m is None:
                continue
            d = {k: int(v) for k, v in m.groupdict().items() if v is not None}
            oh = d.get("oh", d["ih"])
            ow = d.get("ow", d.get("iw", oh))
            kh = d["kh"]
            kw = d.get("kw", kh)
            groups = d.get("g", 1)
            row.update(ic=d["ic"], oc=d["oc"], kernel=kh)
            row["macs"] = d["mb"] * d["oc"] * oh * ow * (d["ic"] // groups) * kh * kw
        rows.append(row)
    return rows


def summarise_convolutions(rows: list[dict]) -> dict:
    """Per direction and per shape: calls, milliseconds and GMAC/s of the convolutions.

    ``groups`` splits each direction three ways: ``narrow`` (fewer than 16 output channels),
    ``odd`` (input channels not a multiple of 16) and ``aligned`` (the rest), the classes in
    which oneDNN's kernels run at visibly different rates.
    """
    convs = [r for r in rows if r["kind"] == "convolution"]

    def rate(items) -> dict:
        ms = sum(r["ms"] for r in items)
        macs = sum(r["macs"] for r in items)
        return {"calls": len(items), "ms": ms, "gmac_s": macs / ms / 1e6 if ms else 0.0}

    by_dir = defaultdict(list)
    by_group = defaultdict(list)
    by_shape = defaultdict(list)
    for r in convs:
        by_dir[r["direction"]].append(r)
        group = "narrow" if r["oc"] < 16 else "odd" if r["ic"] % 16 else "aligned"
        by_group[(r["direction"], group)].append(r)
        by_shape[(r["direction"], r["ic"], r["oc"], r["kernel"])].append(r)
    shapes = [
        {"direction": d, "ic": ic, "oc": oc, "kernel": k, **rate(items)}
        for (d, ic, oc, k), items in by_shape.items()
    ]
    return {
        "conv_ms": sum(r["ms"] for r in convs),
        "other_primitives_ms": sum(r["ms"] for r in rows if r["kind"] != "convolution"),
        "directions": {d: rate(items) for d, items in by_dir.items()},
        "groups": {f"{d}/{g}": rate(items) for (d, g), items in by_group.items()},
        "shapes": sorted(shapes, key=lambda s: -s["ms"]),
    }


def _onednn_rows(fn) -> list[dict]:
    """Run ``fn()`` with oneDNN's verbose mode on, its output caught from file descriptor 1."""
    import torch

    libc = ctypes.CDLL(None)
    sys.stdout.flush()
    saved = os.dup(1)
    with tempfile.TemporaryFile(mode="w+") as log:
        os.dup2(log.fileno(), 1)
        try:
            with torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON):
                fn()
        finally:
            libc.fflush(None)
            os.dup2(saved, 1)
            os.close(saved)
        log.seek(0)
        return parse_verbose(log)


def _conv_op_share(fn) -> dict:
    """Self CPU time of convolution operators over all operators', one call of ``fn``."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    conv = sum(e.self_cpu_time_total for e in events if "conv" in e.key.lower())
    calls = sum(e.count for e in events if e.key == "aten::convolution")
    return {
        "conv_op_s": conv / 1e6,
        "op_s": total / 1e6,
        "conv_share": conv / max(total, 1),
        "conv_calls": calls,
    }


def run_variant(variant: str, network: str, batch: int, size: int, steps: int, code) -> dict:
    step = make_step(variant, network, batch, size, code)
    step_s = _median_time(step, steps)
    share = _conv_op_share(step)
    onednn = summarise_convolutions(_onednn_rows(step))
    onednn["shapes"] = onednn["shapes"][:12]
    forward = onednn["directions"].get("forward_training", {"calls": 0})["calls"]
    # the ceiling holds when oneDNN runs every convolution (PyTorch may not for small ones)
    onednn["onednn_coverage"] = forward / max(share["conv_calls"], 1)
    return {"variant": variant, "step_s": step_s, **share, **onednn}


def _median_time(fn, repeats: int) -> float:
    """Median seconds of ``repeats`` calls of ``fn`` after one untimed warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def run_machine(size: int, repeats: int) -> dict:
    """The machine yardsticks (see the module's docstring)."""
    import torch
    from torch.nn import functional as F

    from invblocks.blocks import DenseBlock
    from invblocks.testing import perturb_parameters

    cl = torch.channels_last
    threads = torch.get_num_threads()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 128, size, size, generator=g).contiguous(memory_format=cl)
    w = torch.randn(128, 128, 3, 3, generator=g).contiguous(memory_format=cl)
    macs = 128 * 128 * 9 * size * size
    rates = {}
    for n in sorted({1, threads}):
        torch.set_num_threads(n)
        rates[n] = macs / _median_time(lambda: F.conv2d(x, w, padding=1), repeats) / 1e9
    torch.set_num_threads(threads)

    blocks = [DenseBlock(3, 12, generator=g).to(memory_format=cl) for _ in range(2)]
    for block in blocks:
        perturb_parameters(block, 0.05, g)
    u = torch.randn(1, 3, size, size, generator=g).contiguous(memory_format=cl)
    inputs = [u.clone().requires_grad_() for _ in blocks]  # one leaf per thread

    def work(i: int) -> None:
        inputs[i].grad = None
        blocks[i](inputs[i]).square().sum().backward()

    def one_after_other() -> None:
        for i in range(len(blocks)):
            work(i)

    def at_once() -> None:
        def one_thread(i: int) -> None:
            torch.set_num_threads(1)
            work(i)

        workers = [threading.Thread(target=one_thread, args=(i,)) for i in range(len(blocks))]
        for t in workers:
            t.start()
        for t in workers:
            t.join()

    sequential: list[float] = []
    concurrent: list[float] = []
    for fn in (one_after_other, at_once):
        fn()
    for _ in range(repeats):  # interleaved
        for fn, times in ((one_after_other, sequential), (at_once, concurrent)):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
    torch.set_num_threads(threads)
    return {
        "variant": "machine",
        "threads": threads,
        "conv_gmac_s_1_thread": rates[1],
        "conv_gmac_s_all_threads": rates[threads],
        "thread_scaling": rates[threads] / rates[1],
        "two_subnets_concurrent_over_sequential": statistics.median(
            c / s for c, s in zip(concurrent, sequential, strict=True)
        ),
    }


def summarise(runs: dict[str, list[dict]]) -> dict:
    """Medians over rounds; ``ceiling`` per round against the ``cli`` run of that round (only
    where oneDNN ran all of that run's convolutions)."""
    base = runs.get("cli", [])
    out: dict[str, dict] = {}
    for v, rows in runs.items():
        ok = [r for r in rows if "error" not in r]
        if not ok:
            out[v] = {"error": rows[-1]["error"] if rows else "did not run"}
            continue
        keys = [k for k, val in ok[0].items() if isinstance(val, (int, float))]
        row = {k: statistics.median(r[k] for r in ok) for k in keys}
        if v != "machine":
            ceilings = [
                r["step_s"] / (b["conv_ms"] / 1e3)
                for r, b in zip(rows, base, strict=False)
                if "error" not in r and "error" not in b and b["onednn_coverage"] >= 0.99
            ]
            if ceilings:
                row["ceiling"] = statistics.median(ceilings)
            for d in DIRECTIONS:
                rates = [r["directions"][d]["gmac_s"] for r in ok if d in r["directions"]]
                ms = [r["directions"][d]["ms"] for r in ok if d in r["directions"]]
                if rates:
                    row[f"{d}_ms"] = statistics.median(ms)
                    row[f"{d}_gmac_s"] = statistics.median(rates)
        out[v] = row
    return out


def main() -> None:
    parser = step_parser(__doc__.splitlines()[0], steps=2, variants=["cli", "freia", "reference"])
    args = parser.parse_args()
    if args.child == "machine":
        print(json.dumps(run_machine(args.size, max(args.steps, 3))))
        return
    if args.child:
        result = run_variant(
            args.child, args.network, args.batch, args.size, args.steps, args.reference_code
        )
        print(json.dumps(result))
        return
    args.out = args.out or Path(f"outputs/bench/{args.network}_profile.json")
    child_args = child_arguments(args)
    variants = ["cli", *(v for v in args.variants if v != "cli"), "machine"]
    runs = run_interleaved("benchmarks.step_profile", variants, args.repeats, child_args)
    summary = summarise(runs)
    print(
        f"{args.network} step, batch {args.batch}, {args.size}x{args.size}, medians over "
        f"{args.repeats} rounds; times in s, rates in GMAC/s"
    )
    print(
        f"{'variant':<10} {'step':>6} {'conv ops':>9} {'oneDNN conv':>11} "
        f"{'forward':>13} {'bwd data':>13} {'bwd weights':>13} {'ceiling':>8} {'oneDNN runs':>11}"
    )
    for v, row in summary.items():
        if v == "machine":
            continue
        if "error" in row:
            print(f"{v:<10} failed: {row['error']}")
            continue
        dirs = " ".join(
            f"{row.get(f'{d}_ms', 0) / 1e3:>6.2f} ({row.get(f'{d}_gmac_s', 0):>4.0f})"
            for d in DIRECTIONS
        )
        print(
            f"{v:<10} {row['step_s']:>6.2f} {row['conv_share']:>9.0%} "
            f"{row['conv_ms'] / 1e3:>11.2f} {dirs} {row.get('ceiling', float('nan')):>8.2f} "
            f"{row['onednn_coverage']:>11.0%}"
        )
    cli = [r for r in runs["cli"] if "error" not in r]
    if cli:
        groups = defaultdict(list)
        for r in cli:
            for k, g in r["groups"].items():
                groups[k].append(g["gmac_s"])
        print("cli convolutions by class (GMAC/s):")
        for k in sorted(groups):
            print(f"  {k:<28} {statistics.median(groups[k]):>6.1f}")
    machine = summary.get("machine", {})
    if "error" not in machine and machine:
        print(
            f"machine: 3x3 128->128 forward {machine['conv_gmac_s_1_thread']:.0f} GMAC/s at 1 "
            f"thread, {machine['conv_gmac_s_all_threads']:.0f} at {machine['threads']:.0f} "
            f"({machine['thread_scaling']:.2f}x); two dense blocks at once from two threads: "
            f"{machine['two_subnets_concurrent_over_sequential']:.2f}x the time of one after "
            "the other"
        )
    write_record(args.out, args, runs, summary)


if __name__ == "__main__":
    main()
