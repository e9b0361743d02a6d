"""Embed + restore throughput of the st-01 network on a 5-frame clip (inference), side by side.

Seconds per clip for embedding (forward + 8-bit quantisation) and restoring (inverse), float32
on the CPU, with the default network (weights untrained: speed does not depend on them). Each
variant runs in its own process, interleaved over ``--rounds``; each process times
``--repeats`` clips after one untimed warm-up clip. Ratios are medians over rounds of the
variant's time divided by the ``contiguous`` variant's from the same round.

Variants: ``contiguous`` (contiguous layout, glibc's default allocator settings),
``channels_last`` (:class:`~invblocks.Model`'s default on CPU), ``tuned`` (channels-last and
:func:`invblocks.runtime.tune_malloc`, what the ``invblocks`` command line runs),
``bfloat16`` (``tuned`` with ``precision="bfloat16"``: the couplings' subnets in bfloat16),
``autocast`` (``tuned`` inside a plain ``torch.autocast(bfloat16)`` around embed and restore:
every convolution in bfloat16, the inverse no longer exact). The clip is the bundled clip's
first frames resized; each variant also reports the PSNR of the restored frames against the
originals and of the embedding against its reference (weights perturbed like trained ones, the
same in every variant), to compare precisions.

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

VARIANTS = ("contiguous", "channels_last", "tuned", "bfloat16", "autocast")


def run_variant(variant: str, width: int, height: int, repeats: int) -> dict:
    import contextlib

    import torch
    import torch.nn.functional as F

    import invblocks
    from invblocks import Model, metrics
    from invblocks.data import default_clips
    from invblocks.runtime import tune_malloc
    from invblocks.testing import perturb_parameters

    if variant not in ("contiguous", "channels_last"):
        tune_malloc()
    task = invblocks.get_task("video")
    net = task.build_network(5, generator=torch.Generator().manual_seed(0))
    perturb_parameters(net, 0.05, torch.Generator().manual_seed(1))
    precision = "bfloat16" if variant == "bfloat16" else "float32"
    model = Model(
        task, net, 5, {}, channels_last=variant != "contiguous", device="cpu", precision=precision
    )
    model.max_memory = 2**40  # one pass, untiled: the arithmetic is what is compared
    clip = default_clips().val[0][:5].float() / 255
    clip = F.interpolate(clip, size=(height, width), mode="bilinear", align_corners=False)
    frames = list(clip.clamp(0, 1))
    autocast = (
        torch.autocast("cpu", dtype=torch.bfloat16)
        if variant == "autocast"
        else contextlib.nullcontext()
    )
    embed_s, restore_s = [], []
    for _ in range(repeats + 1):
        with autocast:
            t = time.perf_counter()
            e, meta = model.embed(frames)
            t1 = time.perf_counter()
            restored = model.restore(e, meta)
        embed_s.append(t1 - t)
        restore_s.append(time.perf_counter() - t1)
    reference = task.reference_of(task.stack(frames)[None], 5)
    return {
        "variant": variant,
        "embed_s": statistics.median(embed_s[1:]),
        "restore_s": statistics.median(restore_s[1:]),
        "restored_psnr": statistics.mean(
            metrics.psnr(r.float(), f) for r, f in zip(restored, frames, strict=True)
        ),
        "embedding_psnr": None if reference is None else metrics.psnr(e.float(), reference[0]),
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
    print(f"{'variant':<14} {'embed s':>8} {'restore s':>10} {'ratio':>6} {'restored dB':>12} "
          f"{'embedding dB':>13}")  # fmt: skip
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
            "restored_psnr": statistics.median(x["restored_psnr"] for x in rs),
            "embedding_psnr": statistics.median(x["embedding_psnr"] or 0.0 for x in rs),
        }
        s = summary[v]
        print(f"{v:<14} {s['embed_s']:>8.1f} {s['restore_s']:>10.1f} {ratio:>6.2f} "
              f"{s['restored_psnr']:>12.2f} {s['embedding_psnr']:>13.2f}")  # fmt: skip
    write_record(args.out, args, runs, summary)


if __name__ == "__main__":
    main()
