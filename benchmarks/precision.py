"""bfloat16 inference against float32 on a trained model: quality, not speed.

    python -m benchmarks.precision [--model RUN] [--budget 300] [--frames 5]

Loads the run ``--model`` (default: trains the video task's default recipe for ``--budget``
CPU seconds into ``outputs/bench/precision/run`` first, or reuses it), embeds the first
``--frames`` frames of the held-out clip and restores them in float32 and with
``precision="bfloat16"`` (the couplings' subnets in bfloat16), and reports for each the
restored PSNR of the frames other than the reference, the embedding's PSNR against the
reference, the share of the 8-bit embedding's values equal to float32's, and the PSNR of the
bfloat16 restoration of float32's embedding against float32's restoration of it.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from ._runner import write_record


def compare(model_path: Path, frames: int) -> dict[str, Any]:
    """The table's rows, by precision."""
    from invblocks import Model, metrics
    from invblocks.data import default_clips

    clip = list(default_clips().val[0][:frames])
    originals = [f.float() / 255 for f in clip]
    rows: dict[str, Any] = {}
    runs = {}
    for precision in ("float32", "bfloat16"):
        model = Model.load(model_path, device="cpu", precision=precision)
        embedding, meta = model.embed(clip)
        restored = model.restore(embedding, meta)
        n = model.n_inputs
        reference = model.task.reference_of(model.task.stack(originals)[None], n)
        slot = model.task.order(n)[0]
        others = [
            metrics.psnr(r.float(), o)
            for k, (r, o) in enumerate(zip(restored, originals, strict=True))
            if k != slot
        ]
        rows[precision] = {
            "restored_psnr_no_ref": statistics.mean(others),
            "embedding_psnr": None
            if reference is None
            else metrics.psnr(embedding.float(), reference[0]),
        }
        runs[precision] = (model, embedding, meta, restored)
    model16 = runs["bfloat16"][0]
    _, e32, meta32, restored32 = runs["float32"]
    from_32 = model16.restore(e32, {**meta32, "precision": "bfloat16"})
    rows["bfloat16"]["same_8bit"] = float((runs["bfloat16"][1] == e32).float().mean())
    rows["bfloat16"]["inverse_psnr"] = statistics.mean(
        min(metrics.psnr(a.float(), b.float()), metrics.PSNR_CAP)
        for a, b in zip(from_32, restored32, strict=True)
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--budget", type=float, default=300.0)
    parser.add_argument("--frames", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("outputs/bench/precision/results.json"))
    args = parser.parse_args()
    model = args.model
    if model is None:
        model = args.out.parent / "run"
        if not (model / "checkpoints" / "LATEST").exists():
            cmd = [sys.executable, "-m", "invblocks", "train", "--task", "video", "--out",
                   str(model), "--quiet", "--set", f"cpu_budget={args.budget}"]  # fmt: skip
            subprocess.run(cmd, check=True)
    rows = compare(model, args.frames)
    print(
        "| precision | restored others dB | embedding dB | same 8-bit | inverse of float32's dB |"
    )
    print("| --- | --- | --- | --- | --- |")
    for name, r in rows.items():
        same = f"{r.get('same_8bit', 1.0):.1%}"
        inverse = f"{r.get('inverse_psnr', 100.0):.1f}"
        embedding = "" if r["embedding_psnr"] is None else f"{r['embedding_psnr']:.3f}"
        print(f"| {name} | {r['restored_psnr_no_ref']:.3f} | {embedding} | {same} | {inverse} |")
    write_record(args.out, args, {}, rows)


if __name__ == "__main__":
    main()
