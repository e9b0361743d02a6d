"""The benchmark scripts run end to end at toy sizes and their side-by-side variants agree.

No timing is asserted: only that each script writes its record and that variants computing
the same function report the same loss.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_module(name, *args):
    proc = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{name}", *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def test_train_step_same_function_variants_agree(tmp_path):
    out = tmp_path / "st01.json"
    proc = run_module(
        "train_step",
        "--variants", "invblocks", "channels_last", "freia", "cli_split_all", "reference",
        "--repeats", 1, "--steps", 1, "--size", 16, "--out", out,
    )  # fmt: skip
    assert "variant 'reference' left out: no --reference-code given" in proc.stderr
    record = json.loads(out.read_text())
    summary = record["summary"]
    assert set(summary) == {"invblocks", "channels_last", "freia", "cli_split_all"}
    for row in summary.values():
        assert "error" not in row, row
        # same function, same weights, same noise: the loss after two Adam updates agrees
        assert row["last_loss_rel_diff"] < 1e-5, row
        assert row["time_ratio"] > 0 and row["memory_ratio"] > 0
    first = [runs[0]["first_loss"] for runs in record["runs"].values() if runs]
    assert len(first) == 4 and max(first) - min(first) <= 1e-5 * max(first), first


def test_train_step_win_memory_saving_same_loss(tmp_path):
    out = tmp_path / "win.json"
    run_module(
        "train_step",
        "--network", "win_hiding", "--variants", "invblocks", "memory_saving",
        "--repeats", 1, "--steps", 1, "--size", 16, "--out", out,
    )  # fmt: skip
    summary = json.loads(out.read_text())["summary"]
    assert summary["memory_saving"]["last_loss_rel_diff"] < 1e-5, summary


def test_train_step_reference_variant_needs_a_checkout(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.train_step", "--child", "reference", "--size", "16"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0
    assert "needs --network st01 and --reference-code PATH" in proc.stderr


def test_memory_and_roundtrip_depth(tmp_path):
    run_module("memory_depth", "--depths", 2, 4, "--repeats", 1, "--out", tmp_path / "m.json")
    rows = json.loads((tmp_path / "m.json").read_text())["rows"]
    assert [r["depth"] for r in rows] == [2, 4]
    assert rows[0]["saved_bytes_memory_saving"] == rows[1]["saved_bytes_memory_saving"]
    assert rows[1]["saved_bytes_plain"] > 1.9 * rows[0]["saved_bytes_plain"]
    assert (tmp_path / "m.png").stat().st_size > 0

    run_module("roundtrip_depth", "--depths", 1, 3, "--out", tmp_path / "r.json")
    rows = json.loads((tmp_path / "r.json").read_text())
    assert [r["depth"] for r in rows] == [1, 3]
    assert all(r["float32_max"] < 1e-5 and r["float64_max"] < 1e-12 for r in rows)


def test_embed_throughput_toy_clip(tmp_path):
    out = tmp_path / "e.json"
    run_module(
        "embed_throughput",
        "--width", 32, "--height", 24, "--variants", "contiguous", "channels_last", "--out", out,
    )  # fmt: skip
    record = json.loads(out.read_text())
    summary = record["summary"]
    assert set(summary) == {"contiguous", "channels_last"}
    assert all(row["embed_s"] > 0 and row["restore_s"] > 0 for row in summary.values())
    # the record names the CPU it ran on (CPU-seconds are compared only on the same one)
    machine = record["machine"]
    assert machine["cpus"] >= 1 and machine["threads"] >= 1 and machine["torch"]
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists() and "cpu family" in cpuinfo.read_text():
        assert machine["cpu_family"].isdigit() and machine["model"].isdigit()


def test_train_step_ratios_are_to_invblocks_or_else_the_first_variant():
    from benchmarks.train_step import summarise

    def run(step_s, mb, loss):
        return {"step_s": step_s, "peak_rss_mb": mb, "first_loss": loss, "last_loss": loss}

    rounds = {
        "cli": [run(10.0, 100.0, 5.0), run(12.0, 110.0, 5.0)],
        "reference": [run(13.0, 120.0, 5.0), run(15.0, 132.0, 5.0)],
    }
    summary = summarise(rounds)
    assert summary["cli"]["time_ratio"] == 1.0
    assert summary["reference"]["time_ratio"] == pytest.approx((1.3 + 1.25) / 2)  # per round
    assert summary["reference"]["memory_ratio"] == pytest.approx(1.2)
    rounds["invblocks"] = [run(20.0, 100.0, 5.0), run(24.0, 100.0, 5.0)]
    assert summarise(rounds)["cli"]["time_ratio"] == pytest.approx(0.5)


def test_dense_block_paths_compute_the_same_function(tmp_path):
    out = tmp_path / "d.json"
    run_module(
        "dense_block", "--size", 12, "--repeats", 1, "--dtype", "float64", "--out", out
    )  # fmt: skip
    rows = json.loads(out.read_text())["rows"]
    from benchmarks.dense_block import BLOCKS, PATHS

    assert {(r["block"], r["path"]) for r in rows} == {(b, p) for b in BLOCKS for p in PATHS}
    for r in rows:
        assert r["output_rel_diff"] < 1e-12 and r["input_grad_rel_diff"] < 1e-12, r
        assert r["output_rel_err_float64"] < 1e-12 and r["input_grad_rel_err_float64"] < 1e-12
        assert r["time_ratio"] > 0
    for name in BLOCKS:
        saved = {r["path"]: r["saved_bytes"] for r in rows if r["block"] == name}
        # what each path keeps for backward follows from its structure, exactly
        assert saved["concat"] == saved["concat_cl"]
        assert saved["compact"] == saved["compact_cl"] < saved["split_all_cl"]
        assert saved["split_all_cl"] < saved["split_tail_cl"] < saved["concat"]


VERBOSE_LINES = [
    "onednn_verbose,v1,info,cpu,runtime:OpenMP,nthr:2",
    "onednn_verbose,v1,primitive,exec,cpu,convolution,brg_conv_fwd:avx512_core,forward_training,"
    "src:f32::blocked:acdb::f0 wei:f32:a:blocked:Acdb32a::f0,attr-scratchpad:user,"
    "alg:convolution_direct,mb1_ic35oc32_ih144oh144kh3sh1dh0ph1_iw144ow144kw3sw1dw0pw1,3.5",
    "onednn_verbose,exec,cpu,convolution,jit:avx512_core,backward_weights,src:f32::blocked:acdb,"
    ",alg:convolution_direct,mb2_ic64oc3_ih10oh10kh3sh1dh0ph1_iw12ow12kw3sw1dw0pw1,0.5",
    "onednn_verbose,v1,primitive,exec,cpu,reorder,jit:uni,undef,src:f32::blocked:abcd::f0,"
    "attr-scratchpad:user,,32x35x3x3,0.25",
    "onednn_verbose,v1,primitive,create:cache_miss,cpu,convolution,jit,forward_training,,,"
    "mb1_ic3oc3_ih4oh4kh3sh1dh0ph1_iw4ow4kw3sw1dw0pw1,0.1",
]


def test_step_profile_reads_onednn_verbose_lines():
    from benchmarks.step_profile import parse_verbose, summarise_convolutions

    rows = parse_verbose(VERBOSE_LINES)
    assert [(r["kind"], r["direction"]) for r in rows] == [
        ("convolution", "forward_training"),
        ("convolution", "backward_weights"),
        ("reorder", "undef"),
    ]  # info and create lines are not executions
    assert rows[0]["macs"] == 35 * 32 * 9 * 144 * 144
    assert rows[1]["macs"] == 2 * 64 * 3 * 9 * 10 * 12  # older layout, non-square output
    summary = summarise_convolutions(rows)
    assert summary["conv_ms"] == 4.0 and summary["other_primitives_ms"] == 0.25
    forward = summary["directions"]["forward_training"]
    assert forward["calls"] == 1
    assert forward["gmac_s"] == pytest.approx(rows[0]["macs"] / 3.5e-3 / 1e9)
    assert set(summary["groups"]) == {"forward_training/odd", "backward_weights/narrow"}
    assert [s["ms"] for s in summary["shapes"]] == [3.5, 0.5]


def test_step_profile_toy_run(tmp_path):
    out = tmp_path / "p.json"
    proc = run_module(
        "step_profile", "--variants", "cli", "reference",
        "--repeats", 1, "--steps", 1, "--size", 16, "--out", out,
    )  # fmt: skip
    assert "variant 'reference' left out" in proc.stderr
    summary = json.loads(out.read_text())["summary"]
    assert set(summary) == {"cli", "machine"}
    cli = summary["cli"]
    assert cli["step_s"] > 0 and 0 < cli["conv_share"] <= 1 and cli["conv_calls"] > 0
    # every convolution oneDNN ran was seen, in all three directions
    assert cli["forward_training_ms"] > 0 and cli["backward_weights_ms"] > 0
    assert 0 < cli["onednn_coverage"] <= 1
    machine = summary["machine"]
    assert machine["thread_scaling"] > 0 and machine["two_subnets_concurrent_over_sequential"] > 0


def test_step_profile_ceiling_is_per_round_and_needs_full_onednn_coverage():
    from benchmarks.step_profile import summarise

    def run(step_s, conv_ms, coverage=1.0):
        return {
            "step_s": step_s,
            "conv_ms": conv_ms,
            "onednn_coverage": coverage,
            "directions": {"forward_training": {"ms": conv_ms / 4, "gmac_s": 80.0}},
        }

    runs = {
        "cli": [run(10.0, 8000.0), run(12.0, 9000.0), run(9.0, 7000.0, coverage=0.5)],
        "reference": [run(12.0, 9000.0), run(18.0, 9500.0), run(11.0, 8000.0)],
    }
    summary = summarise(runs)
    # reference step over cli's oneDNN time of the same round: 12/8 and 18/9; the third
    # round is left out because oneDNN did not run all of cli's convolutions there
    assert summary["reference"]["ceiling"] == pytest.approx((1.5 + 2.0) / 2)
    assert summary["cli"]["ceiling"] == pytest.approx((10 / 8 + 12 / 9) / 2)
    assert summary["reference"]["step_s"] == 12.0
    assert summary["reference"]["forward_training_ms"] == 2250.0
    runs["cli"] = [run(9.0, 7000.0, coverage=0.5)]
    assert "ceiling" not in summarise(runs)["reference"]


def test_data_parallel_toy_run(tmp_path):
    out = tmp_path / "dp.json"
    proc = run_module(
        "data_parallel", "--task", "hiding", "--crop", 32, "--steps", 2, "--repeats", 1,
        "--set", 'network={"blocks": 1, "width": 4}', "--out", out,
    )  # fmt: skip
    assert "2 processes, each batch 1 x" in proc.stdout
    record = json.loads(out.read_text())
    for setup in ("single", "ddp"):
        (run,) = record["runs"][setup]
        assert "error" not in run, run
        assert len(run["steps_s"]) == 2 and run["step_s"] == run["steps_s"][1] > 0
    summary = record["summary"]
    ratio = record["runs"]["ddp"][0]["step_s"] / record["runs"]["single"][0]["step_s"]
    assert summary["ddp"]["time_ratio"] == pytest.approx(ratio)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--batch", "3", "--processes", "2"], "received --batch 3 and --processes 2"),
        (["--set", "batch=4", "--set", "lr=0.1"], "--set batch: the benchmark sets these itself"),
    ],
)
def test_data_parallel_refuses_bad_arguments(args, message):
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.data_parallel", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert message in proc.stderr


def test_data_parallel_summary_skips_failed_rounds():
    from benchmarks.data_parallel import summarise

    runs = {
        "single": [{"step_s": 2.0}, {"step_s": 4.0}, {"error": ["boom"]}],
        "ddp": [{"step_s": 1.0}, {"error": ["out of memory"]}, {"step_s": 1.0}],
    }
    summary = summarise(runs)
    assert summary["ddp"] == {"step_s": 1.0, "time_ratio": 0.5}
    assert summary["single"]["step_s"] == 2.0
    failed = {"single": [{"error": ["x"]}], "ddp": [{"step_s": 1.0}]}
    assert summarise(failed)["ddp"] == {"error": ["x"]}


def test_time_to_quality_runs_at_toy_size(tmp_path):
    tiny = ["network.blocks=1", "network.width=4", "network.growth=4", "crop=16", "batch=1"]
    sets = [a for s in tiny for r in ("fast", "default") for a in ("--set", f"{r}:{s}")]
    run_module(
        "time_to_quality", "--task", "video", "--budget", 2, "--recipes", "fast,default",
        "--points", 2, "--items", 1, "--out", tmp_path, *sets,
    )  # fmt: skip
    record = json.loads((tmp_path / "video" / "results.json").read_text())
    assert set(record["curves"]) == {"fast", "default"}
    for curve in record["curves"].values():
        # after the first step, then at the budget's marks: CPU time grows, budget is kept
        assert [p["cpu_s"] for p in curve] == sorted(p["cpu_s"] for p in curve)
        assert curve[-1]["png"]["restored_psnr_no_ref"] > 0 and len(curve) >= 2
        assert curve[-1]["png"]["baseline_psnr_no_ref"] > 0
    assert "| fast |" in (tmp_path / "video" / "table.md").read_text()
    assert (tmp_path / "video" / "curves.png").stat().st_size > 0


def test_jpeg_robustness_runs_at_toy_size_and_fine_tunes_within_the_budget(tmp_path):
    run_module(
        "jpeg_robustness", "--task", "video", "--recipe", "toy", "--budget", 2,
        "--finetune", 0.5, "--qualities", "90,50", "--items", 1, "--out", tmp_path,
    )  # fmt: skip
    out = tmp_path / "video"
    record = json.loads((out / "results.json").read_text())
    plain, jpeg = record["results"]["plain"], record["results"]["jpeg"]
    assert set(plain) >= {"png", "jpeg90", "jpeg50", "step", "cpu_s"} and set(jpeg) == set(plain)
    # a JPEG at quality 50 moves the received embedding further from the sent one than 90
    assert plain["jpeg50"]["received_psnr"] < plain["jpeg90"]["received_psnr"]
    assert "| jpeg90 |" in (out / "table.md").read_text()
    # the trivial restoration from what a receiver holds: worse through a harder JPEG
    worse = plain["jpeg50"]["received_baseline_psnr_no_ref"]
    assert worse < plain["jpeg90"]["received_baseline_psnr_no_ref"]
    assert "received_baseline_psnr" not in plain["png"]
    # the JPEG variant: the plain recipe for half the budget, then fine-tuned from it
    start = json.loads((out / "jpeg-start" / "spec.json").read_text())
    tuned = json.loads((out / "jpeg" / "spec.json").read_text())
    assert start["budget"] == tuned["budget"] == 1.0  # half each: the plain run's 2 in all
    assert tuned["fields"]["init"] == start["run"] and "network" not in tuned["fields"]
    assert tuned["fields"]["channel"]["type"] == "jpeg"


def test_budget_table_judges_each_task_against_its_targets(tmp_path):
    from benchmarks.budget_table import rows, table

    def write(task, restored, baseline, embedding):
        summary = {
            "final": restored,
            "final_cpu_s": 600.0,
            "steps": 10,
            "baseline": baseline,
            "embedding_psnr": embedding,
        }
        result = {
            "key": "restored_psnr",
            "summary": {"default": summary},
            "curves": {"default": [{"png": {"items": 2.0}}]},
        }
        (tmp_path / task).mkdir()
        (tmp_path / task / "results.json").write_text(json.dumps(result))

    write("a", 31.0, 29.5, 30.5)  # met
    write("b", 30.0, 29.5, 35.0)  # margin too small
    write("c", 35.0, 29.5, 29.0)  # embedding too far from the reference
    found = rows([tmp_path], "default")
    assert [r["task"] for r in found] == ["a", "b", "c"]
    lines = table(found).splitlines()[2:]
    assert [line.rsplit("|", 2)[1].strip() for line in lines] == ["met", "not met", "not met"]
    assert "+1.50" in lines[0] and rows([tmp_path], "reference") == []


def test_large_images_runs_at_toy_size_and_tiles(tmp_path):
    out = tmp_path / "large.json"
    run_module("large_images", "--cases", "grayscale", "--photo-size", "160x120", "--blocks", 2,
               "--max-memory", "8M", "--out", out)  # fmt: skip
    ((row,),) = json.loads(out.read_text())["runs"].values()
    # embed and restore tiled, each node: the relation module, 2 couplings, the channel squeeze
    assert row["size"] == "160x120" and row["tiled_node_passes"] == 2 * 4
    assert row["tiles"] > row["tiled_node_passes"]
    assert row["peak_rss_gib"] > 0 and row["embed_s"] > 0


def test_steganalysis_runs_at_toy_size(tmp_path):
    out = tmp_path / "steg"
    proc = run_module("steganalysis", "--budget", 2, "--recipes", "residue", "--size", 192,
                      "--out", out)  # fmt: skip
    record = json.loads((out / "results.json").read_text())
    assert record["pairs"] >= 15 and "| residue |" in proc.stdout
    calibration = record["results"]["LSB replacement, 10% (calibration)"]["detectors"]
    assert calibration["sample_pairs"][0] > 0.75  # the detectors see what they were made for
    residue = record["results"]["residue"]
    assert set(residue["detectors"]) == {"chi_square", "sample_pairs", "rs_analysis",
                                         "weighted_stego", "spam_logistic"}  # fmt: skip
    assert residue["stego_psnr"] > 25


def test_precision_compares_bfloat16_with_float32_on_a_trained_model(tmp_path):
    out = tmp_path / "precision.json"
    model = ROOT / "tests" / "fixtures" / "models" / "video-jpeg-66cbfdb"
    run_module("precision", "--model", model, "--frames", 3, "--out", out)
    rows = json.loads(out.read_text())["summary"]
    assert set(rows) == {"float32", "bfloat16"}
    # a trained model: bfloat16 subnets stay near float32
    gap = rows["bfloat16"]["restored_psnr_no_ref"] - rows["float32"]["restored_psnr_no_ref"]
    assert abs(gap) < 0.05
    assert 0.9 < rows["bfloat16"]["same_8bit"] < 1.0 and rows["bfloat16"]["inverse_psnr"] > 50


def test_rate_distortion_bd_rate_table_and_plot(tmp_path):
    from benchmarks.rate_distortion import bd_rates, plot, write_table

    psnr = [26.0, 28.0, 30.0, 32.0, 34.0]
    anchor = [{"setting": i, "bpp": 0.1 * 1.5**i, "psnr": p} for i, p in enumerate(psnr)]
    double = [{"quality": i, "bpp": 2 * a["bpp"], "psnr": a["psnr"]} for i, a in enumerate(anchor)]
    half = [{"quality": i, "bpp": a["bpp"] / 2, "psnr": a["psnr"]} for i, a in enumerate(anchor)]
    rates = bd_rates(double[1:4], {"anchor": anchor})
    assert rates["anchor"] == pytest.approx(100.0, abs=0.5)  # twice the bits at equal PSNR
    assert bd_rates(half[1:4], {"anchor": anchor})["anchor"] == pytest.approx(-50.0, abs=0.5)
    backwards = bd_rates(double[3:0:-1], {"anchor": anchor})["anchor"]
    assert backwards == pytest.approx(rates["anchor"])  # in any order
    far = [{"quality": 0, "bpp": 1.0, "psnr": 60.0}, {"quality": 1, "bpp": 2.0, "psnr": 62.0}]
    assert bd_rates(far, {"anchor": anchor})["anchor"] is None  # no overlap: no number

    point = {"cpu_s": 10.0, "coded_bpp": 0.2, "ms_ssim": 0.9, "encode_s": 1.0, "decode_s": 1.0}
    results = {
        "classical": {"anchor": [{**a, "ms_ssim": 0.9} for a in anchor]},
        "learned": {"trained": [{**d, **point} for d in double[1:4]], "start": []},
        "contexts": [{"context": "none", "bpp": 0.3, "psnr": 30.0, **point}],
        "bd_rate": {"trained": rates, "start": {}},
    }
    write_table(results, tmp_path / "table.md")
    table = (tmp_path / "table.md").read_text()
    assert "+100.0%" in table and "| none |" in table
    plot(results, tmp_path / "curves.png")
    assert (tmp_path / "curves.png").stat().st_size > 1000


def test_rate_distortion_fitted_start_fits_the_entropy_model_alone():
    pytest.importorskip("invblocks_compress")
    import invblocks
    from benchmarks.rate_distortion import fitted_start

    photo = invblocks.data.default_photos().val[0][:, :192, :192]  # MS-SSIM needs > 160
    images = [photo.permute(1, 2, 0).contiguous().numpy()]
    untrained, fitted = (
        fitted_start(3, [60.0], iters, images, per_photo=1)[0] for iters in (0, 30)
    )
    # the same transform and step (the PSNR moves only with the predicted means), fewer
    # bits once the entropy model has seen latents
    assert fitted["psnr"] == pytest.approx(untrained["psnr"], abs=0.5)
    assert fitted["bpp"] < 0.9 * untrained["bpp"]
    assert fitted["bpp"] == pytest.approx(fitted["coded_bpp"], rel=0.1, abs=0.1)


def test_isp_runs_at_toy_size_and_round_trips_a_dng(tmp_path):
    run_module(
        "isp", "--budget", 2, "--items", 1, "--variants", "jpeg", "--crop", 160, "--out", tmp_path
    )
    record = json.loads((tmp_path / "results.json").read_text())
    result = record["results"]["jpeg"]
    assert set(result) >= {"png", "jpeg90-422", "step", "cpu_s"}
    # a real JPEG loses more of the RAW than a lossless PNG
    assert result["jpeg90-422"]["restored_psnr"] < result["png"]["restored_psnr"]
    # the classical inverse of the photograph's JPEG is the trivial restoration
    assert 30 < result["png"]["baseline_psnr"] < 60
    table = (tmp_path / "table.md").read_text()
    assert "| jpeg |" in table and "DNG round trip" in table
    (row,) = record["dng"]
    assert row["restored_vs_source"] > 25
    assert abs(row["restored_vs_photo"] - row["source_vs_photo"]) < 1


def test_diffjpeg_table_covers_every_quality_and_subsampling():
    proc = run_module("diffjpeg")
    rows = [
        line for line in proc.stdout.splitlines() if line.startswith("| ") and "---" not in line
    ]
    assert len(rows) == 1 + 4 * 3
    for row in rows[1:]:
        cells = [c.strip() for c in row.strip("|").split("|")]
        file_vs_image, ours = float(cells[2]), [float(c) for c in cells[3:6]]
        assert (
            min(ours) > file_vs_image
        )  # each surrogate is closer to the file than the file to the image


def test_decode_speed_decodes_the_authors_network_with_every_context(tmp_path):
    """The benchmark's decoders hold the authors' weights: a stand-in for the authors' code
    (their state dict, coded by the imported serial network) decodes to what the serial
    float32 decoder gives."""
    pytest.importorskip("invblocks_compress")
    import json

    from invblocks_compress.plugin import COMPRESSION
    from invblocks_compress.published import convert_invcompress

    from benchmarks.decode_speed import FIXTURE, authors_module, variants
    from invblocks.model import Model

    sys.path.insert(0, str(FIXTURE.parent))
    try:
        from invcompress_recipe import authors_input, authors_state_dict
    finally:
        sys.path.remove(str(FIXTURE.parent))
    reference = json.loads((FIXTURE.parent / "invcompress_reference.json").read_text())
    state = {k: v.float() for k, v in authors_state_dict(reference).items()}
    model = Model(COMPRESSION, convert_invcompress(state).net, 1, {}, device="cpu")

    class Authors:
        def state_dict(self):
            return state

        def compress(self, x):
            payload, meta = model.encode([x[0]])
            return {"strings": [[payload.data]], "shape": (payload, meta)}

        def decompress(self, strings, shape):
            return {"x_hat": model.decode(*shape)[0][None]}

    x = authors_input(reference["recipe"]).float()
    decoders = variants(Authors(), x)
    assert len(decoders) == 7
    images = {name: decode() for name, (decode, _) in decoders.items()}
    assert all(size > 0 for _, size in decoders.values())
    assert all(image.shape == x.shape for image in images.values())
    assert all(bool(image.isfinite().all()) for image in images.values())
    theirs = images["authors (serial, float32)"]
    assert (images["invblocks (serial, float32)"] - theirs).abs().max() < 1e-5
    assert (images["invblocks (checkerboard, float32)"] - theirs).abs().max() > 0  # other masks

    with pytest.raises(SystemExit, match="no compiled ans and _CXX"):
        authors_module(tmp_path, tmp_path, tmp_path / "root")
