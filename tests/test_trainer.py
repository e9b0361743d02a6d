"""invblocks.trainer: the schedules, the step sampler, the recipes' resolution."""

import json
import math

import attrs
import pytest
import torch
from safetensors.torch import load_file

import invblocks
from invblocks.config import TrainConfig
from invblocks.trainer import StepSampler, learning_rate, resolved


def test_the_iicnet_schedule_halves_at_20_40_60_80_percent():
    rates = [learning_rate("iicnet", 1.0, step, 100) for step in range(100)]
    assert rates[0] == rates[19] == 1.0 and rates[20] == 0.5 and rates[40] == 0.25
    assert rates[60] == 0.125 and rates[80] == rates[99] == 0.0625


def test_the_win_schedule_is_a_cosine_to_1e_6():
    assert learning_rate("win", 1e-3, 0, 100) == pytest.approx(1e-3)
    assert learning_rate("win", 1e-3, 50, 100) == pytest.approx((1e-3 + 1e-6) / 2)
    assert learning_rate("win", 1e-3, 100, 100) == pytest.approx(1e-6)
    assert learning_rate("win", 1e-3, 0, 100, progress=2.0) == pytest.approx(1e-6)  # clamped


@pytest.mark.parametrize("world", [1, 2, 3])
def test_the_step_sampler_resumes_where_it_stopped_and_splits_the_ranks(world):
    batch, steps = 2, 7
    whole = [list(StepSampler(0, steps, batch, r, world)) for r in range(world)]
    resumed = [list(StepSampler(3, steps, batch, r, world)) for r in range(world)]
    for r in range(world):
        assert whole[r][3 * batch :] == resumed[r] and len(whole[r]) == steps * batch
    every = sorted(i for indices in whole for i in indices)
    assert every == list(range(steps * batch * world))  # each sample once, across ranks


def test_a_recipe_fills_what_the_config_leaves_unset():
    task = invblocks.get_task("rescaling-x2")
    default = resolved(TrainConfig(task="rescaling-x2"), task)
    assert default.crop == task.train.crop and default.lr == task.train.lr
    assert default.network["init"] == "trivial" and default.autocast == "float32"
    paper = resolved(TrainConfig(task="rescaling-x2", recipe="reference"), task)
    assert paper.crop == 144 and paper.lr == 2e-4 and paper.network == {}
    mine = resolved(TrainConfig(task="rescaling-x2", crop=32, network={"blocks": 2}), task)
    assert mine.crop == 32 and mine.network["blocks"] == 2 and mine.network["init"] == "trivial"
    chosen = resolved(TrainConfig(task="rescaling-x2", network={"preset": "win"}), task)
    assert chosen.network == {"preset": "win"}  # a preset chosen: the run's network alone
    assert resolved(default, task) == default  # resolving twice changes nothing
    assert not math.isnan(default.lr)


def test_the_sampling_settings_reach_the_run_and_its_training_samples(tmp_path):
    """The task's defaults under the recipe's under the run's, recorded in the resolved
    config and passed to the training and validation samplers."""
    from invblocks.trainer import _data, _setup

    video, x2 = invblocks.get_task("video"), invblocks.get_task("video-x2")
    assert resolved(TrainConfig(task="video"), video).sampling == {"frame_step": 5}
    assert resolved(TrainConfig(task="video-x2"), x2).sampling == {"frame_step": 1}
    mine = TrainConfig(task="video-x2", sampling={"frame_step": 3}, steps=2)
    assert resolved(mine, x2).sampling == {"frame_step": 3}
    run = _setup(attrs.evolve(mine, network={"blocks": 1, "growth": 4}), tmp_path / "run")
    loader, val = _data(run, None)
    assert loader.dataset.options == val.options == {"frame_step": 3}
    with pytest.raises(ValueError, match="takes the sampling settings: frame_step"):
        _setup(TrainConfig(task="video", sampling={"step": 3}), tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize("fast", [True, False])
def test_bfloat16_autocast_warns_where_the_device_would_emulate_it(fast, monkeypatch, tmp_path):
    import warnings

    import invblocks.trainer as trainer

    monkeypatch.setattr(trainer, "fast_bfloat16", lambda device: fast)
    tiny = {"blocks": 1, "growth": 4}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer._setup(TrainConfig(task="video", autocast="bfloat16", network=tiny), tmp_path)
        trainer._setup(TrainConfig(task="video", network=tiny), tmp_path)  # float32: silent
    slow = [w for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(slow) == (0 if fast else 1)
    assert fast or "several times slower than float32" in str(slow[0].message)


@pytest.mark.parametrize("fast", [True, False])
def test_autocast_auto_trains_in_bfloat16_only_where_the_device_has_it(fast, monkeypatch, tmp_path):
    import warnings

    import invblocks.trainer as trainer

    monkeypatch.setattr(trainer, "fast_bfloat16", lambda device: fast)
    tiny = {"blocks": 1, "growth": 4}
    chosen = "bfloat16" if fast else "float32"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # never the emulation warning: auto avoids it
        run = trainer._setup(TrainConfig(task="video", autocast="auto", network=tiny), tmp_path)
        assert run.config.autocast == chosen
        saving = TrainConfig(task="video", autocast="auto", network=tiny, memory_saving=True)
        assert trainer._setup(saving, tmp_path / "m").config.autocast == "float32"
        task = attrs.evolve(
            invblocks.get_task("video"), train=attrs.evolve(invblocks.get_task("video").train,
                                                            autocast="auto")
        )  # fmt: skip
        assert trainer._setup(TrainConfig(task="video", network=tiny), tmp_path / "r",
                              task=task).config.autocast == chosen  # fmt: skip
        mine = TrainConfig(task="video", network=tiny, autocast="float32")
        assert trainer._setup(mine, tmp_path / "f", task=task).config.autocast == "float32"
    assert resolved(TrainConfig(task="video", autocast="auto"), task).autocast == "auto"


def test_the_command_line_prints_a_warning_as_one_line(monkeypatch, tmp_path, capsys):
    import invblocks.trainer as trainer
    from invblocks.cli import main

    monkeypatch.setattr(trainer, "fast_bfloat16", lambda device: False)
    argv = ["train", "--task", "video", "--out", str(tmp_path / "run"), "--quiet"]
    for setting in ("steps=1", "crop=16", "batch=1", "device=cpu", "autocast=bfloat16",
                    "network.blocks=1", "network.width=4", "network.growth=4"):  # fmt: skip
        argv += ["--set", setting]
    assert main(argv) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("warning: autocast=bfloat16 on a cpu"), err


def test_the_bfloat16_probe_answers_for_every_device_kind(monkeypatch):
    import torch

    from invblocks.runtime import fast_bfloat16

    assert fast_bfloat16("meta") is True  # not a known loss
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    assert fast_bfloat16("cpu") is False
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    assert fast_bfloat16(torch.device("cpu")) is True


@pytest.mark.parametrize(
    ("old", "name", "new"),
    [
        ("invblocks.training", "ric_step", "invblocks.ric.step"),
        ("invblocks.step", "ric_step", "invblocks.ric.step"),
        ("invblocks.task", "Task", "invblocks.ric.task"),
        ("invblocks.ricnet", "RICNet", "invblocks.ric.network"),
        ("invblocks.losses", "loss_term", "invblocks.ric.losses"),
    ],
)
def test_the_old_module_paths_are_deprecated_aliases(old, name, new):
    import importlib

    module = importlib.import_module(old)
    with pytest.warns(DeprecationWarning, match=rf"{old} is deprecated: import {name} from"):
        value = getattr(module, name)
    assert value is getattr(importlib.import_module(new), name)
    with pytest.raises(AttributeError):
        module.no_such_name  # noqa: B018


@pytest.mark.parametrize(
    "name, n", [("hiding", 2), ("hiding", 4), ("dual-view-x2", 2), ("dual-view-x8", 2)]
)
def test_a_default_hiding_recipe_hides_untrained_on_held_out_images(name, n):
    """The residue-hiding start, on held-out photographs: the embedding within 8 grid steps
    of the reference (over 33 dB) and every other slot restored far above the trivial
    baseline (one secret to 16 values, three sampled over 2x2 cells)."""
    import torch

    from invblocks.data import TaskDataset
    from invblocks.metrics import psnr

    task = invblocks.get_task(name)
    config = resolved(TrainConfig(task=name), task)
    assert config.network["hiding_levels"] == 16
    net = task.build_network(n, generator=torch.Generator().manual_seed(0), **config.network)
    net = net.eval()
    x = TaskDataset(task, task.load_data().val, n_inputs=n, crop=None, train=False)[0][None]
    with torch.no_grad():
        e = net.embed(x)
        back = net.restore(e).clamp(0, 1)
    assert psnr(e[0], task.reference(x, n)[0]) > 33
    baseline = task.trivial_restoration(x, n)
    for k in range(1, n):
        image = x[0, 3 * k : 3 * (k + 1)]
        got = psnr(back[0, 3 * k : 3 * (k + 1)], image)
        assert got >= psnr(baseline[0, 3 * k : 3 * (k + 1)], image) + 2
        assert got >= (33 if n == 2 else 25)


def test_the_default_video_x2_recipe_hides_the_other_frames_untrained_on_a_held_out_clip():
    """Its start: the other frames' low bands hidden as differences from the middle frame's,
    on the held-out clip: the embedding over 38 dB from the reference (10 levels: within 5
    grid steps) and the other frames restored above the middle frame repeated (and
    upscaled)."""
    import torch

    from invblocks.data import TaskDataset
    from invblocks.metrics import psnr

    task = invblocks.get_task("video-x2")
    config = resolved(TrainConfig(task="video-x2"), task)
    net = task.build_network(3, generator=torch.Generator().manual_seed(0), **config.network)
    net = net.eval()
    x = TaskDataset(task, task.load_data().val, n_inputs=3, crop=None, train=False)[0][None]
    with torch.no_grad():
        e = net.embed(x)
        back = net.restore(e).clamp(0, 1)
    assert psnr(e[0], task.reference(x, 3)[0]) > 38
    baseline = task.trivial_restoration(x, 3)
    got = [psnr(back[0, 3 * k : 3 * (k + 1)], x[0, 3 * k : 3 * (k + 1)]) for k in (1, 2)]
    base = [psnr(baseline[0, 3 * k : 3 * (k + 1)], x[0, 3 * k : 3 * (k + 1)]) for k in (1, 2)]
    assert (
        sum(got) / 2 >= sum(base) / 2 + 0.7
        and min(g - b for g, b in zip(got, base, strict=True)) > 0.2
    )


@pytest.mark.parametrize("name", ["grayscale"])
def test_a_default_recipe_that_starts_trivial_restores_the_baseline_untrained(name):
    import torch

    task = invblocks.get_task(name)
    config = resolved(TrainConfig(task=name), task)
    assert config.network["init"] == "trivial"
    n = task.default_inputs
    net = task.build_network(n, generator=torch.Generator().manual_seed(0), **config.network)
    net = net.double().eval()
    x = torch.rand(1, task.image_channels * n, 32, 32, dtype=torch.float64,
                   generator=torch.Generator().manual_seed(1))  # fmt: skip
    with torch.no_grad():
        back = net.restore(net.round_trip(x).embedding)
    expected = task.trivial_restoration(x, n)
    assert torch.allclose(back, expected, atol=1e-9), (back - expected).abs().max()


@pytest.mark.parametrize("name", ["rescaling-x2", "rescaling-x4", "video-x2"])
def test_a_default_recipe_that_downscales_restores_about_the_bicubic_baseline_untrained(name):
    """On held-out data: the upscale prior puts the untrained network's restoration at the
    bicubic baseline (repeating each low-band pixel is 1-2 dB below it)."""
    import torch
    import torch.nn.functional as F

    from invblocks.data import TaskDataset
    from invblocks.metrics import psnr

    task = invblocks.get_task(name)
    config = resolved(TrainConfig(task=name), task)
    n, c = task.default_inputs, task.image_channels
    net = task.build_network(n, generator=torch.Generator().manual_seed(0), **config.network)
    net = net.eval()
    x = TaskDataset(task, task.load_data().val[:1], n_inputs=n, crop=96, train=False)[0][None]
    with torch.no_grad():
        e = net.round_trip(x).embedding
        back = net.restore(e).clamp(0, 1)
    baseline = task.trivial_restoration(x, n)
    box = F.interpolate(F.avg_pool2d(x[:, :c], task.scale), scale_factor=task.scale)
    for k in range(1, n) if n > 1 else [0]:
        image = x[0, k * c : (k + 1) * c]
        got = psnr(back[0, k * c : (k + 1) * c], image)
        assert got >= psnr(baseline[0, k * c : (k + 1) * c], image) - 0.5
        assert got >= psnr(box[0], image) + 0.5


def _poisoned(bad):
    """The video task whose samples ``bad`` (indices: step - 1 with batch 1) are NaN."""
    import attrs

    task = invblocks.get_task("video")

    def sample(request):
        images = task.sample(request)
        if request.train and request.index in bad:
            return [torch.full_like(im, float("nan")) for im in images]
        return images

    return attrs.evolve(task, sample=sample)


def test_non_finite_steps_are_skipped_and_a_run_that_keeps_failing_goes_back(tmp_path):
    from invblocks.config import TrainConfig
    from invblocks.trainer import train

    config = TrainConfig(
        task="video", steps=9, crop=16, batch=1, n_inputs=3, val_every=100, ckpt_every=2,
        device="cpu", network={"blocks": 1, "width": 4, "growth": 4}, lr=1e-3,
    )  # fmt: skip
    with pytest.warns(RuntimeWarning, match="went back to the checkpoint of step 4"):
        run = train(config, tmp_path / "run", progress=False, task=_poisoned({2, 3, 4}))
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    skipped = [r["step"] for r in records if "skipped" in r]
    assert skipped == [3, 4, 5] and [r["skipped_total"] for r in records if "skipped" in r] == [
        1, 2, 3
    ]  # fmt: skip
    assert "non-finite loss terms" in records[2]["skipped"]
    (back,) = [r["recovered"] for r in records if "recovered" in r]
    assert back == {"from_step": 4, "lr_scale": 0.5}
    lrs = {r["step"]: r["lr"] for r in records if "lr" in r}
    assert lrs[6] == pytest.approx(learning_rate("iicnet", 1e-3, 5, 9) / 2)  # halved from then on
    assert lrs[2] == pytest.approx(learning_rate("iicnet", 1e-3, 1, 9))
    weights = load_file(str(run / "checkpoints" / "step-00000009" / "model.safetensors"))
    assert all(torch.isfinite(v).all() for v in weights.values())
    state = torch.load(run / "checkpoints" / "step-00000009" / "train_state.pt", weights_only=True)
    assert float(state["lr_scale"]) == 0.5  # a resume keeps it

    with pytest.warns(RuntimeWarning), pytest.raises(FloatingPointError, match="halved 3 times"):
        longer = attrs.evolve(config, steps=20)
        train(longer, tmp_path / "diverged", progress=False, task=_poisoned(set(range(2, 99))))


def test_invcompress_schedule_divides_by_ten_at_75_and_92_percent():
    rates = [learning_rate("invcompress", 1.0, step, 100) for step in range(100)]
    assert rates[74] == 1.0 and rates[91] == pytest.approx(0.1)
    assert rates[75] == pytest.approx(0.1) and rates[92] == pytest.approx(0.01)
    # a budgeted run follows its share of the budget
    assert learning_rate("invcompress", 1.0, 0, 100, progress=0.8) == pytest.approx(0.1)


def test_a_task_fits_its_start_to_the_runs_first_training_samples(tmp_path):
    from invblocks.ric.task import FIT_SAMPLES
    from invblocks.trainer import train

    task = invblocks.get_task("video")
    calls, built = [], []

    def fit(x, reference, settings):
        calls.append((x.clone(), reference, dict(settings)))
        return {"clamp": 0.5, "width": 8}

    def network(n, /, **kw):
        built.append({k: v for k, v in kw.items() if k != "generator"})
        return task.network(n, **kw)

    loads = []

    def default_data():
        loads.append(1)
        return task.default_data()

    custom = attrs.evolve(task, fit_network=fit, network=network, default_data=default_data)
    config = TrainConfig(
        task="video", steps=2, crop=16, batch=1, n_inputs=3, val_every=100, ckpt_every=1,
        device="cpu", network={"blocks": 1, "width": 4},
    )  # fmt: skip
    train(config, tmp_path / "run", progress=False, task=custom)
    (x, reference, settings), *more = calls
    assert len(loads) == 1  # the fit and the training read the data once
    assert not more and reference is None
    assert settings == {"blocks": 1, "width": 4, "growth": 16}  # the recipe's and the run's
    assert x.shape == (FIT_SAMPLES, 9, 16, 16)
    data = custom.dataset(
        custom.default_data(), "train", length=FIT_SAMPLES, n_inputs=3, crop=16,
        seed=config.seed, options=resolved(config, custom).sampling,
    )  # fmt: skip
    assert torch.equal(x[5], data[5])  # the samples the run's first steps train on
    assert built[0] == {"blocks": 1, "width": 4, "growth": 16, "clamp": 0.5}  # the run's win
    # a resume fits again (the same start), and a run from a model folder does not fit
    train(attrs.evolve(config, steps=3), tmp_path / "run", resume=True, progress=False, task=custom)
    assert len(calls) == 2 and torch.equal(calls[1][0], x)
    train(attrs.evolve(config, init=str(tmp_path / "run"), network={}), tmp_path / "next",
          progress=False, task=custom)  # fmt: skip
    assert len(calls) == 2
