"""The JPEG channel (differentiable in training, the real codec in eval) and JPEG files."""

import io
import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

import invblocks
import invblocks.data
from invblocks import ric
from invblocks.cli import main
from invblocks.io import read_image, read_metadata, write_jpeg, write_png
from invblocks.testing import CheckNotRun, check_block


def pillow_jpeg(image, quality, mode="RGB"):
    """An independent round trip through Pillow: uint8 array -> JPEG bytes -> array."""
    arr = np.asarray(Image.fromarray(image, mode))
    buffer = io.BytesIO()
    Image.fromarray(arr).save(buffer, format="JPEG", quality=quality, subsampling=2)
    return np.asarray(Image.open(io.BytesIO(buffer.getvalue())))


@given(quality=st.integers(5, 100), seed=st.integers(0, 2**16), gray=st.booleans())
@settings(deadline=None)
def test_eval_is_the_real_codec(quality, seed, gray):
    g = torch.Generator().manual_seed(seed)
    c = 1 if gray else 3
    x = torch.rand(2, c, 16, 24, generator=g)
    channel = ric.JPEGChannel(quality=quality).eval()
    (y,), _ = channel([x])
    assert y.shape == x.shape and torch.equal(y, (y * 255).round() / 255)
    for i in range(2):
        pixels = torch.round(x[i] * 255).to(torch.uint8)
        pixels = pixels[0].numpy() if gray else pixels.permute(1, 2, 0).numpy()
        want = pillow_jpeg(pixels, quality, "L" if gray else "RGB")
        got = torch.round(y[i] * 255).to(torch.uint8)
        got = got[0].numpy() if gray else got.permute(1, 2, 0).numpy()
        assert np.array_equal(got, want)


def test_training_is_differentiable_and_close_to_the_codec():
    g = torch.Generator().manual_seed(0)
    photo = read_image(invblocks.data.default_file("astronaut"))[None, :, 100:164, 200:264]
    channel = ric.JPEGChannel(quality=90, generator=g).train()
    x = photo.clone().requires_grad_(True)
    (y,), _ = channel([x])
    y.sum().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0
    real = ric.jpeg_round_trip(photo, 90)
    # the simulation is JPEG, not the identity: closer to the codec than to the input
    assert float((y.detach() - real).abs().mean()) < float((photo - real).abs().mean())
    assert float((y.detach() - real).abs().mean()) < 0.01


def test_qualities_are_drawn_per_sample_and_plain_mixes_in_the_quantiser():
    x = torch.rand(64, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    channel = ric.JPEGChannel(
        quality=(10, 95), plain=0.5, generator=torch.Generator().manual_seed(1)
    )
    (y,), _ = channel.train()([x])
    error = (y - x).abs().flatten(1).mean(1)
    quantised = error < 0.5 / 255 + 1e-6  # the plain channel moves each value by < half a level
    assert 10 < int(quantised.sum()) < 54  # about half
    assert error[~quantised].std() > 1e-3  # JPEG at different qualities: different errors


def test_quality_settings():
    assert ric.JPEGChannel(quality="70-95").quality == (70, 95)
    assert ric.JPEGChannel(quality=80).eval_quality == 80
    assert ric.JPEGChannel(quality=[60, 90]).eval_quality == 75
    for bad in ("70-", "95-70", 0, 101, "high", True, (1, 2, 3)):
        with pytest.raises(ValueError, match="quality"):
            ric.JPEGChannel(quality=bad)
    with pytest.raises(ValueError, match="1- or 3-channel"):
        ric.JPEGChannel([(12, 8, 8)])
    with pytest.raises(ValueError, match="plain must be a probability"):
        ric.JPEGChannel(plain=1.5)


def test_check_block_checks_it_and_says_what_it_left_out():
    with pytest.warns(CheckNotRun, match="idempotence"):
        skipped = check_block(ric.JPEGChannel(quality=75), (3, 16, 16), dtype=torch.float32)
    assert skipped == ["idempotence (the block declares idempotent = False)"]


def test_jpeg_files_carry_the_metadata(tmp_path):
    image = torch.rand(3, 12, 20, generator=torch.Generator().manual_seed(0))
    write_jpeg(image, tmp_path / "a.jpg", quality=90, text={"invblocks": '{"a": 1}'})
    assert read_metadata(tmp_path / "a.jpg") == {"invblocks": '{"a": 1}'}
    pixels = np.asarray(Image.open(tmp_path / "a.jpg"))
    Image.fromarray(pixels).save(tmp_path / "stripped.jpg", quality=90)  # metadata lost
    assert read_metadata(tmp_path / "stripped.jpg") == {}
    write_png(image, tmp_path / "a.png", text={"invblocks": "x"})
    assert read_metadata(tmp_path / "a.png") == {"invblocks": "x"}


@pytest.fixture(scope="module")
def jpeg_model(tmp_path_factory):
    """A tiny video model trained for two steps through the JPEG channel."""
    run = tmp_path_factory.mktemp("runs") / "jpeg"
    settings = [
        "steps=2", "crop=16", "batch=1", "n_inputs=3", "val_every=2", "ckpt_every=2",
        "network.blocks=1", "network.width=4", "network.growth=4", "device=cpu",
        "channel=jpeg", "channel.quality=70-95",
    ]  # fmt: skip
    assert main(["train", "--task", "video", "--out", str(run), "--quiet",
                 *[a for s in settings for a in ("--set", s)]]) == 0  # fmt: skip
    return run


@pytest.fixture()
def frames(tmp_path):
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"f{i}.png")
        write_png(torch.rand(3, 20, 28, generator=torch.Generator().manual_seed(i)), paths[-1])
    return paths


def test_train_with_the_jpeg_channel_then_embed_and_restore_jpeg_files(
    jpeg_model, frames, tmp_path
):
    model = invblocks.Model.load(jpeg_model, device="cpu")
    assert model.net.get_config()["channel"]["type"] == "JPEGChannel"
    records = [json.loads(line) for line in (jpeg_model / "metrics.jsonl").read_text().splitlines()]
    assert all(np.isfinite(r["total"]) for r in records if "total" in r)
    clip = tmp_path / "clip.jpg"
    args = ["embed", "--model", str(jpeg_model), *map(str, frames), "-o", str(clip)]
    assert main([*args, "--quality", "90", "--device", "cpu"]) == 0
    with Image.open(clip) as img:
        assert img.format == "JPEG" and img.size == (28, 20)
    out = tmp_path / "out"
    assert main(["restore", "--model", str(jpeg_model), str(clip), "-o", str(out)]) == 0
    assert [read_image(p).shape for p in sorted(out.iterdir())] == [(3, 20, 28)] * 3
    # a progressive re-save keeps the pixels' meaning and, with the comment, restores too
    with Image.open(clip) as img:
        img.save(
            tmp_path / "progressive.jpg", quality=95, progressive=True, comment=img.info["comment"]
        )
    again = tmp_path / "again"
    assert (
        main(
            [
                "restore",
                "--model",
                str(jpeg_model),
                str(tmp_path / "progressive.jpg"),
                "-o",
                str(again),
            ]
        )
        == 0
    )


def test_restore_without_metadata_needs_the_size(jpeg_model, frames, tmp_path, capsys):
    model = invblocks.Model.load(jpeg_model, device="cpu")
    png = model.embed_files(frames, tmp_path / "clip.png")
    Image.fromarray(np.asarray(Image.open(png))).save(tmp_path / "stripped.png")  # chunk lost
    capsys.readouterr()
    out = tmp_path / "out"
    assert (
        main(
            ["restore", "--model", str(jpeg_model), str(tmp_path / "stripped.png"), "-o", str(out)]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "carries no invblocks metadata" in err and "--size WIDTHxHEIGHT" in err
    assert not out.exists()
    args = ["restore", "--model", str(jpeg_model), str(tmp_path / "stripped.png"), "-o", str(out)]
    assert main([*args, "--size", "28x20"]) == 0
    restored = [read_image(p) for p in sorted(out.iterdir())]
    direct = model.restore_file(png, tmp_path / "direct")
    assert all(torch.equal(a, read_image(b)) for a, b in zip(restored, direct, strict=True))
    assert main([*args, "--size", "40x40"]) == 2  # another size than the embedding's
    assert "was it resized or cropped" in capsys.readouterr().err


@pytest.mark.parametrize(
    "convert, needle",
    [
        (lambda img: img.convert("L"), "is a grayscale image; this model's embeddings are RGB"),
        (lambda img: img.convert("CMYK"), "is a CMYK image"),
        (lambda img: img.resize((img.width // 2, img.height // 2)), "was it resized or cropped"),
    ],
    ids=["grayscale", "cmyk", "resized"],
)
def test_altered_jpegs_are_refused_in_one_sentence(
    jpeg_model, frames, tmp_path, capsys, convert, needle
):
    clip = tmp_path / "clip.jpg"
    invblocks.Model.load(jpeg_model, device="cpu").embed_files(frames, clip)
    with Image.open(clip) as img:
        comment = img.info["comment"]
        convert(img).save(tmp_path / "bad.jpg", comment=comment)
    before = (tmp_path / "bad.jpg").read_bytes()
    capsys.readouterr()
    out = tmp_path / "out"
    assert (
        main(["restore", "--model", str(jpeg_model), str(tmp_path / "bad.jpg"), "-o", str(out)])
        == 2
    )
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1
    assert (tmp_path / "bad.jpg").read_bytes() == before and not out.exists()


def test_a_quality_for_a_png_and_other_endings_are_refused(jpeg_model, frames, tmp_path, capsys):
    base = ["embed", "--model", str(jpeg_model), *map(str, frames)]
    assert main([*base, "-o", str(tmp_path / "x.png"), "--quality", "90"]) == 2
    assert "a quality is for JPEG files" in capsys.readouterr().err
    assert main([*base, "-o", str(tmp_path / "x.webp")]) == 2
    assert "writes .jpg, .jpeg or .png files; received '.webp'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*base, "-o", str(tmp_path / "x.jpg"), "--quality", "101"])
    assert not list(tmp_path.glob("x.*"))
