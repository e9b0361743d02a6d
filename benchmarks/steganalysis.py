"""How detectable each hiding recipe is: structural steganalysis and a learned detector.

For each recipe of the hiding task (one secret: ``residue``, the default, a classical hiding
in the cover's low bits; ``learned``, IICNet learning it from the secret's difference from
the cover; ``win``, WIN's hiding network), a model is trained for ``--budget`` CPU seconds
(or reused from ``--out``). The covers are every non-overlapping ``--size`` crop of the
held-out photographs that were PNG files (no JPEG blocks to confound the detectors: chelsea,
motorcycle_left, motorcycle_right and ihc, none of them in the training split), each paired
with a secret cut from a training photograph; the stego is the model's 8-bit embedding. A
calibration row replaces 10% of the covers' least significant bits at random: what the
structural detectors were made for.

Detectors (:mod:`invblocks.steganalysis`): the chi-square attack, sample pair analysis, RS
analysis, weighted stego, and a logistic regression on SPAM features scored
leave-one-photograph-out. Reported per recipe and detector: the AUC (0.5: not detected, 1:
always) with a 95% bootstrap interval over the pairs, the stego's PSNR against the cover and
the restored secret's. The crops come from four photographs, so the intervals understate the
spread between photographs.

Run: ``python -m benchmarks.steganalysis [--budget 600] [--recipes residue,learned,win]
[--size 64] [--out outputs/bench/steganalysis]``
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

COVER_PHOTOS = ("chelsea", "motorcycle_left", "motorcycle_right", "ihc")
SECRET_PHOTOS = ("astronaut", "coffee")
DETECTORS = ("chi_square", "sample_pairs", "rs_analysis", "weighted_stego", "spam_logistic")


def _photo(name: str) -> np.ndarray:
    from invblocks.data import default_file
    from invblocks.io import read_image

    return read_image(default_file(name), dtype=__import__("torch").uint8).permute(1, 2, 0).numpy()


def pairs(size: int) -> tuple[list[np.ndarray], list[np.ndarray], list[int]]:
    """``(covers, secrets, groups)``: every non-overlapping ``size`` crop of the cover
    photographs, a secret crop for each, the cover's photograph index."""
    covers, groups = [], []
    for g, name in enumerate(COVER_PHOTOS):
        photo = _photo(name)
        h, w = photo.shape[:2]
        for i in range(0, h - size + 1, size):
            for j in range(0, w - size + 1, size):
                covers.append(photo[i : i + size, j : j + size])
                groups.append(g)
    pool = []
    for name in SECRET_PHOTOS:
        photo = _photo(name)
        h, w = photo.shape[:2]
        pool += [photo[i : i + size, j : j + size] for i in range(0, h - size + 1, size)
                 for j in range(0, w - size + 1, size)]  # fmt: skip
    secrets = [pool[(7 * k) % len(pool)] for k in range(len(covers))]
    return covers, secrets, groups


def train(recipe: str, budget: float, run: Path) -> None:
    if (run / "checkpoints" / "LATEST").exists():
        return
    cmd = [sys.executable, "-m", "invblocks", "train", "--task", "hiding", "--out", str(run),
           "--quiet", "--set", f"recipe={recipe}", "--set", f"cpu_budget={budget}",
           "--set", "steps=1000000", "--set", "val_every=1000000", "--set", "ckpt_every=1000",
           "--set", "device=cpu"]  # fmt: skip
    subprocess.run(cmd, check=True)


def stegos(run: Path, covers: list[np.ndarray], secrets: list[np.ndarray]) -> dict:
    """The model's 8-bit stego of each pair, and the quality it keeps."""
    import torch

    from invblocks import Model
    from invblocks.metrics import psnr

    model = Model.load(run, device="cpu")
    out, cover_psnr, secret_psnr = [], [], []
    for cover, secret in zip(covers, secrets, strict=True):
        images = [torch.from_numpy(a).permute(2, 0, 1).contiguous() for a in (cover, secret)]
        embedding, meta = model.embed(images)
        restored = model.restore(embedding, meta)
        h, w = cover.shape[:2]
        stego = embedding[:, :h, :w]
        out.append((stego * 255).round().byte().permute(1, 2, 0).numpy())
        cover_psnr.append(psnr(stego, images[0].float() / 255))
        secret_psnr.append(psnr(restored[1], images[1].float() / 255))
    return {"stegos": out, "stego_psnr": float(np.mean(cover_psnr)),
            "secret_psnr": float(np.mean(secret_psnr))}  # fmt: skip


def detect(covers: list[np.ndarray], stegos: list[np.ndarray], groups: list[int]) -> dict:
    """Each detector's AUC and interval over the pairs."""
    from invblocks import steganalysis as S

    rows = {}
    for name in DETECTORS[:-1]:
        fn = getattr(S, name)
        c, s = [fn(x) for x in covers], [fn(x) for x in stegos]
        rows[name] = S.auc_interval(c, s)
    fc = np.stack([S.spam(x) for x in covers])
    fs = np.stack([S.spam(x) for x in stegos])
    c, s = S.learned_scores(fc, fs, groups)
    rows["spam_logistic"] = S.auc_interval(c, s)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--budget", type=float, default=600.0)
    parser.add_argument("--recipes", default="residue,learned,win")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--out", type=Path, default=Path("outputs/bench/steganalysis"))
    args = parser.parse_args()
    from invblocks import steganalysis as S

    covers, secrets, groups = pairs(args.size)
    print(f"{len(covers)} cover/stego pairs of {args.size}x{args.size}", file=sys.stderr)
    results = {}
    rng = np.random.default_rng(0)
    lsb = [S.lsb_replace(c, 0.1, rng) for c in covers]
    results["LSB replacement, 10% (calibration)"] = {
        "detectors": detect(covers, lsb, groups), "stego_psnr": None, "secret_psnr": None
    }  # fmt: skip
    for recipe in args.recipes.split(","):
        run = args.out / recipe / "run"
        train(recipe, args.budget, run)
        made = stegos(run, covers, secrets)
        found = detect(covers, made["stegos"], groups)
        results[recipe] = {
            "detectors": found,
            "stego_psnr": made["stego_psnr"],
            "secret_psnr": made["secret_psnr"],
        }
        print(f"{recipe}: {results[recipe]}", file=sys.stderr)
    head = "| recipe | stego dB | secret dB | " + " | ".join(DETECTORS) + " |"
    rows = [head, "| " + " | ".join("---" for _ in range(3 + len(DETECTORS))) + " |"]
    for name, r in results.items():
        cells = [
            f"{a:.2f} [{lo:.2f}, {hi:.2f}]" for a, lo, hi in (r["detectors"][d] for d in DETECTORS)
        ]
        quality = [f"{r[k]:.2f}" if r[k] is not None else "" for k in ("stego_psnr", "secret_psnr")]
        rows.append(f"| {name} | " + " | ".join([*quality, *cells]) + " |")
    table = "\n".join(rows)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "table.md").write_text(table + "\n")
    record = {"args": vars(args), "pairs": len(covers), "results": results}
    (args.out / "results.json").write_text(json.dumps(record, indent=2, default=str))


if __name__ == "__main__":
    main()
