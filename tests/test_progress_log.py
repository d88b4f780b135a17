"""Progress without a terminal: one line per epoch and per pipeline stage when stdout is not a
TTY (a background run's log file shows where it is), none extra with --json/quiet."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
TINY = "synthetic?classes=3&per_class=6&test_per_class=2&frames=16"


def test_training_logs_one_line_per_epoch_when_piped(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "edgeskel", "train", "--model", "stgcn", "--data", TINY, "--epochs", "2",
           "--batch-size", "8", "--width", "0.125", "--frames", "16", "--optimizer", "adamw", "--lr", "0.003",
           "--threads", "1", "--out", str(tmp_path / "run")]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=300,
                         env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert out.returncode == 0, out.stderr
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("train epoch ")]
    assert [ln.split(":")[0] for ln in lines] == ["train epoch 1/2", "train epoch 2/2"], out.stdout
    assert "val " in lines[0] and "best" in lines[0]
    # a log file reads within 80 columns (issue 27): the longest label and epoch counts fit
    from edgeskel.progress_log import epoch_line

    row = {"epoch": 120, "loss": 12.3456, "train_top1": 100.0, "val_top1": 100.0, "time_s": 1234.5}
    assert len(epoch_line(row, 120, 100.0, 120, label="finetune")) <= 80


def test_pipeline_logs_each_stage(tmp_path: Path) -> None:
    from edgeskel.pipeline import run_pipeline

    recipe = {"name": "p", "model": {"name": "stgcn", "width": 0.125, "kwargs": {"num_stages": 2}},
              "data": {"spec": TINY, "frames": 16}, "train": {"epochs": 1, "batch_size": 8, "optimizer": "adamw",
                                                           "lr": 0.003, "warmup_epochs": 0, "threads": 1},
              "export": {"calib_samples": 8}}
    rp = tmp_path / "p.yaml"
    rp.write_text(yaml.safe_dump(recipe))
    prof = yaml.safe_load((REPO / "devices" / "cpu.yaml").read_text())
    prof.update(variants=[{"backend": "ort", "precision": "fp32"}], batch_sizes=[1])
    pp = tmp_path / "cpu.yaml"
    pp.write_text(yaml.safe_dump(prof))
    logs: list[str] = []
    run_pipeline(str(pp), str(rp), out_root=tmp_path / "runs", quiet=True, log=logs.append)
    stages = ("data", "check", "reference", "export", "validate", "report")
    # the reference is trained in the recipe's shared folder ("shared reference") and copied
    # into the device's run ("reference"): two stages, each logged once under its own name
    running = [s for s in logs if s.endswith("running")]
    assert running == ["[data] running", "[check] running", "[reference] running", "[shared reference] running",
                       *[f"[{s}] running" for s in stages[3:]]], running
    assert all(any(s.startswith(f"[{st}] done in ") for s in logs) for st in stages), logs
