"""What the quality-within-a-budget benchmarks share: one training process per recipe, a CPU
budget, and evaluations of whole held-out images at points of that budget.

A recipe is a set of :class:`invblocks.TrainConfig` fields. ``run_recipe`` trains it in a
child process (``python -m benchmarks._budget --child SPEC``) with ``cpu_budget`` set, so
the budget is the training process's own CPU time, and the child evaluates the network
whenever the steps' CPU time crosses the next of ``points`` evenly spaced marks (and after
its first step). Evaluation time is not counted: the trainer counts only its steps.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

TRANSPORTS = ("png",)  # plus "jpeg<Q>" for any quality, see _channel


def _channel(model: Any, name: str) -> Any:
    """The deployment channel of a transport name: the model's file channel for ``png``
    (the lossless 8-bit embedding) and ``jpeg<Q>`` (a JPEG at quality Q), ``jpeg<Q>-422``
    (with that chroma subsampling: ``444``, ``422``, ``420``)."""
    if name == "png":
        return model.channel_for(".png")
    if name.startswith("jpeg"):
        quality, _, sub = name[4:].partition("-")
        channel = model.channel_for(".jpg", int(quality))
        if not sub:
            return channel
        from invblocks.ric import JPEGChannel

        return JPEGChannel(
            channel.dims_in or None,
            quality=int(quality),
            eval_quality=int(quality),
            subsampling=f"{sub[0]}:{sub[1]}:{sub[2]}",
        )
    raise ValueError(f"unknown transport {name!r}: png, jpeg<quality> or jpeg<quality>-422")


def run_recipe(
    name: str,
    task: str,
    fields: dict[str, Any],
    budget: float,
    out: Path,
    *,
    points: int = 5,
    items: int = 2,
    transports: tuple[str, ...] = ("png",),
    final_only: bool = False,
    crop: int | None = None,
) -> list[dict[str, Any]]:
    """Train recipe ``name`` for ``budget`` CPU seconds in a child process; the evaluations
    (one dict per point: ``cpu_s``, ``step``, and per transport the metrics of
    :func:`invblocks.model.evaluate_images`) in budget order. ``crop``: evaluate the
    held-out images' top-left ``crop x crop`` only (a quick check; default whole)."""
    out.mkdir(parents=True, exist_ok=True)
    spec = {
        "name": name,
        "task": task,
        "fields": fields,
        "budget": budget,
        "points": points,
        "items": items,
        "transports": list(transports),
        "final_only": final_only,
        "crop": crop,
        "run": str(out / "run"),
        "curve": str(out / "curve.jsonl"),
    }
    (out / "spec.json").write_text(json.dumps(spec, indent=2))
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks._budget", "--child", str(out / "spec.json")],
        capture_output=True,
        text=True,
    )
    (out / "child.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode:
        tail = proc.stderr.strip().splitlines()[-1:] or ["(no output)"]
        raise RuntimeError(f"recipe {name!r} failed: {tail[0]}")
    lines = Path(spec["curve"]).read_text().splitlines()
    curve = [json.loads(line) for line in lines]
    print(
        f"{name}: {len(curve)} evaluations, {curve[-1]['step']} steps, "
        f"{curve[-1]['cpu_s']:.0f} CPU s, {time.perf_counter() - started:.0f} s wall",
        file=sys.stderr,
    )
    return curve


def _child(path: Path) -> None:
    import torch

    from invblocks import TrainConfig, train
    from invblocks.io import json_safe
    from invblocks.model import Model, evaluate_images
    from invblocks.plugins import get_task

    spec = json.loads(path.read_text())
    task = get_task(spec["task"])
    fields = dict(spec["fields"])
    n = fields.get("n_inputs") or task.default_inputs
    budget = float(spec["budget"])
    config = TrainConfig(
        task=spec["task"],
        cpu_budget=budget,
        steps=fields.pop("steps", 1_000_000),
        val_every=1_000_000,  # the benchmark evaluates; the trainer validates at the end
        ckpt_every=1_000_000,
        **fields,
    )
    source = task.default_data()
    items = source.val[: spec["items"]]
    if spec.get("crop"):
        items = [x[..., : spec["crop"], : spec["crop"]] for x in items]
    layout = config.channels_last
    marks = [budget * (k + 1) / spec["points"] for k in range(spec["points"])]
    curve = Path(spec["curve"])
    curve.write_text("")
    state = {"next": 0, "first": not spec["final_only"]}

    def evaluate(step: int, cpu_s: float, net: Any) -> None:
        model = Model(task, net, n, {}, channels_last=layout)
        row: dict[str, Any] = {"step": step, "cpu_s": cpu_s}
        with torch.no_grad():
            for name in spec["transports"]:
                row[name] = evaluate_images(model, items, channel=_channel(model, name))
        net.train()
        with open(curve, "a") as f:
            f.write(json.dumps(json_safe(row)) + "\n")

    def on_step(step: int, record: dict[str, Any], net: Any) -> None:
        cpu_s = record["cpu_s"]
        due = state["first"] or (state["next"] < len(marks) and cpu_s >= marks[state["next"]])
        if spec["final_only"]:
            due = cpu_s >= budget
        if not due:
            return
        state["first"] = False
        while state["next"] < len(marks) and cpu_s >= marks[state["next"]]:
            state["next"] += 1
        evaluate(step, cpu_s, net)

    train(config, spec["run"], progress=False, on_step=on_step)


def summarise(curves: dict[str, list[dict]], key: str, transport: str = "png") -> dict[str, Any]:
    """Per recipe: the final value of ``key`` and the CPU seconds at which each recipe first
    reached the **first** recipe's (the reference's) final value (``None``: never)."""
    names = list(curves)
    reference_final = curves[names[0]][-1][transport][key]
    summary = {}
    for name, curve in curves.items():
        reached = next((p["cpu_s"] for p in curve if p[transport][key] >= reference_final), None)
        summary[name] = {
            "final": curve[-1][transport][key],
            "final_cpu_s": curve[-1]["cpu_s"],
            "steps": curve[-1]["step"],
            "cpu_s_to_reference_final": reached,
            "baseline": curve[-1][transport].get(key.replace("restored", "baseline")),
            # what the file of this transport shows (the 8-bit PNG: the embedding)
            "embedding_psnr": curve[-1][transport]["received_psnr"],
        }
    return summary


def plot(curves: dict[str, list[dict]], key: str, out: Path, title: str, transport: str = "png"):
    """Curves of ``key`` against CPU minutes, one per recipe, with the baseline dashed."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.5, 4))
    ax = fig.subplots()
    for name, curve in curves.items():
        xs = [p["cpu_s"] / 60 for p in curve]
        ax.plot(xs, [p[transport][key] for p in curve], marker="o", label=name)
    baseline = next(iter(curves.values()))[-1][transport].get(key.replace("restored", "baseline"))
    if baseline is not None:
        ax.axhline(baseline, color="gray", linestyle="--", label="trivial baseline")
    ax.set_xlabel("training CPU minutes")
    ax.set_ylabel(f"{key} (dB)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", type=Path, required=True)
    _child(parser.parse_args().child)
