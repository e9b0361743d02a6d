"""Quality within a CPU budget: two or more training recipes for one task, side by side.

    python -m benchmarks.time_to_quality --task video --budget 1800 --recipes reference,default

Each recipe trains in its own process for ``--budget`` seconds of that process's CPU time
(``TrainConfig.cpu_budget``) on the task's default data, and is evaluated at ``--points``
evenly spaced points of the budget (and after its first step) on whole held-out images:
restored PSNR per input, embedding PSNR against the reference, and the task's trivial
baseline. Writes ``results.json`` (every curve), ``table.md`` (final quality, and the CPU
time each recipe needs to reach the first recipe's final quality) and ``curves.png`` under
``--out/<task>``.

Recipes (``RECIPES``):

* ``reference``: the reference-faithful preset with the papers' hyper-parameters as the
  task defines them (crop, batch, learning rate, optimiser), in float32 and the contiguous
  layout, as the authors' code trains.
* ``default``: the task's default recipe (what ``invblocks train --task T`` does): a small
  network for a CPU that starts at the trivial solution where that pays.
* ``fast``: the default recipe's network in the reference initialisation.

``NAME@LABEL`` is a variant of recipe ``NAME``, changed with ``--set NAME@LABEL:KEY=VALUE``
(``--recipes fast,fast@trivial --set fast@trivial:network.init=trivial``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ._budget import plot, run_recipe, summarise


def _reference(task: str) -> dict[str, Any]:
    return {"recipe": "reference", "channels_last": False, "autocast": "float32"}


def _default(task: str) -> dict[str, Any]:
    return {}


def _fast(task: str) -> dict[str, Any]:
    """The default recipe's small network, in the reference initialisation (without a
    hiding start, which needs the trivial one)."""
    import invblocks

    network: dict[str, Any] = {"init": "reference"}
    if "hiding_levels" in invblocks.get_task(task).train.network:
        network |= {"hiding_levels": None, "hiding_difference": None}
    return {"network": network}


def _toy(task: str) -> dict[str, Any]:
    """A network too small to learn anything, for checking the benchmarks run."""
    return {"network": {"blocks": 1, "width": 4, "growth": 4}, "crop": 16, "batch": 1}


RECIPES = {"reference": _reference, "default": _default, "fast": _fast, "toy": _toy}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="video")
    parser.add_argument("--budget", type=float, default=600.0, help="CPU seconds per recipe")
    parser.add_argument("--recipes", default="reference,default")
    parser.add_argument("--points", type=int, default=5)
    parser.add_argument("--items", type=int, default=2, help="held-out items evaluated")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], metavar="RECIPE:KEY=VALUE")
    parser.add_argument("--out", type=Path, default=Path("outputs/bench/ttq"))
    args = parser.parse_args()
    names = args.recipes.split(",")  # "fast@bf16": a variant of "fast", changed by --set
    unknown = [n for n in names if n.split("@")[0] not in RECIPES]
    if unknown:
        parser.error(f"unknown recipe(s) {unknown}; known: {sorted(RECIPES)}")
    from invblocks.config import apply_overrides

    out = args.out / args.task
    curves = {}
    for name in names:
        fields = {**RECIPES[name.split("@")[0]](args.task), "seed": args.seed}
        mine = [s.split(":", 1)[1] for s in args.set if s.startswith(f"{name}:")]
        fields = apply_overrides(fields, mine)
        curves[name] = run_recipe(
            name, args.task, fields, args.budget, out / name, points=args.points, items=args.items
        )
    key = (
        "restored_psnr_no_ref"
        if "restored_psnr_no_ref" in curves[names[0]][-1]["png"]
        else "restored_psnr"
    )
    summary = summarise(curves, key)
    rows = [
        f"| recipe | steps | {key} | embedding PSNR | trivial baseline | "
        f"CPU s to {names[0]}'s final |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, s in summary.items():
        reached = (
            "never"
            if s["cpu_s_to_reference_final"] is None
            else f"{s['cpu_s_to_reference_final']:.0f}"
        )
        rows.append(
            f"| {name} | {s['steps']} | {s['final']:.2f} | {s['embedding_psnr']:.2f} | "
            f"{s['baseline']:.2f} | {reached} |"
        )
    table = "\n".join(rows)
    print(table)
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.md").write_text(table + "\n")
    record = {"args": vars(args), "key": key, "summary": summary, "curves": curves}
    (out / "results.json").write_text(json.dumps(record, indent=2, default=str))
    plot(curves, key, out / "curves.png", f"{args.task}: {args.budget / 60:.0f} CPU minutes")
    print(f"written {out}")


if __name__ == "__main__":
    main()
