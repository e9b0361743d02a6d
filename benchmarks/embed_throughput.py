"""Embed + restore throughput of the st-01 network on a 854x480, 5-frame clip (inference).

Frames per second of embedding (forward + 8-bit quantisation) and of restoring (inverse),
median over repeats, float32 on the CPU, with the default network (weights untrained: speed
does not depend on them).

Run: ``python -m benchmarks.embed_throughput [--repeats 3]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

import invblocks
from invblocks import Model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("outputs/bench/embed_throughput.json"))
    args = parser.parse_args()
    task = invblocks.get_task("video")
    model = Model(task, task.build_network(5, generator=torch.Generator().manual_seed(0)), 5, {})
    frames = list(torch.rand(5, 3, 480, 854, generator=torch.Generator().manual_seed(1)))
    embed_s, restore_s = [], []
    for _ in range(args.repeats + 1):
        t = time.perf_counter()
        e, meta = model.embed(frames)
        t1 = time.perf_counter()
        model.restore(e, meta)
        t2 = time.perf_counter()
        embed_s.append(t1 - t)
        restore_s.append(t2 - t1)
    emb, res = statistics.median(embed_s[1:]), statistics.median(restore_s[1:])
    result = {
        "embed_s_per_clip": emb,
        "restore_s_per_clip": res,
        "embed_frames_per_s": 5 / emb,
        "restore_frames_per_s": 5 / res,
    }
    print(json.dumps(result, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
