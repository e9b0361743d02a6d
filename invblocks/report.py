"""An HTML report of a run: loss curves, validation metrics and side-by-side images."""

from __future__ import annotations

import html
import json
import statistics
from pathlib import Path
from typing import Any

from .io import atomic_write

__all__ = ["read_metrics", "write_report"]


def read_metrics(run: str | Path) -> list[dict[str, Any]]:
    """The records of ``run/metrics.jsonl``: JSON objects with an integer ``step`` (a line cut
    short, or anything else, is skipped)."""
    path = Path(run) / "metrics.jsonl"
    if not path.is_file():
        raise ValueError(f"{run} has no metrics.jsonl: is it a training run folder?")
    records = []
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"cannot read {path}: {err}") from None
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line cut short, or not a record
        if isinstance(record, dict) and isinstance(record.get("step"), int):
            records.append(record)
    return records


def _plot(records: list[dict[str, Any]], out: Path) -> Path | None:
    try:  # the object API: no pyplot, no change to the user's matplotlib backend
        from matplotlib.figure import Figure
    except ImportError:  # pragma: no cover - the data extra installs matplotlib
        return None
    steps = [r for r in records if isinstance(r.get("total"), int | float)]
    if not steps:
        return None
    skip = ("step", "lr", "grad_norm", "step_s", "data_s", "cpu_s")
    keys = [k for k, v in steps[-1].items() if k not in skip and isinstance(v, int | float)]
    fig = Figure(figsize=(11, 3.6))
    axes = fig.subplots(1, 2)
    xs = [r["step"] for r in steps]
    window = max(1, len(steps) // 25)
    for k in keys:
        ys = [_value(r.get(k)) for r in steps]
        (line,) = axes[0].plot(xs, ys, alpha=0.2, linewidth=0.8)
        smooth = [
            sum(ys[max(0, i - window + 1) : i + 1]) / len(ys[max(0, i - window + 1) : i + 1])
            for i in range(len(ys))
        ]
        axes[0].plot(xs, smooth, color=line.get_color(), label=f"{k} (mean of {window})")
    axes[0].set_yscale("log")
    axes[0].set_xlabel("step")
    axes[0].set_title("training losses")
    axes[0].legend(fontsize=8)
    val = [r for r in records if isinstance(r.get("validation"), dict)]
    for k in ("embedding_psnr", "restored_psnr"):
        pts = [(r["step"], _value(r["validation"].get(k))) for r in val]
        pts = [p for p in pts if p[1] == p[1]]  # leave NaN out
        if pts:
            axes[1].plot(*zip(*pts, strict=True), marker="o", label=k)
    axes[1].set_xlabel("step")
    axes[1].set_ylabel("PSNR (dB)")
    axes[1].set_title("validation")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    path = out / "losses.png"
    with atomic_write(path) as f:
        fig.savefig(f, dpi=90, format="png")
    return path


def _value(value: Any) -> float:
    """A number to plot: the value, or NaN for a missing or non-numeric one."""
    return float(value) if isinstance(value, int | float) else float("nan")


def _number(value: Any) -> str:
    """A table cell: three decimals, or ``-`` for a missing or non-numeric value."""
    return f"{value:.3f}" if isinstance(value, int | float) else "-"


def _timing(records: list[dict[str, Any]]) -> str:
    """One line on the steps' wall times (``step_s``, ``data_s``), or ``""`` when not logged.

    The first step of the log is left out of the medians when there are others: it includes
    warming up (and, with ``torch.compile``, compiling)."""
    steps = [r for r in records if "step_s" in r]
    if not steps:
        return ""
    timed = steps[1:] or steps
    step_s = statistics.median(r["step_s"] for r in timed)
    data_s = statistics.median(r.get("data_s", 0.0) for r in timed)
    plural = "s" * (len(steps) != 1)
    return (
        f"{len(steps)} step{plural} logged; median step {step_s:.3g} s, waiting for data "
        f"{data_s:.3g} s (steps {timed[0]['step']}-{timed[-1]['step']})"
    )


def write_report(run: str | Path) -> Path:
    """Write ``run/report.html`` (and ``losses.png``) from the run's logs and sample images."""
    run = Path(run)
    records = read_metrics(run)
    plot = _plot(records, run)
    val = [r for r in records if isinstance(r.get("validation"), dict)]
    parts = [
        "<!doctype html><meta charset='utf-8'><title>invblocks run report</title>",
        "<style>body{font-family:sans-serif;margin:2em}img{image-rendering:pixelated;"
        "width:160px;margin:2px;border:1px solid #ccc}figure{display:inline-block;margin:4px;"
        "text-align:center}table{border-collapse:collapse}td,th{padding:3px 8px;"
        "border-bottom:1px solid #ddd}</style>",
        f"<h1>Run {html.escape(run.name)}</h1>",
    ]
    config = run / "config.json"
    if config.is_file():
        parts.append(f"<pre>{html.escape(config.read_text())}</pre>")
    timing = _timing(records)
    if timing:
        parts.append(f"<p>{html.escape(timing)}</p>")
    if plot is not None:
        parts.append(f"<img src='{plot.name}' style='width:900px'>")
    if val:
        keys = sorted({k for r in val for k in r["validation"]})
        parts.append("<h2>Validation</h2><table><tr><th>step</th>")
        parts.append("".join(f"<th>{html.escape(k)}</th>" for k in keys) + "</tr>")
        for r in val:
            cells = "".join(f"<td>{_number(r['validation'].get(k))}</td>" for k in keys)
            parts.append(f"<tr><td>{r['step']}</td>{cells}</tr>")
        parts.append("</table>")
        samples = run / "samples"
        last = f"step{val[-1]['step']:08d}-"
        folders = sorted(p for p in samples.glob(f"{last}sample*") if p.is_dir())
        for folder in folders:
            parts.append(f"<h3>{html.escape(folder.name)}</h3><div>")
            for img in sorted(folder.glob("*.png")):
                rel = img.relative_to(run).as_posix()
                parts.append(
                    f"<figure><img src='{rel}'><figcaption>{img.stem}</figcaption></figure>"
                )
            parts.append("</div>")
    path = run / "report.html"
    with atomic_write(path) as f:
        f.write("\n".join(parts).encode())
    return path
