"""Embed + restore throughput of the st-01 network on a 5-frame clip (inference), side by side.

Seconds per clip for embedding (forward + 8-bit quantisation) and restoring (inverse), float32
on the CPU, with the default network (weights untrained: speed does not depend on them). Each
variant runs in its own process, interleaved over ``--rounds``; each process times
``--repeats`` clips after one untimed warm-up clip. Ratios are medians over rounds of the
variant's time divided by the ``contiguous`` variant's from the same round.

Variants: ``contiguous`` (contiguous layout, glibc's default allocator settings),
``channels_last`` (:class:`~invblocks.Model`'s default on CPU), ``tuned`` (channels-last and
:func:`invblocks.runtime.tune_malloc`, what the ``invblocks`` command line runs).

Run: ``python -m benchmarks.embed_throughput [--width 854] [--height 480] [--rounds 1]
[--repeats 1]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from ._runner import run_interleaved, write_record

VARIANTS = ("contiguous", "channels_last", "tuned")


def run_variant(variant: str, width: int, height: int, repeats: int) -> dict:
    import torch

    import invblocks
    from invblocks import Model
    from invblocks.runtime import tune_malloc

    if variant == "tuned":
        tune_malloc()
    task = invblocks.get_task("video")
    net = task.build_network(5, generator=torch.Generator().manual_seed(0))
    model = Model(task, net, 5, {}, channels_last=variant != "contiguous")
    frames = list(torch.rand(5, 3, height, width, generator=torch.Generator().manual_seed(1)))
    embed_s, restore_s = [], []
    for _ in range(repeats + 1):
        t = time.perf_counter()
        e, meta = model.embed(frames)
        t1 = time.perf_counter()
        model.restore(e, meta)
        embed_s.append(t1 - t)
        restore_s.append(time.perf_counter() - t1)
    return {
        "variant": variant,
        "embed_s": statistics.median(embed_s[1:]),
        "restore_s": statistics.median(restore_s[1:]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=854)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=1, help="timed clips per process")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--out", type=Path, default=Path("outputs/bench/embed_throughput.json"))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    size = ["--width", str(args.width), "--height", str(args.height)]
    if args.child:
        print(json.dumps(run_variant(args.child, args.width, args.height, args.repeats)))
        return
    runs = run_interleaved(
        "benchmarks.embed_throughput",
        args.variants,
        args.rounds,
        [*size, "--repeats", str(args.repeats)],
    )
    failed = {v: rs[-1]["error"] for v, rs in runs.items() if any("error" in x for x in rs)}
    if failed:
        raise SystemExit(f"variants failed: {failed}")
    base = runs.get("contiguous")
    print(f"embed + restore, 5 frames of {args.width}x{args.height}, st-01 network")
    print(f"{'variant':<14} {'embed s':>8} {'restore s':>10} {'ratio':>6}")
    summary = {}
    for v, rs in runs.items():
        pairs = zip(rs, base or [], strict=False)
        ratios = [
            (x["embed_s"] + x["restore_s"]) / (b["embed_s"] + b["restore_s"]) for x, b in pairs
        ]
        ratio = statistics.median(ratios) if ratios else float("nan")
        summary[v] = {
            "embed_s": statistics.median(x["embed_s"] for x in rs),
            "restore_s": statistics.median(x["restore_s"] for x in rs),
            "time_ratio": ratio,
        }
        s = summary[v]
        print(f"{v:<14} {s['embed_s']:>8.1f} {s['restore_s']:>10.1f} {ratio:>6.2f}")
    write_record(args.out, args, runs, summary)


if __name__ == "__main__":
    main()
