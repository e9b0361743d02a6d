"""One table of every task's quality within its budget, from ``time_to_quality`` results.

    python -m benchmarks.budget_table OUT [OUT ...] [--recipe default]

Reads ``OUT/<task>/results.json`` (written by :mod:`benchmarks.time_to_quality`) and prints a
Markdown table: per task, the restored PSNR the task is judged on, its trivial baseline, the
margin, the embedding PSNR against the reference, and whether the 10-CPU-minute targets (at
least 1 dB above the baseline, an embedding of at least 30 dB) are met.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

MARGIN_DB, EMBEDDING_DB = 1.0, 30.0


def rows(folders: list[Path], recipe: str) -> list[dict[str, Any]]:
    """One row per ``results.json`` found under ``folders`` that holds ``recipe``."""
    found = []
    for folder in folders:
        for path in sorted(folder.glob("*/results.json")):
            result = json.loads(path.read_text())
            summary = result["summary"].get(recipe)
            if summary is None:
                continue
            last = result["curves"][recipe][-1]
            found.append(
                {
                    "task": path.parent.name,
                    "key": result["key"],
                    "steps": summary["steps"],
                    "cpu_s": summary["final_cpu_s"],
                    "restored": summary["final"],
                    "baseline": summary["baseline"],
                    "embedding": summary["embedding_psnr"],
                    "items": last["png"].get("items"),
                }
            )
    return found


def table(found: list[dict[str, Any]]) -> str:
    head = (
        "| task | measure | steps | restored dB | trivial baseline dB | margin dB "
        "| embedding dB | targets |\n| --- | --- | --- | --- | --- | --- | --- | --- |"
    )
    lines = [head]
    for r in found:
        margin = r["restored"] - r["baseline"]
        met = margin >= MARGIN_DB and r["embedding"] >= EMBEDDING_DB
        lines.append(
            f"| {r['task']} | {r['key']} | {r['steps']} | {r['restored']:.2f} "
            f"| {r['baseline']:.2f} | {margin:+.2f} | {r['embedding']:.2f} "
            f"| {'met' if met else 'not met'} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--recipe", default="default")
    args = parser.parse_args()
    print(table(rows(args.folders, args.recipe)))


if __name__ == "__main__":
    main()
