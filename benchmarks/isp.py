"""The invertible ISP trained with and without the JPEG in its loop, for the same CPU budget,
then measured as the paper measures it: the RAW recovered from a real JPEG (Pillow's libjpeg,
quality 90, 4:2:2) of the model's rendering, on whole held-out photographs.

    python -m benchmarks.isp --budget 600
    python -m benchmarks.isp --budget 2 --items 1 --variants jpeg --crop 160  # a quick check

Variants (each in its own process, ``--budget`` seconds of that process's CPU time):

* ``plain``: the ``isp`` task's ``plain`` recipe (lossless 8-bit PNGs in training),
* ``jpeg``: the default recipe (the differentiable JPEG at quality 90, 4:2:2, cubic rounding),
* ``jpeg-fourier``: the same with the Fourier-series rounding,
* ``jpeg-identity``: the default recipe from the identity instead of the colour map fitted
  to the data (not run unless ``--variants`` names it).

Reported per variant: the rendering's PSNR against the reference (the photograph), the RAW's
PSNR restored from the PNG and from the real JPEG, and the classical inverse (the fixed
pipeline's inverse of the photograph's own JPEG at the same setting). Then, with the best
JPEG-trained model, each held-out photograph's synthetic RAW is written as a DNG, rendered
to a JPEG by ``invblocks embed`` and restored to a DNG by ``invblocks restore``; both DNGs are
developed by ``rawpy.postprocess()`` and compared. Writes ``results.json`` and ``table.md``
under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

from ._budget import run_recipe

TRANSPORTS = ("png", "jpeg90-422")
VARIANTS: dict[str, dict[str, Any]] = {
    "plain": {"recipe": "plain"},
    "jpeg": {},
    "jpeg-fourier": {
        "channel": {"type": "jpeg", "quality": 90, "subsampling": "4:2:2", "rounding": "fourier"}
    },
    "jpeg-identity": {"network": {"colour": None}},
}


def _psnr(a: Any, b: Any, peak: float) -> float:
    import numpy as np

    mse = float(np.mean((np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)) ** 2))
    return 10 * math.log10(peak**2 / mse)


def dng_round_trip(
    run: Path, items: int, out: Path, crop: int | None = None
) -> list[dict[str, float]]:
    """Each held-out photograph's synthetic RAW (its top-left ``crop x crop`` when given) as
    a DNG, through ``invblocks embed`` (JPEG) and ``invblocks restore`` (DNG); the developed
    DNGs compared (PSNR in dB, 8-bit)."""
    import rawpy
    from invblocks_camera.isp import synthetic_raw
    from invblocks_camera.raw import RawInfo, dng_bytes, mosaic

    import invblocks
    from invblocks.ops import to_float

    out.mkdir(parents=True, exist_ok=True)
    import numpy as np
    from invblocks_camera.pipeline import CameraParams

    srgb_to_xyz = np.array(
        [[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750],
         [0.0193339, 0.1191920, 0.9503041]]
    )  # fmt: skip
    params = CameraParams()  # the colour matrix of the pipeline that made the RAW
    xyz_to_camera = np.linalg.inv(srgb_to_xyz @ np.array(params.ccm))
    info = RawInfo(
        pattern="RGGB",
        black=(512.0, 512.0, 512.0, 512.0),
        white=16383.0,
        gains=(params.red_gain, 1.0, params.blue_gain),
        xyz_to_camera=tuple(float(v) for v in xyz_to_camera.ravel()),
    )
    rows = []
    options = {"use_camera_wb": True, "no_auto_bright": True, "adjust_maximum_thr": 0.0}
    for index, photo in enumerate(invblocks.data.default_photos().val[:items]):
        x = to_float(photo)[None]
        if crop:
            x = x[..., :crop, :crop]
        h, w = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2
        raw = synthetic_raw(x[..., :h, :w])[0]
        source = out / f"item{index}.dng"
        source.write_bytes(dng_bytes(mosaic(raw, info), info))
        jpeg, restored = out / f"item{index}.jpg", out / f"item{index}-restored.dng"
        for args in (
            ("embed", "--model", str(run), str(source), "-o", str(jpeg)),
            ("restore", "--model", str(run), str(jpeg), "-o", str(restored)),
        ):
            done = subprocess.run(
                [sys.executable, "-m", "invblocks", *args], capture_output=True, text=True
            )
            if done.returncode:
                raise RuntimeError(done.stderr.strip())
        with rawpy.imread(str(source)) as a, rawpy.imread(str(restored)) as b:
            pa, pb = a.postprocess(**options), b.postprocess(**options)
        reference = (x[0, :, :h, :w].permute(1, 2, 0) * 255).round().numpy()
        rows.append(
            {
                "restored_vs_source": _psnr(pb, pa, 255),
                "source_vs_photo": _psnr(pa, reference, 255),
                "restored_vs_photo": _psnr(pb, reference, 255),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=600.0, help="CPU seconds per variant")
    parser.add_argument("--variants", default="plain,jpeg,jpeg-fourier")
    parser.add_argument("--items", type=int, default=4, help="held-out photographs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("outputs/bench/isp"))
    parser.add_argument(
        "--crop", type=int, default=None,
        help="measure the held-out photographs' top-left CROP x CROP only (a quick check)",
    )  # fmt: skip
    args = parser.parse_args()
    names = args.variants.split(",")
    results: dict[str, Any] = {}
    for name in names:
        fields = {**VARIANTS[name], "seed": args.seed}
        curve = run_recipe(
            name, "isp", fields, args.budget, args.out / name, points=1, items=args.items,
            transports=TRANSPORTS, final_only=True, crop=args.crop,
        )  # fmt: skip
        results[name] = curve[-1]
    rows = [
        "| variant | steps | rendering (PNG) | rendering (JPEG) | RAW from PNG | RAW from JPEG "
        "| classical inverse of the photo's JPEG |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in results.items():
        png, jpeg = r["png"], r["jpeg90-422"]
        rows.append(
            f"| {name} | {r['step']} | {png['embedding_psnr']:.2f} | {jpeg['received_psnr']:.2f} "
            f"| {png['restored_psnr']:.2f} | {jpeg['restored_psnr']:.2f} "
            f"| {png['baseline_psnr']:.2f} |"
        )
    jpeg_names = [n for n in names if n != "plain"]
    dng: list[dict[str, float]] = []
    if jpeg_names:
        best = max(jpeg_names, key=lambda n: results[n]["jpeg90-422"]["restored_psnr"])
        dng = dng_round_trip(args.out / best / "run", args.items, args.out / "dng", args.crop)
        rows.append("")
        rows.append(f"DNG round trip with `{best}` (rawpy.postprocess, 8-bit PSNR in dB):")
        rows.append("")
        rows.append("| item | restored vs source | source vs photo | restored vs photo |")
        rows.append("| --- | --- | --- | --- |")
        for i, d in enumerate(dng):
            rows.append(
                f"| {i} | {d['restored_vs_source']:.2f} | {d['source_vs_photo']:.2f} "
                f"| {d['restored_vs_photo']:.2f} |"
            )
    table = "\n".join(rows)
    print(table)
    (args.out / "table.md").write_text(table + "\n")
    (args.out / "results.json").write_text(
        json.dumps({"args": vars(args), "results": results, "dng": dng}, indent=2, default=str)
    )


if __name__ == "__main__":
    main()
