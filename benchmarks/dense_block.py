"""Dense-block execution paths side by side: forward + backward time and saved memory.

Every path computes the same :class:`~invblocks.blocks.DenseBlock` function with the same
weights; they differ in memory layout and in how the convolutions read the concatenated
features. For the dense blocks of the IICNet st-01 network (coupling subnets ``F`` 12 -> 3 and
``G``/``H`` 3 -> 12, relation-module headers 3 -> 64 and tailers 64 -> 3) at 144x144, batch 1,
measured in ONE process, interleaved over ``--repeats`` rounds:

- ``concat``: contiguous layout, every convolution reads a concatenation (the definition; the
  path off the CPU or in contiguous layout). Ratios are to this path, per round.
- ``concat_cl``: the same in channels-last layout.
- ``split_tail_cl``: channels-last, conv4 and conv5 as sums of convolutions over the pieces
  (``DenseBlock``'s path on the CPU in channels-last layout).
- ``split_all_cl``: channels-last, every convolution split over the pieces, no concatenation
  at all (an alternative kept here to show why only the tail is split).
- ``stacked_tail_cl``: the split tail with the convolutions that read the same piece stacked
  into one wider convolution (an alternative kept here; see the benchmarks page).
- ``compact_cl`` / ``compact``: ``DenseBlock.compact = True`` (one feature buffer kept for the
  backward pass), channels-last and contiguous.

Reported per block and path: the median time ratio to ``concat`` (forward + backward with a
fixed cotangent, gradients for the input and every weight), the memory autograd keeps for the
backward pass (distinct storages, :attr:`~invblocks.testing.SavedBytes.distinct_bytes`,
input included; deterministic), and the difference of the output and of the input gradient
from ``concat``'s and from the definition computed in float64 (``*_float64``; the table's
last column is the input gradient's), relative to their norm.

Run: ``python -m benchmarks.dense_block [--size 144] [--batch 1] [--repeats 7]
[--paths ...] [--blocks ...] [--dtype float32] [--out outputs/bench/dense_block.json]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from invblocks.blocks import DenseBlock
from invblocks.blocks.dense import _conv
from invblocks.testing import SavedBytes, perturb_parameters

BLOCKS = {
    "coupling_F": (12, 3),
    "coupling_GH": (3, 12),
    "relation_header": (3, 64),
    "relation_tailer": (64, 3),
}
PATHS = (
    "concat",
    "concat_cl",
    "split_tail_cl",
    "split_all_cl",
    "stacked_tail_cl",
    "compact_cl",
    "compact",
)


def split_all(block: DenseBlock, u: Tensor) -> Tensor:
    """Every convolution as a sum of convolutions over the pieces ``u, z1, ..., z4``."""
    pieces = [u]
    convs = [*block.convs, block.out]
    for k, conv in enumerate(convs):
        bounds = [0]
        for p in pieces:
            bounds.append(bounds[-1] + p.shape[1])
        y = _conv(pieces[0], conv.weight[:, : bounds[1]], conv.bias)
        for p, lo, hi in zip(pieces[1:], bounds[1:-1], bounds[2:], strict=True):
            y = y + _conv(p, conv.weight[:, lo:hi], None)
        if k == len(convs) - 1:
            return y
        pieces.append(block.act(y))
    raise AssertionError("unreachable")


def stacked_tail(block: DenseBlock, u: Tensor) -> Tensor:
    """The split tail with conv4's and conv5's parts that read the same piece stacked."""
    conv1, conv2, conv3, conv4 = block.convs
    act, g = block.act, block.growth
    x = torch.cat([u, act(conv1(u))], dim=1)
    x = torch.cat([x, act(conv2(x))], dim=1)
    z3 = act(conv3(x))
    lo, hi = x.shape[1], x.shape[1] + g
    w4, w5 = conv4.weight, block.out.weight
    a = _conv(x, torch.cat([w4[:, :lo], w5[:, :lo]]), torch.cat([conv4.bias, block.out.bias]))
    b = _conv(z3, torch.cat([w4[:, lo:], w5[:, lo:hi]]), None)
    z4 = act(a[:, :g] + b[:, :g])
    return a[:, g:] + b[:, g:] + _conv(z4, w5[:, hi:], None)


def path_fn(path: str, block: DenseBlock) -> Callable[[Tensor], Tensor]:
    """The function computing ``block`` by ``path`` (the input's layout is set by the caller)."""
    if path in ("concat", "concat_cl"):
        return block._forward_concat
    if path == "split_tail_cl":
        return block._forward_split_tail
    if path == "split_all_cl":
        return lambda u: split_all(block, u)
    if path == "stacked_tail_cl":
        return lambda u: stacked_tail(block, u)
    if path in ("compact", "compact_cl"):

        def compact(u: Tensor) -> Tensor:
            block.compact = True
            try:
                return block(u)
            finally:
                block.compact = False

        return compact
    raise ValueError(f"unknown path {path!r}; expected one of {', '.join(PATHS)}")


def layout(path: str) -> torch.memory_format:
    return torch.channels_last if path.endswith("_cl") else torch.contiguous_format


def run_once(path: str, blocks: dict, inputs: dict, cotangent: dict) -> tuple[float, dict]:
    """One forward + backward by ``path``: seconds, and output/gradients for the checks."""
    fmt = layout(path)
    block = blocks[fmt]
    block.zero_grad(set_to_none=True)
    u = inputs[fmt].detach().requires_grad_()
    fn = path_fn(path, block)
    with SavedBytes() as saved:
        t = time.perf_counter()
        y = fn(u)
    y.backward(cotangent[fmt])
    seconds = time.perf_counter() - t
    return seconds, {"y": y.detach(), "grad": u.grad, "saved": saved.distinct_bytes}


def rel_diff(a: Tensor, b: Tensor) -> float:
    """``||a - b|| / ||b||``: a norm, not a maximum, because a pre-activation within rounding
    of zero may fall on the other side of LeakyReLU's kink in one path, which changes that
    pixel's gradient by 80% without any path being wrong."""
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def measure(
    name: str,
    size: int,
    batch: int,
    paths: list[str],
    repeats: int,
    dtype: torch.dtype = torch.float32,
) -> list[dict]:
    """Rows of :func:`main`'s table for one block of :data:`BLOCKS`."""
    c_in, c_out = BLOCKS[name]
    g = torch.Generator().manual_seed(0)
    block = DenseBlock(c_in, c_out, generator=g).to(dtype)
    perturb_parameters(block, 0.05, g)  # conv5 starts at zero: make the output non-trivial
    blocks = {torch.contiguous_format: block}
    cl = DenseBlock(c_in, c_out).to(dtype=dtype, memory_format=torch.channels_last)
    blocks[torch.channels_last] = cl
    blocks[torch.channels_last].load_state_dict(block.state_dict())
    exact = DenseBlock(c_in, c_out).double()  # the definition in float64: the accuracy yardstick
    exact.load_state_dict(block.state_dict())
    u = torch.randn(batch, c_in, size, size, generator=g, dtype=dtype)
    v = torch.randn(batch, c_out, size, size, generator=g, dtype=dtype)
    inputs = {fmt: u.contiguous(memory_format=fmt) for fmt in blocks}
    cotangent = {fmt: v.contiguous(memory_format=fmt) for fmt in blocks}
    first = {p: run_once(p, blocks, inputs, cotangent)[1] for p in paths}  # also warms up
    base = first["concat"]
    f64 = torch.contiguous_format
    truth = run_once("concat", {f64: exact}, {f64: u.double()}, {f64: v.double()})[1]
    times: dict[str, list[float]] = {p: [] for p in paths}
    for _ in range(repeats):
        for p in paths:  # interleaved: every round measures every path
            times[p].append(run_once(p, blocks, inputs, cotangent)[0])
    rows = []
    for p in paths:
        rows.append(
            {
                "block": name,
                "c_in": c_in,
                "c_out": c_out,
                "path": p,
                "time_ratio": statistics.median(
                    t / t0 for t, t0 in zip(times[p], times["concat"], strict=True)
                ),
                "median_s": statistics.median(times[p]),
                "saved_bytes": first[p]["saved"],
                "saved_ratio": first[p]["saved"] / base["saved"],
                "output_rel_diff": rel_diff(first[p]["y"], base["y"]),
                "input_grad_rel_diff": rel_diff(first[p]["grad"], base["grad"]),
                "output_rel_err_float64": rel_diff(first[p]["y"].double(), truth["y"]),
                "input_grad_rel_err_float64": rel_diff(first[p]["grad"].double(), truth["grad"]),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=144)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--blocks", nargs="+", default=list(BLOCKS), choices=list(BLOCKS))
    parser.add_argument("--paths", nargs="+", default=list(PATHS), choices=list(PATHS))
    parser.add_argument("--out", type=Path, default=Path("outputs/bench/dense_block.json"))
    args = parser.parse_args()
    paths = ["concat", *(p for p in args.paths if p != "concat")]  # the baseline always runs
    dtype = getattr(torch, args.dtype)
    rows = [
        row
        for name in args.blocks
        for row in measure(name, args.size, args.batch, paths, args.repeats, dtype)
    ]
    print(
        f"{'block':<16} {'path':<16} {'time ratio':>10} {'saved MiB':>10} {'saved ratio':>11} "
        f"{'out diff':>9} {'grad diff':>9} {'grad f64':>9}"
    )
    for r in rows:
        print(
            f"{r['block']:<16} {r['path']:<16} {r['time_ratio']:>10.2f} "
            f"{r['saved_bytes'] / 2**20:>10.1f} {r['saved_ratio']:>11.2f} "
            f"{r['output_rel_diff']:>9.1e} {r['input_grad_rel_diff']:>9.1e} "
            f"{r['input_grad_rel_err_float64']:>9.1e}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2, default=str))
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
