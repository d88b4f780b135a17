"""Issue 18 item 6: plots people read. Fast: the scatter's y-range spans the reference and the
top-1 gate, the p99 budget is drawn when it is near the points, names are in a legend (no text
drawn at the points, so none is clipped or overlaps). Slow: report.html rendered in headless
Chromium, screenshot saved (skipped with the reason when no Chromium is installed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeskel.report.plots import scatter_figure


def _report(top1s: list[float], p99s: list[float], budget: float = 50.0) -> dict:
    names = ["ort-fp32", "ort-int8", "openvino-fp32", "openvino-int8"][: len(top1s)]
    return {"device": "cpu", "recipe": "demo", "reference": {"top1": 100.0},
            "gates": {"max_top1_drop": 1.0, "p99_latency_ms": budget},
            "variants": [{"name": n, "status": "pass", "top1": t, "latency_ms": {"p99": p}}
                         for n, t, p in zip(names, top1s, p99s, strict=True)],
            "baselines": [{"name": "baseline-ort-fp32", "top1": 100.0, "latency_ms": {"p99": max(p99s) * 1.5}}]}


def test_scatter_spans_the_gate_and_keeps_names_in_the_legend():
    import matplotlib.pyplot as plt

    fig = scatter_figure(_report([100.0, 100.0, 100.0, 100.0], [5.0, 5.0, 5.1, 4.9], budget=12.0))
    ax = fig.axes[0]
    lo, hi = ax.get_ylim()
    assert lo < 99.0 and hi >= 100.0  # the gate (100 - 1) and the reference are inside
    assert hi - lo >= 3.0  # identical points never zoom in on nothing
    assert ax.get_xlim()[1] > 12.0  # a budget near the points is drawn inside the frame
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any(s.startswith("ort-int8 (PASS)") for s in labels) and any("baseline-ort-fp32" in s for s in labels)
    assert any("top-1 gate" in s for s in labels) and any("p99 budget 12 ms" in s for s in labels)
    assert not ax.texts  # no names drawn at the points: four points at one spot cannot overlap labels
    plt.close(fig)
    far = scatter_figure(_report([99.5, 99.8], [1.0, 1.2], budget=500.0))
    assert far.axes[0].get_xlim()[1] < 10 and "far right" in far.axes[0].get_xlabel()  # points not squashed
    plt.close(far)


@pytest.mark.slow
def test_report_html_renders_in_headless_chromium(tmp_path: Path):
    """A real tiny pipeline run (variants + uncompressed baselines), its report.html rendered
    by Chromium; the screenshot is kept in the test's folder (and at EDGESKEL_SCREENSHOT_OUT
    when set) for a person to look at."""
    import os

    import yaml
    from test_pipeline_e2e import TINY_RECIPE, tiny_profile

    from edgeskel.pipeline import run_pipeline
    from edgeskel.report.screenshot import find_browser, screenshot

    if find_browser() is None:
        pytest.skip("no Chromium on PATH (apt-get install -y chromium)")
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(TINY_RECIPE))
    prof = tiny_profile(tmp_path, variants=[{"backend": "ort", "precision": "fp32"}, {"backend": "ort", "precision": "int8"},
                                            {"backend": "openvino", "precision": "fp32"}],
                        batch_sizes=[1, 4], measure={"warmup": 2, "runs": 30})
    run_pipeline(str(prof), str(recipe), out_root=tmp_path / "runs", quiet=True)
    html = tmp_path / "runs" / "tiny" / "cpu" / "report.html"
    png = screenshot(html, tmp_path / "report.png", width=1200, height=2600)
    from PIL import Image

    img = Image.open(png)
    assert img.size == (1200, 2600)
    colors = img.convert("L").getextrema()
    assert colors[0] < 60 and colors[1] > 200  # text and plots were drawn, not a blank page
    if os.environ.get("EDGESKEL_SCREENSHOT_OUT"):
        screenshot(html, os.environ["EDGESKEL_SCREENSHOT_OUT"], width=1200, height=2600, scale=0.6)
