"""Rate and distortion of the compression plugin's codec against Pillow's classical codecs.

    python -m benchmarks.rate_distortion --qualities 1,3,6 --budget 1800 --out outputs/rd

For each quality, the ``compression`` task trains with its recipe ``q<quality>`` for
``--budget`` seconds of the training process's CPU time on the default photographs' training
split; then every held-out photograph (the validation split, trimmed to multiples of 64) is
compressed to a real ``.ibc`` file and decompressed, and its bits per pixel (from the file's
size) and PSNR / MS-SSIM (of the decoded 8-bit image) are measured. ``--start-budget`` adds
the untrained codec (the DCT start) whose entropy model alone is fitted for that many CPU
seconds (the transforms' learning rate 1e-9). ``--contexts`` trains more entropy
models at quality ``--context-quality`` with ``--context-budget`` each, to measure each
context's rate and decoding time. ``--fitted-start 30,60,110`` measures the untrained DCT
start at those quantisation steps with its entropy model alone fitted, on latents computed
once, for ``--fitted-iters`` steps: what the start is worth once its entropy model has
converged.

The same photographs go through Pillow's JPEG (optimised Huffman tables, 4:2:0), WebP
(method 6), JPEG 2000 (irreversible, rates) and AVIF at many settings. Writes
``results.json``, ``table.md`` (every point, the BD-rate of the codec against each classical
codec, computed with the ``bjontegaard`` package, PCHIP, on the mean bpp and PSNR per
setting) and ``curves.png`` under ``--out``.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image

from ._runner import machine

if TYPE_CHECKING:
    from invblocks.model import Model

MULTIPLE = 64


def photos() -> list[np.ndarray]:
    """The held-out photographs ``(H, W, 3)`` uint8, trimmed to multiples of 64."""
    import invblocks

    out = []
    for photo in invblocks.data.default_photos().val:
        h, w = photo.shape[-2] // MULTIPLE * MULTIPLE, photo.shape[-1] // MULTIPLE * MULTIPLE
        top, left = (photo.shape[-2] - h) // 2, (photo.shape[-1] - w) // 2
        crop = photo[:, top : top + h, left : left + w]
        out.append(crop.permute(1, 2, 0).contiguous().numpy())
    return out


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * math.log10(255.0**2 / mse) if mse else float("inf")


def msssim(a: np.ndarray, b: np.ndarray) -> float:
    from pytorch_msssim import ms_ssim

    ta = torch.from_numpy(a).permute(2, 0, 1)[None].float() / 255
    tb = torch.from_numpy(b).permute(2, 0, 1)[None].float() / 255
    return float(ms_ssim(ta, tb, data_range=1.0))


# ------------------------------------------------------------------- classical codecs
CLASSICAL: dict[str, tuple[list[Any], Any]] = {
    "JPEG": (
        [5, 10, 15, 20, 30, 40, 50, 60, 70, 80, 85, 90, 95],
        lambda im, q, f: im.save(f, "JPEG", quality=q, optimize=True),
    ),
    "WebP": (
        [5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95],
        lambda im, q, f: im.save(f, "WEBP", quality=q, method=6),
    ),
    "JPEG 2000": (
        [200, 120, 80, 60, 40, 30, 20, 15, 10, 7, 5],
        lambda im, r, f: im.save(
            f, "JPEG2000", quality_mode="rates", quality_layers=[r], irreversible=True
        ),
    ),
    "AVIF": (
        [5, 10, 20, 30, 40, 50, 60, 70, 80, 90],
        lambda im, q, f: im.save(f, "AVIF", quality=q),
    ),
}


def classical(images: list[np.ndarray]) -> dict[str, list[dict[str, float]]]:
    out: dict[str, list[dict[str, float]]] = {}
    for name, (settings, save) in CLASSICAL.items():
        points = []
        for setting in settings:
            bpp, p, s = [], [], []
            for image in images:
                buf = io.BytesIO()
                save(Image.fromarray(image), setting, buf)
                data = buf.getvalue()
                decoded = np.array(Image.open(io.BytesIO(data)).convert("RGB"))
                bpp.append(8 * len(data) / (image.shape[0] * image.shape[1]))
                p.append(psnr(image, decoded))
                s.append(msssim(image, decoded))
            row = {"setting": setting, "bpp": statistics.mean(bpp), "psnr": statistics.mean(p)}
            points.append({**row, "ms_ssim": statistics.mean(s)})
        out[name] = sorted(points, key=lambda r: r["bpp"])
    return out


# ------------------------------------------------------------------------ learned codec
def train(
    run: Path, quality: int, budget: float, context: str, frozen: bool, extra: tuple[str, ...] = ()
) -> float:
    """Train the codec in a child process; its CPU seconds (the trainer's count). ``extra``:
    more ``--set KEY=VALUE`` settings (e.g. ``autocast=bfloat16``)."""
    sets = [f"recipe=q{quality}", f"cpu_budget={budget}", f"network.context={context}", *extra]
    if frozen:
        sets.append("lr=1e-9")
    cmd = [sys.executable, "-m", "invblocks", "train", "--task", "compression", "--out", str(run)]
    for s in sets:
        cmd += ["--set", s]
    done = subprocess.run(cmd, capture_output=True, text=True)
    (run.parent / f"{run.name}.log").write_text(done.stdout + done.stderr)
    if done.returncode:
        raise RuntimeError(f"training {run.name} failed: {done.stderr.strip()[-300:]}")
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    cpu = [r["cpu_s"] for r in records if "cpu_s" in r]
    return float(cpu[-1]) if cpu else float("nan")


def measure(run: Path | Model, images: list[np.ndarray], repeats: int = 1) -> dict[str, Any]:
    """Compress every image to a real file and back with the model of a run folder (or a
    :class:`~invblocks.model.Model`); mean bpp, PSNR, MS-SSIM, and the median encoding and
    decoding seconds."""
    from invblocks.model import Model

    model = run if isinstance(run, Model) else Model.load(run, device="cpu")
    bpp, p, s, enc, dec, est = [], [], [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i, image in enumerate(images):
            src = Path(tmp) / f"photo{i}.png"
            Image.fromarray(image).save(src)
            target = Path(tmp) / f"photo{i}.ibc"
            times_e, times_d = [], []
            for _ in range(repeats):
                t = time.perf_counter()
                model.embed_files([src], target)
                times_e.append(time.perf_counter() - t)
                out = Path(tmp) / f"out{i}"
                t = time.perf_counter()
                (restored,) = model.restore_file(target, out)
                times_d.append(time.perf_counter() - t)
            decoded = np.array(Image.open(restored).convert("RGB"))
            pixels = image.shape[0] * image.shape[1]
            bpp.append(8 * target.stat().st_size / pixels)
            x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
            with torch.no_grad():
                latent = model.net.body([x])[0][0]
            est.append(model.net.channel.coded_bits(latent) / pixels)  # type: ignore[operator]
            p.append(psnr(image, decoded))
            s.append(msssim(image, decoded))
            enc.append(statistics.median(times_e))
            dec.append(statistics.median(times_d))
    return {
        "bpp": statistics.mean(bpp), "coded_bpp": statistics.mean(est),
        "psnr": statistics.mean(p), "ms_ssim": statistics.mean(s),
        "encode_s": statistics.mean(enc), "decode_s": statistics.mean(dec),
    }  # fmt: skip


def fitted_start(
    quality: int,
    steps: list[float],
    iters: int,
    images: list[np.ndarray],
    seed: int = 0,
    per_photo: int = 8,
) -> list[dict[str, Any]]:
    """The untrained codec of ``quality`` (the DCT start) at each quantisation step of
    ``steps`` (8-bit levels), its entropy model alone fitted for ``iters`` Adam steps (1e-3,
    8 latents a step, the rate surrogate of training) on the start's latents of ``per_photo``
    random 256x256 crops per training photograph, computed once: what the start codes once its
    entropy model has converged, measured as the trained codecs are (:func:`measure`)."""
    from invblocks_compress import EntropyCoded, invcompress
    from invblocks_compress.plugin import COMPRESSION

    import invblocks
    from invblocks.model import Model
    from invblocks.ops import to_float

    g = torch.Generator().manual_seed(seed)
    crops = []
    for photo in invblocks.data.default_photos().train:
        x = to_float(photo)
        h, w = x.shape[-2:]
        if min(h, w) < 256:
            continue
        for _ in range(per_photo):
            i = int(torch.randint(0, h - 255, (1,), generator=g))
            j = int(torch.randint(0, w - 255, (1,), generator=g))
            crops.append(x[:, i : i + 256, j : j + 256])
    out: list[dict[str, Any]] = []
    latents = None  # the transforms do not depend on the step: their latents once
    for step in steps:
        net = invcompress(quality, step=step, generator=torch.Generator().manual_seed(seed))
        net.eval()
        if latents is None:
            with torch.no_grad():
                latents = torch.cat([net.body([torch.stack(crops[k : k + 8])])[0][0]
                                     for k in range(0, len(crops), 8)])  # fmt: skip
        channel = net.channel
        assert isinstance(channel, EntropyCoded)
        channel.train()
        optimizer = torch.optim.Adam(channel.parameters(), lr=1e-3)
        t = time.process_time()
        for _ in range(iters):
            pick = torch.randint(0, len(latents), (8,), generator=g)
            _, lik_y, lik_z = channel._run(latents[pick] / channel.step)
            bits = -(torch.log2(lik_y).sum() + torch.log2(lik_z).sum()) / (8 * 256 * 256)
            optimizer.zero_grad()
            bits.backward()
            optimizer.step()
        cpu = time.process_time() - t
        channel.finalize()
        model = Model(COMPRESSION, net, 1, {}, device="cpu")
        out.append({"quality": quality, "step": step, "cpu_s": cpu, **measure(model, images)})
        print("fitted start", out[-1], flush=True)
    return out


def decode_timing(repeats: int = 3, size: tuple[int, int] = (512, 768)) -> list[dict[str, Any]]:
    """Seconds to decode a ``size`` photograph (a crop of a bundled one) with each context,
    side by side, medians over ``repeats``: the entropy decoding (hyper-synthesis, context
    and the coder) and the synthesis transform apart. Untrained quality-3 networks: the
    time does not depend on the weights."""
    from invblocks_compress import invcompress

    import invblocks

    photo = invblocks.data.default_photos().train[-1]
    x = photo[:, : size[0], : size[1]].float()[None] / 255
    out = []
    for context in ("serial", "checkerboard", "none"):
        torch.manual_seed(0)
        net = invcompress(3, context=context).eval()
        with torch.no_grad():
            latent = net.body([x])[0][0]
            payloads = net.channel.encode(latent)  # type: ignore[operator]
            entropy, synthesis = [], []
            for _ in range(repeats):
                t = time.perf_counter()
                y_hat = net.channel.decode(payloads)  # type: ignore[operator]
                entropy.append(time.perf_counter() - t)
                t = time.perf_counter()
                net.body([y_hat], rev=True)
                synthesis.append(time.perf_counter() - t)
        out.append(
            {
                "context": context,
                "entropy_decode_s": statistics.median(entropy),
                "synthesis_s": statistics.median(synthesis),
            }
        )
        print(out[-1], flush=True)
    return out


def bd_rates(ours: list[dict[str, float]], others: dict[str, list[dict[str, float]]]) -> dict:
    import bjontegaard as bd

    out: dict[str, float | None] = {}
    if len(ours) < 2:
        return out
    ours = sorted(ours, key=lambda q: q["bpp"])
    r = [q["bpp"] for q in ours]
    d = [q["psnr"] for q in ours]
    for name, points in others.items():
        # the classical points around the codec's PSNR range (one beyond each end)
        lo, hi = min(d), max(d)
        inside = [i for i, q in enumerate(points) if lo <= q["psnr"] <= hi]
        below = [i for i, q in enumerate(points) if q["psnr"] < lo]
        above = [i for i, q in enumerate(points) if q["psnr"] > hi]
        keep = sorted(set(inside + below[-1:] + above[:1]))
        try:
            rate = [points[i]["bpp"] for i in keep]
            dist = [points[i]["psnr"] for i in keep]
            value = bd.bd_rate(rate, dist, r, d, method="pchip", require_matching_points=False)
            out[name] = float(value) if math.isfinite(value) else None
        except Exception:  # too little overlap to interpolate
            out[name] = None
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--qualities", default="1,3,6")
    parser.add_argument("--budget", type=float, default=1800.0)
    parser.add_argument("--start-budget", type=float, default=120.0)
    parser.add_argument("--contexts", default="", help="e.g. checkerboard,none")
    parser.add_argument("--context-quality", type=int, default=3)
    parser.add_argument("--context-budget", type=float, default=600.0)
    parser.add_argument(
        "--fitted-start",
        default="",
        help="quantisation steps (e.g. 30,60,110) at which to measure the DCT start with its "
        "entropy model fitted on cached latents (--fitted-quality, --fitted-iters)",
    )
    parser.add_argument("--fitted-quality", type=int, default=3)
    parser.add_argument("--fitted-iters", type=int, default=1500)
    parser.add_argument("--out", type=Path, default=Path("outputs/rd"))
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE",
        help="a training setting for the trained codecs (repeatable), e.g. autocast=bfloat16",
    )  # fmt: skip
    parser.add_argument(
        "--timing-only", action="store_true", help="only time decoding a 768x512 photograph"
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.timing_only:
        timing = decode_timing()
        (args.out / "decode_timing.json").write_text(json.dumps(timing, indent=2))
        return
    images = photos()
    results: dict[str, Any] = {"images": [list(i.shape) for i in images], "machine": machine()}
    results["classical"] = classical(images)
    qualities = [int(q) for q in args.qualities.split(",") if q]
    learned: dict[str, list[dict[str, Any]]] = {"trained": [], "start": []}
    for q in qualities:
        for kind, budget, frozen in (
            ("start", args.start_budget, True),
            ("trained", args.budget, False),
        ):
            if budget <= 0:
                continue
            run = args.out / f"q{q}-{kind}"
            cpu = train(run, q, budget, "serial", frozen, () if frozen else tuple(args.set))
            learned[kind].append({"quality": q, "cpu_s": cpu, **measure(run, images)})
            print(kind, learned[kind][-1], flush=True)
    steps = [float(v) for v in args.fitted_start.split(",") if v]
    if steps:
        learned["fitted start"] = fitted_start(
            args.fitted_quality, steps, args.fitted_iters, images
        )
    results["learned"] = learned
    contexts = []
    for context in [c for c in args.contexts.split(",") if c]:
        run = args.out / f"q{args.context_quality}-{context}"
        cpu = train(run, args.context_quality, args.context_budget, context, False)
        contexts.append({"context": context, "cpu_s": cpu, **measure(run, images, repeats=3)})
        print(contexts[-1], flush=True)
    results["contexts"] = contexts
    results["bd_rate"] = {
        kind: bd_rates(points, results["classical"]) for kind, points in learned.items()
    }
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    write_table(results, args.out / "table.md")
    plot(results, args.out / "curves.png")
    print((args.out / "table.md").read_text())


def write_table(results: dict[str, Any], path: Path) -> None:
    lines = ["| codec | setting | bpp | PSNR (dB) | MS-SSIM |", "|---|---|---|---|---|"]
    for kind, points in results["learned"].items():
        for q in points:
            setting = f"q{q['quality']}" + (f", step {q['step']:g}" if "step" in q else "")
            lines.append(
                f"| invcompress ({kind}, {q['cpu_s']:.0f} CPU-s) | {setting} | "
                f"{q['bpp']:.3f} (model {q['coded_bpp']:.3f}) | {q['psnr']:.2f} | "
                f"{q['ms_ssim']:.4f} |"
            )
    for name, points in results["classical"].items():
        for q in points:
            lines.append(
                f"| {name} | {q['setting']} | {q['bpp']:.3f} | {q['psnr']:.2f} | "
                f"{q['ms_ssim']:.4f} |"
            )
    lines += ["", "| BD-rate of | " + " | ".join(results["classical"]) + " |",
              "|---|" + "---|" * len(results["classical"])]  # fmt: skip
    for kind, rates in results["bd_rate"].items():
        cells = [
            "n/a" if rates.get(n) is None else f"{rates[n]:+.1f}%" for n in results["classical"]
        ]
        lines.append(f"| invcompress ({kind}) | " + " | ".join(cells) + " |")
    if results["contexts"]:
        lines += ["", "| context | CPU-s | bpp | PSNR | encode s | decode s |",
                  "|---|---|---|---|---|---|"]  # fmt: skip
        for c in results["contexts"]:
            lines.append(
                f"| {c['context']} | {c['cpu_s']:.0f} | {c['bpp']:.3f} | {c['psnr']:.2f} | "
                f"{c['encode_s']:.2f} | {c['decode_s']:.2f} |"
            )
    path.write_text("\n".join(lines) + "\n")


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for name, points in results["classical"].items():
        ax.plot([p["bpp"] for p in points], [p["psnr"] for p in points], "--", label=name)
    for kind, points in results["learned"].items():
        if points:
            ax.plot([p["bpp"] for p in points], [p["psnr"] for p in points], "o-",
                    label=f"invcompress ({kind})")  # fmt: skip
    ax.set_xlabel("bits per pixel")
    ax.set_ylabel("PSNR (dB)")
    ax.set_xlim(0, 2.0)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
