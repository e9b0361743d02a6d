"""Decoding a photograph with the compression plugin's codec against the authors' own code.

    pip install --no-deps --target /tmp/compressai compressai==1.2.8
    git clone https://github.com/xyq7/InvCompress /tmp/InvCompress
    python -m benchmarks.decode_speed --authors /tmp/InvCompress --compressai /tmp/compressai

The authors' ``InvCompress(N=128)`` is built from their Python modules (the files
``plugins/invblocks-compress/tests/fixtures/record_invcompress.py`` records from, at its
commit) with the entropy coder and CDF extension compiled in CompressAI 1.2.8's wheel (the
authors' code is a fork of CompressAI whose C++ sources are those of the wheel's ``ans`` and
``_CXX``; the wheel is unpacked beside, never imported as a package, so none of its
import-time dependencies are needed). Its random weights (seed 0 for torch and numpy),
tables filled by its ``update(force=True)``, are imported into invblocks
(``convert_invcompress``), so both decoders hold the same network.

A crop of ``--size`` of a bundled photograph is compressed by each, then decoded
``--repeats`` times, the variants interleaved round by round (medians): the authors'
``decompress`` (their serial context model, position by position, their rANS coder, their
synthesis in float32), and ``Model.decode`` of the imported network with the serial,
checkerboard and no context (the same weights; the context model's weights read through the
other masks) in float32 and with ``precision="bfloat16"``. The serial float32 decode is
also compared with the authors' decoded image (the same latent decoded, so they agree to
float rounding). Writes ``decode_speed.json`` and ``table.md`` under ``--out``.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "plugins/invblocks-compress/tests/fixtures/record_invcompress.py"


def authors_module(repo: Path, compressai: Path, root: Path) -> Any:
    """The authors' ``compressai.models.ours`` from the clone ``repo``, written under ``root``
    with the compiled ``ans`` and ``_CXX`` extensions of the CompressAI wheel in
    ``compressai``."""
    package = compressai / "compressai" if (compressai / "compressai").is_dir() else compressai
    compiled = [*package.glob("ans.*.so"), *package.glob("_CXX.*.so")]
    if len(compiled) != 2:
        raise SystemExit(
            f"{compressai} holds no compiled ans and _CXX extensions (install CompressAI's "
            "wheel there: pip install --no-deps --target DIR compressai==1.2.8)"
        )
    spec = importlib.util.spec_from_file_location("record_invcompress", FIXTURE)
    assert spec is not None and spec.loader is not None
    sys.path.insert(0, str(FIXTURE.parent))
    try:
        record = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(record)
    finally:
        sys.path.remove(str(FIXTURE.parent))
    record.extract(repo, record.COMMIT, root)
    for path in compiled:
        shutil.copy(path, root / "compressai" / path.name)
    sys.path.insert(0, str(root))
    return importlib.import_module("compressai.models.ours")


def variants(authors: Any, x: torch.Tensor) -> dict[str, tuple[Callable[[], torch.Tensor], int]]:
    """Each decoder as a function of no arguments returning the decoded image ``(1, 3, H,
    W)``, with the bytes it decodes."""
    from invblocks_compress import invcompress
    from invblocks_compress.plugin import COMPRESSION
    from invblocks_compress.published import convert_invcompress

    from invblocks.model import Model

    out: dict[str, tuple[Callable[[], torch.Tensor], int]] = {}
    with torch.no_grad():
        coded = authors.compress(x)
    size = sum(len(s) for strings in coded["strings"] for s in strings)

    def theirs() -> torch.Tensor:
        with torch.no_grad():
            return authors.decompress(coded["strings"], coded["shape"])["x_hat"]

    out["authors (serial, float32)"] = (theirs, size)
    imported = convert_invcompress(authors.state_dict()).net
    state = {  # the masks are each context's own, the coding tables are set below
        k: v
        for k, v in imported.state_dict().items()
        if not k.endswith(".mask") and not k.startswith("channel.z_")
    }
    for context in ("serial", "checkerboard", "none"):
        for precision in ("float32", "bfloat16"):
            net = invcompress(n=128, start="random", context=context)
            own = net.state_dict()
            net.load_state_dict({**own, **state})
            net.channel.z_pmf, net.channel.z_minima, net.channel.z_medians = (  # type: ignore[union-attr]
                imported.channel.z_pmf,  # type: ignore[union-attr]
                imported.channel.z_minima,  # type: ignore[union-attr]
                imported.channel.z_medians,  # type: ignore[union-attr]
            )
            model = Model(COMPRESSION, net, 1, {}, device="cpu", precision=precision)
            payload, meta = model.encode([x[0]])

            def ours(model: Model = model, payload: Any = payload, meta: Any = meta) -> Any:
                return model.decode(payload, meta)[0][None]

            out[f"invblocks ({context}, {precision})"] = (ours, payload.nbytes)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--authors", type=Path, required=True, help="a clone of InvCompress")
    parser.add_argument(
        "--compressai", type=Path, required=True, help="CompressAI 1.2.8's wheel unpacked"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--size", default="512x768", help="HxW of the crop")
    parser.add_argument("--out", type=Path, default=Path("outputs/decode-speed"))
    args = parser.parse_args()
    height, width = (int(v) for v in args.size.split("x"))

    import invblocks

    photo = invblocks.data.default_photos().train[-1]
    if photo.shape[1] < height or photo.shape[2] < width:
        raise SystemExit(f"the photograph is {tuple(photo.shape[1:])}; --size is too large")
    x = photo[:, :height, :width].float()[None] / 255
    with tempfile.TemporaryDirectory() as tmp:
        ours_module = authors_module(args.authors, args.compressai, Path(tmp))
        torch.manual_seed(0)
        np.random.seed(0)  # their invertible 1x1 convolutions start from numpy's
        authors = ours_module.InvCompress(N=128).eval()
        authors.update(force=True)
        decoders = variants(authors, x)
        times: dict[str, list[float]] = {name: [] for name in decoders}
        images: dict[str, torch.Tensor] = {}
        for _ in range(args.repeats):
            for name, (decode, _size) in decoders.items():
                start = time.perf_counter()
                images[name] = decode()
                times[name].append(time.perf_counter() - start)
    reference = images["authors (serial, float32)"].clamp(0, 1)
    base = statistics.median(times["authors (serial, float32)"])
    rows = []
    for name, (_decode, size) in decoders.items():
        median = statistics.median(times[name])
        diff = (images[name].clamp(0, 1) - reference).abs().max().item()
        rows.append(
            {
                "decoder": name,
                "bytes": size,
                "decode_s": median,
                "times": times[name],
                "speedup": base / median,
                "max_difference": diff,
            }
        )
        print(rows[-1], flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {"size": [height, width], "repeats": args.repeats, "torch": torch.__version__}
    (args.out / "decode_speed.json").write_text(json.dumps({**meta, "rows": rows}, indent=2))
    lines = [
        f"Decoding a {height}x{width} photograph, medians of {args.repeats} (interleaved)",
        "",
        "| decoder | bytes | decode (s) | faster than the authors' | max difference |",
        "| --- | --- | --- | --- | --- |",
    ]
    lines += [
        f"| {r['decoder']} | {r['bytes']} | {r['decode_s']:.2f} | {r['speedup']:.2f}x | "
        f"{r['max_difference']:.2g} |"
        for r in rows
    ]
    (args.out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
