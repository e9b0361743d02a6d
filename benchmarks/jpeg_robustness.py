"""The same recipe trained with and without the JPEG channel, for the same CPU budget, then
evaluated on whole held-out images through PNG and through real JPEG files.

    python -m benchmarks.jpeg_robustness --task video --budget 600
    python -m benchmarks.jpeg_robustness --task rescaling-x2 --budget 600

Each recipe trains in its own process for ``--budget`` seconds of that process's CPU time
(``TrainConfig.cpu_budget``); the embeddings of the held-out items go through a PNG and
through Pillow's libjpeg at each ``--qualities`` value, and the restored PSNR, the embedding
PSNR (as sent) and the received embedding's PSNR are recorded. Writes ``results.json``,
``table.md`` and ``jpeg.png`` under ``--out``.

``--finetune F`` trains the JPEG variant as a user fine-tunes a model: the plain recipe for
``(1 - F)`` of the budget, then through the JPEG channel from that model (``init``) for the
other ``F`` at learning rate ``--finetune-lr``, the same CPU seconds in all.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ._budget import run_recipe
from .time_to_quality import RECIPES

QUALITIES = (95, 90, 75, 50)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="video")
    parser.add_argument("--budget", type=float, default=600.0, help="CPU seconds per recipe")
    parser.add_argument("--recipe", default="default", help="the recipe both variants share")
    parser.add_argument("--quality", default="70-95", help="the JPEG channel's training range")
    parser.add_argument("--plain", type=float, default=0.0, help="JPEG channel: plain share")
    parser.add_argument("--finetune", type=float, default=0.0, help="JPEG share of the budget")
    parser.add_argument("--finetune-lr", type=float, default=1e-4)
    parser.add_argument("--items", type=int, default=2, help="held-out items")
    parser.add_argument("--qualities", default=",".join(map(str, QUALITIES)))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("outputs/bench/jpeg"))
    args = parser.parse_args()
    qualities = [int(q) for q in args.qualities.split(",")]
    transports = ("png", *(f"jpeg{q}" for q in qualities))
    base = {**RECIPES[args.recipe](args.task), "seed": args.seed}
    jpeg = {**base, "channel": {"type": "jpeg", "quality": args.quality, "plain": args.plain}}
    out = args.out / args.task
    if not 0.0 <= args.finetune < 1.0:
        parser.error(f"--finetune must be in [0, 1); received {args.finetune}")
    budgets = {"plain": args.budget, "jpeg": args.budget}
    if args.finetune:
        start = args.budget * (1 - args.finetune)
        run_recipe("jpeg-start", args.task, base, start, out / "jpeg-start", points=1,
                   items=1, final_only=True)  # fmt: skip
        jpeg = {k: v for k, v in jpeg.items() if k != "network"}
        jpeg.update(init=str(out / "jpeg-start" / "run"), lr=args.finetune_lr)
        budgets["jpeg"] = args.budget - start
    results = {}
    for name, fields in (("plain", base), ("jpeg", jpeg)):
        curve = run_recipe(
            name,
            args.task,
            fields,
            budgets[name],
            out / name,
            points=1,
            items=args.items,
            transports=transports,
            final_only=True,
        )
        results[name] = curve[-1]
    key = (
        "restored_psnr_no_ref"
        if "restored_psnr_no_ref" in results["plain"]["png"]
        else "restored_psnr"
    )
    names = " | ".join(f"{n} restored / embedding" for n in results)
    rows = [
        f"| transport | {names} | gain | baseline from the received file, {' / '.join(results)} |"
    ]
    rows.append("| --- | " + " | ".join("---" for _ in results) + " | --- | --- |")
    for t in transports:
        # the embedding: what the lossless PNG shows, the same in every row
        cells = [f"{r[t][key]:.2f} / {r['png']['received_psnr']:.2f}" for r in results.values()]
        gain = results["jpeg"][t][key] - results["plain"][t][key]
        # what a receiver has without the model: the trivial restoration from the file itself
        trivial = [_received_baseline(r[t], key) for r in results.values()]
        rows.append(f"| {t} | " + " | ".join(cells) + f" | {gain:+.2f} | {' / '.join(trivial)} |")
    table = "\n".join(rows)
    print(table)
    (out / "table.md").write_text(table + "\n")
    (out / "results.json").write_text(
        json.dumps({"args": vars(args), "key": key, "results": results}, indent=2, default=str)
    )
    _plot(results, transports, key, out / "jpeg.png", args)
    print(f"written {out}")


def _received_baseline(metrics: dict, key: str) -> str:
    """The trivial restoration's PSNR from the received embedding (from the reference for a
    lossless transport), formatted; ``-`` where the task has none."""
    value = metrics.get(key.replace("restored", "received_baseline"))
    if value is None:
        value = metrics.get(key.replace("restored", "baseline"))
    return "-" if value is None else f"{value:.2f}"


def _plot(results, transports, key, path, args):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.5, 3.8))
    ax = fig.subplots()
    xs = range(len(transports))
    for name, r in results.items():
        ax.plot(xs, [r[t][key] for t in transports], marker="o", label=f"trained {name}")
    ax.set_xticks(list(xs), list(transports))
    ax.set_ylabel(f"{key} (dB)")
    ax.set_title(f"{args.task}: {args.budget / 60:.0f} CPU minutes each")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


if __name__ == "__main__":
    main()
