"""The trainer tells the truth about its model: the margin over the trivial answer and the
embedding's quality at every validation, the best-scored checkpoint kept, one closing line;
a budget alone sets a run's length."""

import json
import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import invblocks.config
from invblocks.checkpoint import BEST, load_checkpoint, save_model
from invblocks.cli import main
from invblocks.config import TrainConfig
from invblocks.plugins import get_task
from invblocks.ric import EMBEDDING_TARGET, Verdict, margin
from invblocks.testing import perturb_parameters
from invblocks.trainer import summary, train

TINY = {"blocks": 1, "width": 4, "growth": 4}


def tiny(**kw):
    base = dict(
        task="video", n_inputs=3, crop=16, batch=1, network=TINY, val_every=1000,
        ckpt_every=1000, val_samples=1, seed=1, device="cpu",
    )  # fmt: skip
    base.update(kw)
    return TrainConfig(**base)


def records(run, key):
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if key in r]


# -- a budget is the run's length ---------------------------------------------------------


def test_steps_default_to_1000_without_a_budget_and_to_no_bound_with_one():
    assert TrainConfig(task="video").total_steps == invblocks.config.DEFAULT_STEPS == 1000
    for budget in ({"cpu_budget": 600.0}, {"time_budget": 60.0}):
        config = TrainConfig(task="video", **budget)
        assert config.steps is None
        assert config.total_steps == invblocks.config.UNBOUNDED_STEPS > 10**9
        assert TrainConfig(task="video", steps=7, **budget).total_steps == 7  # given: a bound


def test_a_budget_alone_trains_past_the_default_step_count(monkeypatch, tmp_path):
    monkeypatch.setattr(invblocks.config, "DEFAULT_STEPS", 3)
    plain = train(tiny(), tmp_path / "plain", progress=False)
    assert [r["step"] for r in records(plain, "total")] == [1, 2, 3]
    budgeted = train(tiny(cpu_budget=1.5), tmp_path / "budget", progress=False)
    steps = records(budgeted, "total")
    assert len(steps) > 3 and steps[-1]["cpu_s"] >= 1.5 > steps[-2]["cpu_s"]
    bounded = train(tiny(steps=2, cpu_budget=1000.0), tmp_path / "bounded", progress=False)
    assert [r["step"] for r in records(bounded, "total")] == [1, 2]


# -- the verdict ----------------------------------------------------------------------------

dbs = st.floats(-20, 60, allow_nan=False)


@given(restored=dbs, baseline=dbs, embedding=st.none() | dbs, target=st.floats(0, 3))
def test_the_score_is_non_negative_exactly_when_both_targets_are_met(
    restored, baseline, embedding, target
):
    metrics = {"restored_psnr": restored, "baseline_psnr": baseline}
    if embedding is not None:
        metrics["embedding_psnr"] = embedding
    verdict = Verdict.of(metrics, margin_target=target)
    assert verdict.margin == pytest.approx(restored - baseline)
    assert (verdict.score >= 0) == verdict.ok
    assert verdict.ok == (
        restored - baseline >= target and (embedding is None or embedding >= EMBEDDING_TARGET)
    )
    assert bool(verdict.advice()) != verdict.ok
    side = "above" if restored >= baseline else "below"
    assert f"dB {side} the trivial answer" in verdict.line()
    assert ("embedding" in verdict.line()) == (embedding is not None)


def test_the_margin_is_over_the_images_the_reference_is_not_made_from():
    metrics = {
        "restored_psnr": 40.0, "baseline_psnr": 35.0,  # the reference image pulls both up
        "restored_psnr_no_ref": 30.0, "baseline_psnr_no_ref": 31.5,
    }  # fmt: skip
    assert margin(metrics) == pytest.approx(-1.5)
    assert margin({"restored_psnr": 30.0}) is None
    assert Verdict.of({"restored_psnr": 30.0}).score == 30.0  # no baseline, no reference
    assert margin({"restored_psnr": 30.0, "baseline_psnr": math.nan}) is None


def test_a_task_sets_its_own_targets():
    mono = get_task("mononizing")
    verdict = mono.verdict(
        {"restored_psnr_no_ref": 30.5, "baseline_psnr_no_ref": 30.0, "embedding_psnr": 40.0}
    )
    assert verdict.margin_target == mono.margin_target
    assert verdict.ok == (0.5 >= mono.margin_target)


# -- validation in the trainer --------------------------------------------------------------


def test_every_validation_logs_the_margin_and_the_best_checkpoint_is_kept(tmp_path):
    run = train(tiny(steps=5, val_every=1, lr=5e-3), tmp_path / "run", progress=False)
    validations = records(run, "validation")
    assert [r["step"] for r in validations] == [1, 2, 3, 4, 5]
    task = get_task("video")
    for r in validations:
        m = r["validation"]
        assert m["margin"] == pytest.approx(m["restored_psnr_no_ref"] - m["baseline_psnr_no_ref"])
        assert m["score"] == pytest.approx(task.verdict(m).score)
    best = max(validations, key=lambda r: r["validation"]["score"])
    meta, _, folder = load_checkpoint(run / "checkpoints" / BEST)
    assert folder.name == BEST and meta["step"] == best["step"]
    assert meta["validation"]["score"] == pytest.approx(best["validation"]["score"])
    verdict, line = summary(run)
    last = validations[-1]["validation"]
    assert verdict is not None and verdict.margin == pytest.approx(last["margin"])
    assert verdict.line() in line and line.startswith("warning: ") != verdict.ok
    earlier = best["validation"]["score"] > last["score"]
    assert (f"step {best['step']} scored higher" in line) == earlier


def test_the_command_line_warns_when_the_model_is_worse_than_the_trivial_answer(tmp_path, capsys):
    task = get_task("video")
    net = task.build_network(3, generator=torch.Generator().manual_seed(0), **TINY)
    perturb_parameters(net, 3.0, torch.Generator().manual_seed(1))  # a network of noise
    meta = {"task": "video", "n_inputs": 3, "network": net.get_config()}
    save_model(tmp_path / "noise", net=net, meta=meta)
    argv = ["train", "--task", "video", "--out", str(tmp_path / "run"), "--quiet"]
    for setting in ("steps=1", "crop=16", "batch=1", "device=cpu", "n_inputs=3", "lr=1e-12",
                    f"init={tmp_path / 'noise'}"):  # fmt: skip
        argv += ["--set", setting]
    assert main(argv) == 0
    captured = capsys.readouterr()
    warnings = [line for line in captured.err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1, captured.err
    assert "below the trivial answer on the validation split; embedding" in warnings[0]
    assert "--set cpu_budget" in warnings[0] and "losses.embedding" in warnings[0]
    assert "warning" not in captured.out


def _set_best(run, step, score):
    path = run / "checkpoints" / BEST / "config.json"
    config = json.loads(path.read_text())
    config["step"], config["validation"]["score"] = step, score
    path.write_text(json.dumps(config))


def test_a_resumed_run_keeps_a_best_from_before_its_checkpoint_and_drops_one_from_after(
    tmp_path,
):
    config = tiny(steps=2, val_every=1, ckpt_every=2, lr=5e-3)
    kept = train(config, tmp_path / "kept", progress=False)
    _set_best(kept, 1, 1e9)  # unbeatable, from before the checkpoint at step 2: kept
    more = tiny(steps=4, val_every=1, ckpt_every=2, lr=5e-3)
    train(more, kept, resume=True, progress=False)
    meta = load_checkpoint(kept / "checkpoints" / BEST)[0]
    assert meta["step"] == 1 and meta["validation"]["score"] == 1e9

    dropped = train(config, tmp_path / "dropped", progress=False)
    _set_best(dropped, 3, 1e9)  # as if from a validation after the checkpoint, then a kill
    train(more, dropped, resume=True, progress=False)
    meta = load_checkpoint(dropped / "checkpoints" / BEST)[0]
    later = [r for r in records(dropped, "validation") if r["step"] > 2]
    best = max(later, key=lambda r: r["validation"]["score"])
    assert meta["step"] == best["step"] and meta["validation"]["score"] == pytest.approx(
        best["validation"]["score"]
    )


def test_a_best_network_moved_aside_by_a_kill_is_put_back_on_resume(tmp_path):
    run = train(tiny(steps=2, val_every=1, ckpt_every=2), tmp_path / "run", progress=False)
    root = run / "checkpoints"
    _set_best(run, 2, 1e9)  # unbeatable: a new best cannot hide a lost one
    aside = root / f".{BEST}.old.x1y2"
    aside.mkdir()
    (root / BEST).rename(aside / BEST)  # killed between the two renames
    train(tiny(steps=3, val_every=1, ckpt_every=2), run, resume=True, progress=False)
    meta = load_checkpoint(root / BEST)[0]
    assert meta["step"] == 2 and meta["validation"]["score"] == 1e9 and not aside.exists()
