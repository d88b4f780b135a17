"""A validation split that cannot decide says so, in the log and the report (issue 26 item 3):
saturated (both candidates 100%), a tie within one clip, or one clip larger than the gate."""

from __future__ import annotations

from test_report_verdict import PROFILE, exported, meas

from edgeskel.pipeline.validation import assemble_report
from edgeskel.report import write_reports
from edgeskel.report.console import print_report
from edgeskel.validate.resolution import validation_warnings


def _sel(a: float, b: float | None) -> dict:
    return {"top1_factorized": a, "top1_finetuned": b, "deployed": "factorized", "split": "validation",
            "note": "tie"}


def test_saturated_tied_and_too_small_are_named_with_the_advice():
    sat = validation_warnings(102, _sel(100.0, 100.0), None)
    assert len(sat) == 1 and "saturated" in sat[0] and "102 clips" in sat[0] and "data.validation" in sat[0]
    tie = validation_warnings(50, _sel(90.0, 92.0), None)
    assert len(tie) == 1 and "cannot decide" in tie[0] and "2.00 points" in tie[0]
    assert validation_warnings(200, _sel(90.0, 92.0), None) == []  # 4 clips apart: decided
    small = validation_warnings(48, None, 1.0, agreement_samples=512)
    assert len(small) == 1 and "one of its 48 clips is 2.08 points" in small[0] and "512 unlabelled" in small[0]
    assert validation_warnings(200, _sel(80.0, None), 1.0) == []  # no fine-tune, 0.5-point clips


def test_report_and_console_show_the_warning(tmp_path, capsys):
    exp = {v: exported(1_000_000) for v in ("ort-fp32", "ort-int8", "openvino-fp32", "openvino-int8-accuracy-control")}
    comp = {"top1": {"reference": 90.0, "after_compression": 90.0, "after_finetune": 90.0, "deployed": 90.0},
            "totals": {"params_before": 20, "params_after": 10, "param_ratio": 0.5}, "finetune": {},
            "selection": _sel(100.0, 100.0)}
    rep = assemble_report(
        PROFILE, "gates", {"num_val": 40, "num_calib": 8, "layout": "tiny", "classes": ["a", "b"]},
        {"top1": 90.0, "top5": 100.0, "params": 20, "gflops": 0.001, "source": "test"}, comp,
        {"variants": exp, "unlabelled": {"held_out_train": 100, "augmented": 412}},
        {"measured": {v: meas(90.0, 5.0) for v in exp}, "not_measured": {}},
        {"params": 10, "gflops": 0.001}, {"python": "test"})
    w = rep["validation_warnings"]
    assert any("saturated" in x for x in w) and any("2.50 points" in x and "512 unlabelled" in x for x in w)
    paths = write_reports(rep, tmp_path)
    md = paths["md"].read_text()
    assert "**Warning:** validation is saturated" in md
    assert "validation is saturated" in paths["html"].read_text()
    print_report(rep)
    out = capsys.readouterr().out
    assert "warning: validation is saturated" in out.replace("\n", " ").replace("  ", " ")
