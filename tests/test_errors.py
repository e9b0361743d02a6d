"""Bad input through the command line: a sentence and exit code 2, never a traceback; inputs
untouched, no partial output; kills recovered; files written with the umask's modes."""

import hashlib
import json
import os
import random
import signal
import struct
import subprocess
import sys
import time
import zipfile
import zlib
from pathlib import Path

import pytest
import torch
from PIL import Image
from PIL.PngImagePlugin import PngInfo
from safetensors.torch import load_file, save_file

from invblocks.io import write_png

ROOT = Path(__file__).resolve().parents[1]
TINY = ["network.blocks=1", "network.width=4", "network.growth=4"]


def cli(*args, env=None, preexec=None, timeout=300):
    """``python -m invblocks ARGS`` in a subprocess: ``(returncode, stdout, stderr)``."""
    proc = subprocess.run(
        [sys.executable, "-m", "invblocks", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "INVBLOCKS_NO_TUNE_MALLOC": "1", **(env or {})},
        preexec_fn=preexec,
        timeout=timeout,
    )
    return proc.returncode, proc.stdout, proc.stderr


def sets(*settings):
    return [a for s in settings for a in ("--set", s)]


def digest(folder):
    """Every file under ``folder`` (hidden ones too) and its bytes' hash."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    root = tmp_path_factory.mktemp("model")
    code, _, err = cli(
        "train", "--task", "video", "--out", root / "run", "--quiet",
        *sets("steps=1", "crop=16", "batch=1", "n_inputs=3", "device=cpu", *TINY),
    )  # fmt: skip
    assert code == 0, err
    return root / "run"


def png_with_size(path, width, height):
    """A valid 1x1 PNG whose header claims ``width x height`` (a decompression bomb)."""
    Image.new("L", (1, 1)).save(path)
    data = bytearray(path.read_bytes())
    ihdr = data.index(b"IHDR")
    data[ihdr + 4 : ihdr + 12] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr : ihdr + 17])) & 0xFFFFFFFF
    data[ihdr + 17 : ihdr + 21] = struct.pack(">I", crc)
    path.write_bytes(bytes(data))


def frames(folder, n=3, size=(20, 24)):
    paths = []
    for i in range(n):
        paths.append(folder / f"f{i}.png")
        write_png(torch.rand(3, *size, generator=torch.Generator().manual_seed(i)), paths[-1])
    return paths


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, model, payload):
    """The files the bad commands read (they must never change)."""
    folder = tmp_path_factory.mktemp("inputs")
    f = frames(folder)
    png_with_size(folder / "bomb.png", 30000, 30000)
    png_with_size(folder / "large.png", 9600, 9600)  # over Pillow's warning, under its error
    write_png(torch.rand(3, 8, 8), folder / "blocker.png")
    (folder / "bad.toml").write_text("task = ")
    (folder / "notes.txt").write_text("not a checkpoint")
    (folder / "text.pth").write_text("hello")
    damaged = folder / "damaged"
    damaged.mkdir()
    (damaged / "config.json").write_text("{not json")
    (damaged / "model.safetensors").write_bytes(b"\0" * 16)
    foreign = folder / "foreign"
    foreign.mkdir()
    (foreign / "config.json").write_text(json.dumps({"name": "another program"}))
    (foreign / "model.safetensors").write_bytes(b"\0" * 16)
    checkpoint = model / "checkpoints" / "step-00000001"
    meta = json.loads((checkpoint / "config.json").read_text())
    nonet = folder / "nonet"
    nonet.mkdir()
    (nonet / "config.json").write_text(
        json.dumps({k: v for k, v in meta.items() if k != "network"})
    )
    (nonet / "model.safetensors").write_bytes((checkpoint / "model.safetensors").read_bytes())
    pickled = folder / "pickled"  # the weights file is a pickle whose loading runs code
    pickled.mkdir()
    (pickled / "config.json").write_text(json.dumps(meta))
    torch.save({"w": torch.zeros(1), "x": payload(folder / "payload-ran")}, pickled / "model.pt")
    (pickled / "model.safetensors").write_bytes((pickled / "model.pt").read_bytes())
    readonly = folder / "readonly"
    readonly.mkdir()
    readonly.chmod(0o555)
    from invblocks import Model

    Model.load(model, device="cpu").embed_files(f, folder / "clip.png")
    clip = Image.open(folder / "clip.png")
    meta = json.loads(clip.text["invblocks"])
    for name, text in (
        ("huge-height.png", json.dumps({**meta, "height": 10**400})),
        ("nested-meta.png", "[" * 100_000 + "]" * 100_000),
        ("long-meta.png", json.dumps({**meta, "task": "x" * 50_000_000})),
    ):
        info = PngInfo()
        info.add_text("invblocks", text)
        clip.save(folder / name, pnginfo=info)
    clip.save(folder / "bare.png")  # no metadata: restored with --size
    deep = "[" * 100_000 + "]" * 100_000
    (folder / "deep.json").write_text(deep)
    (folder / "list.json").write_text("[1, 2, 3]")
    (folder / "train5.json").write_text('{"train": 5}')
    nested = folder / "nested-checkpoint"
    nested.mkdir()
    (nested / "config.json").write_text(deep)
    (nested / "model.safetensors").write_bytes((checkpoint / "model.safetensors").read_bytes())
    nan = folder / "nan-weights"
    nan.mkdir()
    (nan / "config.json").write_text((checkpoint / "config.json").read_text())
    weights = load_file(str(checkpoint / "model.safetensors"))
    save_file({k: torch.full_like(v, float("nan")) for k, v in weights.items()},
              str(nan / "model.safetensors"))  # fmt: skip
    (folder / "loop").symlink_to(folder / "loop")
    bomb = folder / "bomb.pth"  # 64 MiB of zeros declared, 64 KiB on disk: the ratio refuses it
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open("archive/data/0", "w", force_zip64=True) as entry:
            chunk = bytes(1 << 24)
            for _ in range(4):
                entry.write(chunk)
    return folder


def catalogue(inputs, out, model):
    """Each case: (name, argv, what the one line must say, extra subprocess settings)."""
    f = [inputs / f"f{i}.png" for i in range(3)]
    train = ["train", "--task", "video", "--out", out / "run", "--quiet"]
    base = [*sets("steps=1", "crop=16", "batch=1", "device=cpu", *TINY)]
    embed = ["embed", "--model", model, *f]
    e_png = out / "e.png"

    def restore(name):
        return ["restore", "--model", model, inputs / name, "-o", out / "r"]

    return [
        ("bomb", ["embed", "--model", model, inputs / "bomb.png", f[1], f[2], "-o", e_png],
         "decompression bomb", {}),
        ("large and truncated", ["embed", "--model", model, inputs / "large.png", f[1], f[2],
                                 "-o", e_png], "cannot read image", {}),
        ("oversized", [*embed, "-o", e_png, "--max-memory", "1k"],
         "not enough memory even for tiles", {}),
        ("output under a file", [*embed, "-o", inputs / "blocker.png" / "e.png"], "is a file", {}),
        ("restore under a file",
         ["restore", "--model", model, inputs / "clip.png", "-o", inputs / "blocker.png" / "r"],
         "is a file", {}),
        ("damaged checkpoint", ["embed", "--model", inputs / "damaged", *f, "-o", e_png],
         "corrupt checkpoint config", {}),
        ("foreign checkpoint", ["embed", "--model", inputs / "foreign", *f, "-o", e_png],
         "its format is None", {}),
        ("checkpoint without a network", ["embed", "--model", inputs / "nonet", *f, "-o", e_png],
         "is missing 'network'", {}),
        ("not a checkpoint", ["embed", "--model", inputs / "notes.txt", *f, "-o", e_png],
         "no checkpoint at", {}),
        ("pickled checkpoint", ["embed", "--model", inputs / "pickled", *f, "-o", e_png],
         "model.safetensors", {}),
        ("pickled published file",
         ["import-weights", "iicnet", inputs / "pickled" / "model.pt", "-o", out / "imported"],
         "would run code from the file", {}),
        ("read-only folder", [*embed, "-o", inputs / "readonly" / "e.png"],
         "Permission denied", {}),
        ("damaged config", ["train", "--config", inputs / "bad.toml", "--out", out / "run"],
         "cannot parse config", {}),
        ("unknown key", [*train, *base, "--set", "stepz=3"], "unknown training config key", {}),
        ("wrong type", [*train, *base, "--set", "steps=2.5"], "steps: expected an integer", {}),
        ("bad choice", [*train, *base, "--set", "optimizer=adam"],
         "optimizer: expected one of 'iicnet', 'win', 'invcompress'; received 'adam'", {}),
        ("bad autocast", [*train, *base, "--set", "autocast=float8"],
         "autocast: expected one of", {}),
        ("unknown network key", [*train, *base, "--set", "network.blockz=2"],
         "cannot be built with the settings", {}),
        ("bad network value", [*train, *base, "--set", "network.blocks=four"],
         "cannot be built with the settings", {}),
        ("unknown loss", [*train, *base, "--set", "losses.nope=1"], "unknown loss term", {}),
        ("bad loss weight", [*train, *base, "--set", "losses.embedding=-1"],
         "expected a number >= 0", {}),
        ("unknown channel", [*train, *base, "--set", "channel=carrier-pigeon"],
         "unknown channel", {}),
        ("bad channel argument",
         [*train, *base, "--set", "channel=jpeg", "--set", "channel.quality=200"],
         "quality must be in 1..100", {}),
        ("bad device", [*train, *base, "--set", "device=tpu"], "device", {}),
        ("JPEG channel over a residue hiding",
         ["train", "--task", "hiding", "--out", out / "run", "--quiet", *base,
          "--set", "channel=jpeg"],
         "which a JPEG destroys", {}),
        ("metadata of 400 digits", restore("huge-height.png"), "'height' to be in 1..", {}),
        ("a size of 400 digits",
         ["restore", "--model", model, inputs / "bare.png", "--size", f"1x{10**400}", "-o",
          out / "r"], "expected sides of at most 16777216", {}),
        ("nested metadata", restore("nested-meta.png"), "nested too deeply", {}),
        ("50 MB of metadata", restore("long-meta.png"), "made by task 'xxxx", {}),
        ("nested config", ["train", "--config", inputs / "deep.json", "--out", out / "run"],
         "nested too deeply", {}),
        ("config of a list", ["train", "--config", inputs / "list.json", "--out", out / "run"],
         "expected a table of settings", {}),
        ("config train of a number",
         ["train", "--config", inputs / "train5.json", "--out", out / "run"],
         "expected a table of settings", {}),
        ("nested checkpoint config",
         ["embed", "--model", inputs / "nested-checkpoint", *f, "-o", e_png],
         "nested too deeply", {}),
        ("NaN weights", ["embed", "--model", inputs / "nan-weights", *f, "-o", e_png],
         "NaN or infinite values", {}),
        ("a symbolic-link loop", [*embed, "-o", inputs / "loop" / "e.png"], "loop", {}),
        ("an infinite learning rate", [*train, *base, "--set", "lr=Infinity"],
         "lr: expected a finite number", {}),
        ("a huge integer setting", [*train, *base, "--set", f"steps={10**400}"],
         "steps: expected an integer (of at most 63 bits)", {}),
        ("a network that cannot compute", [*train, *base, "--set", "network.growth=0"],
         "growth must be a positive integer", {}),
        ("a network too large to build", [*train, *base, "--set", "network.blocks=1000000000"],
         "blocks must be an integer in 0..512", {}),
        ("a zip bomb",
         ["import-weights", "iicnet", inputs / "bomb.pth", "-o", out / "imported"],
         "a zip bomb", {}),
        ("text as published weights",
         ["import-weights", "iicnet", inputs / "text.pth", "-o", out / "imported"],
         "it is neither a torch.save file nor a pickle of tensors", {}),
        ("a bad option value", [*restore("f0.png")[:-2], "--size", "0x0", "-o", out / "r"],
         "argument --size: expected WIDTHxHEIGHT, e.g. 640x480; received '0x0'", {}),
        ("an unknown command", ["info"], "invalid choice: 'info'", {}),
        ("two tasks", [*train, *base, "--set", "task=hiding"],
         "--task video and --set task=hiding disagree", {}),
        ("a size beyond the largest", [*restore("f0.png")[:-2], "--size", "99999999999x1", "-o",
                                       out / "r"], "expected sides of at most 16777216", {}),
        ("an option without its value", ["train", "--task"], "expected one argument", {}),
        ("a path as a suffix", [*embed[:3], "--each", inputs, "-o", out / "e",
                                "--suffix", "/../f0.png"], "--suffix takes a file type", {}),
    ]  # fmt: skip


CASES = [
    "bomb", "oversized", "output under a file", "restore under a file", "damaged checkpoint",
    "foreign checkpoint", "checkpoint without a network", "not a checkpoint",
    "pickled checkpoint", "pickled published file", "read-only folder", "damaged config",
    "unknown key", "wrong type", "bad choice", "bad autocast", "unknown network key",
    "bad network value", "unknown loss", "bad loss weight", "unknown channel",
    "bad channel argument", "bad device", "JPEG channel over a residue hiding",
    "metadata of 400 digits", "a size of 400 digits", "nested metadata", "50 MB of metadata",
    "nested config", "config of a list", "config train of a number",
    "nested checkpoint config", "NaN weights", "a symbolic-link loop",
    "an infinite learning rate", "a huge integer setting", "a network that cannot compute",
    "a network too large to build", "a zip bomb", "a bad option value", "an unknown command",
    "an option without its value", "a path as a suffix", "large and truncated",
    "a size beyond the largest", "text as published weights", "two tasks",
]  # fmt: skip


# Runs ``invblocks.cli.main`` on each command line of a JSON list, in one process (a
# process start costs seconds), with stdout and stderr captured per command; an exception
# that escapes ``main`` is written as its traceback, as Python would print it.
BATCH = """
import contextlib, io, json, sys, traceback
from invblocks.cli import main
results = []
for argv in json.loads(open(sys.argv[1]).read()):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else 1
        except BaseException:
            traceback.print_exc()
            code = 1
    results.append([code, out.getvalue(), err.getvalue()])
open(sys.argv[2], "w").write(json.dumps(results))
"""


def skipped(case):
    return case == "read-only folder" and os.geteuid() == 0


@pytest.fixture(scope="module")
def batch(inputs, model, tmp_path_factory):
    """Every case that needs no process settings of its own, run by :data:`BATCH` before
    the tests look at them: ``(results by case, the inputs' digests before, out folders)``."""
    root = tmp_path_factory.mktemp("bad")
    before = digest(inputs), digest(model)
    argvs = {}
    for i, case in enumerate(CASES):
        argv, _, extra = {n: rest for n, *rest in catalogue(inputs, root / str(i), model)}[case]
        if not extra and not skipped(case):
            argvs[case] = argv
    results = dict(zip(argvs, cli_batch(list(argvs.values()), root), strict=True))
    return results, before, root


def cli_batch(argvs, folder, preexec=None):
    """``[(returncode, stdout, stderr)]`` of each command line, run by :data:`BATCH` in one
    subprocess (its two JSON files in ``folder``, removed after)."""
    argv_file, results_file = folder / "argv.json", folder / "results.json"
    argv_file.write_text(json.dumps([[str(a) for a in argv] for argv in argvs]))
    proc = subprocess.run(
        [sys.executable, "-c", BATCH, str(argv_file), str(results_file)],
        capture_output=True, text=True, cwd=ROOT, timeout=900, preexec_fn=preexec,
        env={**os.environ, "INVBLOCKS_NO_TUNE_MALLOC": "1"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    results = json.loads(results_file.read_text())
    argv_file.unlink()
    results_file.unlink()
    return results


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_sentence_with_exit_code_2(case, model, inputs, batch):
    if skipped(case):
        pytest.skip("root writes into read-only folders")
    results, (before, model_before), root = batch
    out = root / str(CASES.index(case))
    argv, needle, extra = {name: rest for name, *rest in catalogue(inputs, out, model)}[case]
    if extra:  # its own process: a memory limit
        before, model_before = digest(inputs), digest(model)
        code, stdout, err = cli(*argv, **extra)
    else:
        code, stdout, err = results[case]
    assert code == 2, (stdout, err)
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err[:3000]
    assert len(err.strip()) < 300 and needle in err, err[:3000]
    assert digest(inputs) == before and digest(model) == model_before
    assert not out.exists() or not list(out.rglob("*"))  # no partial output, no temporaries


def test_plugin_hook_errors_are_one_sentence(tmp_path):
    for name, body in (
        ("typo", "@hookimpl\ndef invblocks_register_taks(registry):\n    pass\n"),
        (
            "notatask",
            "@hookimpl\ndef invblocks_register_tasks(registry):\n    registry.add_task('video')\n",
        ),
        ("raises", "@hookimpl\ndef invblocks_register_tasks(registry):\n    raise KeyError('x')\n"),
    ):
        folder = tmp_path / name
        folder.mkdir()
        (folder / f"{name}_plugin.py").write_text(f"from invblocks import hookimpl\n\n{body}")
        info = folder / f"{name}_plugin-0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {name}-plugin\nVersion: 0.1\n"
        )
        (info / "entry_points.txt").write_text(f"[invblocks]\n{name} = {name}_plugin\n")
        code, _, err = cli("tasks", env={"PYTHONPATH": str(folder)})
        assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
        assert f"plugin '{name}'" in err, err


def test_a_damaged_log_still_reports(model, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(model, run)
    with open(run / "metrics.jsonl", "a") as f:
        f.write('[1, 2]\n{"step": "x"}\n{"step": 2, "total": "NaN?"}\n{"step": 3, "tot')
    code, _, err = cli("report", run)
    assert code == 0, err
    (run / "metrics.jsonl").write_bytes(b"\xff\xfe\x00garbage")
    code, _, err = cli("report", run)
    assert code in (0, 2) and "Traceback" not in err


def test_json_outputs_are_standard_json(model):
    code, out, err = cli("eval", "--model", model, "--samples", "1", "--device", "cpu")
    assert code == 0, err
    json.loads(out, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    for line in (model / "metrics.jsonl").read_text().splitlines():
        json.loads(line, parse_constant=lambda c: pytest.fail(f"non-standard JSON {c}"))


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_written_files_follow_the_umask(umask, tmp_path):
    files, folders = 0o666 & ~umask, 0o777 & ~umask
    run = tmp_path / "run"

    def preexec():
        os.umask(umask)

    f = frames(tmp_path / "in")
    commands = [
        ["train", "--task", "video", "--out", run, "--quiet",
         *sets("steps=2", "crop=16", "batch=1", "n_inputs=3", "device=cpu", "val_every=1",
               "ckpt_every=1", *TINY)],
        ["embed", "--model", run, *f, "-o", tmp_path / "e" / "clip.png"],
        ["restore", "--model", run, tmp_path / "e" / "clip.png", "-o", tmp_path / "r"],
    ]  # fmt: skip
    for code, _, err in cli_batch(commands, tmp_path / "in", preexec=preexec):
        assert code == 0, err
    written = [
        p for root in (run, tmp_path / "e", tmp_path / "r") for p in [root, *root.rglob("*")]
    ]
    assert len(written) > 10
    for p in written:
        mode = p.stat().st_mode & 0o777
        assert mode == (folders if p.is_dir() else files), (p, oct(mode))


def test_kills_at_random_moments_then_resume_equal_an_uninterrupted_run(tmp_path):
    settings = sets("steps=12", "crop=16", "batch=1", "n_inputs=3", "device=cpu", "seed=3",
                    "val_every=4", "ckpt_every=1", *TINY)  # fmt: skip
    code, _, err = cli(
        "train", "--task", "video", "--out", tmp_path / "whole", "--quiet", *settings
    )
    assert code == 0, err
    run = tmp_path / "killed"
    argv = [sys.executable, "-m", "invblocks", "train", "--task", "video", "--out", str(run),
            "--quiet", *settings]  # fmt: skip
    rng, log, killed = random.Random(0), run / "metrics.jsonl", 0

    def stamp():
        return log.stat().st_mtime_ns if log.exists() else None

    for attempt in range(4):
        cmd = argv if attempt == 0 else [*argv, "--resume"]
        before = stamp()
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120  # the start (imports) takes seconds, more on a slow CPU
        while proc.poll() is None and stamp() == before and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 1.0))  # killed while it trains and writes checkpoints
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            killed += 1
        proc.wait()
    assert killed >= 2  # the kills interrupted training, not a finished run
    code, _, err = cli(
        "train", "--task", "video", "--out", run, "--quiet", "--resume", *settings[:0]
    )
    assert code == 0, err
    whole = load_file(
        str(tmp_path / "whole" / "checkpoints" / "step-00000012" / "model.safetensors")
    )
    again = load_file(str(run / "checkpoints" / "step-00000012" / "model.safetensors"))
    assert all(torch.equal(whole[k], again[k]) for k in whole)
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()
             if '"total"' in line]  # fmt: skip
    assert steps == list(range(1, 13))  # each step logged once
    hidden = [p for p in run.rglob(".*")]
    assert not hidden, hidden  # no temporary files or folders left


@pytest.mark.parametrize(
    ("command", "blamed"),
    [("train", "these settings"), ("export", "a smaller --size"), ("embed", "this input"),
     ("restore", "this input"), (None, "this input")],
)  # fmt: skip
def test_exhausted_memory_is_blamed_on_what_the_command_was_given(command, blamed):
    from invblocks.cli import _user_error

    for err in (MemoryError(), RuntimeError("DefaultCPUAllocator: can't allocate memory")):
        message = _user_error(err, command)
        assert message is not None and blamed in message and "\n" not in message
    assert _user_error(RuntimeError("a bug"), command) is None
