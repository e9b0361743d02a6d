"""What the process-per-variant benchmarks share: interleaved rounds and the JSON record."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any


def run_interleaved(
    module: str, variants: list[str], rounds: int, child_args: list[str]
) -> dict[str, list[dict]]:
    """Run ``python -m module --child VARIANT *child_args`` for every variant in every round.

    Each child prints one JSON object as its last line; a child that fails is recorded as
    ``{"error": [its last stderr line]}`` and the run goes on.
    """
    runs: dict[str, list[dict]] = {v: [] for v in variants}
    for r in range(rounds):
        for v in variants:  # interleaved: every round measures every variant
            cmd = [sys.executable, "-m", module, "--child", v, *child_args]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode:
                runs[v].append({"error": proc.stderr.strip().splitlines()[-1:]})
            else:
                runs[v].append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(f"round {r + 1}/{rounds} {v}: {runs[v][-1]}", file=sys.stderr)
    return runs


def write_record(out: Path, args: Any, runs: dict, summary: dict) -> None:
    """Write ``{"args", "runs", "summary"}`` to ``out`` (folders created) and say where."""
    out.parent.mkdir(parents=True, exist_ok=True)
    record = {"args": vars(args), "runs": runs, "summary": summary}
    out.write_text(json.dumps(record, indent=2, default=str))
    print(f"written {out}")
