"""Train, resume, checkpoints, embed and restore real files, the CLI's errors, DDP."""

import hashlib
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import attrs
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file

from invblocks import Model
from invblocks._text import nbytes
from invblocks.cli import main
from invblocks.config import TrainConfig, apply_overrides
from invblocks.io import read_image, write_png
from invblocks.trainer import train

TINY = {"blocks": 2, "width": 8}


def tiny_config(**kw):
    base = dict(
        task="video",
        n_inputs=3,
        steps=4,
        crop=32,
        batch=1,
        network=TINY,
        val_every=2,
        ckpt_every=2,
        val_samples=1,
        seed=1,
        device="cpu",  # bit-exact resumes and layout comparisons are CPU properties
    )
    base.update(kw)
    return TrainConfig(**base)


def weights(run):
    folder = run / "checkpoints" / (run / "checkpoints" / "LATEST").read_text()
    return load_file(str(folder / "model.safetensors"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return train(tiny_config(), tmp_path_factory.mktemp("runs") / "video", progress=False)


def test_run_folder_contents(trained):
    names = {p.name for p in trained.iterdir()}
    assert {
        "config.json",
        "metrics.jsonl",
        "checkpoints",
        "samples",
        "report.html",
        "losses.png",
    } <= names
    records = [json.loads(line) for line in (trained / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if "total" in r]
    assert [r["step"] for r in steps] == [1, 2, 3, 4]
    assert all(torch.isfinite(torch.tensor(r["total"])) for r in steps)
    # each step's wall time: positive, and together within the whole run's
    assert all(r["step_s"] > 0 and r["data_s"] >= 0 for r in steps)
    assert sum(r["step_s"] + r["data_s"] for r in steps) <= records[-1]["seconds"]
    assert sum("validation" in r for r in records) == 2
    report = (trained / "report.html").read_text()
    assert "losses.png" in report and "restored0.png" in report and "embedding_psnr" in report
    median_step = statistics.median(r["step_s"] for r in steps[1:])
    assert f"4 steps logged; median step {median_step:.3g} s" in report
    assert "(steps 2-4)" in report
    config = json.loads((trained / "checkpoints" / "step-00000004" / "config.json").read_text())
    assert (
        config["task"] == "video"
        and config["step"] == 4
        and config["network"]["type"] == "RICNet"
        and config["format"] == "invblocks-checkpoint-2"
    )


def test_resume_equals_uninterrupted(tmp_path, trained):
    run = tmp_path / "interrupted"
    train(tiny_config(), run, progress=False)
    # roll the run back to its step-2 checkpoint, as if it had been killed after it
    (run / "checkpoints" / "LATEST").write_text("step-00000002")
    import shutil

    shutil.rmtree(run / "checkpoints" / "step-00000004")
    samples = next((run / "samples").iterdir())  # a sample cut short by the kill
    (samples / ".restored1.png.x.tmp").write_text("cut")
    train(tiny_config(), run, resume=True, progress=False)
    a, b = weights(trained), weights(run)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not list(run.rglob(".*"))  # no temporaries left


@pytest.mark.parametrize(
    "stage", ["folder", "config", "half-written checkpoint", "checkpoint unnamed"]
)
def test_a_run_killed_before_its_first_checkpoint_resumes_from_the_start(stage, tmp_path, trained):
    """Killed after writing its config and before ``LATEST`` named a checkpoint: the folder
    holds the run's config.json (not a checkpoint's), maybe a half-written or an unnamed
    checkpoint folder and a temporary file; the resume starts again and equals a whole run."""
    import shutil

    run = tmp_path / "early"
    train(tiny_config(), run, progress=False)
    shutil.rmtree(run / "checkpoints")
    (run / "checkpoints").mkdir()
    if stage == "half-written checkpoint":
        (run / "checkpoints" / ".step-00000002.partial").mkdir()
    if stage == "checkpoint unnamed":  # renamed into place, killed before LATEST
        shutil.copytree(
            trained / "checkpoints" / "step-00000002", run / "checkpoints" / "step-00000002"
        )
    if stage == "folder":  # killed before it wrote its config
        shutil.rmtree(run)
        run.mkdir()
    (run / ".config.json.x.tmp").write_text("cut")
    train(tiny_config(), run, resume=True, progress=False)
    a, b = weights(trained), weights(run)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not list(run.rglob(".*"))


def test_resume_refuses_another_task_or_network(tmp_path, trained):
    with pytest.raises(ValueError, match="another network"):
        train(tiny_config(network={"blocks": 3, "width": 8}), trained, resume=True, progress=False)
    with pytest.raises(ValueError, match="exists and is not empty"):
        train(tiny_config(), trained, progress=False)
    with pytest.raises(ValueError, match="no checkpoint"):
        train(tiny_config(), tmp_path / "empty", resume=True, progress=False)


def test_kill_9_leaves_a_good_checkpoint_and_resume_finishes(tmp_path):
    run = tmp_path / "killed"
    cmd = [
        sys.executable,
        "-m",
        "invblocks",
        "train",
        "--task",
        "hiding",
        "--out",
        str(run),
        "--quiet",
        "--set",
        "steps=400",
        "--set",
        "crop=32",
        "--set",
        "batch=1",
        "--set",
        "ckpt_every=1",
        "--set",
        "val_every=1000",
        "--set",
        'network={"blocks": 1, "width": 4}',
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not (run / "checkpoints" / "LATEST").exists():
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    latest = (run / "checkpoints" / "LATEST").read_text()
    model = Model.load(run)  # loads: the latest checkpoint is complete
    step = json.loads((run / "checkpoints" / latest / "config.json").read_text())["step"]
    assert 1 <= step < 400 and model.task.name == "hiding"
    resume = [*cmd, "--resume", "--set", f"steps={step + 2}"]
    resumed = subprocess.run(resume, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    final = (run / "checkpoints" / "LATEST").read_text()
    assert json.loads((run / "checkpoints" / final / "config.json").read_text())["step"] == step + 2


@pytest.fixture()
def frames(tmp_path):
    from invblocks.data import default_clips

    c = default_clips(max_frames=6).val[0][:, :, :37, :45].float() / 255
    paths = []
    for i in range(3):
        paths.append(write_png(c[i], tmp_path / "in" / f"frame{i}.png"))
    return paths


def digest(paths):
    return [hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in paths]


def test_embed_restore_files_any_size(trained, frames, tmp_path):
    before = digest(frames)
    model = Model.load(trained)
    png = model.embed_files(frames, tmp_path / "clip.png")
    assert read_image(png).shape == (3, 37, 45)  # the video network takes any size
    restored = model.restore_file(png, tmp_path / "out")
    assert [read_image(p).shape for p in restored] == [(3, 37, 45)] * 3
    assert digest(frames) == before
    # the PNG path is bit-identical to the in-memory path
    embedding, meta = model.embed([read_image(p) for p in frames])
    in_memory = model.restore(embedding, meta)
    from_file = model.restore(read_image(png), meta)
    assert all(torch.equal(a, b) for a, b in zip(in_memory, from_file, strict=True))


def test_model_layouts_agree_and_cpu_defaults_to_channels_last(trained, frames):
    fast = Model.load(trained, device="cpu")
    plain = Model.load(trained, channels_last=False, device="cpu")
    assert fast.channels_last and not plain.channels_last
    params = sum(p.numel() for p in fast.net.parameters())
    assert repr(plain) == (
        f"Model(task='video', n_inputs=3, step=4, parameters={params:,}, device='cpu', "
        "channels_last=False)"
    )
    conv = next(m for m in fast.net.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    images = [read_image(p) for p in frames]
    (e_fast, meta), (e_plain, _) = fast.embed(images), plain.embed(images)
    assert (e_fast.float() - e_plain.float()).abs().max() <= 1 / 255 + 1e-6  # rounding only
    for a, b in zip(fast.restore(e_plain, meta), plain.restore(e_plain, meta), strict=True):
        assert (a - b).abs().max() < 1e-4


def test_padding_to_the_network_multiple_and_cropping_back(frames, tmp_path):
    import invblocks

    task = invblocks.get_task("video-x2")
    net = task.build_network(3, blocks=1, width=4, generator=torch.Generator().manual_seed(0))
    model = Model(task, net, 3, {})
    assert repr(model).startswith("Model(task='video-x2', n_inputs=3, parameters=")  # no step
    png = model.embed_files(frames, tmp_path / "half.png")
    assert read_image(png).shape == (3, 19, 23)  # 37x45 padded to 38x46, embedded at half size
    restored = model.restore_file(png, tmp_path / "out")
    assert [read_image(p).shape for p in restored] == [(3, 37, 45)] * 3


@pytest.fixture(scope="module")
def half_model():
    """An untrained video-x2 model (padding to 2, embedding at half size): fast to run."""
    import invblocks

    task = invblocks.get_task("video-x2")
    net = task.build_network(3, blocks=1, width=4, generator=torch.Generator().manual_seed(0))
    return Model(task, net, 3, {})


@pytest.fixture(scope="module", params=["video-x2", "rescaling-x4", "camera-raw"])
def size_model(request, half_model):
    """Models whose tasks pad differently: multiple 2 and scale 2 (a small video-x2), multiple
    4, scale 4 and a 64-pixel minimum (WIN), 4-channel inputs into a 3-channel embedding."""
    import invblocks

    if request.param == "video-x2":
        return half_model
    task = invblocks.get_task(request.param)
    net = task.build_network(1, generator=torch.Generator().manual_seed(0))
    return Model(task, net, 1, {}, device="cpu")


@given(h=st.integers(3, 70), w=st.integers(3, 70), seed=st.integers(0, 2**16))
def test_embedding_size_is_what_restore_expects(size_model, h, w, seed):
    g = torch.Generator().manual_seed(seed)
    c, n = size_model.task.image_channels, size_model.n_inputs
    images = [torch.rand(c, h, w, generator=g) for _ in range(n)]
    embedding, meta = size_model.embed(images)
    assert tuple(embedding.shape[1:]) == size_model.embedded_size(h, w)
    assert all(side % size_model.task.multiple == 0 for side in size_model.padded_size(h, w))
    assert [im.shape for im in size_model.restore(embedding, meta)] == [(c, h, w)] * n


@pytest.mark.parametrize("preset, multiple", [("iicnet", 1), ("win", 2), ("win_naive", 2)])
def test_images_are_padded_to_what_the_network_needs_beyond_its_task(preset, multiple):
    """Hiding keeps the size, but WIN's hiding networks squeeze by 2: an odd-sized cover
    and secret are padded to even sides and cropped back."""
    import invblocks

    task = invblocks.get_task("hiding")
    kw = {"blocks": 1} if preset == "iicnet" else {}
    net = task.build_network(2, preset=preset, generator=torch.Generator().manual_seed(0), **kw)
    model = Model(task, net, 2, {}, device="cpu")
    assert model.multiple == multiple
    assert model.padded_size(33, 45) == (33 + (multiple - 1), 45 + (multiple - 1))
    gen = torch.Generator().manual_seed(1)
    images = [torch.rand(3, 33, 45, generator=gen) for _ in range(2)]
    embedding, meta = model.embed(images)
    assert embedding.shape[-2:] == model.padded_size(33, 45)
    restored = model.restore(embedding, meta)
    assert [tuple(r.shape) for r in restored] == [(3, 33, 45)] * 2


def test_images_below_the_networks_minimum_are_padded_up_to_it():
    import invblocks

    task = invblocks.get_task("rescaling-x4")  # WIC's shifts need 13+ pixels at 1/4 size
    net = task.build_network(1, generator=torch.Generator().manual_seed(0))
    model = Model(task, net, 1, {}, device="cpu")
    assert model.padded_size(17, 70) == (task.min_crop, 72)
    image = torch.rand(3, 17, 70, generator=torch.Generator().manual_seed(1))
    embedding, meta = model.embed([image])
    assert embedding.shape == (3, task.min_crop // 4, 18)
    (back,) = model.restore(embedding, meta)
    assert back.shape == image.shape


def test_altered_embeddings_are_refused_by_name(half_model, frames, tmp_path):
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    png = half_model.embed_files(frames, tmp_path / "half.png")
    embedding, meta = read_image(png), json.loads(Image.open(png).text["invblocks"])
    with pytest.raises(
        ValueError, match=r"45x37 images embed as 23x19; this embedding is 22x18: .*resized"
    ):
        half_model.restore(embedding[:, 1:, 1:], meta)
    with pytest.raises(ValueError, match=r"expected 'height' to be int; received None"):
        half_model.restore(embedding, {k: v for k, v in meta.items() if k != "height"})
    with pytest.raises(ValueError, match=r"expected 'width' to be in 1\.\.16777216; received 0"):
        half_model.restore(embedding, {**meta, "width": 0})
    with pytest.raises(ValueError, match=r"expected 'format' to be an int; received '1'"):
        half_model.restore(embedding, {**meta, "format": "1"})
    with pytest.raises(ValueError, match=r"the embedding as \(C, H, W\) .*received \(1, 3"):
        half_model.restore(embedding[None], meta)
    with pytest.raises(ValueError, match=r"expected a \(3, H, W\) embedding; received \(1, 19"):
        half_model.restore(embedding[:1], meta)
    with pytest.raises(TypeError, match=r"the embedding as floating-point .*torch.int16"):
        half_model.restore((embedding * 255).to(torch.int16), meta)
    images = [read_image(p) for p in frames]
    with pytest.raises(TypeError, match=r"images as floating-point .*or uint8.*torch.int32"):
        half_model.embed([(im * 255).to(torch.int32) for im in images])
    # uint8 tensors are 8-bit values: the same embedding and restoration as their floats
    as_uint8 = [read_image(p, dtype=torch.uint8) for p in frames]
    assert torch.equal(half_model.embed(as_uint8)[0], half_model.embed(images)[0])
    from_uint8 = half_model.restore((embedding * 255).round().to(torch.uint8), meta)
    from_float = half_model.restore(embedding, meta)
    assert all(torch.equal(a, b) for a, b in zip(from_uint8, from_float, strict=True))
    with pytest.raises(ValueError, match=r"images as \(C, H, W\) tensors; received \(1, 3, 37"):
        half_model.embed([im[None] for im in images])
    with pytest.raises(
        ValueError, match=r"values in \[0, 1\]; received values in \[[\d.]+, [\d.]+\] \(8-bit.*255"
    ):
        half_model.embed([im * 255 for im in images])
    with pytest.raises(
        ValueError, match=r"values in \[0, 1\]; received values in \[-[\d.]+, [\d.]+\] \(clamp"
    ):
        half_model.embed([im * 2 - 1 for im in images])
    with pytest.raises(ValueError, match=r"received values in \[nan, nan\]"):
        half_model.embed([torch.full_like(im, math.nan) for im in images])

    def altered(name, image, text):
        info = PngInfo()
        info.add_text("invblocks", text)
        image.save(tmp_path / name, pnginfo=info)
        return tmp_path / name

    original = Image.open(png)
    resized = altered("resized.png", original.resize((22, 18)), json.dumps(meta))
    with pytest.raises(ValueError, match="resized or cropped"):
        half_model.restore_file(resized, tmp_path / "out")
    listed = altered("listed.png", original, "[1, 2]")
    with pytest.raises(ValueError, match=r"listed\.png: its invblocks metadata is damaged \(not a"):
        half_model.restore_file(listed, tmp_path / "out")
    damaged = altered("damaged.png", original, '{"task": "video-x2", ')
    with pytest.raises(ValueError, match=r"damaged\.png: its invblocks metadata is damaged"):
        half_model.restore_file(damaged, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@given(free=st.integers(0, 2**20), seed=st.integers(0, 2**16))
@settings(deadline=None, max_examples=20)
def test_a_payload_needing_more_memory_than_is_free_is_refused_before_decoding(
    half_model, free, seed
):
    """The channel's ``decode_memory`` of the declared embedding is weighed against the free
    memory before the channel decodes anything (a file's few bytes can declare terabytes)."""
    import invblocks.model as model_module

    g = torch.Generator().manual_seed(seed)
    images = [torch.rand(3, 9, 13, generator=g) for _ in range(3)]
    payload, meta = half_model.encode(images)
    channel = half_model.net.channel
    need = channel.decode_memory(payload.shape)
    assert need == 32 * math.prod(payload.shape)  # the contract's default
    calls = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(
            channel, "decode", lambda p, **k: calls.append(1) or type(channel).decode(channel, p)
        )
        mp.setattr(model_module, "available_memory", lambda: free)
        mp.setattr(half_model, "budget", lambda: None)  # no tiling: the decode's memory alone
        if need > free:
            free_said = nbytes(free).replace(".", r"\.")
            with pytest.raises(ValueError, match=rf"needs about [\d.]+ KiB and {free_said} are"):
                half_model.decode(payload, meta)
            assert not calls
        else:
            assert len(half_model.decode(payload, meta)) == 3 and calls
        mp.setattr(model_module, "available_memory", lambda: None)  # unknown: decoded
        assert len(half_model.decode(payload, meta)) == 3


def test_restore_never_overwrites_its_input(half_model, frames, tmp_path):
    png = half_model.embed_files(frames, tmp_path / "restored_1.png")
    before = png.read_bytes()
    with pytest.raises(ValueError, match="would overwrite the input"):
        half_model.restore_file(png, tmp_path)
    assert png.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".png") == ["restored_1.png"]


def test_cli_embed_restore_and_errors(trained, frames, tmp_path, capsys):
    out_png = tmp_path / "e.png"
    assert main(["embed", "--model", str(trained), *map(str, frames), "-o", str(out_png)]) == 0
    assert main(["restore", "--model", str(trained), str(out_png), "-o", str(tmp_path / "r")]) == 0
    assert len(list((tmp_path / "r").glob("restored_*.png"))) == 3
    cases = [
        (
            ["embed", "--model", str(trained), str(frames[0]), str(frames[1]), "-o", str(out_png)],
            "embeds 3 images",
        ),
        (
            [
                "embed",
                "--model",
                str(trained),
                *map(str, frames[:2]),
                str(tmp_path / "nope.png"),
                "-o",
                str(out_png),
            ],
            "nope.png",
        ),
        (
            ["embed", "--model", str(tmp_path / "missing"), *map(str, frames), "-o", str(out_png)],
            "does not exist",
        ),
        (
            ["embed", "--model", str(trained), *map(str, frames), "-o", str(frames[0])],
            "refusing to overwrite",
        ),
        (
            ["restore", "--model", str(trained), str(frames[0]), "-o", str(tmp_path / "r2")],
            "no invblocks metadata",
        ),
        (["train", "--task", "vdeo"], "unknown task 'vdeo'"),
        (["train", "--task", "video", "--set", "steps=-1"], "invalid training config"),
        (["train", "--task", "video", "--out", str(frames[0] / "sub")], "is a file"),
        (
            [
                "embed",
                "--model",
                str(trained),
                *map(str, frames),
                "-o",
                str(out_png),
                "--device",
                "gpu",
            ],
            "unknown device 'gpu'",
        ),
        (
            ["train", "--task", "video", "--device", "tpu:0", "--out", str(tmp_path / "t")],
            "'tpu:0'",
        ),
    ]
    for argv, needle in cases:
        capsys.readouterr()
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert needle in err and "Traceback" not in err, (argv, err)


def test_a_sampling_setting_the_task_does_not_take_is_refused_before_any_folder(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "--task", "video", "--set", "sampling.spacing=2", "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "takes the sampling settings: frame_step; received spacing" in err, err
    assert "Traceback" not in err and not out.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_asking_for_a_gpu_without_one_is_a_clear_error_and_leaves_no_folder(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--task", "video", "--device", "cuda", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "PyTorch sees no CUDA GPU" in err and "'cpu'" in err, err
    assert not out.exists()
    with pytest.raises(ValueError, match="sees no CUDA GPU"):
        train(tiny_config(device="cuda:0"), tmp_path / "api", progress=False)
    assert not (tmp_path / "api").exists()


def test_corrupt_and_mismatched_checkpoints(trained, tmp_path, frames):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(trained, bad)
    folder = bad / "checkpoints" / (bad / "checkpoints" / "LATEST").read_text()
    weights_file = folder / "model.safetensors"
    weights_file.write_bytes(weights_file.read_bytes()[:1000])
    with pytest.raises(ValueError, match="corrupt or truncated weights"):
        Model.load(bad)
    other = tmp_path / "other"
    shutil.copytree(trained, other)
    folder = other / "checkpoints" / (other / "checkpoints" / "LATEST").read_text()
    config = json.loads((folder / "config.json").read_text())
    config["network"]["body"]["nodes"].pop(1)  # another architecture than the weights
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="do not match the network"):
        Model.load(other)
    config["task"] = "no-such-task"
    (folder / "config.json").write_text(json.dumps(config))
    assert (
        main(["embed", "--model", str(other), *map(str, frames), "-o", str(tmp_path / "x.png")])
        == 2
    )


def test_too_few_frames_in_a_clip(trained, tmp_path):
    gif = tmp_path / "two.gif"
    from PIL import Image

    pics = [Image.new("RGB", (16, 16), (i * 50, 0, 0)) for i in range(2)]
    pics[0].save(gif, save_all=True, append_images=pics[1:])
    with pytest.raises(ValueError, match=r"two\.gif has 2 frames; 3 frames"):
        Model.load(trained).read_inputs([gif])


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["eval", "--model", "m", "--samples", "0"], "--samples: expected at least 1; received 0"),
        (["eval", "--model", "m", "--crop", "x"], "--crop: expected an integer; received 'x'"),
        (["embed", "--model", "m", "a.gif", "-o", "e.png", "--start", "-1"], "--start"),
        (["embed", "--model", "m", "a.gif", "-o", "e.png", "--step", "0"], "--step"),
    ],
)
def test_cli_refuses_counts_out_of_range(argv, needle, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert needle in capsys.readouterr().err


def test_training_on_a_folder_of_ones_own_clips_and_photos(tmp_path):
    clips = tmp_path / "my clips"
    for k in range(3):
        for i in range(6):
            write_png(torch.rand(3, 40, 48), clips / f"scene{k}" / f"{i:03d}.png")
    run = train(tiny_config(data=str(clips), steps=2, val_every=2), tmp_path / "v", progress=False)
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert any("validation" in r for r in records)

    photos = tmp_path / "my photos"
    for i, side in enumerate((20, 48, 48)):  # the small one trains, the last validates
        write_png(torch.rand(3, side, side + 4), photos / f"IMG_{i}.png")
    config = tiny_config(task="grayscale", n_inputs=1, network={}, data=str(photos))
    with pytest.raises(ValueError, match=r"1 of 2 train items of 3 photographs in .*smaller than"):
        train(config, tmp_path / "g", progress=False)
    assert main(["eval", "--model", str(run), "--data", str(clips), "--samples", "1"]) == 0


def test_config_overrides():
    data = apply_overrides(
        {"task": "video"}, ["steps=5", "network.blocks=2", "data=/tmp/x", "lr=1e-3"]
    )
    assert data == {
        "task": "video",
        "steps": 5,
        "network": {"blocks": 2},
        "data": "/tmp/x",
        "lr": 0.001,
    }
    with pytest.raises(ValueError, match="unknown training config key"):
        TrainConfig.from_dict({"task": "video", "stepz": 3})
    with pytest.raises(ValueError, match="key=value"):
        apply_overrides({}, ["steps"])


def _wrong_values(field):
    """Values of the wrong type for a TrainConfig field, from its annotation."""
    kind = str(field.type)
    if kind.startswith("bool"):
        return ["no", "False", 1, None]
    if kind.startswith(("int", "float")):
        return [True, "3", *([2.5] if kind.startswith("int") else [])]
    if kind.startswith("dict"):
        return [4, "blocks=2"]
    return [5, 1.5]  # str, Literal[...] and their optional forms


@pytest.mark.parametrize("field", list(attrs.fields(TrainConfig)), ids=lambda f: f.name)
def test_config_rejects_wrong_types_naming_the_field(field):
    for bad in _wrong_values(field):
        with pytest.raises(ValueError, match=rf"invalid training config: .*{field.name}"):
            TrainConfig.from_dict({"task": "video", field.name: bad})


def test_config_overrides_read_python_words_and_typos_fail():
    data = apply_overrides({"task": "video"}, ["memory_saving=False", "channels_last=True"])
    assert data["memory_saving"] is False and data["channels_last"] is True
    config = TrainConfig.from_dict(apply_overrides({"task": "video"}, ["threads=None"]))
    assert config.threads is None
    for typo in ("channels_last=no", "memory_saving=Flase", "steps=1e3", "lr=fast"):
        with pytest.raises(ValueError, match=typo.split("=")[0]):
            TrainConfig.from_dict(apply_overrides({"task": "video"}, [typo]))


def test_distributed_training_keeps_replicas_in_sync(tmp_path):
    run = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "invblocks",
        "train",
        "--task",
        "hiding",
        "--out",
        str(run),
        "--device",
        "cpu",
        "--quiet",
        "--set",
        "steps=3",
        "--set",
        "crop=32",
        "--set",
        "batch=1",
        "--set",
        "val_every=100",
        "--set",
        'network={"blocks": 1, "width": 4}',
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    sync = [r for r in records if "replicas_in_sync" in r]
    assert sync == [{"step": 3, "world_size": 2, "replicas_in_sync": True}]
    assert [r["step"] for r in records if "total" in r] == [1, 2, 3]  # rank 0 logs alone
    assert result.stdout.count("run written to") == 1  # and reports alone


def test_toml_and_json_configs(tmp_path):
    from invblocks.config import load_config

    (tmp_path / "c.toml").write_text(
        '[train]\ntask = "hiding"\nsteps = 7\n[train.network]\nblocks = 2\n'
    )
    data = load_config(tmp_path / "c.toml")
    assert TrainConfig.from_dict(data).network == {"blocks": 2}
    (tmp_path / "c.json").write_text(json.dumps({"task": "video", "steps": 3}))
    assert TrainConfig.from_dict(load_config(tmp_path / "c.json")).steps == 3
    (tmp_path / "bad.toml").write_text("task = ")
    with pytest.raises(ValueError, match=r"cannot parse config .*bad\.toml"):
        load_config(tmp_path / "bad.toml")
    (tmp_path / "other.toml").write_text("[train]\nsteps = 7\n[trian]\nlr = 1.0\n")
    with pytest.raises(
        ValueError, match=r"the settings alone or in a table named train; .*'trian'"
    ):
        load_config(tmp_path / "other.toml")  # not silently ignored


def test_win_presets_and_loss_overrides_through_the_config(tmp_path):
    config = tiny_config(
        task="hiding",
        n_inputs=2,
        steps=2,
        network={"preset": "win", "blocks": 1},
        losses={"emb": 2.0, "freq": 0.0, "emb_kind": "charbonnier"},
        optimizer="win",
    )
    run = train(config, tmp_path / "win", progress=False)
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if "total" in r]
    assert "shift" in steps[-1] and "gram_det" in steps[-1] and "frequency" not in steps[-1]
    with pytest.raises(ValueError, match=r"unknown loss term\(s\) \[.nope.\]"):
        train(tiny_config(losses={"nope": 1}), tmp_path / "bad", progress=False)
    with pytest.raises(ValueError, match="preset must be"):
        train(
            tiny_config(task="hiding", n_inputs=2, network={"preset": "glow"}),
            tmp_path / "bad2",
            progress=False,
        )


def train_losses(folder, steps, **kw):
    """Train a tiny config for ``steps`` in ``folder``; the logged total losses and the run."""
    run = train(
        tiny_config(steps=steps, val_every=100, ckpt_every=100, **kw), folder, progress=False
    )
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["total"] for line in lines if '"total"' in line], run


def test_channels_last_and_memory_saving_train_to_the_same_losses(tmp_path):
    base, _ = train_losses(tmp_path / "base", 2)
    for kw in ({"channels_last": False}, {"memory_saving": True}, {"compact_dense": True}):
        other, _ = train_losses(tmp_path / str(kw), 2, **kw)
        assert other == pytest.approx(base, rel=1e-4), kw


def test_compiled_training_computes_the_eager_losses(tmp_path):
    # dynamo's "eager" backend: the traced graphs run the same kernels, so the losses are
    # equal bit for bit when the wiring is right (the quantiser split off, the same weights)
    base, _ = train_losses(tmp_path / "base", 2)
    for k, kw in enumerate(({"compile": "eager"}, {"compile": "eager", "memory_saving": True})):
        other, run = train_losses(tmp_path / f"compiled{k}", 2, **kw)
        assert other == base, kw
    assert Model.load(run, device="cpu").net.get_config()["type"] == "RICNet"
    with pytest.raises(ValueError, match="compile"):
        TrainConfig.from_dict({"task": "video", "compile": "fast"})


def test_bfloat16_autocast_trains_close_to_float32_and_keeps_float32_weights(tmp_path):
    base, _ = train_losses(tmp_path / "float32", 3)
    mixed, folder = train_losses(tmp_path / "bfloat16", 3, autocast="bfloat16")
    # step 1: every subnet starts at zero, so the loss is exact either way; step 2 runs on
    # weights updated with bfloat16 gradients: different (the switch is on), but close
    assert mixed[0] == base[0]
    assert mixed[1] != base[1]
    assert mixed[1] == pytest.approx(base[1], rel=2e-2)
    assert all(math.isfinite(t) for t in mixed) and mixed[-1] < mixed[0]
    model = Model.load(folder)
    assert {p.dtype for p in model.net.parameters()} == {torch.float32}


@pytest.mark.parametrize("switch", ["memory_saving", "compact_dense"])
def test_autocast_refuses_the_switches_that_recompute_in_float32(switch):
    with pytest.raises(ValueError, match=f"cannot be combined with {switch}"):
        TrainConfig(task="video", autocast="bfloat16", **{switch: True})
    with pytest.raises(ValueError, match="autocast"):
        TrainConfig(task="video", autocast="float16")


def test_report_timing_line_reads_old_and_new_logs():
    from invblocks.report import _timing

    assert _timing([{"step": 1, "total": 1.0}]) == ""  # logs written before step times
    one = [{"step": 7, "total": 1.0, "step_s": 2.0, "data_s": 0.5}]
    assert _timing(one) == "1 step logged; median step 2 s, waiting for data 0.5 s (steps 7-7)"
    many = [{"step": s, "step_s": t, "data_s": 0.0} for s, t in ((1, 60.0), (2, 1.0), (3, 3.0))]
    assert "median step 2 s" in _timing(many)  # the first (warm-up) step left out


def test_cli_version(capsys):
    import invblocks

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == (
        f"invblocks {invblocks.__version__} (torch {torch.__version__})"
    )


def test_a_hiding_model_restores_its_secret_from_a_png_and_warns_before_a_jpeg(tmp_path, capsys):
    """The default hiding recipe (residue hiding) after one step: a PNG restores the secret
    far above the cover repeated; writing a JPEG warns that the residue will not survive."""
    from invblocks.metrics import psnr

    config = tiny_config(task="hiding", n_inputs=2, steps=1, network={"blocks": 1})
    run = train(config, tmp_path / "hiding", progress=False)
    gen = torch.Generator().manual_seed(3)
    cover = torch.rand(3, 1, 1, generator=gen) * torch.ones(3, 24, 31)
    secret = torch.linspace(0, 1, 31).expand(3, 24, 31).contiguous()
    files = [tmp_path / "cover.png", tmp_path / "secret.png"]
    for image, path in zip([cover, secret], files, strict=True):
        write_png(image, path)
    out_png, out_jpg = tmp_path / "stego.png", tmp_path / "stego.jpg"
    assert main(["embed", "--model", str(run), *map(str, files), "-o", str(out_png)]) == 0
    assert "warning" not in capsys.readouterr().err
    assert main(["restore", "--model", str(run), str(out_png), "-o", str(tmp_path / "back")]) == 0
    back = sorted((tmp_path / "back").glob("*.png"))
    original = read_image(files[1])
    assert psnr(read_image(back[1]), original) > psnr(read_image(files[0]), original) + 10
    assert main(["embed", "--model", str(run), *map(str, files), "-o", str(out_jpg)]) == 0
    assert "a JPEG destroys" in capsys.readouterr().err


def test_folders_of_items_are_embedded_and_restored_with_one_model_load(half_model, tmp_path):
    from invblocks.cli import main

    items = tmp_path / "items"
    for k in range(3):  # three clips as folders of frames
        clip = items / f"clip{k}"
        for i in range(3):
            write_png(torch.rand(3, 20, 24, generator=torch.Generator().manual_seed(9 * k + i)),
                      clip / f"{i}.png")  # fmt: skip
    (items / "clip1" / "1.png").write_bytes(b"not a PNG")  # one item cannot be read
    from invblocks.checkpoint import save_model

    out, back = tmp_path / "out", tmp_path / "back"
    meta = {"task": "video-x2", "n_inputs": 3, "network": half_model.net.get_config()}
    model = str(save_model(tmp_path / "model", net=half_model.net, meta=meta))
    argv = ["embed", "--model", model, "--each", str(items), "-o", str(out), "--device", "cpu"]
    assert main(argv) == 2  # one failed: said, skipped, counted
    assert sorted(p.name for p in out.iterdir()) == ["clip0.png", "clip2.png"]
    before = (out / "clip0.png").read_bytes()
    write_png(torch.rand(3, 20, 24), items / "clip1" / "1.png")  # mended
    assert main(argv) == 0  # a rerun writes what is missing and keeps what is there
    assert (out / "clip0.png").read_bytes() == before and (out / "clip1.png").exists()
    assert main(["restore", "--model", model, "--each", str(out), "-o", str(back)]) == 0
    assert sorted(p.name for p in back.iterdir()) == ["clip0", "clip1", "clip2"]
    assert sorted(p.name for p in (back / "clip2").iterdir()) == [
        f"restored_{i}.png" for i in range(3)
    ]
    assert main(["restore", "--model", model, "-o", str(back)]) == 2  # neither a file nor --each


def test_folders_of_items_never_write_outside_their_output_or_over_an_input(tmp_path, capsys):
    """``--each`` names each output after its item inside ``-o``, and nothing else: a
    ``--suffix`` that is a path, an output folder that is the items' folder, an item whose
    name would make ``..``, two items with one output, or something else in an output's way
    are refused, and the files beside them are untouched."""
    from invblocks.checkpoint import save_model

    task = __import__("invblocks").get_task("grayscale")
    net = task.build_network(1, blocks=1, width=4, generator=torch.Generator().manual_seed(0))
    meta = {"task": "grayscale", "n_inputs": 1, "network": net.get_config()}
    model = str(save_model(tmp_path / "model", net=net, meta=meta))
    items = tmp_path / "items"
    for k, name in enumerate(["a.png", "b.png"]):
        write_png(torch.rand(3, 16, 20, generator=torch.Generator().manual_seed(k)), items / name)
    snapshot = {p: p.read_bytes() for p in items.iterdir()}

    def embed(*extra: str) -> int:
        return main(["embed", "--model", model, "--each", str(items), "--quiet", *extra])

    for suffix in ["/../../items/a.png", "../x.png", "/x.png", ".p/ng", "."]:
        assert embed("-o", str(tmp_path / "out"), "--suffix", suffix) == 2, suffix
        assert "--suffix takes a file type" in capsys.readouterr().err
    assert embed("-o", str(items)) == 2  # the outputs would be the inputs, or items next time
    assert "is the folder of the items" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in items.iterdir()} == snapshot
    assert not (tmp_path / "out").exists() and not (tmp_path / "x.png").exists()

    out = tmp_path / "out"
    (out / "a.png").mkdir(parents=True)  # something else where an output goes
    assert embed("-o", str(out), "--suffix", "png") == 2
    assert "a.png exists and is not a file" in capsys.readouterr().err
    assert (out / "a.png").is_dir() and (out / "b.png").is_file()

    # restore: "...png" would be restored into "-o/.." ; a.png and a.jpg into one folder
    sent = tmp_path / "sent"
    sent.mkdir()
    (sent / "...png").write_bytes((out / "b.png").read_bytes())
    (sent / "ok.png").write_bytes((out / "b.png").read_bytes())
    beside = tmp_path / "restored_0.png"
    beside.write_bytes(b"the user's file")
    back = tmp_path / "back"
    (back / "ok").mkdir(parents=True)  # an empty folder is not a restored item
    assert main(["restore", "--model", model, "--each", str(sent), "-o", str(back)]) == 2
    err = capsys.readouterr()
    assert "...png: cannot name an output '..' after it" in err.err
    assert "restored 1 of 2 items" in err.err and beside.read_bytes() == b"the user's file"
    assert (back / "ok" / "restored_0.png").is_file()
    (back / "ok" / "restored_0.png").unlink()
    (back / "ok").rmdir()
    (back / "ok").write_text("in the way")
    (sent / "...png").unlink()
    assert main(["restore", "--model", model, "--each", str(sent), "-o", str(back)]) == 2
    assert "ok exists and is not a folder" in capsys.readouterr().err
    (back / "ok").unlink()
    (back / "ok").mkdir()
    (back / "ok" / "frame.png").write_bytes(b"the user's frame")  # a folder of other files
    assert main(["restore", "--model", model, "--each", str(sent), "-o", str(back)]) == 2
    assert "ok holds other files" in capsys.readouterr().err
    assert [p.name for p in (back / "ok").iterdir()] == ["frame.png"]
    (sent / "ok.jpg").write_bytes(b"")
    assert main(["restore", "--model", model, "--each", str(sent), "-o", str(tmp_path / "b2")]) == 2
    assert "ok.jpg and ok.png would both be written to ok" in capsys.readouterr().err
