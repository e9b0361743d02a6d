"""Tiled embedding and restoration: the receptive field measured from the network, the same
result as without tiles, networks that cannot be tiled refused."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import invblocks
from invblocks import Sequence, presets
from invblocks import blocks as B
from invblocks.model import Model
from invblocks.testing import perturb_parameters
from invblocks.tiling import NotTileable, plan, tiled

TASKS = ["video-x2", "rescaling-x2", "grayscale", "hiding", "dual-view-x4", "camera-raw"]


def model_of(name, max_memory=None, seed=0):
    task = invblocks.get_task(name)
    n = task.default_inputs
    net = task.build_network(
        n, **{**task.train.network, "generator": torch.Generator().manual_seed(seed)}
    )
    perturb_parameters(net, 0.05, torch.Generator().manual_seed(seed))  # trained-like weights
    return Model(task, net, n, {}, device="cpu", max_memory=max_memory)


def test_the_receptive_field_is_the_networks():
    conv = Sequence(4, 32, 32)
    for _ in range(3):  # each coupling: a dense block of 5 3x3 convolutions on each side
        conv.append(B.AffineCoupling, split=2)
    one = plan(conv[:1], 4, 1)
    three = plan(conv, 4, 1)
    assert one.halo == 10 and three.halo == 30  # two subnets of 5 pixels each, per coupling
    assert three.halo_inverse == 30 and three.scale == 1
    squeezed = Sequence(3, 32, 32).append(B.HaarDownscale).append(B.AffineCoupling, split=3)
    p = plan(squeezed, 3, 2)
    assert p.scale == 2 and p.halo == 1 + 2 * 10 and p.unit == 4  # the coupling at half size
    assert p.halo_inverse == 11  # embedding pixels: the coupling's 10, the Haar cell's 1


@pytest.mark.parametrize("name", TASKS)
def test_tiles_give_what_the_whole_image_gives(name):
    whole = model_of(name, max_memory=10**13)
    halo = model_of(name).tile_plan().halo
    tiles = model_of(name, max_memory=whole.memory_estimate(4 * halo + 64, 4 * halo + 64))
    c, n = whole.task.image_channels, whole.n_inputs
    g = torch.Generator().manual_seed(1)
    side = 4 * halo + 160  # more than the budget: tiles
    images = [torch.rand(c, side + 17, side + 3, generator=g) for _ in range(n)]
    assert tiles.memory_estimate(side + 17, side + 3) > tiles.budget()
    e1, meta = whole.embed(images)
    e2, _ = tiles.embed(images)
    levels = ((e1 - e2).abs() * 255).round()
    assert levels.max() <= 1 and (levels > 0).float().mean() <= 0.001
    r1, r2 = torch.stack(whole.restore(e1, meta)), torch.stack(tiles.restore(e1, meta))
    assert (r1 - r2).abs().max() < 1e-4


@given(core=st.sampled_from([4, 8, 12]), halo=st.integers(0, 6), h=st.integers(5, 40),
       w=st.integers(5, 40))  # fmt: skip
@settings(deadline=None, max_examples=20)
def test_a_local_function_tiled_is_itself(core, halo, h, w):
    # a 3x3 box filter reads one pixel around: a halo of one or more gives it exactly
    kernel = torch.ones(1, 1, 3, 3) / 9
    x = torch.rand(1, 1, h, w, generator=torch.Generator().manual_seed(h * 41 + w))

    def box(t):
        return torch.nn.functional.conv2d(t, kernel, padding=1)

    got = tiled(box, x, tile=core, halo=halo, unit=1, scale=1)
    if halo >= 1:
        assert torch.allclose(got, box(x), atol=1e-6)
    assert got.shape == x.shape


def test_a_network_that_looks_at_the_whole_image_is_refused():
    net = presets.iicnet(2, prior=4, init="trivial", blocks=1, width=4, growth=4)
    with pytest.raises(NotTileable, match="ReferencePrior computes something else on a part"):
        plan(net.body, 6, 1)
    task = invblocks.get_task("dual-view-x4")
    small = Model(task, net, 2, {}, device="cpu", max_memory=10**6)
    images = [torch.rand(3, 200, 200) for _ in range(2)]
    with pytest.raises(ValueError, match=r"cannot be tiled exactly.*give it more memory"):
        small.embed(images)


def test_the_command_line_takes_a_memory_budget(tmp_path):
    from invblocks.checkpoint import save_model
    from invblocks.cli import main
    from invblocks.io import read_image, write_png

    model = model_of("rescaling-x2")
    meta = {"task": "rescaling-x2", "n_inputs": 1, "network": model.net.get_config()}
    folder = save_model(tmp_path / "model", net=model.net, meta=meta)
    photo = tmp_path / "photo.png"
    write_png(torch.rand(3, 480, 640, generator=torch.Generator().manual_seed(3)), photo)
    base = ["embed", "--model", str(folder), str(photo), "--device", "cpu"]
    assert main([*base, "-o", str(tmp_path / "whole.png")]) == 0
    budget = f"{model.memory_estimate(420, 420) // 2**20}M"  # less than the photo needs
    assert model.memory_estimate(480, 640) > model.memory_estimate(420, 420)
    assert main([*base, "-o", str(tmp_path / "tiles.png"), "--max-memory", budget]) == 0
    a, b = read_image(tmp_path / "whole.png"), read_image(tmp_path / "tiles.png")
    assert ((a - b).abs() * 255).round().max() <= 1
    assert main([*base, "-o", str(tmp_path / "none.png"), "--max-memory", "1k"]) == 2
    assert not (tmp_path / "none.png").exists()


@given(side=st.sampled_from([8, 16, 24]), h=st.integers(20, 70), w=st.integers(20, 70),
       inverse=st.booleans())  # fmt: skip
@settings(deadline=None, max_examples=12)
def test_a_body_run_node_by_node_in_tiles_is_itself(side, h, w, inverse):
    from invblocks.tiling import run_nodes, tile_count

    g = torch.Generator().manual_seed(h * 97 + w)
    body = Sequence(3, 32, 32).append(B.HaarDownscale)
    body.append(B.InvConv1x1, generator=g).append(B.AffineCoupling, split=3)
    perturb_parameters(body, 0.05, g)
    p = plan(body, 3, 2)
    assert [n.factor for n in p.nodes] == [2, 1, 1] and p.nodes[2].forward == 10
    h, w = 2 * (h // 2), 2 * (w // 2)
    x = torch.rand(1, 3, h, w, generator=g) if not inverse else torch.rand(1, 12, h // 2, w // 2)
    with torch.no_grad():
        (whole,), _ = body([x], rev=inverse)
        calls = []
        got = run_nodes(body, x, p, inverse=inverse, tile_side=lambda halo, unit, at: side,
                        progress=calls.append)  # fmt: skip
    assert torch.allclose(got, whole, atol=1e-5)
    size = x.shape[-2:]
    assert len(calls) == tile_count(p, *size, inverse=inverse, tile_side=lambda *a: side) >= 3
