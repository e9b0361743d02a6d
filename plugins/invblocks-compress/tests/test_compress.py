"""The compression plugin: its blocks invert, its densities are densities, its bitstreams
decode to exactly what the encoder computed (in another process too), and the command line
compresses and decompresses a photograph."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from invblocks_compress import (
    SCALES,
    AttentionPair,
    EntropyCoded,
    FactorizedDensity,
    TwoSidedCoupling,
    dct_keep,
    gaussian_likelihood,
    invcompress,
)
from invblocks_compress.entropy import scale_indexes

import invblocks
from invblocks.ops import to_float
from invblocks.plugins import load_plugins
from invblocks.testing import check_block, check_task


def test_registered_by_its_own_entry_point():
    registry = load_plugins()
    assert registry.tasks["compression"].plugin == "compress"
    from invblocks.presets import PRESETS
    from invblocks.ric.channel import CHANNELS

    assert CHANNELS["hyperprior"] is EntropyCoded
    assert PRESETS["invcompress"] is invcompress


@pytest.mark.parametrize(("quality", "expected"), [(3, 43_264_827), (5, 50_032_618)])
def test_parameter_counts_equal_the_authors(quality, expected):
    # counted from the authors' InvCompress(N) modules (N = 128 and 192)
    net = invcompress(quality, size=(64, 64))
    assert sum(p.numel() for p in net.parameters()) == expected
    # without the enhancement module: its forward and inverse networks fewer (627,974)
    lean = invcompress(quality, size=(64, 64), enhancement=False)
    assert sum(p.numel() for p in lean.parameters()) == expected - 627_974


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_two_sided_coupling_is_exact(seed):
    g = torch.Generator().manual_seed(seed)
    c = int(torch.randint(2, 6, (1,), generator=g)) * 4
    h, w = (int(v) for v in torch.randint(2, 7, (2,), generator=g))
    kernel = (1, 3, 5)[seed % 3]
    block = TwoSidedCoupling([(c, h, w)], kernel=kernel, generator=g)
    load_plugins()  # registered blocks rebuild from their configs
    assert check_block(block, (c, h, w), seed=seed, perturb=0.2) == []


@pytest.mark.parametrize("seed", [0, 1])
def test_the_codecs_subnets_run_in_bfloat16_when_the_model_asks(seed):
    from invblocks_compress.blocks import AttentionBlock, Bottleneck

    from invblocks.blocks import DenseBlock, set_subnet_dtype
    from invblocks.testing import perturb_parameters

    g = torch.Generator().manual_seed(seed)
    net = invcompress(3, size=(64, 64), generator=g).eval()
    perturb_parameters(net.body, 0.02, g)  # trained-like: the subnets' last layers nonzero
    kinds = (Bottleneck, AttentionBlock, DenseBlock)
    subnets = [m for m in net.body.modules() if isinstance(m, kinds)]
    # 4 levels x 3 couplings x 4 subnets, the two attention branches, the enhancement's
    assert len([m for m in subnets if isinstance(m, Bottleneck)]) == 48
    assert len([m for m in subnets if isinstance(m, AttentionBlock)]) == 2
    x = torch.rand(1, 3, 64, 64, generator=g)
    with torch.no_grad():
        (y,), _ = net.body([x])
        (full,), _ = net.body([y], rev=True)
        assert set_subnet_dtype(net.body, torch.bfloat16) == len(subnets)
        (low,), _ = net.body([y], rev=True)
        set_subnet_dtype(net.body, None)
        (again,), _ = net.body([y], rev=True)
    assert low.dtype == torch.float32 and not torch.equal(low, full)
    assert float((low - full).abs().max()) < 0.02  # bfloat16's 8 bits in the subnets only
    assert torch.equal(again, full)


def test_attention_pair_is_learned_and_starts_near_identity_with_a_gate():
    load_plugins()
    block = AttentionPair([(8, 4, 4)])
    with pytest.warns(UserWarning, match="identity at initialisation"):
        skipped = check_block(block, (8, 4, 4))
    assert skipped == ["identity at initialisation (starts_as_identity = False)"]
    gated = AttentionPair([(8, 4, 4)], gate=-10.0)
    x = torch.randn(2, 8, 4, 4)
    with torch.no_grad():
        assert float((gated(x) - x).abs().max()) < 1e-3 * float(x.abs().max() + 1)


@pytest.mark.parametrize("seed", [0, 1])
def test_densities_sum_to_one(seed):
    torch.manual_seed(seed)
    density = FactorizedDensity(4)
    with torch.no_grad():
        for p in density.parameters():
            if p.requires_grad:
                p.add_(0.3 * torch.randn_like(p))
    density.solve_quantiles()
    lo, hi = density.quantiles[:, 0, 0], density.quantiles[:, 0, 2]
    grid = torch.arange(math.floor(float(lo.min())) - 1, math.ceil(float(hi.max())) + 2)
    z = grid.float()[None, None, :, None].expand(1, 4, -1, 1)
    mass = density.likelihood(z).double().sum(dim=(0, 2, 3))
    assert torch.allclose(mass, torch.ones(4, dtype=torch.float64), atol=1e-4)
    pmf, minima, medians = density.coding_tables()
    assert torch.allclose(pmf.sum(1), torch.ones(4, dtype=torch.float64), atol=1e-6)
    assert (pmf >= 0).all() and (minima >= 0).all()
    cdf_at_median = torch.sigmoid(density.logits_cdf(medians.float()[:, None, None]))
    assert torch.allclose(cdf_at_median.flatten(), torch.full((4,), 0.5), atol=1e-4)

    mean, scale = torch.randn(1) * 3, torch.rand(1) * 5 + 0.2
    values = torch.arange(-80, 81, dtype=torch.float64)
    assert abs(float(gaussian_likelihood(values - mean, scale.double()).sum()) - 1) < 1e-6


def test_scale_indexes_round_up_to_the_table():
    s = torch.rand(100) * 300
    idx = scale_indexes(s)
    table = SCALES[idx]
    assert (table >= s.double().clamp(0.11, 256) - 1e-12).all()
    below = SCALES[(idx - 1).clamp_min(0)]
    assert ((below < s.double()) | (idx == 0)).all()


def _trained_channel(context: str, seed: int, n: int = 8, size: tuple[int, int] = (8, 12)):
    torch.manual_seed(seed)
    channel = EntropyCoded([(n, *size)], context=context, step=0.5)
    with torch.no_grad():  # a channel whose models are not all alike
        for p in channel.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn_like(p))
    channel.finalize()
    return channel.eval()


@pytest.mark.parametrize("context", ["serial", "checkerboard", "none"])
@pytest.mark.parametrize("seed", [0, 1])
def test_the_rate_is_float32_under_bfloat16_autocast(context, seed):
    # the training surrogate's means and noise in bfloat16 would be off by whole steps on
    # latents of a hundred; under autocast the channel computes what it computes outside
    torch.manual_seed(seed)
    channel = EntropyCoded([(8, 8, 12)], context=context, step=0.5).train()
    y = (torch.randn(2, 8, 8, 12) * 60).requires_grad_()
    runs = []
    for enabled in (False, True):
        torch.manual_seed(seed + 10)
        with torch.autocast("cpu", torch.bfloat16, enabled=enabled):
            (y_hat,), _, aux = channel.forward_with_aux([y])
            bits = -sum(torch.log2(aux[k]).sum() for k in ("likelihoods_y", "likelihoods_z"))
        (grad,) = torch.autograd.grad(bits, y)
        runs.append((y_hat, aux, grad))
    (y0, aux0, g0), (y1, aux1, g1) = runs
    assert y1.dtype == aux1["likelihoods_y"].dtype == aux1["likelihoods_z"].dtype == y.dtype
    assert torch.equal(y0, y1) and torch.equal(g0, g1)
    assert all(torch.equal(aux0[k], aux1[k]) for k in aux0)


@pytest.mark.parametrize("context", ["serial", "checkerboard", "none"])
@pytest.mark.parametrize("seed", [0, 1])
def test_mixed_training_rounds_what_the_synthesis_receives(context, seed, monkeypatch):
    torch.manual_seed(seed)
    step = float(torch.empty(()).uniform_(0.3, 3.0))
    channel = EntropyCoded([(8, 8, 12)], context=context, step=step).train()
    y = (torch.randn(2, 8, 8, 12) * 20).requires_grad_()
    means = []
    gaussian = channel._gaussian

    def recorded(params, ctx):
        scales, m = gaussian(params, ctx)
        means.append(m.detach())
        return scales, m

    monkeypatch.setattr(channel, "_gaussian", recorded)
    runs = {}
    for mode in ("noise", "mixed"):
        channel.train_mode = mode
        torch.manual_seed(seed + 10)
        (y_hat,), _, aux = channel.forward_with_aux([y])
        runs[mode] = (y_hat, aux)
    noisy, mixed = runs["noise"][0], runs["mixed"][0]
    for k in ("likelihoods_y", "likelihoods_z"):  # the same rate: noise for the rate
        assert torch.equal(runs["noise"][1][k], runs["mixed"][1][k])
    offset = mixed.detach() / step - means[-1]
    assert float((offset - offset.round()).abs().max()) < 1e-3  # rounded around the means
    assert float((mixed - y).detach().abs().max()) <= 0.5 * step + 1e-4
    assert not torch.allclose(noisy, mixed)
    w = torch.randn_like(y)
    (grad,) = torch.autograd.grad((mixed * w).sum(), y)
    assert torch.allclose(grad, w)  # straight through
    with pytest.raises(ValueError, match="train_mode must be one of noise, mixed"):
        EntropyCoded([(8, 8, 12)], train_mode="ste")


@pytest.mark.parametrize("context", ["serial", "checkerboard", "none"])
@pytest.mark.parametrize("seed", [0, 1])
def test_bitstreams_decode_to_what_the_encoder_computed(context, seed):
    channel = _trained_channel(context, seed)
    e = 3 * torch.randn(2, 8, 8, 12)
    payloads = channel.encode(e)
    assert len(payloads) == 2 and all(isinstance(p.data, bytes) for p in payloads)
    decoded = channel.decode(payloads)
    with torch.no_grad():
        (received,), _ = channel([e])
    assert torch.equal(decoded, received)  # the eval forward is what the receiver gets
    assert float((decoded - e).abs().max()) <= 0.5 * channel.step + 1e-5 or context != "none"
    for item, payload in zip(e, payloads, strict=True):
        bits = channel.coded_bits(item[None])
        assert abs(8 * len(payload.data) - bits) <= max(64, 0.01 * bits)


def test_a_fresh_process_decodes_the_same_latent(tmp_path):
    channel = _trained_channel("serial", 3)
    e = 2 * torch.randn(1, 8, 8, 12)
    (payload,) = channel.encode(e)
    expected = channel.decode([payload])
    torch.save(channel.state_dict(), tmp_path / "state.pt")
    (tmp_path / "data.bin").write_bytes(payload.data)
    script = f"""
import torch
from invblocks.ric import Payload
from invblocks_compress import EntropyCoded
channel = EntropyCoded([(8, 8, 12)], context="serial", step=0.5).eval()
channel.load_state_dict(torch.load({str(tmp_path / "state.pt")!r}))
data = open({str(tmp_path / "data.bin")!r}, "rb").read()
p = Payload(data, (8, 8, 12), {dict(payload.info)!r})
torch.save(channel.decode([p]), {str(tmp_path / "out.pt")!r})
"""
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
    assert torch.equal(torch.load(tmp_path / "out.pt"), expected)


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux's /proc")
@pytest.mark.parametrize("context", ["serial", "checkerboard", "none"])
def test_decode_memory_bounds_what_decoding_takes(context, tmp_path):
    """The estimate that refuses a file before decoding is at least the peak resident memory
    decoding really adds, measured in a process that has not encoded (whose freed pages
    decoding would reuse unseen)."""
    n, side = 32, 128 if context != "serial" else 64
    torch.manual_seed(5)
    channel = EntropyCoded([(n, side, side)], context=context).eval()
    channel.finalize()
    (payload,) = channel.encode(3 * torch.randn(1, n, side, side))
    torch.save(channel.state_dict(), tmp_path / "state.pt")
    (tmp_path / "data.bin").write_bytes(payload.data)
    script = f"""
import gc, torch
from invblocks.ric import Payload
from invblocks_compress import EntropyCoded
channel = EntropyCoded([{payload.shape!r}], context={context!r}).eval()
channel.load_state_dict(torch.load({str(tmp_path / "state.pt")!r}))
p = Payload(open({str(tmp_path / "data.bin")!r}, "rb").read(), {payload.shape!r}, {payload.info!r})
gc.collect()
def kib(key):
    return next(int(x.split()[1]) for x in open("/proc/self/status") if x.startswith(key))
open("/proc/self/clear_refs", "w").write("5")  # the peak, from now
before = kib("VmRSS")
channel.decode([p])
print((kib("VmHWM") - before) * 1024)
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    taken = int(done.stdout.split()[-1])
    assert 0 < taken <= channel.decode_memory(payload.shape), (taken, payload.shape)


def test_a_damaged_bitstream_is_refused_or_decodes_to_something_else():
    channel = _trained_channel("none", 4)
    (payload,) = channel.encode(torch.randn(1, 8, 8, 12))
    from invblocks.ric import Payload

    with pytest.raises(ValueError, match="context"):
        channel.decode([Payload(payload.data, payload.shape, {**payload.info, "context": "x"})])
    with pytest.raises(ValueError, match="latent"):
        channel.decode([Payload(payload.data, (8, 6, 12), payload.info)])
    with pytest.raises(ValueError, match="32-bit"):
        channel.decode([Payload(payload.data[:-1], payload.shape, payload.info)])
    with pytest.raises(ValueError, match="32-bit words; received 0 bytes"):
        channel.decode([Payload(b"", payload.shape, payload.info)])


def _photo(size: int = 128) -> torch.Tensor:
    return to_float(invblocks.data.default_photos().val[0])[None, :, :size, :size]


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return 10 * math.log10(1 / float(((a - b) ** 2).mean()))


def test_the_untrained_codec_is_a_transform_codec():
    x = _photo()
    psnrs = []
    for quality in (2, 6):
        net = invcompress(quality, size=(128, 128)).eval()
        with torch.no_grad():
            restored = net.round_trip(x).restored.clamp(0, 1)
        psnrs.append(_psnr(restored, x))
    assert psnrs[0] > 27 and psnrs[1] > psnrs[0]
    # without the channel the body is a projection: restoring twice changes nothing more (to
    # the attention's closed gate, sigmoid(-10) = 4.5e-5 of its subnets' outputs), while the
    # first pass drops the detail the latent has no room for
    net = invcompress(3, size=(128, 128), generator=torch.Generator().manual_seed(0)).eval()
    with torch.no_grad():
        once = net.body([x])[0][0]
        back = net.body([once], rev=True)[0][0]
        again = net.body([net.body([back])[0][0]], rev=True)[0][0]
    assert float((back - again).abs().max()) < 1e-3 < float((x - back).abs().max())
    assert float(back.norm()) <= float(x.norm()) * (1 + 1e-5)


def test_the_dct_start_keeps_more_than_the_haar_start():
    # the held-out photograph projected onto what each start's latent keeps (no quantisation)
    x = _photo(256)
    kept = {}
    for start in ("haar", "dct"):
        net = invcompress(3, start=start, generator=torch.Generator().manual_seed(0)).eval()
        with torch.no_grad():
            back = net.body([net.body([x])[0][0]], rev=True)[0][0]
        kept[start] = _psnr(back, x)
    assert kept["dct"] > kept["haar"] + 2, kept


def _tile_coefficients(x: torch.Tensor) -> torch.Tensor:
    """The colour-DCT coefficients ``(B, 768, H/16, W/16)`` of every 16x16 tile."""
    colour = torch.tensor(
        [[3**-0.5] * 3, [2**-0.5, 0, -(2**-0.5)], [6**-0.5, -2 * 6**-0.5, 6**-0.5]]
    )
    k, i = torch.arange(16.0)[:, None], torch.arange(16.0)[None]
    d = torch.cos(math.pi * (2 * i + 1) * k / 32) * math.sqrt(2 / 16)
    d[0] /= math.sqrt(2)
    b, _, h, w = x.shape
    tiles = x.reshape(b, 3, h // 16, 16, w // 16, 16)
    return torch.einsum("kc,vi,uj,bcyixj->bkvuyx", colour, d, d, tiles).reshape(
        b, 768, h // 16, w // 16
    )


@pytest.mark.parametrize("seed", range(4))
def test_the_dct_start_latent_is_the_kept_coefficients(seed):
    g = torch.Generator().manual_seed(seed)
    n = (96, 128, 192, 256)[seed]
    keep = torch.randperm(768, generator=g)[:n].tolist()
    h, w = (64 * int(v) for v in torch.randint(1, 3, (2,), generator=g))
    enhancement = seed % 2 == 0  # without the enhancement module the start is the same codec
    net = invcompress(3, n=n, keep=keep, size=(h, w), enhancement=enhancement, generator=g)
    net = net.eval()
    modules = {type(m).__name__ for m in net.modules()}
    assert ("RelationModule" in modules) == enhancement
    x = torch.rand(2, 3, h, w, generator=g)
    with torch.no_grad():
        y = net.body([x])[0][0]
    expected = _tile_coefficients(x)[:, keep] / math.sqrt(768 / n)
    # the attention's closed gate leaks sigmoid(-10) of its subnets' outputs
    assert float((y - expected).abs().max()) < 1e-3, float((y - expected).abs().max())
    # the fixed ranking: a permutation, the DC of luma first, more luma than chroma kept
    order = dct_keep()
    assert sorted(order) == list(range(768)) and order[0] == 0
    assert sum(i < 256 for i in dct_keep(128)) > 64


@pytest.mark.parametrize(
    ("kw", "needle"),
    [
        ({"keep": list(range(127))}, "128 distinct"),
        ({"keep": [0] * 128}, "128 distinct"),
        ({"keep": list(range(700, 828))}, "0..767"),
        ({"start": "haar", "keep": list(range(128))}, "DCT start"),
        ({"start": "wavelet"}, "start must be"),
        ({"enhancement": "no"}, "true or false"),
    ],
)
def test_bad_starts_are_refused(kw, needle):
    with pytest.raises(ValueError, match=needle):
        invcompress(3, size=(64, 64), **kw)


def test_check_task_with_two_steps():
    task = invblocks.get_task("compression")
    losses = check_task(task, steps=2, batch=1, crop=64)
    assert {"rate", "distortion"} <= set(losses)
    assert all(math.isfinite(v) for v in losses.values())


def test_the_recipes_train_with_mixed_quantisation_and_a_runs_settings_add_to_it():
    from invblocks import TrainConfig
    from invblocks.trainer import resolved

    task = invblocks.get_task("compression")
    for recipe in task.recipe_names():
        if recipe != "reference":
            config = TrainConfig(task="compression", recipe=recipe)
            assert resolved(config, task).channel == {"train_mode": "mixed"}
    mine = resolved(TrainConfig(task="compression", channel={"step": 2.0}), task)
    assert mine.channel == {"train_mode": "mixed", "step": 2.0}
    authors = TrainConfig(task="compression", channel={"train_mode": "noise"})
    assert resolved(authors, task).channel == {"train_mode": "noise"}


def test_the_quality_recipes_leave_the_enhancement_out_and_the_authors_keep_it():
    from invblocks import TrainConfig
    from invblocks.trainer import resolved

    task = invblocks.get_task("compression")
    for recipe in task.recipe_names():
        network = resolved(TrainConfig(task="compression", recipe=recipe), task).network
        assert network["enhancement"] is (recipe == "reference"), recipe
        built = task.build_network(1, **{**network, "size": (64, 64)})
        modules = {type(m).__name__ for m in built.modules()}
        assert ("RelationModule" in modules) is network["enhancement"], recipe
    # a run's setting brings it back and keeps the recipe's quality
    mine = TrainConfig(task="compression", recipe="q6", network={"enhancement": True})
    assert resolved(mine, task).network == {"quality": 6, "enhancement": True}
    authors = resolved(TrainConfig(task="compression", recipe="reference"), task)
    assert (authors.lr, authors.batch, authors.warmup) == (1e-4, 8, 0.0)
    assert authors.channel == {"train_mode": "noise"}


def test_channel_settings_keep_the_entropy_models_weights(tmp_path: Path):
    from invblocks import TrainConfig
    from invblocks.trainer import _setup, train

    small = {"steps": 1, "batch": 1, "crop": 64, "val_every": 1000, "ckpt_every": 1000}
    run = train(TrainConfig(task="compression", **small), tmp_path / "run", progress=False)
    trained = invblocks.Model.load(run).net.channel.state_dict()
    tuned = TrainConfig(task="compression", init=str(run), channel={"train_mode": "mixed"}, **small)
    channel = _setup(tuned, tmp_path / "tuned").net.channel
    assert channel.train_mode == "mixed"
    state = channel.state_dict()
    assert state.keys() == trained.keys()
    assert all(torch.equal(state[k], trained[k].to(state[k].device)) for k in state)
    # a fresh run: the preset's own channel, the same weights whatever its training mode
    fresh = [_setup(TrainConfig(task="compression", channel=c, **small), tmp_path / str(i))
             for i, c in enumerate([None, {"train_mode": "mixed"}])]  # fmt: skip
    a, b = (r.net.channel.state_dict() for r in fresh)
    assert all(torch.equal(a[k], b[k]) for k in a)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "invblocks", *args], capture_output=True, text=True, timeout=600
    )


def test_command_line_compresses_and_decompresses(tmp_path: Path):
    run = tmp_path / "run"
    done = _cli(
        "train", "--task", "compression", "--out", str(run), "--set", "steps=1",
        "--set", "batch=1", "--set", "crop=64", "--set", "network.context=checkerboard",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    from PIL import Image

    photo = tmp_path / "photo.png"
    x = _photo(192)
    Image.fromarray((x[0].permute(1, 2, 0) * 255).round().byte().numpy()).save(photo)
    packed = tmp_path / "photo.ibc"
    done = _cli("embed", "--model", str(run), str(photo), "-o", str(packed))
    assert done.returncode == 0, done.stderr
    assert packed.read_bytes()[:4] == b"\x89IBC"
    out = tmp_path / "out"
    done = _cli("restore", "--model", str(run), str(packed), "-o", str(out))
    assert done.returncode == 0, done.stderr
    (restored_file,) = sorted(out.iterdir())
    restored = to_float(torch.from_numpy(__import__("numpy").array(Image.open(restored_file))))
    restored = restored.permute(2, 0, 1)[None] if restored.shape[-1] == 3 else restored
    mse = float(((restored - to_float((x * 255).round().byte())) ** 2).mean())
    assert 10 * math.log10(1 / mse) > 25
    # damaged, truncated and foreign files: one sentence, exit 2, nothing written
    data = packed.read_bytes()
    # a valid container (checksum right) declaring a latent far larger than its images make:
    # refused before anything is decoded (else gigabytes and minutes from a few bytes)
    from invblocks.ric.payload import Payload, dumps_container, loads_container

    meta, channel, payload = loads_container(data, "photo.ibc")
    huge = Payload(payload.data, (payload.shape[0], 4096, 4096), payload.info)
    # metadata naming vast images, the latent declared to match: refused on the memory its
    # decoding needs (a petabyte), before decoding
    side = 1 << 22
    vast = Payload(payload.data, (payload.shape[0], side // 16, side // 16), payload.info)
    vast_meta = {**meta, "height": side, "width": side}
    for name, content in [
        ("flipped.ibc", data[:40] + bytes([data[40] ^ 0xFF]) + data[41:]),
        ("short.ibc", data[: len(data) // 2]),
        ("foreign.ibc", photo.read_bytes()),
        ("huge.ibc", dumps_container(huge, channel, meta)),
        ("vast.ibc", dumps_container(vast, channel, vast_meta)),
    ]:
        bad = tmp_path / name
        bad.write_bytes(content)
        target = tmp_path / f"from-{name}"
        done = _cli("restore", "--model", str(run), str(bad), "-o", str(target))
        assert done.returncode == 2, (name, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert not target.exists()
