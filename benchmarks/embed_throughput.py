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
first frames resized. To compare precisions, each variant is also compared, untimed, with
float32 on the same network (weights perturbed like trained ones, the same in every variant):
the share of the 8-bit embedding's values equal to float32's, and the PSNR of its restoration
of float32's embedding against float32's restoration of it (the inverse's error alone).
Ratios are to the first variant listed.

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

    def model_in(precision: str) -> Model:
        net = task.build_network(5, generator=torch.Generator().manual_seed(0))
        perturb_parameters(net, 0.05, torch.Generator().manual_seed(1))
        layout = variant != "contiguous"
        model = Model(task, net, 5, {}, channels_last=layout, device="cpu", precision=precision)
        model.max_memory = 2**40  # one pass, untiled: the arithmetic is what is compared
        return model

    model = model_in("bfloat16" if variant == "bfloat16" else "float32")
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
            model.restore(e, meta)
        embed_s.append(t1 - t)
        restore_s.append(time.perf_counter() - t1)
    exact = model_in("float32")
    e32, meta32 = exact.embed(frames)
    restored32 = exact.restore(e32, meta32)
    with autocast:  # in the variant's own precision, not the one float32's metadata names
        restored_from32 = model.restore(e32, {**meta32, "precision": model.precision})
    inverse_psnr = statistics.mean(
        min(metrics.psnr(r.float(), f.float()), metrics.PSNR_CAP)
        for r, f in zip(restored_from32, restored32, strict=True)
    )
    return {
        "variant": variant,
        "embed_s": statistics.median(embed_s[1:]),
        "restore_s": statistics.median(restore_s[1:]),
        "embedding_agreement": float((e == e32).float().mean()),
        "inverse_psnr": inverse_psnr,
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
    base = runs[args.variants[0]]
    print(f"embed + restore, 5 frames of {args.width}x{args.height}, st-01 network")
    print(f"{'variant':<14} {'embed s':>8} {'restore s':>10} {'ratio':>6} {'same 8-bit':>10} "
          f"{'inverse dB':>11}")  # fmt: skip
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
            "embedding_agreement": statistics.median(x["embedding_agreement"] for x in rs),
            "inverse_psnr": statistics.median(x["inverse_psnr"] for x in rs),
        }
        s = summary[v]
        print(f"{v:<14} {s['embed_s']:>8.1f} {s['restore_s']:>10.1f} {ratio:>6.2f} "
              f"{s['embedding_agreement']:>10.4%} {s['inverse_psnr']:>11.2f}")  # fmt: skip
    write_record(args.out, args, runs, summary)


if __name__ == "__main__":
    main()
