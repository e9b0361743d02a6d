"""Training on a CPU: one multi-threaded process against several ``torchrun`` processes.

Both set-ups run ``invblocks train`` at the same global batch on the CPU: ``single`` is one
process at ``--batch`` with torch's default threads; ``ddp`` is ``--processes`` processes under
``torchrun``, each at ``batch / processes`` with ``threads / processes`` OpenMP threads
(``threads``: torch's default in this process), gradients exchanged by gloo. A step's time is
the ``step_s`` that the trainer logs in ``metrics.jsonl`` (from the batch on the device to the
optimiser's update; with ``torchrun`` it includes the gradient exchange); per run the median
over its steps after the first, per round the ratio ``ddp / single``, and the table reports
medians over rounds. The rounds are interleaved, so both set-ups see the same machine state.

The two set-ups train on the same data with the same settings, but not the same numbers: each
``torchrun`` process reads its own samples and draws its own quantisation noise. This measures
a way to run training, not a different implementation of the step.

Run: ``python -m benchmarks.data_parallel [--task video] [--crop 144] [--batch 2]
[--processes 2] [--steps 6] [--repeats 3] [--set KEY=VALUE ...]
[--out outputs/bench/data_parallel.json]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from ._runner import write_record

SETUPS = ("single", "ddp")


def train_command(args: argparse.Namespace, out: Path, batch: int) -> list[str]:
    """The ``invblocks train`` arguments both set-ups share (``batch`` per process)."""
    overrides = [
        f"steps={args.steps}",
        f"batch={batch}",
        f"crop={args.crop}",
        f"val_every={10**9}",  # the last step validates and checkpoints, after its step_s
        f"ckpt_every={10**9}",
        *args.set,
    ]
    cmd = ["-m", "invblocks", "train", "--task", args.task, "--out", str(out)]
    cmd += ["--device", "cpu", "--quiet"]
    for item in overrides:
        cmd += ["--set", item]
    return cmd


def step_times(run: Path) -> list[float]:
    """The ``step_s`` of every step record of ``run/metrics.jsonl``."""
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [r["step_s"] for r in map(json.loads, lines) if "step_s" in r]


def run_setup(setup: str, args: argparse.Namespace, out: Path, threads: int) -> dict:
    """Train once in ``setup``; the median step time after the first step, or the error."""
    env = dict(os.environ)
    if setup == "single":
        cmd = [sys.executable, *train_command(args, out, args.batch)]
    else:
        env["OMP_NUM_THREADS"] = str(max(1, threads // args.processes))
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
        cmd += [f"--nproc_per_node={args.processes}"]
        cmd += train_command(args, out, args.batch // args.processes)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode:
        return {"error": proc.stderr.strip().splitlines()[-1:]}
    times = step_times(out)
    timed = times[1:] or times  # the first step warms up
    return {"step_s": statistics.median(timed), "steps_s": times}


def summarise(runs: dict[str, list[dict]]) -> dict[str, dict]:
    """Per set-up: the median step time over rounds and the median per-round ratio to
    ``single`` (rounds where either failed are left out)."""
    pairs = [
        (s, d)
        for s, d in zip(runs["single"], runs["ddp"], strict=True)
        if "error" not in s and "error" not in d
    ]
    if not pairs:
        failed = [r for r in (*runs["single"], *runs["ddp"]) if "error" in r]
        return {v: {"error": failed[-1]["error"] if failed else "no run"} for v in SETUPS}
    return {
        "single": {"step_s": statistics.median(s["step_s"] for s, _ in pairs), "time_ratio": 1.0},
        "ddp": {
            "step_s": statistics.median(d["step_s"] for _, d in pairs),
            "time_ratio": statistics.median(d["step_s"] / s["step_s"] for s, d in pairs),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="video")
    parser.add_argument("--crop", type=int, default=144)
    parser.add_argument("--batch", type=int, default=2, help="global batch")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", type=Path, default=Path("outputs/bench/data_parallel.json"))
    args = parser.parse_args()
    if args.processes < 2 or args.batch % args.processes:
        parser.error(
            f"--batch must be a multiple of --processes (at least 2); received --batch "
            f"{args.batch} and --processes {args.processes}"
        )
    owned = {"steps", "batch", "crop", "val_every", "ckpt_every"}
    clashes = sorted({item.partition("=")[0].strip() for item in args.set} & owned)
    if clashes:
        parser.error(
            f"--set {', '.join(clashes)}: the benchmark sets these itself (use --steps, --batch, "
            f"--crop)"
        )
    import torch

    threads = torch.get_num_threads()
    runs: dict[str, list[dict]] = {v: [] for v in SETUPS}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            for setup in SETUPS:  # interleaved
                result = run_setup(setup, args, Path(tmp) / f"{setup}-{r}", threads)
                runs[setup].append(result)
                print(f"round {r + 1}/{args.repeats} {setup}: {result}", file=sys.stderr)
    summary = summarise(runs)
    per_process = f"{args.batch // args.processes} x {max(1, threads // args.processes)} threads"
    labels = {
        "single": f"1 process, batch {args.batch}, {threads} threads",
        "ddp": f"{args.processes} processes, each batch {per_process}",
    }
    print(f"{'set-up':<44} {'step (s)':>9} {'time ratio':>10}")
    for v in SETUPS:
        row = summary[v]
        if "error" in row:
            print(f"{labels[v]:<44} error: {row['error']}")
        else:
            print(f"{labels[v]:<44} {row['step_s']:>9.2f} {row['time_ratio']:>10.2f}")
    write_record(args.out, args, runs, summary)


if __name__ == "__main__":
    main()
