"""Training within a budget, and evaluation on whole held-out images against the baseline."""

import json
import math

import pytest
import torch

import invblocks
from invblocks.cli import main
from invblocks.config import TrainConfig
from invblocks.io import json_safe
from invblocks.model import Model, evaluate_images
from invblocks.ric import Channel, Payload, Quantizer
from invblocks.sampling import SampleRequest
from invblocks.trainer import learning_rate, train

TINY = {"blocks": 1, "width": 4, "growth": 4}


def tiny(**kw):
    base = dict(
        task="video", n_inputs=3, crop=16, batch=1, network=TINY, val_every=1000,
        ckpt_every=1000, val_samples=1, seed=1, device="cpu",
    )  # fmt: skip
    base.update(kw)
    return TrainConfig(**base)


def steps_of(run):
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if '"total"' in line]


def test_a_cpu_budget_ends_the_run_and_drives_the_schedule(tmp_path):
    calls = []
    run = train(
        tiny(steps=100_000, cpu_budget=3.0, optimizer="iicnet", lr=2e-4),
        tmp_path / "run",
        progress=False,
        on_step=lambda step, record, net: calls.append((step, record["cpu_s"], net.training)),
    )
    records = steps_of(run)
    cpu = [r["cpu_s"] for r in records]
    assert cpu == sorted(cpu) and cpu[-1] >= 3.0 and cpu[-2] < 3.0  # stops right after it
    assert len(records) < 100_000 and [c[0] for c in calls] == [r["step"] for r in records]
    assert all(training for *_, training in calls)
    # the learning rate halves at 20, 40, 60 and 80% of the budget used before each step
    for before, r in zip([0.0, *cpu], records, strict=False):
        assert r["lr"] == pytest.approx(learning_rate("iicnet", 2e-4, 0, 1, before / 3.0))
    assert records[-1]["lr"] < records[0]["lr"]
    final = json.loads((run / "checkpoints" / "LATEST").read_text() and "{}")
    assert final == {} and (run / "report.html").is_file()  # the end: checkpoint and report


def test_the_schedule_over_progress_matches_the_schedule_over_steps():
    for kind in ("iicnet", "win"):
        for step in range(0, 100, 7):
            assert learning_rate(kind, 1e-3, step, 100) == pytest.approx(
                learning_rate(kind, 1e-3, step, 100, progress=step / 100)
            )


def test_a_budgeted_run_resumes_with_what_it_has_left(tmp_path):
    first = train(tiny(steps=3, cpu_budget=1000.0, ckpt_every=3), tmp_path / "run", progress=False)
    used = steps_of(first)[-1]["cpu_s"]
    longer = tiny(steps=6, cpu_budget=1000.0, ckpt_every=3)
    train(longer, tmp_path / "run", resume=True, progress=False)
    records = steps_of(tmp_path / "run")
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5, 6]
    assert records[3]["cpu_s"] > used  # counted on from the checkpoint's total


def test_budgets_are_checked_like_every_field():
    with pytest.raises(TypeError, match="cpu_budget: expected a finite number"):
        TrainConfig(task="video", cpu_budget="long")
    with pytest.raises(ValueError, match="time_budget"):
        TrainConfig(task="video", time_budget=0)


@pytest.mark.parametrize("name", ["video", "mononizing", "hiding", "grayscale", "rescaling-x2",
                                  "dual-view-x4", "composition"])  # fmt: skip
def test_whole_held_out_items_are_evaluated_against_the_trivial_baseline(name):
    task = invblocks.get_task(name)
    source = task.default_data()
    n = task.default_inputs
    request = SampleRequest(
        items=source.val,
        index=0,
        n_inputs=n,
        crop=None,
        generator=torch.Generator().manual_seed(0),
        train=False,
    )
    images = task.sample(request)
    assert len(images) == n and len({tuple(im.shape) for im in images}) == 1
    assert min(images[0].shape[-2:]) > 64  # whole items, not training crops
    net = task.build_network(n, **TINY)
    metrics = evaluate_images(Model(task, net, n, {}, device="cpu"), source.val, limit=1)
    assert metrics["items"] == 1 and math.isfinite(metrics["restored_psnr"])
    assert math.isfinite(metrics["baseline_psnr"]) and metrics["embedding_psnr"] > 5
    if n > 1:  # the reference input restored by the baseline is exact; the others are not
        assert metrics["baseline_psnr_no_ref"] < metrics["baseline_psnr"]


class Gray(Channel):
    """A channel that delivers mid-gray, whatever was sent."""

    def encode(self, e):
        return [Payload(b"", tuple(item.shape)) for item in e]

    def decode(self, payloads, dtype=torch.float32):
        return torch.full((len(payloads), *payloads[0].shape), 0.5, dtype=dtype)


@pytest.mark.parametrize("name", ["video", "rescaling-x2"])
def test_the_baseline_from_the_received_file_is_what_the_transport_leaves(name):
    task = invblocks.get_task(name)
    source, n = task.default_data(), task.default_inputs
    net = task.build_network(n, **{**task.train.network, **TINY})  # an image-like embedding
    model = Model(task, net, n, {}, device="cpu")
    plain = evaluate_images(model, source.val, limit=1, ssim_too=False)
    assert not any(k.startswith("received_baseline") for k in plain)  # nothing was sent
    lossless = Quantizer(net.channel.dims_in)  # another channel object: what it sends arrives
    same = evaluate_images(model, source.val, limit=1, channel=lossless, ssim_too=False)
    # the embedding is not the reference, so its trivial restoration is another one
    assert same["received_baseline_psnr"] != same["baseline_psnr"]
    gray = evaluate_images(model, source.val, limit=1, channel=Gray(), ssim_too=False)
    assert gray["received_baseline_psnr"] < same["received_baseline_psnr"] - 3
    assert gray["restored_psnr"] != same["restored_psnr"]


def test_the_trivial_restorations():
    video = invblocks.get_task("video")
    x = torch.rand(1, 15, 8, 8)
    trivial = video.trivial_restoration(x, 5)
    assert all(torch.equal(f, x[:, :3]) for f in trivial.split(3, 1))  # the middle frame
    gray = invblocks.get_task("grayscale")
    t = gray.trivial_restoration(x[:, :3], 1)
    assert torch.allclose(t, gray.reference(x[:, :3], 1).expand(-1, 3, -1, -1))
    sr = invblocks.get_task("rescaling-x2")
    assert sr.trivial_restoration(x[:, :3], 1).shape == (1, 3, 8, 8)
    dual = invblocks.get_task("dual-view-x2")
    views = dual.trivial_restoration(torch.rand(1, 6, 8, 8), 2)
    assert views.shape == (1, 6, 8, 8)


def test_eval_reports_whole_images_in_standard_json(tmp_path, capsys):
    run = train(tiny(steps=1), tmp_path / "run", progress=False)
    capsys.readouterr()
    assert main(["eval", "--model", str(run), "--samples", "1", "--device", "cpu"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["items"] == 1 and report["restored_psnr_no_ref"] > 0
    assert "baseline_psnr_no_ref" in report and report["train_crop"] == 16
    assert main(["eval", "--model", str(run), "--crop", "16", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "NaN" not in out and json.loads(out)["embedding_psnr"] > 0
    assert main(["eval", "--model", str(run), "--data", str(tmp_path), "--device", "cpu"]) == 2
    capsys.readouterr()
    argv = ["eval", "--model", str(run), "--device", "cpu", "--samples", "all"]
    assert main([*argv, "--space", "y", "--shave", "4"]) == 0
    luma = json.loads(capsys.readouterr().out)
    assert main(argv) == 0
    rgb = json.loads(capsys.readouterr().out)
    assert luma["items"] == rgb["items"] == 1  # all: the default data's one held-out clip
    assert luma["restored_psnr"] != rgb["restored_psnr"] and luma["restored_psnr"] > 0


def test_json_safe():
    assert json_safe({"a": [1.0, float("nan")], "b": float("inf"), "c": "x"}) == {
        "a": [1.0, None],
        "b": None,
        "c": "x",
    }
