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


def machine() -> dict[str, Any]:
    """The CPU a benchmark ran on: CPU-seconds differ about twofold between CPUs that
    ``lscpu`` gives the same flags (one vendor's generations), so every record names the
    family and model, and the threads and PyTorch it ran with."""
    import os
    import platform

    import torch

    info: dict[str, Any] = {"processor": platform.processor() or platform.machine()}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    fields = dict(
        (k.strip(), v.strip())
        for k, _, v in (line.partition(":") for line in text.split("\n\n")[0].splitlines())
    )
    for key in ("vendor_id", "cpu family", "model", "model name"):
        if key in fields:
            info[key.replace(" ", "_")] = fields[key]
    flags = set(fields.get("flags", "").split())
    info["units"] = sorted(flags & {"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"})
    info["cpus"] = os.cpu_count()
    info["torch"] = torch.__version__
    info["threads"] = torch.get_num_threads()
    return info


def write_record(out: Path, args: Any, runs: dict, summary: dict) -> None:
    """Write ``{"args", "machine", "runs", "summary"}`` to ``out`` (folders created) and say
    where."""
    out.parent.mkdir(parents=True, exist_ok=True)
    record = {"args": vars(args), "machine": machine(), "runs": runs, "summary": summary}
    out.write_text(json.dumps(record, indent=2, default=str))
    print(f"written {out}")
