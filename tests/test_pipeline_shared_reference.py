"""Several devices of one recipe share the reference stage safely (issue 18 item 8).

A run that finds `runs/<recipe>/_shared` held by another run waits for it instead of failing
with "in use"; a run with its own `--out` reuses the finished reference of the default
`runs/` folder instead of training it again.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import yaml
from test_pipeline_e2e import TINY_RECIPE

from edgeskel.pipeline import run_pipeline
from edgeskel.pipeline.rundir import RunDir

PROFILE = """\
name: {name}
arch: x86_64
variants:
  - {{backend: ort, precision: fp32}}
batch_sizes: [1]
threads: 1
rank_multiple: 1
measure: {{warmup: 1, runs: 5}}
gates: {{max_top1_drop: 100}}
peak: {{gflops_fp32: 10, memory_bandwidth_gbs: 10, source: test}}
"""


def _config(d: Path, *devices: str) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "recipe.yaml").write_text(yaml.safe_dump(TINY_RECIPE))
    for name in devices:
        (d / f"{name}.yaml").write_text(PROFILE.format(name=name))
    return d


def test_second_device_waits_for_the_shared_reference_instead_of_failing(tmp_path):
    cfg = _config(tmp_path / "cfg", "deva")
    out = tmp_path / "runs"
    logs: list[str] = []
    result: dict = {}

    def run() -> None:
        try:
            result["report"] = run_pipeline(str(cfg / "deva.yaml"), str(cfg / "recipe.yaml"), out_root=out, quiet=True,
                                            log=logs.append)
        except Exception as exc:  # noqa: BLE001 - the old code raised RunLockedError here
            result["error"] = exc

    with RunDir(out / "tiny" / "_shared"):  # another device's run is building the reference
        t = threading.Thread(target=run)
        t.start()
        deadline = time.monotonic() + 60
        while not any("waiting" in ln for ln in logs) and t.is_alive() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert t.is_alive() and "error" not in result, result
        assert any("[reference] waiting: another run is building the shared reference" in ln for ln in logs), logs
    t.join(timeout=300)
    assert "error" not in result, result
    assert result["report"]["verdict"] == "PASSED"
    assert (out / "tiny" / "_shared" / "reference" / "reference.ckpt").is_file()


def test_separate_out_reuses_the_finished_reference(tmp_path, monkeypatch):
    cfg = _config(tmp_path / "cfg", "deva", "devb")
    monkeypatch.chdir(tmp_path)  # the default runs/ folder is relative to the working directory
    first_logs: list[str] = []
    first = run_pipeline(str(cfg / "deva.yaml"), str(cfg / "recipe.yaml"), out_root="runs", quiet=True,
                         log=first_logs.append)
    # the shared training and the per-device copy are two stages: each names itself once
    assert [ln for ln in first_logs if ln.endswith("running")][:4] == ["[data] running", "[check] running",
                                                                        "[reference] running",
                                                                        "[shared reference] running"], first_logs
    logs: list[str] = []
    second = run_pipeline(str(cfg / "devb.yaml"), str(cfg / "recipe.yaml"), out_root=tmp_path / "elsewhere", quiet=True,
                          log=logs.append)
    assert any(ln.startswith("[reference] reused from runs/tiny/_shared") for ln in logs), logs
    assert not (tmp_path / "elsewhere" / "tiny" / "_shared" / "reference").exists()  # nothing retrained
    assert second["reference"]["top1"] == first["reference"]["top1"]
    ck = "reference/reference.ckpt"
    assert (tmp_path / "runs/tiny/deva" / ck).read_bytes() == (tmp_path / "elsewhere/tiny/devb" / ck).read_bytes()
