"""Large images: embed and restore a 12-megapixel photograph and a 1080p clip, peak memory.

Each case runs in its own process (the peak resident memory, ``ru_maxrss``, is the process's),
with the papers' networks (untrained weights perturbed like trained ones: time and memory do
not depend on them): ``rescaling-x2`` and ``grayscale`` (16 couplings) on a 4000x3000
photograph (a bundled photograph resized), ``video`` (st-01) on a 5-frame 1920x1080 clip (the
bundled clip resized). The model tiles when an image needs more than its budget
(``--max-memory``; default: the library's, half the free memory, at most 2 GiB). Reported:
wall seconds of embed and of restore, how many tiles were run (and in how many node passes:
the body runs node by node, each node tiled), the peak memory, and the memory the untiled
pass would need (the library's estimate).

Run: ``python -m benchmarks.large_images [--cases rescaling-x2,grayscale,video]
[--max-memory 2G] [--photo-size 4000x3000] [--clip-size 1920x1080] [--blocks 16]
[--out outputs/bench/large_images.json]``
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

from ._runner import run_interleaved, write_record

CASES = ("rescaling-x2", "grayscale", "video")


def _network(case: str, blocks: int):
    import torch

    from invblocks import presets

    g = torch.Generator().manual_seed(0)
    if case == "rescaling-x2":
        return presets.iicnet(1, downscale="squeeze", order="hl", blocks=blocks, generator=g), 1
    if case == "grayscale":
        return presets.iicnet(1, out_channels=1, blocks=blocks, generator=g), 1
    return presets.iicnet(5, generator=g), 5


def _images(case: str, n: int, photo: tuple[int, int], clip: tuple[int, int]):
    import torch.nn.functional as F

    from invblocks.data import default_clips, default_photos

    if case == "video":
        frames_ = default_clips().val[0][:n].float() / 255
        frames = F.interpolate(frames_, size=clip[::-1], mode="bilinear", align_corners=False)
        return list(frames.clamp(0, 1))
    picture = default_photos().val[0][None].float() / 255
    return [F.interpolate(picture, size=photo[::-1], mode="bilinear", align_corners=False)[0]]


def run_case(
    case: str, max_memory: int | None, photo: tuple[int, int], clip: tuple[int, int], blocks: int
) -> dict:
    import torch

    import invblocks
    from invblocks import Model
    from invblocks.runtime import tune_malloc
    from invblocks.testing import perturb_parameters

    tune_malloc()  # as the command line does
    net, n = _network(case, blocks)
    perturb_parameters(net, 0.05, torch.Generator().manual_seed(1))
    model = Model(invblocks.get_task(case), net, n, {}, device="cpu", max_memory=max_memory)
    model.progress = False
    images = _images(case, n, photo, clip)
    h, w = images[0].shape[-2:]
    tiles = {"passes": 0, "tiles": 0}
    import invblocks.tiling as tiling

    original = tiling.tiled

    def counting(fn, *args, **kw):
        def counted(t):
            tiles["tiles"] += 1
            return fn(t)

        tiles["passes"] += 1  # one node, tiled
        return original(counted, *args, **kw)

    tiling.tiled = counting
    t0 = time.perf_counter()
    embedding, meta = model.embed(images)
    t1 = time.perf_counter()
    restored = model.restore(embedding, meta)
    t2 = time.perf_counter()
    assert all(r.shape == im.shape for r, im in zip(restored, images, strict=True))
    return {
        "size": f"{w}x{h}",
        "frames": n,
        "embed_s": t1 - t0,
        "restore_s": t2 - t1,
        "tiled_node_passes": tiles["passes"],
        "tiles": tiles["tiles"],
        "budget_gib": (model.budget() or 0) / 2**30,
        "estimate_gib": model.memory_estimate(h, w) / 2**30,
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }


def _size(text: str) -> tuple[int, int]:
    width, height = text.lower().split("x")
    return int(width), int(height)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--max-memory", default=None)
    parser.add_argument("--photo-size", default="4000x3000", help="WIDTHxHEIGHT of the photograph")
    parser.add_argument("--clip-size", default="1920x1080", help="WIDTHxHEIGHT of the clip")
    parser.add_argument("--blocks", type=int, default=16, help="couplings of the photo networks")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=Path("outputs/bench/large_images.json"))
    args = parser.parse_args()
    if args.child:
        from invblocks.cli import _memory

        budget = _memory(args.max_memory) if args.max_memory else None
        photo, clip = _size(args.photo_size), _size(args.clip_size)
        print(json.dumps(run_case(args.child, budget, photo, clip, args.blocks)))
        return
    cases = args.cases.split(",")
    extra = ["--photo-size", args.photo_size, "--clip-size", args.clip_size]
    extra += ["--blocks", str(args.blocks)]
    extra += ["--max-memory", args.max_memory] if args.max_memory else []
    runs = run_interleaved("benchmarks.large_images", cases, 1, extra)
    rows = ["| case | size | embed s | restore s | tiles (node passes) | peak GiB | estimate GiB |"]
    rows.append("| --- | --- | --- | --- | --- | --- | --- |")
    for case, (r,) in runs.items():
        if "error" in r:
            rows.append(f"| {case} | error: {r['error']} | | | | | |")
            continue
        rows.append(
            f"| {case} | {r['size']} x{r['frames']} | {r['embed_s']:.1f} | {r['restore_s']:.1f} "
            f"| {r['tiles']} ({r['tiled_node_passes']}) | {r['peak_rss_gib']:.2f} "
            f"| {r['estimate_gib']:.1f} |"
        )
    print("\n".join(rows), file=sys.stderr)
    write_record(args.out, args, runs, {"table": rows})


if __name__ == "__main__":
    main()
