"""Build invertible networks from invblocks and round-trip a real photograph through them.

1. An EXACT chain (Haar + LU 1x1 conv + couplings, with perturbed, non-identity weights)
   inverts a photo to float precision, at depth 8 and 30, in float32 and float64.
2. The IICNet st-01 network (5 frames, 10 couplings) embeds five crops of the photo into
   one 8-bit PNG and restores five images from that file (untrained: restoration is poor
   until the network is trained; the point here is the plumbing, shapes and the file path).

Run: ``make demo`` (or ``python examples/roundtrip.py --out outputs/demo``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from invblocks import Sequence, presets
from invblocks import blocks as B
from invblocks.data import default_file
from invblocks.io import read_image, write_png
from invblocks.testing import perturb_parameters


def exact_chain(channels: int, size: int, depth: int, seed: int) -> Sequence:
    g = torch.Generator().manual_seed(seed)
    net = Sequence(channels, size, size)
    net.append(B.HaarDownscale, order="ref", group=channels)
    net.append(B.InvConv1x1, generator=g)
    net.extend(B.AffineCoupling(net.dims_out, split=channels, generator=g) for _ in range(depth))
    perturb_parameters(net, 0.02, g)  # leave the identity initialisation: a real test
    return net


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("outputs/demo"))
    parser.add_argument("--photo", default="astronaut")
    parser.add_argument("--size", type=int, default=128)
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))

    photo = read_image(default_file(args.photo))
    s = args.size
    x = photo[:, :s, 100 : 100 + s][None]
    print(f"photo {args.photo}: {tuple(photo.shape)}, crop {tuple(x.shape)}")

    print("\n1. EXACT chain round trip (max |x - inverse(forward(x))|):")
    for depth in (8, 30):
        net = exact_chain(3, s, depth, seed=depth)
        for dtype in (torch.float32, torch.float64):
            n = net.to(dtype)
            with torch.no_grad():
                t = time.perf_counter()
                (y,), _log_det = n([x.to(dtype)])
                (xb,), _ = n([y], rev=True)
                dt = time.perf_counter() - t
            err = float((xb - x.to(dtype)).abs().max())
            print(f"   depth {depth:2d} {dtype!s:14s} error {err:.2e}  ({dt:.2f} s)")

    print("\n2. IICNet st-01: 5 crops -> one 8-bit PNG -> 5 restored images")
    frames = torch.cat([photo[:, :s, i * 20 + 100 : i * 20 + 100 + s] for i in range(5)])[None]
    net = presets.iicnet(5, size=(s, s), generator=torch.Generator().manual_seed(0)).eval()
    print(net.summary())
    with torch.no_grad():
        (e,), _ = net([frames])
        path = write_png(e[0], args.out / "embedding.png")
        (restored,), _ = net([read_image(path)[None]], rev=True)
    for i in range(5):
        write_png(restored[0, 3 * i : 3 * i + 3].clamp(0, 1), args.out / f"restored_{i}.png")
    print(f"   embedding {tuple(e.shape)} written to {path}; restored {tuple(restored.shape)}")
    print(f"   outputs in {args.out}/")


if __name__ == "__main__":
    main()
