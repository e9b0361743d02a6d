"""Image I/O: PNG round trips are bit-exact, writes are atomic, bad files give clear errors."""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from invblocks import ric
from invblocks.io import atomic_write, read_image, write_png
from invblocks.testing.strategies import image_shapes, seeds


@given(shape=image_shapes(channels=st.sampled_from([1, 3]), max_side=9), seed=seeds())
def test_quantised_embedding_survives_png_bit_exactly(tmp_path_factory, shape, seed):
    x = torch.rand((1, *shape), generator=torch.Generator().manual_seed(seed)) * 1.2 - 0.1
    q = ric.Quantizer().eval()(x)[0]
    path = write_png(q, tmp_path_factory.mktemp("png") / "e.png")
    back = read_image(path, mode="L" if shape[0] == 1 else "RGB")
    assert back.dtype == q.dtype and torch.equal(back, q)


def test_write_is_atomic_and_leaves_no_temporary_files(tmp_path):
    target = tmp_path / "out.png"
    target.write_bytes(b"previous")
    with pytest.raises(ValueError):
        write_png(torch.rand(2, 4, 4), target)  # two channels: rejected before writing
    assert target.read_bytes() == b"previous"
    write_png(torch.rand(3, 4, 4), target)
    assert read_image(target).shape == (3, 4, 4)
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "data.bin"
    target.write_bytes(b"previous")
    with pytest.raises(RuntimeError, match="midway"), atomic_write(target) as f:
        f.write(b"half of the new")
        assert target.read_bytes() == b"previous"  # nothing visible while writing
        raise RuntimeError("midway")
    assert target.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["data.bin"]
    with atomic_write(target) as f:
        f.write(b"new")
    assert target.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["data.bin"]


def test_corrupt_and_truncated_files_are_named(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(ValueError, match=r"cannot read image .*bad\.png"):
        read_image(bad)
    good = write_png(torch.rand(3, 32, 32), tmp_path / "good.png")
    cut = tmp_path / "cut.png"
    cut.write_bytes(good.read_bytes()[:200])
    with pytest.raises(ValueError, match=r"cut\.png"):
        read_image(cut)
    with pytest.raises(FileNotFoundError):
        read_image(tmp_path / "missing.png")


def test_modes_are_converted(tmp_path):
    rgba = np.zeros((4, 5, 4), np.uint8)
    rgba[..., 0] = 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    img = read_image(tmp_path / "a.png")
    assert img.shape == (3, 4, 5) and float(img[0].min()) == 1.0
    Image.fromarray(np.full((4, 5), 128, np.uint8), "L").convert("P").save(tmp_path / "p.png")
    assert read_image(tmp_path / "p.png").shape == (3, 4, 5)


def test_the_deprecated_photo_lookup_still_finds_the_default_files():
    import invblocks.io

    with pytest.warns(DeprecationWarning, match="default_file"):
        path = invblocks.io.photo_path("astronaut")
    with pytest.warns(DeprecationWarning, match="default_file"):
        photos = invblocks.io.PHOTOS
    assert path.name == "astronaut.png" and "astronaut" in photos
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        invblocks.io.nope  # noqa: B018


def test_16_bit_grayscale_is_scaled_not_clipped(tmp_path):
    arr = np.array([[0, 32768, 65535]], dtype=np.uint16)
    Image.fromarray(arr).save(tmp_path / "g16.png")
    img = read_image(tmp_path / "g16.png")
    assert img.shape == (3, 1, 3)
    torch.testing.assert_close(img[0, 0], torch.tensor([0.0, 32768 / 65535, 1.0]))
    assert read_image(tmp_path / "g16.png", mode="L").shape == (1, 1, 3)


@given(shape=image_shapes(channels=st.sampled_from([1, 3]), max_side=9), seed=seeds())
def test_8_bit_reads_are_the_float_reads_times_255(tmp_path_factory, shape, seed):
    x = torch.rand(shape, generator=torch.Generator().manual_seed(seed))
    path = write_png(x, tmp_path_factory.mktemp("png") / "x.png")
    mode = "L" if shape[0] == 1 else "RGB"
    as_uint8 = read_image(path, mode, dtype=torch.uint8)
    assert as_uint8.dtype == torch.uint8
    assert torch.equal(as_uint8.float() / 255, read_image(path, mode))
    with pytest.raises(ValueError, match=r"dtype must be torch\.float32 or torch\.uint8"):
        read_image(path, dtype=torch.float16)
