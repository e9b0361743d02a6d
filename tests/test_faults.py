"""Faults from outside: files that are not files, two writers, signals, full disks, outputs
that cannot all be written, names at the file system's limit."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from invblocks.io import write_png

ROOT = Path(__file__).resolve().parents[1]
TINY = ["network.blocks=1", "network.width=4", "network.growth=4"]
TRAIN = ["steps=1", "crop=16", "batch=1", "n_inputs=3", "device=cpu", *TINY]


def sets(*settings):
    return [a for s in settings for a in ("--set", s)]


def cli(*args, timeout=120, **kw):
    proc = subprocess.run(
        [sys.executable, "-m", "invblocks", *map(str, args)],
        capture_output=True, text=True, cwd=ROOT, timeout=timeout,
        env={**os.environ, "INVBLOCKS_NO_TUNE_MALLOC": "1"}, **kw,
    )  # fmt: skip
    return proc.returncode, proc.stdout, proc.stderr


def one_line(err):
    return len(err.strip().splitlines()) == 1 and "Traceback" not in err and len(err) < 300


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    run = tmp_path_factory.mktemp("model") / "run"
    code, _, err = cli("train", "--task", "video", "--out", run, "--quiet", *sets(*TRAIN))
    assert code == 0, err
    return run


@pytest.fixture()
def frames(tmp_path):
    paths = [tmp_path / f"f{i}.png" for i in range(3)]
    for i, p in enumerate(paths):
        write_png(torch.rand(3, 20, 24, generator=torch.Generator().manual_seed(i)), p)
    return paths


def test_named_pipes_are_refused_not_waited_on(model, frames, tmp_path):
    pipe = tmp_path / "pipe.png"
    os.mkfifo(pipe)
    os.mkfifo(tmp_path / "pipe.json")
    weights = tmp_path / "model"
    shutil.copytree(model / "checkpoints" / "step-00000001", weights)
    (weights / "model.safetensors").unlink()
    os.mkfifo(weights / "model.safetensors")
    cases = [
        ("embed", "--model", model, pipe, *frames[1:], "-o", tmp_path / "e.png"),
        ("restore", "--model", model, pipe, "-o", tmp_path / "r"),
        ("train", "--config", tmp_path / "pipe.json", "--out", tmp_path / "run"),
        ("embed", "--model", weights, *frames, "-o", tmp_path / "e.png"),
    ]
    for argv in cases:  # a reader that opened the pipe would wait forever: the timeout fails
        code, _, err = cli(*argv, timeout=60)
        assert code == 2 and "named pipe" in err and one_line(err), (argv, err)
    assert not (tmp_path / "e.png").exists() and not (tmp_path / "r").exists()


def test_a_pipe_in_a_data_folder_is_not_an_image(tmp_path):
    from invblocks.data import photo_folder

    for i in range(2):
        write_png(torch.rand(3, 40, 40), tmp_path / f"{i}.png")
    os.mkfifo(tmp_path / "2.png")
    assert photo_folder(tmp_path).description.startswith("2 photographs")  # regular files only


def _train_argv(run, *more):
    return [sys.executable, "-m", "invblocks", "train", "--task", "video", "--out", str(run),
            "--quiet", *sets("steps=400", "crop=16", "batch=1", "n_inputs=3", "device=cpu",
                             "val_every=1000", "ckpt_every=5", *TINY), *more]  # fmt: skip


def _wait_for_steps(run, proc, n=3, limit=120):
    log = run / "metrics.jsonl"
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and proc.poll() is None:
        if log.exists() and log.read_text().count('"total"') >= n:
            return
        time.sleep(0.05)
    raise AssertionError("the training did not start")


def test_one_writer_per_run_folder_and_sigterm_keeps_the_last_checkpoint(tmp_path):
    run = tmp_path / "run"
    first = subprocess.Popen(_train_argv(run), cwd=ROOT, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        _wait_for_steps(run, first)
        others = [  # a second run on the folder; a resume of a live run
            subprocess.Popen(_train_argv(run, *more), cwd=ROOT, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
            for more in ([], ["--resume"])
        ]  # fmt: skip
        for other in others:
            _, err = other.communicate(timeout=60)
            assert other.returncode == 2 and f"in use by process {first.pid}" in err, err
            assert one_line(err), err
        first.send_signal(signal.SIGTERM)
        _, err = first.communicate(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 143, err
    assert one_line(err) and "terminated; the run keeps its checkpoint of step" in err, err
    assert f"resume with invblocks train --out {run} --resume" in err
    steps = [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()
             if '"total"' in x]  # fmt: skip
    assert steps == list(range(1, len(steps) + 1))  # one writer: no step twice
    # a killed process leaves its lock file (naming it) but no lock: the resume goes on
    assert not (run / ".invblocks.lock").exists()  # SIGTERM removed it on the way out
    dead = subprocess.Popen(["true"])
    dead.wait()
    (run / ".invblocks.lock").write_text(str(dead.pid))
    step = int((run / "checkpoints" / "LATEST").read_text().rsplit("-", 1)[-1])
    code, _, err = cli(*_train_argv(run, "--resume", "--set", f"steps={step + 1}")[3:])
    assert code == 0 and not (run / ".invblocks.lock").exists(), err


def test_restore_writes_all_its_images_or_none(model, frames, tmp_path):
    clip = tmp_path / "clip.png"
    assert cli("embed", "--model", model, *frames, "-o", clip)[0] == 0
    out = tmp_path / "out"
    out.mkdir()
    (out / "restored_0.png").write_bytes(b"the user's file")
    (out / "restored_2.png").mkdir()  # the last image cannot be written
    code, _, err = cli("restore", "--model", model, clip, "-o", out)
    assert code == 2 and "restored_2.png" in err and one_line(err), err
    assert (out / "restored_0.png").read_bytes() == b"the user's file"
    assert sorted(p.name for p in out.iterdir()) == ["restored_0.png", "restored_2.png"]


def test_names_at_the_file_systems_limit_are_written(model, frames, tmp_path):
    name = "e" * 251 + ".png"  # 255 bytes: the limit of most file systems
    code, _, err = cli("embed", "--model", model, *frames, "-o", tmp_path / name)
    assert code == 0, err
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("e")] == [name]


@pytest.fixture()
def small_disk(tmp_path):
    """A 6 MiB tmpfs (skipped where this process may not mount one)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(disk)],
                          capture_output=True, text=True)  # fmt: skip
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()[:80]}")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_full_disk_leaves_no_folder_and_names_the_file(small_disk):
    """A write that fails on a full disk says which file, and the folders it made for it are
    gone again (one file and several at once)."""
    from invblocks.io import write_all, write_bytes

    (small_disk / "filler").write_bytes(bytes(6 * 2**20 - 64 * 2**10))
    big = bytes(2**20)
    with pytest.raises(ValueError, match=r"cannot write .*new/deeper/x\.bin: No space left"):
        write_bytes(big, small_disk / "new" / "deeper" / "x.bin")
    with pytest.raises(ValueError, match=r"cannot write .*b\.bin: No space left"):
        write_all([(small_disk / "made" / "a.bin", b"small"), (small_disk / "made" / "b.bin", big)])
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler"]


@pytest.mark.parametrize("links", [True, False], ids=["hard-links", "no-hard-links"])
def test_a_failed_rename_puts_every_file_back_and_leaves_no_temporary_file(
    tmp_path, monkeypatch, links
):
    """When placing the second file fails, the first is taken back, the user's files (a
    symbolic link among them) are what they were and no hidden temporary file stays; where
    the file system has hard links the user's file keeps its name the whole time."""
    import invblocks.io as io_module

    out = tmp_path / "out"
    out.mkdir()
    (out / "restored_0.png").write_bytes(b"old 0")
    (out / "restored_1.png").write_bytes(b"old 1")
    (tmp_path / "elsewhere.png").write_bytes(b"the link's target")
    (out / "restored_2.png").symlink_to(tmp_path / "elsewhere.png")
    real = os.replace
    moves = []

    def replace(src, dst):
        moves.append((Path(src).name, Path(dst).name))
        if Path(dst).name == "restored_2.png" and Path(src).name.startswith(".ib-"):
            if not any(d == "restored_2.png" for _, d in moves[:-1]):  # not the way back
                raise PermissionError(1, "Operation not permitted")
        return real(src, dst)

    monkeypatch.setattr(io_module.os, "replace", replace)
    if not links:

        def no_link(*args, **kwargs):
            raise OSError(1, "Operation not permitted")

        monkeypatch.setattr(io_module.os, "link", no_link)
    with pytest.raises(ValueError, match=r"cannot write .*restored_2\.png: Operation not"):
        io_module.write_all([(out / f"restored_{i}.png", b"new") for i in (0, 1, 2)])
    names = ["restored_0.png", "restored_1.png", "restored_2.png"]
    assert sorted(p.name for p in out.iterdir()) == names
    assert [(out / n).read_bytes() for n in names[:2]] == [b"old 0", b"old 1"]
    assert (out / "restored_2.png").is_symlink()
    assert (tmp_path / "elsewhere.png").read_bytes() == b"the link's target"
    if links:
        assert not any(dst.startswith(".ib-") for _, dst in moves)  # never moved aside


def test_a_folder_made_for_a_write_that_fails_is_removed(tmp_path):
    """Making the folders fails below those already made (a name over the file system's
    limit): those are removed again."""
    from invblocks.io import write_bytes

    with pytest.raises(ValueError, match="cannot create the folder"):
        write_bytes(b"data", tmp_path / "a" / "b" / ("x" * 300) / "f.png")
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_stops_training_in_one_sentence_and_it_resumes_after(small_disk):
    filler = small_disk / "filler"
    filler.write_bytes(bytes(5 * 2**20 + 600 * 2**10))  # a few hundred KiB are left
    run = small_disk / "run"
    argv = ["train", "--task", "video", "--out", run, "--quiet",
            *sets("steps=3", "crop=16", "batch=1", "n_inputs=3", "device=cpu", "ckpt_every=1",
                  "val_every=1000", *TINY)]  # fmt: skip
    code, _, err = cli(*argv)
    assert code == 2 and "no space left on the device" in err and one_line(err), err
    assert (
        not list((run / "checkpoints").glob("step-*")) if (run / "checkpoints").exists() else True
    )
    filler.unlink()
    code, _, err = cli(*argv, "--resume")
    assert code == 0, err
    assert (run / "checkpoints" / "LATEST").read_text() == "step-00000003"
