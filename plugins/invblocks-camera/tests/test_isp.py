"""The invertible ISP: its network, real RAW files in and DNG files out, the command line."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rawpy
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from invblocks_camera.isp import classical_inverse, fit_start, raw_pairs, synthetic_raw
from invblocks_camera.presets import fit_colour, invertible_isp
from invblocks_camera.raw import RawInfo, dng_bytes, mosaic, read_raw
from PIL import Image

import invblocks
from invblocks.ops import to_float
from invblocks.testing import check_block, check_task

PATTERNS = ("RGGB", "BGGR", "GRBG", "GBRG")


def _photo(h: int = 64, w: int = 96) -> torch.Tensor:
    return to_float(invblocks.data.default_photos().val[0][:, :h, :w])[None]


def _info(pattern: str = "RGGB", flip: int = 0) -> RawInfo:
    return RawInfo(
        pattern=pattern,
        black=(512.0, 513.0, 514.0, 515.0),
        white=16383.0,
        gains=(2.0, 1.0, 1.6),
        xyz_to_camera=(0.9, -0.2, -0.1, -0.4, 1.3, 0.1, 0.0, 0.2, 0.6),
        flip=flip,
    )


def _dng(path: Path, pattern: str = "RGGB", flip: int = 0, h: int = 64, w: int = 96) -> Path:
    """A DNG of a bundled photograph's synthetic RAW (sensor orientation)."""
    info = _info(pattern, flip)
    x = synthetic_raw(_photo(h, w))[0]
    upright = torch.rot90(x, {0: 0, 3: 2, 5: 1, 6: 3}[flip], dims=(-2, -1))
    path.write_bytes(dng_bytes(mosaic(upright, info), info))
    return path


def _psnr(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor, peak: float = 1.0) -> float:
    a_, b_ = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return 10 * math.log10(peak**2 / float(np.mean((a_ - b_) ** 2)))


def test_the_papers_network_has_the_authors_parameter_count():
    net = invertible_isp()
    assert sum(p.numel() for p in net.parameters()) == 1_413_760
    assert invertible_isp(blocks=2).body.dims_out == [(3, 64, 64)]
    with pytest.raises(ValueError, match="start"):
        invertible_isp(start="glow")  # type: ignore[arg-type]


@pytest.mark.parametrize("start", ["identity", "authors"])
def test_the_network_inverts(start: str):
    net = invertible_isp(blocks=1, start=start, generator=torch.Generator().manual_seed(0))
    check_block(net.body, dims=(3, 8, 12))
    x = torch.rand(2, 3, 16, 24, generator=torch.Generator().manual_seed(1)).double()
    body = net.body.double()
    y = body(x)
    if start == "identity":  # renders the RAW as it is until trained
        assert torch.equal(y, x)
    else:  # the authors' initialisation is far from the identity
        assert float((y - x).detach().abs().mean()) > 0.05
    assert float((body.inverse()(y) - x).detach().abs().max()) < 1e-10


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**16))
def test_the_fitted_colour_start_renders_the_fitted_map_and_inverts(seed: int):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(3, 4, generator=g, dtype=torch.float64) * 0.3
    a[:, :3] += torch.eye(3, dtype=torch.float64)
    raw = torch.rand(4, 3, 12, 10, generator=g, dtype=torch.float64)
    rendering = torch.einsum("ij,bjhw->bihw", a[:, :3], raw) + a[:, 3, None, None]
    fitted = torch.tensor(fit_colour(raw, rendering), dtype=torch.float64)
    assert torch.allclose(fitted, a, atol=1e-9)  # least squares finds an exact affine map
    net = invertible_isp(blocks=2, colour=fitted.tolist(), generator=g)
    body = net.body.double()
    y = body(raw)
    assert torch.allclose(y, rendering, atol=1e-6)  # renders it (float32 weights)
    assert float((body.inverse()(y) - raw).detach().abs().max()) < 1e-10
    # the task fits it to its training samples unless the run chose a start
    assert torch.allclose(
        torch.tensor(fit_start(raw, rendering, {})["colour"], dtype=torch.float64), a, atol=1e-9
    )
    assert fit_start(raw, rendering, {"colour": None}) == {}
    assert fit_start(raw, rendering, {"start": "authors"}) == {}


def test_a_colour_start_is_three_rows_of_four_and_invertible():
    with pytest.raises(ValueError, match="3 rows of 4"):
        invertible_isp(colour=[[1.0, 0.0, 0.0]] * 3)
    with pytest.raises(ValueError, match="invertible"):
        invertible_isp(colour=[[1.0, 1.0, 1.0, 0.0]] * 3)
    with pytest.raises(ValueError, match="start='identity'"):
        invertible_isp(start="authors", colour=[[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]])


@settings(max_examples=8, deadline=None)
@given(
    pattern=st.sampled_from(PATTERNS),
    flip=st.sampled_from([0, 3, 5, 6]),
    h=st.integers(12, 24).map(lambda k: 2 * k),
    w=st.integers(12, 24).map(lambda k: 2 * k),
)
def test_raw_files_round_trip_through_rawpy(tmp_path_factory, pattern, flip, h, w):
    path = _dng(tmp_path_factory.mktemp("dng") / "x.dng", pattern, flip, h, w)
    image, info = read_raw(path)
    turned = flip in (5, 6)
    assert image.shape == ((3, w, h) if turned else (3, h, w))
    assert info.pattern == pattern and info.flip == flip
    assert info.black == _info().black and info.white == _info().white
    assert np.allclose(info.gains, _info().gains, atol=1e-6)
    assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0
    # the sensor's data comes back from the network's RAW, within rounding
    with rawpy.imread(str(path)) as raw:
        source = raw.raw_image_visible.astype(np.int64)
    back = mosaic(image, info)
    assert back.shape == source.shape
    assert int(np.abs(back.astype(np.int64) - source).max()) <= 2
    # and a DNG written from it keeps the colour description of the source
    again = path.with_name("again.dng")
    again.write_bytes(dng_bytes(back, info))
    with rawpy.imread(str(path)) as a, rawpy.imread(str(again)) as b:
        assert np.allclose(a.color_matrix, b.color_matrix, atol=1e-5)
        assert np.allclose(a.camera_whitebalance, b.camera_whitebalance, atol=1e-5)
        assert a.sizes.flip == b.sizes.flip and np.array_equal(a.raw_pattern, b.raw_pattern)


def test_the_description_travels_as_json_and_damage_is_refused():
    info = _info("GBRG", 6)
    assert RawInfo.from_json(info.to_json()) == info
    for damaged in (
        {**info.to_json(), "pattern": "RGGX"},
        {**info.to_json(), "pattern": "RGBB"},
        {**info.to_json(), "white": 10},
        {**info.to_json(), "white": 1e12},
        {**info.to_json(), "black": [-5, 0, 0, 0]},
        {**info.to_json(), "gains": [1.0, float("nan"), 1.0]},
        {**info.to_json(), "xyz_to_camera": [float("inf")] * 9},
        {**info.to_json(), "model": "caf\u00e9"},
        {k: v for k, v in info.to_json().items() if k != "gains"},
    ):
        with pytest.raises(ValueError, match="description is damaged"):
            RawInfo.from_json(damaged)


def test_files_lib_raw_cannot_read_are_refused_in_one_sentence(tmp_path: Path):
    dng = _dng(tmp_path / "x.dng")
    data = dng.read_bytes()
    png = tmp_path / "photo.dng"
    Image.new("RGB", (8, 8)).save(png, format="PNG")
    for name, content in [("short.dng", data[: len(data) // 2]), ("empty.nef", b"")]:
        (tmp_path / name).write_bytes(content)
    for name in ("short.dng", "empty.nef", "photo.dng"):
        with pytest.raises(ValueError, match="LibRaw cannot read it") as err:
            read_raw(tmp_path / name)
        assert "\n" not in str(err.value)


def test_raw_pairs_pairs_files_by_name(tmp_path: Path):
    for i in range(3):
        _dng(tmp_path / f"a{i}.dng", h=32, w=48)
        Image.fromarray((_photo(32, 48)[0].permute(1, 2, 0) * 255).byte().numpy()).save(
            tmp_path / f"a{i}.jpg", quality=90, subsampling=1
        )
    (tmp_path / "lonely.dng").write_bytes((tmp_path / "a0.dng").read_bytes())
    split = raw_pairs(tmp_path)
    assert len(split.train) + len(split.val) == 3
    task = invblocks.get_task("isp")
    from invblocks.sampling import SampleRequest

    sample = task.sample(
        SampleRequest(
            items=split.val, index=0, n_inputs=1, crop=16,
            generator=torch.Generator().manual_seed(0), train=False,
        )
    )  # fmt: skip
    (raw,) = sample.images
    assert raw.shape == (3, 16, 16) and sample.reference.shape == (3, 16, 16)
    with pytest.raises(ValueError, match="no RAW files with renderings"):
        raw_pairs(_empty(tmp_path))


def _empty(tmp_path: Path) -> Path:
    folder = tmp_path / "empty"
    folder.mkdir()
    return folder


def test_check_task_with_five_steps():
    task = invblocks.get_task("isp")
    losses = check_task(task, network=task.build_network(blocks=1), steps=5, batch=1, crop=32)
    assert {"embedding", "restoration"} <= set(losses)
    assert all(math.isfinite(v) for v in losses.values())


def test_the_classical_inverse_inverts_the_fixed_pipeline():
    from invblocks_camera.isp import classical_rendering

    photo = _photo().double()
    raw = synthetic_raw(photo)
    assert _psnr(classical_rendering(raw), photo) > 40
    # the trivial restoration: the classical inverse of the photo's JPEG (quality 90, 4:2:2)
    trivial = classical_inverse(photo, 1, (64, 96))
    assert 30 < _psnr(trivial, raw) < 60


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "invblocks", *args], capture_output=True, text=True, timeout=600
    )


def test_command_line_renders_a_raw_to_jpeg_and_back_to_dng(tmp_path: Path):
    run = tmp_path / "run"
    done = _cli(
        "train", "--task", "isp", "--out", str(run), "--set", "steps=1", "--set", "batch=1",
        "--set", "crop=32", "--set", "network.blocks=2",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    source = _dng(tmp_path / "photo.dng", "BGGR", 6, 64, 96)
    jpeg = tmp_path / "photo.jpg"
    done = _cli("embed", "--model", str(run), str(source), "-o", str(jpeg))
    assert done.returncode == 0, done.stderr
    with Image.open(jpeg) as im:
        assert im.format == "JPEG" and im.size == (64, 96)  # upright: turned as the file says
    restored = tmp_path / "restored.dng"
    done = _cli("restore", "--model", str(run), str(jpeg), "-o", str(restored))
    assert done.returncode == 0, done.stderr
    with rawpy.imread(str(source)) as a, rawpy.imread(str(restored)) as b:
        assert np.array_equal(a.raw_pattern, b.raw_pattern) and a.sizes.flip == b.sizes.flip
        assert a.black_level_per_channel == b.black_level_per_channel
        assert np.allclose(a.color_matrix, b.color_matrix, atol=1e-5)
        options = {"use_camera_wb": True, "no_auto_bright": True, "adjust_maximum_thr": 0.0}
        pa, pb = a.postprocess(**options), b.postprocess(**options)
    assert pa.shape == pb.shape
    assert _psnr(pa, pb, 255) > 30  # an almost untrained network through a JPEG at quality 90
    # a folder: every RAW rendered, then every JPEG restored to a DNG
    raws, jpegs, dngs = tmp_path / "raws", tmp_path / "jpegs", tmp_path / "dngs"
    raws.mkdir()
    for name in ("a", "b"):
        (raws / f"{name}.dng").write_bytes(source.read_bytes())
    assert _cli("embed", "--model", str(run), "--each", str(raws), "-o", str(jpegs)).returncode == 0
    assert (
        _cli("restore", "--model", str(run), "--each", str(jpegs), "-o", str(dngs)).returncode == 0
    )
    assert sorted(p.name for p in dngs.iterdir()) == ["a.dng", "b.dng"]
    # two items of one name would be one output: refused before anything is written
    Image.new("RGB", (64, 96)).save(raws / "a.png")
    done = _cli("embed", "--model", str(run), "--each", str(raws), "-o", str(tmp_path / "c"))
    assert done.returncode == 2 and "would both be written" in done.stderr, done.stderr
    assert not (tmp_path / "c").exists()
    # the source is never overwritten
    before = source.read_bytes()
    done = _cli("restore", "--model", str(run), str(jpeg), "-o", str(source))
    assert done.returncode == 2 and "refusing to overwrite" in done.stderr, done.stderr
    assert source.read_bytes() == before
    # bad input: one sentence, exit 2, nothing written
    other = tmp_path / "other.jpg"
    Image.new("RGB", (64, 96), (120, 130, 140)).save(other)
    missing, a, b = tmp_path / "missing.dng", tmp_path / "a.jpg", tmp_path / "b.dng"
    for args in (
        ("embed", "--model", str(run), str(missing), "-o", str(a)),
        ("restore", "--model", str(run), "--size", "64x96", str(other), "-o", str(b)),
    ):
        done = _cli(*args)
        assert done.returncode == 2, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not a.exists() and not b.exists()


def test_sensors_that_are_not_bayer_are_refused():
    from types import SimpleNamespace

    from invblocks_camera.raw import _pattern

    xtrans = SimpleNamespace(color_desc=b"RGBG", raw_pattern=np.zeros((6, 6)), num_colors=3)
    foveon = SimpleNamespace(color_desc=b"RGBG", raw_pattern=None, num_colors=3)
    cygm = SimpleNamespace(color_desc=b"CYGM", raw_pattern=np.array([[0, 1], [2, 3]]), num_colors=4)
    for raw in (xtrans, cygm, foveon):
        with pytest.raises(ValueError, match="expected a Bayer RAW"):
            _pattern(raw, "x.raf")
    bayer = SimpleNamespace(
        color_desc=b"RGBG", raw_pattern=np.array([[1, 2], [0, 3]]), num_colors=3
    )
    assert _pattern(bayer, "x.dng") == "GBRG"


def test_the_camera_name_is_kept(tmp_path: Path):
    import attrs

    info = attrs.evolve(_info(), make="NIKON CORPORATION", model="NIKON D700")
    path = tmp_path / "named.dng"
    x = synthetic_raw(_photo(48, 64))[0]
    path.write_bytes(dng_bytes(mosaic(x, info), info))
    _, read = read_raw(path)
    assert (read.make, read.model) == ("NIKON CORPORATION", "NIKON D700")
