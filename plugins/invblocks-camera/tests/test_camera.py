"""The camera plugin: registered through its entry point, valid as a task, pipeline inverts."""

import torch
from invblocks_camera import pack_bayer, render, unpack_bayer, unprocess

import invblocks
from invblocks.ops import to_float
from invblocks.plugins import load_plugins
from invblocks.testing import check_task


def test_registered_by_its_own_entry_point():
    registry = load_plugins()
    assert registry.tasks["camera-raw"].plugin == "camera"


def test_pipeline_round_trip_on_a_real_photo():
    photo = to_float(invblocks.data.default_photos().val[0][:, :64, :64])[None].double()
    raw = unprocess(photo)
    assert raw.shape == (1, 4, 32, 32) and 0 <= float(raw.min()) and float(raw.max()) <= 1
    # rendering the RAW gives the photo at half resolution (per Bayer cell)
    half = unpack_bayer(pack_bayer(photo))
    rendered = render(raw)
    assert float((rendered - half).abs().mean()) < 0.01


def test_check_task_with_20_steps():
    task = invblocks.get_task("camera-raw")
    losses = check_task(task, network=task.build_network(blocks=1), steps=20, batch=1, crop=16)
    assert "rendered" in losses and all(torch.isfinite(torch.tensor(v)) for v in losses.values())
