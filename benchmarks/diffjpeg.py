"""How close the differentiable JPEGs come to the real codec: PSNR (dB) of each surrogate's
output against what Pillow's libjpeg decodes from the file it writes, on a bundled
photograph, per quality and chroma subsampling (and of that file against the image).

    python -m benchmarks.diffjpeg
"""

from __future__ import annotations

import torch

import invblocks
from invblocks.metrics import psnr
from invblocks.ops import to_float
from invblocks.ric.diffjpeg import ROUNDINGS, jpeg_differentiable
from invblocks.ric.jpeg import jpeg_round_trip

QUALITIES = (50, 75, 90, 95)
SUBSAMPLINGS = ("4:4:4", "4:2:2", "4:2:0")


def main() -> None:
    from kornia.enhance import jpeg_codec_differentiable

    photo = to_float(invblocks.data.default_photos().val[0][:, :192, :288])[None]
    rows = [
        "| quality | subsampling | file vs image | " + " | ".join(ROUNDINGS) + " | kornia |",
        "| --- | --- | --- | " + " | ".join("---" for _ in ROUNDINGS) + " | --- |",
    ]
    for q in QUALITIES:
        for sub in SUBSAMPLINGS:
            real = jpeg_round_trip(photo, q, sub)
            cells = [
                psnr(jpeg_differentiable(photo, q, subsampling=sub, rounding=r)[0], real[0])
                for r in ROUNDINGS
            ]
            kornia = "-"
            if sub == "4:2:0":  # kornia's codec subsamples 4:2:0 only
                k = jpeg_codec_differentiable(photo, torch.tensor([float(q)]))
                kornia = f"{psnr(k[0], real[0]):.2f}"
            row = " | ".join(f"{c:.2f}" for c in cells)
            rows.append(f"| {q} | {sub} | {psnr(real[0], photo[0]):.2f} | {row} | {kornia} |")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
