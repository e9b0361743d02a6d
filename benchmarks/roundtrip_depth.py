"""Round-trip error of EXACT chains vs depth, float32 and float64, on a real photograph.

Chains of Haar + LU 1x1 conv + ``depth`` couplings with perturbed (non-identity) weights;
reports the max and mean absolute error of ``inverse(forward(x)) - x``. Deterministic.

Run: ``python -m benchmarks.roundtrip_depth``
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from invblocks import Sequence
from invblocks import blocks as B
from invblocks.data import default_file
from invblocks.io import read_image
from invblocks.testing import perturb_parameters


def chain(depth: int) -> Sequence:
    g = torch.Generator().manual_seed(depth)
    net = Sequence(3, 128, 128)
    net.append(B.HaarDownscale, group=3)
    net.append(B.InvConv1x1, generator=g)
    net.extend(B.AffineCoupling(net.dims_out, split=3, generator=g) for _ in range(depth))
    perturb_parameters(net, 0.02, g)
    return net


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depths", type=int, nargs="+", default=[1, 4, 8, 16, 30])
    parser.add_argument("--out", type=Path, default=Path("outputs/bench/roundtrip_depth.json"))
    args = parser.parse_args()
    x = read_image(default_file("astronaut"))[:, 100:228, 150:278][None]
    rows = []
    for depth in args.depths:
        net = chain(depth)
        row = {"depth": depth}
        for dtype in (torch.float32, torch.float64):
            n, xd = net.to(dtype), x.to(dtype)
            with torch.no_grad():
                err = (n.inverse()(n(xd)) - xd).abs()
            key = str(dtype).removeprefix("torch.")
            row[f"{key}_max"], row[f"{key}_mean"] = float(err.max()), float(err.mean())
        rows.append(row)
        print(
            f"depth {depth:3d}: float32 max {row['float32_max']:.2e} mean {row['float32_mean']:.2e}"
            f" | float64 max {row['float64_max']:.2e}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
