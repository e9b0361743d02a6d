"""invblocks.report: the page from a run's log, old and damaged logs included."""

import json

from invblocks.report import _timing, read_metrics, write_report


def write_log(run, records, extra=""):
    run.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(r) + "\n" for r in records) + extra
    (run / "metrics.jsonl").write_text(text)


def test_the_report_shows_the_validation_table_and_the_step_times(tmp_path):
    run = tmp_path / "run"
    records = [
        {"step": 1, "total": 3.0, "embedding": 1.0, "step_s": 9.0, "data_s": 0.1, "cpu_s": 1.0},
        {"step": 2, "total": 2.0, "embedding": 0.5, "step_s": 1.0, "data_s": 0.1, "cpu_s": 2.0},
        {"step": 2, "validation": {"embedding_psnr": 31.25, "embedding_ssim": None}},
    ]
    write_log(run, records, extra='{"step": 3, "tot')  # a line cut short by a kill
    assert [r["step"] for r in read_metrics(run)] == [1, 2, 2]
    page = write_report(run).read_text()
    assert "<td>31.250</td>" in page and "<td>-</td>" in page  # a missing value: a dash
    assert "median step 1 s" in page and (run / "losses.png").is_file()


def test_the_timing_line_leaves_the_first_step_out():
    assert _timing([{"step": 1, "total": 1.0}]) == ""
    many = [{"step": s, "step_s": t, "data_s": 0.0} for s, t in ((1, 60.0), (2, 1.0), (3, 3.0))]
    assert "median step 2 s" in _timing(many)


def test_records_that_are_not_step_objects_are_skipped(tmp_path):
    run = tmp_path / "run"
    write_log(run, [[1, 2], {"step": "x"}, {"no": "step"}, {"step": 1, "total": 1.0}])
    assert read_metrics(run) == [{"step": 1, "total": 1.0}]
    write_report(run)
