"""Every built-in task: check_task with 20 training steps, and references computed independently."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

import invblocks
from invblocks.ric import middle_first_order
from invblocks.testing import check_task

BUILT_IN_PLUGINS = {"video", "mononizing", "dual-view", "composition", "hiding", "single-image"}
ALL = sorted(n for n, t in invblocks.tasks().items() if t.plugin in BUILT_IN_PLUGINS)


def test_all_seven_task_families_are_there():
    assert len(ALL) == 11 and {"video", "mononizing", "hiding", "grayscale"} <= set(ALL)


@pytest.mark.parametrize("name", ALL)
def test_check_task_and_20_training_steps(name, device):
    task = invblocks.get_task(name)
    small = dict(blocks=1) if name == "rescaling-x4" else dict(blocks=2, width=8)
    net = task.build_network(None, **small)
    crop = max(task.min_crop, 16)
    losses = check_task(task, network=net, steps=20, batch=1, crop=crop, device=device)
    assert all(np.isfinite(v) for v in losses.values()) and losses["total"] > 0


def test_default_networks_match_their_tasks():
    for name in ALL:
        task = invblocks.get_task(name)
        net = task.build_network()
        (c, h, _w), s = net.dims_in[0], task.scale
        assert c == task.default_inputs * task.image_channels
        assert net.dims_out[0][0] == task.embed_channels and net.dims_out[0][1] == h // s


def sample(name, n=None, crop=32):
    task = invblocks.get_task(name)
    n = n or task.default_inputs
    x = task.dataset(task.default_data(), "val", n_inputs=n, crop=crop)[0]
    return task, n, x


def test_video_stacks_middle_frame_first_and_references_it():
    assert middle_first_order(5) == [2, 0, 1, 3, 4]
    assert middle_first_order(3) == [1, 0, 2]
    task, _n, x = sample("video", 5)
    frames = task.unstack(x, 5)
    assert torch.equal(x[:3], frames[2])
    assert torch.equal(task.reference(x[None], 5)[0], frames[2])
    # validation frames are adjacent frames of the carphone clip: consecutive, not identical
    assert 0 < float((frames[1] - frames[0]).abs().mean()) < 0.2


@pytest.mark.parametrize("frame_step", [1, 2, 5])
def test_video_training_frames_are_frame_step_apart_and_other_settings_are_refused(frame_step):
    """``sampling.frame_step``: training clips take frames that far apart (frame ``t`` of the
    clip below has the value ``t``), validation clips adjacent frames; a setting the task's
    sampler does not read is refused by name."""
    from invblocks.data import DataSplit

    task = invblocks.get_task("video")
    clip = torch.arange(30, dtype=torch.uint8)[:, None, None, None].expand(30, 3, 16, 16)
    source = DataSplit(train=[clip], val=[clip], description="a counting clip")
    options = {"frame_step": frame_step}
    train = task.dataset(source, "train", n_inputs=3, crop=16, length=4, options=options)
    val = task.dataset(source, "val", n_inputs=3, crop=16, options=options)
    for x, step in [(train[i], frame_step) for i in range(4)] + [(val[0], 1)]:
        values = sorted(round(float(f.mean()) * 255) for f in task.unstack(x, 3))
        assert values[1] - values[0] == values[2] - values[1] == step
    with pytest.raises(ValueError, match="takes the sampling settings: frame_step; received sp"):
        task.dataset(source, "train", n_inputs=3, crop=16, options={"spacing": 2})
    with pytest.raises(ValueError, match=r"frame_step expects a int \(default 5\); received 1\.5"):
        task.dataset(source, "train", n_inputs=3, crop=16, options={"frame_step": 1.5})
    zero = task.dataset(source, "train", n_inputs=3, crop=16, options={"frame_step": 0})
    with pytest.raises(ValueError, match="frame_step must be a positive integer; received 0"):
        zero[0]
    assert task.train.sampling == {} and invblocks.get_task("video-x2").train.sampling == {
        "frame_step": 1
    }


def test_video_x2_reference_is_the_2x2_mean_of_the_middle_frame():
    task, _n, x = sample("video-x2", 3)
    middle = task.unstack(x, 3)[1]
    torch.testing.assert_close(task.reference(x[None], 3)[0], F.avg_pool2d(middle[None], 2)[0])


def test_mononizing_reference_is_the_left_view():
    task, _n, x = sample("mononizing")
    left = task.unstack(x, 2)[0]
    assert torch.equal(task.reference(x[None], 2)[0], left)


def test_grayscale_reference_is_bt601_like_pillow():
    task, _, x = sample("grayscale", crop=64)
    ours = task.reference(x[None], 1)[0, 0]
    rgb = (x.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    pil = np.asarray(Image.fromarray(rgb).convert("L")).astype(np.float32) / 255
    assert float(np.abs(ours.numpy() - pil).max()) <= 1 / 255 + 1e-6


@pytest.mark.parametrize("factor", [2, 4])
def test_rescaling_reference_is_bicubic_like_pillow(factor):
    task, _, x = sample(f"rescaling-x{factor}", crop=128)
    ours = task.reference(x[None], 1)[0].numpy()
    pil = np.stack(
        [
            np.asarray(Image.fromarray(c.numpy(), "F").resize((128 // factor,) * 2, Image.BICUBIC))
            for c in x
        ]
    )
    m = 2  # borders differ: MATLAB pads symmetrically, Pillow renormalises the kernel
    assert np.abs(ours - pil.clip(0, 1))[:, m:-m, m:-m].max() < 1e-5


def test_dual_view_slots():
    task, _, x = sample("dual-view-x4", crop=32)
    normal, zoom = task.unstack(x, 2)
    # the zoomed view is the centre of the full-resolution view, the normal view its x4
    # downscale: downscaling the zoom gives the centre of the normal view
    centre = normal[:, 12:20, 12:20]
    ds = invblocks.ops.bicubic_downscale(zoom[None], 4)[0]
    assert float((centre - ds)[:, 1:-1, 1:-1].abs().mean()) < 0.01
    assert torch.equal(task.reference(x[None], 2)[0], normal)


def test_composition_layers_are_consistent():
    task, _, x = sample("composition", crop=64)
    comp, bg, fg_masked = task.unstack(x, 3)
    inside = fg_masked.abs().sum(0) > 0
    outside = ~inside
    assert torch.allclose(comp[:, outside], bg[:, outside])
    assert torch.equal(task.reference(x[None], 3)[0], comp)


def test_hiding_uses_different_photographs():
    task, _n, x = sample("hiding", 3)
    cover, s1, _s2 = task.unstack(x, 3)
    assert not torch.equal(cover, s1)
    assert torch.equal(task.reference(x[None], 3)[0], cover)


@settings(max_examples=15, deadline=None)
@given(
    n=st.integers(2, 5),
    sides=st.lists(st.tuples(st.integers(40, 90), st.integers(40, 90)), min_size=1, max_size=3),
    crop=st.sampled_from([None, 16, 32]),
)
def test_hiding_samples_different_pictures_from_a_split_of_few_photographs(n, sides, crop):
    """Fewer photographs than images per sample: halves of them, never a repeated image
    while there are halves of at least the crop's side to give."""
    from invblocks_tasks.hiding import distinct_pieces

    from invblocks.data import TaskDataset

    task = invblocks.get_task("hiding")
    gen = torch.Generator().manual_seed(0)
    photos = [torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=gen) for h, w in sides]
    pieces = distinct_pieces(photos, n, crop or 1)
    assert sum(p.numel() for p in pieces) <= sum(p.numel() for p in photos)
    assert all(min(p.shape[-2:]) >= (crop or 1) for p in pieces)
    if crop is None:  # any photograph can be halved
        assert len(pieces) == max(n, len(photos))
    data = TaskDataset(task, photos, n_inputs=n, crop=crop, train=False)
    for x in data:
        images = task.unstack(x[None], n)
        distinct = {img.numpy().tobytes() for img in images}
        assert len(distinct) == min(n, len(pieces))
        if len(pieces) >= n:
            assert len(distinct) == n


def test_bad_input_counts_and_crops():
    task = invblocks.get_task("video")
    with pytest.raises(ValueError, match="task 'video' embeds 3 to 9 images; received 2"):
        task.build_network(2)
    with pytest.raises(ValueError, match="embeds 3 to 9 images; received 10"):
        task.stack([torch.rand(3, 4, 4)] * 10)
    with pytest.raises(ValueError, match="mixed shapes"):
        task.stack([torch.rand(3, 4, 4)] * 2 + [torch.rand(3, 4, 5)])
    with pytest.raises(ValueError, match="expects 3-channel images"):
        task.stack([torch.rand(1, 4, 4)] * 3)
    with pytest.raises(ValueError, match="crop 66 must be a multiple of 4"):
        invblocks.get_task("rescaling-x4").dataset(task.default_data(), "train", crop=66)


def test_items_smaller_than_the_crop_are_refused_up_front():
    from invblocks.data import DataSplit

    big, small = torch.rand(3, 40, 40), torch.rand(3, 40, 24)
    stereo = invblocks.get_task("mononizing")
    pairs = DataSplit(train=[(big, big), (big, small)], val=[(big, big)], description="pairs")
    with pytest.raises(ValueError, match=r"1 of 2 train items of pairs .*side is 24"):
        stereo.dataset(pairs, "train", crop=32)
    assert len(stereo.dataset(pairs, "train", crop=24, length=3)) == 3  # 24 fits
    assert stereo.dataset(pairs, "val", crop=32)[0].shape == (6, 32, 32)
    clips = DataSplit(train=[torch.zeros(5, 3, 30, 40, dtype=torch.uint8)], val=[], description="c")
    with pytest.raises(ValueError, match=r"1 of 1 train items of c .*32x32 crop .*side is 30"):
        invblocks.get_task("video").dataset(clips, "train", crop=32)


def test_composition_samples_matting_layers_of_other_sizes_and_channels():
    from invblocks.data import DataSplit

    g = torch.Generator().manual_seed(0)
    fg = (torch.rand(3, 40, 44, generator=g) * 255).to(torch.uint8)
    alpha = (torch.rand(1, 40, 44, generator=g) * 255).to(torch.uint8)
    bg = (torch.rand(3, 50, 60, generator=g) * 255).to(torch.uint8)  # another photograph
    layers = DataSplit(train=[(fg, alpha, bg)], val=[(fg, alpha, bg)], description="matting")
    task = invblocks.get_task("composition")
    for split in ("train", "val"):
        x = task.dataset(layers, split, crop=32, length=2)[0]
        assert x.shape == (9, 32, 32) and x.dtype == torch.float32
        composite, background, foreground = task.unstack(x, 3)
        assert 0 <= float(x.min()) and float(x.max()) <= 1
    # validation crops are centred: the foreground layer is the matte times the photograph
    a = alpha[:, 4:36, 6:38].float() / 255
    f = fg[:, 4:36, 6:38].float() / 255
    torch.testing.assert_close(foreground, f * (a > 0))
    b = bg[:, 9:41, 14:46].float() / 255
    torch.testing.assert_close(composite, a * f + (1 - a) * b)
    torch.testing.assert_close(background, b)


def test_source_reads_a_folder_or_gives_the_default_data(tmp_path):
    import attrs

    from invblocks.data import DataSplit

    task = invblocks.get_task("grayscale")
    seen = []
    reader = attrs.evolve(
        task,
        open_data=lambda p: seen.append(p) or DataSplit(train=[1], val=[2], description="mine"),
    )
    assert reader.load_data(tmp_path).description == "mine" and seen == [tmp_path]
    assert reader.load_data(str(tmp_path)).description == "mine" and seen[-1] == tmp_path
    assert reader.load_data(None).description == task.default_data().description
    folderless = attrs.evolve(task, open_data=None)
    with pytest.raises(ValueError, match=r"cannot read a data folder \(received '.*'\)"):
        folderless.load_data(tmp_path)


def test_a_sampler_of_the_old_six_arguments_still_works_with_a_warning():
    import attrs

    from invblocks.sampling import SampleRequest

    task = invblocks.get_task("grayscale")
    calls = []

    def old(items, index, n, crop, generator, train):
        calls.append((index, n, crop, train))
        return [items[index % len(items)][:, :crop, :crop].float() / 255]

    with pytest.warns(DeprecationWarning, match="SampleRequest"):
        legacy = attrs.evolve(task, sample=old)
    source = task.default_data()
    x = legacy.dataset(source, "val", crop=16, length=1)[0]
    assert calls == [(0, 1, 16, False)] and x.shape == (3, 16, 16)
    request = SampleRequest(
        items=source.val, index=0, n_inputs=1, crop=16, generator=torch.Generator(), train=False
    )
    assert torch.equal(legacy.sample(request)[0], x)
    assert task.sample is attrs.evolve(task).sample  # a new-style sampler is kept as it is
    # registering a task evolves it again: the old sampler is not wrapped a second time
    again = attrs.evolve(legacy, plugin="old-plugin")
    assert again.sample is legacy.sample and torch.equal(again.sample(request)[0], x)


def test_sample_request_draws_from_its_own_generator():
    from invblocks.sampling import SampleRequest

    items = [torch.full((3, 20, 20), k, dtype=torch.uint8) for k in range(5)]

    def request(seed, train):
        g = torch.Generator().manual_seed(seed)
        return SampleRequest(items=items, index=7, n_inputs=1, crop=8, generator=g, train=train)

    assert int(request(0, False).pick()[0, 0, 0]) == 7 % 5  # validation: item index
    picks = {int(request(seed, True).pick()[0, 0, 0]) for seed in range(40)}
    assert picks == set(range(5))  # training: any item
    a, b = request(3, True), request(3, True)
    assert torch.equal(a.crop_window([items[1]])[0], b.crop_window([items[1]])[0])
    assert a.crop_window([items[2]])[0].shape == (3, 8, 8)
    assert a.crop_window([items[2]], None)[0].shape == (3, 20, 20)
    assert 0 <= a.randint(3) < 3


@pytest.mark.parametrize("name", ["hiding", "grayscale", "rescaling-x2", "rescaling-x4"])
def test_a_win_network_takes_its_width_n(name):
    task = invblocks.get_task(name)
    net = task.build_network(task.default_inputs, preset="win", n=32, modules=1, blocks=1)
    wide = task.build_network(task.default_inputs, preset="win", n=64, modules=1, blocks=1)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert 0 < count(net) < count(wide)


def test_hidings_recipes_are_named_for_what_they_are():
    from invblocks.config import TrainConfig
    from invblocks.trainer import resolved

    task = invblocks.get_task("hiding")
    assert task.recipe_names() == ["residue", "reference", "learned", "win"]
    assert task.recipe("residue") is task.recipe("default") is task.train
    assert "hiding_levels" in task.train.network  # the residue hiding
    win = resolved(TrainConfig(task="hiding", recipe="win"), task)
    assert win.network == {"preset": "win"} and win.crop == 64
    net = task.build_network(2, **task.recipe("learned").network)
    assert not any(type(m).__name__ == "ResidueHiding" for m in net.modules())
    with pytest.raises(ValueError, match="has the recipes residue, reference, learned, win"):
        task.recipe("secret")


def test_a_file_format_names_its_endings_and_writes_with_a_suffix():
    from invblocks.ric import FileFormat

    def read(path):
        return [torch.zeros(3, 4, 4)], {"source": path.name}

    own = FileFormat(
        suffixes=(".DNG", ".nef"), read=read, write=lambda im, info: b"", suffix=".Dng"
    )
    assert own.suffixes == (".dng", ".nef") and own.suffix == ".dng"
    assert own.reads("a/photo.NEF") and not own.reads("photo.png")
    for bad in ((), ("dng",), (".",)):
        with pytest.raises(ValueError, match="suffixes"):
            FileFormat(suffixes=bad, read=read)
    with pytest.raises(ValueError, match="together"):
        FileFormat(suffixes=".dng", read=read, suffix=".dng")
