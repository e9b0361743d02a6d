"""Activation memory and step time vs depth, with and without memory-saving backprop.

For chains of 4, 8, 16 and 32 couplings on a ``(2, 12, 64, 64)`` input, measures in ONE run:
the bytes autograd saves for backward (parameters excluded; deterministic) and the median
time of a forward + backward step over repeats, reported as the ratio memory-saving / plain
measured side by side. Prints a table and writes JSON.

Run: ``python -m benchmarks.memory_depth [--repeats 5] [--out outputs/bench/memory_depth.json]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from invblocks import Sequence
from invblocks import blocks as B
from invblocks.testing import SavedBytes


def build(depth: int, memory_saving: bool) -> Sequence:
    g = torch.Generator().manual_seed(depth)
    net = Sequence(12, 64, 64, memory_saving=memory_saving)
    for _ in range(depth):
        net.append(B.AffineCoupling, split=6, generator=g)
    return net


def step(net: Sequence, x: torch.Tensor) -> int:
    net.zero_grad(set_to_none=True)
    with SavedBytes() as saved:
        (y,), log_det = net([x])
    (y.square().mean() + log_det.mean()).backward()
    return saved.bytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--depths", type=int, nargs="+", default=[4, 8, 16, 32])
    parser.add_argument("--out", type=Path, default=Path("outputs/bench/memory_depth.json"))
    args = parser.parse_args()
    x = torch.rand(2, 12, 64, 64, generator=torch.Generator().manual_seed(0))
    rows = []
    for depth in args.depths:
        nets = {ms: build(depth, ms) for ms in (False, True)}
        nets[True].load_state_dict(nets[False].state_dict())
        saved = {ms: step(net, x) for ms, net in nets.items()}  # also warms up
        times: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(args.repeats):
            for ms in (False, True):  # interleaved, side by side
                t = time.perf_counter()
                step(nets[ms], x)
                times[ms].append(time.perf_counter() - t)
        med = {ms: statistics.median(v) for ms, v in times.items()}
        rows.append(
            {
                "depth": depth,
                "saved_bytes_plain": saved[False],
                "saved_bytes_memory_saving": saved[True],
                "memory_ratio": saved[True] / saved[False],
                "time_ratio_memory_saving_over_plain": med[True] / med[False],
            }
        )
    print(
        f"{'depth':>5} {'saved plain':>14} {'saved m-s':>12} {'mem ratio':>10} {'time ratio':>10}"
    )
    for r in rows:
        print(
            f"{r['depth']:>5} {r['saved_bytes_plain']:>14,} {r['saved_bytes_memory_saving']:>12,} "
            f"{r['memory_ratio']:>10.4f} {r['time_ratio_memory_saving_over_plain']:>10.2f}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"repeats": args.repeats, "rows": rows}, indent=2))
    plot(rows, args.out.with_suffix(".png"))
    print(f"written {args.out} and {args.out.with_suffix('.png')}")


def plot(rows: list[dict], path: Path) -> None:
    """Saved activation memory against depth, both variants, log scale."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 3.2))
    ax = fig.subplots()
    depths = [r["depth"] for r in rows]
    ax.plot(depths, [r["saved_bytes_plain"] / 2**20 for r in rows], "o-", label="plain autograd")
    ax.plot(
        depths, [r["saved_bytes_memory_saving"] / 2**20 for r in rows], "o-", label="memory saving"
    )
    ax.set_xlabel("couplings")
    ax.set_ylabel("saved activations (MiB)")
    ax.set_yscale("log")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)


if __name__ == "__main__":
    main()
