"""Interrupted and concurrent pipeline runs (issue 8).

The real CLI (`python -m edgeskel export --device D --recipe R --out O`) runs in a subprocess
on a tiny recipe (synthetic data, ST-GCN width 0.25 with 3 blocks, 6 training epochs, budget
compression, 1 fine-tune epoch, ORT fp32 + int8, 5 timed runs). `EDGESKEL_KILL_AT=stage:point`
makes the process SIGKILL itself at a named point in the middle of a stage
(`edgeskel.pipeline.rundir.kill_point`). After each kill the run folder must be consistent
(every stage the manifest calls done has intact outputs), a rerun must skip the stages that
finished and end with the same report as an uninterrupted run (timing fields excepted).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from edgeskel.io import sha256_file, torch_load_safe
from edgeskel.pipeline.rundir import RunDir

REPO = Path(__file__).resolve().parents[1]
STAGES = ["data", "check", "reference", "compress", "export", "baseline", "validate", "report"]

RECIPE = """\
name: tiny
model:
  name: stgcn
  width: 0.25
  kwargs: {num_stages: 3}
data:
  spec: synthetic?classes=4&per_class=8&test_per_class=4&frames=16
  frames: 16
  persons: 1
train: {epochs: 6, batch_size: 4, warmup_epochs: 0, threads: 1}
compress: {policy: budget, budget: 0.5, rank_multiple: 1, min_params: 0}
finetune: {epochs: 1, batch_size: 8, warmup_epochs: 0, lr: 0.01, kd_weight: 0.5, threads: 1}
export: {calib_samples: 8}
"""

PROFILE = """\
name: tinydev
arch: x86_64
variants:
  - {backend: ort, precision: fp32}
  - {backend: ort, precision: int8}
batch_sizes: [1]
threads: 1
rank_multiple: 1
measure: {warmup: 1, runs: 5}
gates: {max_top1_drop: 100}
peak: {gflops_fp32: 10, memory_bandwidth_gbs: 10, source: test}
"""

# Every kill point the pipeline has, in execution order: each is in the middle of its stage.
KILL_POINTS = [
    "data:after_val_x", "data:after_val_y", "data:after_calib_x",
    "reference:epoch_1", "reference:epoch_5", "reference:after_train",
    "compress:after_factorize", "compress:finetune_epoch_1",
    "export:after_ort-fp32", "export:after_ort-int8", "baseline:after_ort-int8",
    "validate:after_bundle", "validate:after_results",
    "report:after_json",
]
# One kill in the middle of every stage, chained: each rerun is killed in the next stage.
CHAIN = ["data:after_val_y", "reference:epoch_1", "compress:finetune_epoch_1", "export:after_ort-fp32",
         "validate:after_bundle", "report:after_json"]
# Report fields that are wall-clock measurements, hence differ between any two runs.
# How long a step took, in export.json / compression.json (training history rows too).
WALL_CLOCK_KEYS = {"seconds", "wall_time_s", "epoch_train_s", "time_s"}
BASELINE_WALL: dict[str, float] = {}  # seconds the uninterrupted run took (random kill times scale with it)
TIMING_KEYS = {"latency_ms", "throughput_fps", "latency_samples_ms", "latency_by_batch", "peak_memory_mb"}


# ------------------------------------------------------------------------------ helpers
def write_config(d: Path, recipe: str = RECIPE, profile: str = PROFILE) -> dict[str, Path]:
    d.mkdir(parents=True, exist_ok=True)
    (d / "recipe.yaml").write_text(recipe)
    (d / "device.yaml").write_text(profile)
    return {"recipe": d / "recipe.yaml", "device": d / "device.yaml"}


def cli_args(cfg: dict[str, Path], out: Path) -> list[str]:
    return [sys.executable, "-m", "edgeskel", "export", "--device", str(cfg["device"]), "--recipe", str(cfg["recipe"]),
            "--out", str(out), "--quiet"]


def cli_env(kill: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "EDGESKEL_KILL_AT"}
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONUNBUFFERED"] = "1"  # the log of a SIGKILLed run must not die in a buffer
    if kill:
        env["EDGESKEL_KILL_AT"] = kill
    return env


def run_cli(cfg: dict[str, Path], out: Path, kill: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cli_args(cfg, out), env=cli_env(kill), cwd=REPO, capture_output=True, text=True, timeout=600)


def run_dir(out: Path) -> Path:
    return out / "tiny" / "tinydev"


def skipped(stdout: str) -> list[str]:
    """Stages the run reported as `[stage] up to date, skipped`, in order."""
    return [ln.split("]")[0][1:] for ln in stdout.splitlines() if ln.endswith("] up to date, skipped")]


def stable(report: dict[str, Any]) -> dict[str, Any]:
    """The report without wall-clock measurements."""
    r = json.loads(json.dumps(report))
    r.pop("decision", None)  # picks the lowest p99: timing-dependent
    r.pop("measurement", None)  # host load averages while timing
    for v in r["variants"]:
        # latency_note: present only when INT8 timed slower; gates: hold the measured p99 and memory;
        # latency_noisy: the timing spread flag; compute: measured GFLOP/s
        for k in (*TIMING_KEYS, "latency_note", "gates", "latency_noisy", "compute", "throughput_batch_size",
                  "vs_uncompressed"):
            v.pop(k, None)
    for b in r.get("baselines") or []:  # the uncompressed rows: their timing and latency ratio
        for k in (*TIMING_KEYS, "throughput_batch_size"):
            b.pop(k, None)
        (b.get("ratios") or {}).pop("latency_speedup", None)
    return r


def _without_wall_clock(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _without_wall_clock(v) for k, v in obj.items() if k not in WALL_CLOCK_KEYS}
    if isinstance(obj, list):
        return [_without_wall_clock(v) for v in obj]
    return obj


def manifest(rd: Path) -> dict[str, Any]:
    return json.loads((rd / "manifest.json").read_text())


def copy_runs(baseline: Path, out: Path) -> None:
    """Copy a finished run: the device folder and the recipe's shared reference folder."""
    shutil.copytree(baseline.parent, out / "tiny")


def assert_consistent(rd: Path) -> None:
    """Every stage the manifest calls done has all its outputs, byte-for-byte as recorded;
    the same for the recipe's shared folder (the reference model, built once per recipe)."""
    for folder in (rd, rd.parent / "_shared"):
        if not (folder / "manifest.json").exists():
            continue
        for name, rec in manifest(folder)["stages"].items():
            assert rec["status"] in ("done", "running", "incomplete"), (name, rec["status"])
            if rec["status"] == "done":
                for rel, digest in rec["outputs"].items():
                    p = folder / rel
                    assert p.is_file() and sha256_file(p) == digest, f"{folder.name}/{name}: {rel} is not intact"


def report_of(rd: Path) -> dict[str, Any]:
    return json.loads((rd / "report" / "report.json").read_text())


def check_resumed(proc: subprocess.CompletedProcess, rd: Path, baseline: dict[str, Any], first_rerun: str) -> None:
    """A successful rerun: stages before `first_rerun` skipped, the rest rerun, same report."""
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert skipped(proc.stdout) == STAGES[: STAGES.index(first_rerun)], proc.stdout
    assert all(s["status"] == "done" for s in manifest(rd)["stages"].values())
    assert_consistent(rd)
    assert stable(report_of(rd)) == stable(baseline)
    assert json.loads((rd / "report.json").read_text()) == report_of(rd)


def kill_and_check(cfg: dict[str, Path], out: Path, point: str) -> None:
    """Run with a kill point: it must die by SIGKILL in that stage, skipping exactly the stages
    an earlier run finished, and leave the folder consistent."""
    stage = point.split(":")[0]
    rd = run_dir(out)
    done_before = [s for s, r in manifest(rd)["stages"].items() if r["status"] == "done"] if rd.exists() else []
    proc = run_cli(cfg, out, kill=point)
    assert proc.returncode == -signal.SIGKILL, f"{point}: rc {proc.returncode}\n{proc.stderr[-3000:]}"
    assert skipped(proc.stdout) == done_before, proc.stdout
    m = manifest(rd)
    assert m["stages"][stage]["status"] == "running"  # never recorded as finished
    assert all(s not in m["stages"] for s in STAGES[STAGES.index(stage) + 1:])
    assert_consistent(rd)


def state_dict(path: Path) -> dict[str, torch.Tensor]:
    return torch_load_safe(path)["state_dict"]


# ------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def cfg(tmp_path_factory) -> dict[str, Path]:
    return write_config(tmp_path_factory.mktemp("cfg"))


@pytest.fixture(scope="module")
def baseline(cfg, tmp_path_factory) -> Path:
    """One uninterrupted run; returns its run folder."""
    out = tmp_path_factory.mktemp("baseline")
    t0 = time.perf_counter()
    proc = run_cli(cfg, out)
    BASELINE_WALL["s"] = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert skipped(proc.stdout) == []
    return run_dir(out)


@pytest.fixture(scope="module")
def concurrent(cfg, tmp_path_factory) -> dict[str, Any]:
    """Run A into a fresh folder; while A holds the folder (stopped with SIGSTOP right after it
    took the lock), run B into the same folder; then let A finish."""
    out = tmp_path_factory.mktemp("concurrent")
    a = subprocess.Popen(cli_args(cfg, out), env=cli_env(), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    try:
        deadline = time.time() + 300
        while not (run_dir(out) / "manifest.json").exists():  # written only after the lock is taken
            assert a.poll() is None, a.stderr.read()[-3000:] if a.stderr else ""
            assert time.time() < deadline, "run A never took the lock"
            time.sleep(0.05)
        os.kill(a.pid, signal.SIGSTOP)
        t0 = time.perf_counter()
        b = run_cli(cfg, out)
        b_seconds = time.perf_counter() - t0
        os.kill(a.pid, signal.SIGCONT)
        a_out, a_err = a.communicate(timeout=600)
    finally:
        if a.poll() is None:
            os.kill(a.pid, signal.SIGCONT)
            a.kill()
            a.wait()
    return {"a_rc": a.returncode, "a_err": a_err, "a_pid": a.pid, "b": b, "b_seconds": b_seconds, "rd": run_dir(out)}


# ------------------------------------------------------------------------------ kills
def test_kill_in_every_stage_then_resume(cfg, baseline, tmp_path):
    """One SIGKILL in the middle of each of the 6 stages, each rerun killed in the next stage;
    the final rerun finishes with the uninterrupted run's report."""
    out = tmp_path / "out"
    for point in CHAIN:
        kill_and_check(cfg, out, point)
    check_resumed(run_cli(cfg, out), run_dir(out), report_of(baseline), "report")
    # training was killed after epoch 1 (reference and fine-tune) and resumed from last.pt
    for rel in ("reference/reference.ckpt", "compress/compressed.ckpt"):
        got, want = state_dict(run_dir(out) / rel), state_dict(baseline / rel)
        assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want), rel


@pytest.mark.parametrize("point", [
    pytest.param(p, marks=pytest.mark.slow) for p in KILL_POINTS  # `make test` runs the cheaper CHAIN
])
def test_kill_then_rerun(cfg, baseline, tmp_path, point):
    """Kill at one point, rerun without the kill: resumes from the killed stage, same report;
    training killed after epoch 1 resumes from its last.pt to the same weights."""
    out = tmp_path / "out"
    kill_and_check(cfg, out, point)
    stage = point.split(":")[0]
    check_resumed(run_cli(cfg, out), run_dir(out), report_of(baseline), stage)
    if stage in ("reference", "compress"):
        for rel in ("reference/reference.ckpt", "compress/compressed.ckpt"):
            got, want = state_dict(run_dir(out) / rel), state_dict(baseline / rel)
            assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want), rel


@pytest.mark.slow
def test_full_kill_chain(cfg, baseline, tmp_path):
    """Every kill point in turn on the same folder, then a clean finish."""
    out = tmp_path / "out"
    for point in KILL_POINTS:
        kill_and_check(cfg, out, point)
    check_resumed(run_cli(cfg, out), run_dir(out), report_of(baseline), "report")


# ------------------------------------------------------------------------------ damaged artifacts
@pytest.mark.parametrize("rel, first", [
    ("export/ort-int8/model.int8.onnx", "export"),
    pytest.param("compress/compressed.ckpt", "compress", marks=pytest.mark.slow),
    pytest.param("data/val_x.npy", "data", marks=pytest.mark.slow),
])
def test_damaged_artifact_reruns_its_stage(cfg, baseline, tmp_path, rel, first):
    """A truncated artifact of a finished run is never taken as finished: its stage reruns
    (earlier stages are skipped) and the report is the same."""
    out = tmp_path / "out"
    copy_runs(baseline, out)
    p = run_dir(out) / rel
    assert rel in manifest(run_dir(out))["stages"][first]["outputs"]
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    proc = run_cli(cfg, out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert first not in skipped(proc.stdout)
    assert skipped(proc.stdout)[: STAGES.index(first)] == STAGES[: STAGES.index(first)]
    assert_consistent(run_dir(out))
    assert stable(report_of(run_dir(out))) == stable(report_of(baseline))
    assert sha256_file(p) == manifest(run_dir(out))["stages"][first]["outputs"][rel]


def test_deleted_report_copy_is_restored_without_rerunning(cfg, baseline, tmp_path):
    out = tmp_path / "out"
    copy_runs(baseline, out)
    (run_dir(out) / "report.json").unlink()
    (run_dir(out) / "report.md").write_text("edited")
    proc = run_cli(cfg, out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert skipped(proc.stdout) == STAGES
    for name in ("report.json", "report.md"):
        assert (run_dir(out) / name).read_bytes() == (run_dir(out) / "report" / name).read_bytes()


@pytest.mark.slow
def test_garbled_manifest_reruns_everything(cfg, baseline, tmp_path):
    out = tmp_path / "out"
    copy_runs(baseline, out)
    m = run_dir(out) / "manifest.json"
    m.write_text(m.read_text()[:100])
    proc = run_cli(cfg, out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # every stage of the device folder reruns; the intact shared reference is not retrained
    assert skipped(proc.stdout) == ["reference"]
    assert all(r["status"] == "done" for r in manifest(run_dir(out))["stages"].values())
    assert_consistent(run_dir(out))
    assert stable(report_of(run_dir(out))) == stable(report_of(baseline))


@pytest.mark.slow
def test_changed_inputs_never_resume_stale_training(cfg, baseline, tmp_path):
    """With other data, the reference stage must train from scratch, not resume the old
    run's last.pt (same training config, different data)."""
    out = tmp_path / "out"
    copy_runs(baseline, out)
    marker = run_dir(out).parent / "_shared" / "reference" / "train" / "stale-marker"
    marker.write_text("from the earlier run")
    new = write_config(tmp_path / "cfg2", recipe=RECIPE.replace("frames=16", "frames=16&seed=3"))
    proc = subprocess.run(cli_args(new, out)[:-1], env=cli_env(), cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert skipped(proc.stdout) == [] and "resuming from" not in proc.stdout
    assert not marker.exists()
    hist = json.loads((run_dir(out).parent / "_shared" / "reference" / "train" / "history.json").read_text())
    assert [h["epoch"] for h in hist] == [1, 2, 3, 4, 5, 6]
    assert_consistent(run_dir(out))


@pytest.mark.slow
def test_moved_run_folder_validates_its_own_artifacts(cfg, baseline, tmp_path):
    """Validation after a profile change in a copied folder uses the copy's artifacts."""
    out = tmp_path / "out"
    copy_runs(baseline, out)
    shutil.rmtree(run_dir(out) / "validate")
    new = write_config(tmp_path / "cfg2", profile=PROFILE.replace("runs: 5", "runs: 6"))
    moved = baseline.with_name(baseline.name + ".moved")
    baseline.rename(moved)  # the original location must not be needed
    try:
        proc = run_cli(new, out)
    finally:
        moved.rename(baseline)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert skipped(proc.stdout) == ["data", "reference", "compress", "export", "baseline"]
    rep = report_of(run_dir(out))
    assert [v["latency_by_batch"]["1"]["runs"] for v in rep["variants"]] == [6, 6]
    # the bundle's id hashes its measure settings (runs 5 -> 6): a new bundle, the same report otherwise
    assert rep.pop("bundle_id") != report_of(baseline)["bundle_id"]
    assert stable(rep) == {k: v for k, v in stable(report_of(baseline)).items() if k != "bundle_id"}


# ------------------------------------------------------------------------------ concurrency
def test_second_run_on_a_locked_folder_fails_fast(cfg, baseline, tmp_path):
    """The folder is held (RunDir lock, as a running pipeline holds it): the CLI exits 2 with
    one line naming the holder, and touches nothing."""
    out = tmp_path / "out"
    copy_runs(baseline, out)
    before = {p: sha256_file(p) for p in run_dir(out).rglob("*") if p.is_file() and p.name != ".lock"}
    with RunDir(run_dir(out)):
        proc = run_cli(cfg, out)
        with pytest.raises(Exception, match="in use by pid"):
            RunDir(run_dir(out)).__enter__()  # also within one process
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and "WARNING" not in ln]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in proc.stderr, proc.stderr
    assert f"in use by pid {os.getpid()}" in lines[0] and "another --out" in lines[0]
    after = {p: sha256_file(p) for p in run_dir(out).rglob("*") if p.is_file() and p.name != ".lock"}
    assert after == before


def test_two_concurrent_runs_cannot_corrupt_the_folder(concurrent, baseline):
    b = concurrent["b"]
    assert b.returncode == 2, b.stderr
    assert concurrent["b_seconds"] < 60  # fails fast, does not wait for the other run
    assert f"run folder is in use by pid {concurrent['a_pid']}" in b.stderr and "Traceback" not in b.stderr
    assert concurrent["a_rc"] == 0, concurrent["a_err"][-3000:]
    assert_consistent(concurrent["rd"])
    assert stable(report_of(concurrent["rd"])) == stable(report_of(baseline))


# ------------------------------------------------------------------------------ determinism
def test_same_inputs_same_weights_ranks_and_accuracy(concurrent, baseline):
    """Two uninterrupted runs into different folders: identical reference and compressed
    weights, ranks, compression summary and every non-timing report number."""
    other = concurrent["rd"]
    for rel in ("reference/reference.ckpt", "compress/compressed.ckpt"):
        a, b = torch_load_safe(baseline / rel), torch_load_safe(other / rel)
        assert a["spec"] == b["spec"], rel  # includes the factorization plan (ranks)
        assert a["state_dict"].keys() == b["state_dict"].keys()
        assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"]), rel
    ca, cb = (_without_wall_clock(json.loads((d / "compress" / "compression.json").read_text()))
              for d in (baseline, other))
    assert ca == cb
    ranks = [(layer["name"], layer.get("ranks")) for layer in ca["layers"]]
    assert ranks == [(layer["name"], layer.get("ranks")) for layer in cb["layers"]]
    assert sum(layer["status"] == "factorized" for layer in ca["layers"]) >= 2
    assert stable(report_of(baseline)) == stable(report_of(other))
    for name in ("data/val_x.npy", "data/val_y.npy", "data/calib_x.npy"):
        assert sha256_file(baseline / name) == sha256_file(other / name)


# ------------------------------------------------------------------------------ atomic writes
ATOMIC_KILL = """
import os, signal, sys
from edgeskel.io import atomic_path
with atomic_path(sys.argv[1]) as tmp:
    with open(tmp, "wb") as fh:
        fh.write(b"new-but-half-written")
        fh.flush()
        os.kill(os.getpid(), signal.SIGKILL)
"""


def test_sigkill_during_an_atomic_write_keeps_the_old_file(tmp_path):
    """Killed in the middle of writing: the artifact still holds its old, complete content
    (the half-written data only ever lived in a dot-named temp file, which no stage lists)."""
    target = tmp_path / "stage" / "model.onnx"
    target.parent.mkdir()
    target.write_bytes(b"old complete content")
    proc = subprocess.run([sys.executable, "-c", ATOMIC_KILL, str(target)], env=cli_env(), capture_output=True)
    assert proc.returncode == -signal.SIGKILL
    assert target.read_bytes() == b"old complete content"
    leftovers = [p.name for p in target.parent.iterdir() if p != target]
    assert leftovers and all(n.startswith(".model.onnx.") and n.endswith(".tmp") for n in leftovers)
    from edgeskel.pipeline import _artifact_files

    assert _artifact_files(target.parent) == ["model.onnx"]  # temp files are never recorded as outputs


# ------------------------------------------------------------------------------ random kills from outside
DETERMINISTIC_STAGES = ("data", "reference", "compress", "export", "baseline")  # validate/report hold timings


def artifacts(rd: Path) -> dict[str, Any]:
    """Every output the deterministic stages recorded (checked against the file's recorded
    sha256): its sha256, or for a JSON summary its content without wall-clock durations."""
    m = manifest(rd)
    out: dict[str, Any] = {}
    for stage in DETERMINISTIC_STAGES:
        assert m["stages"][stage]["status"] == "done", stage
        for rel, digest in m["stages"][stage]["outputs"].items():
            assert sha256_file(rd / rel) == digest, rel
            out[rel] = _without_wall_clock(json.loads((rd / rel).read_text())) if rel.endswith(".json") else digest
    return out


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sigkill_at_random_times_then_rerun_gives_identical_artifacts(cfg, baseline, tmp_path, seed):
    """`edgeskel export` killed with SIGKILL from outside (the whole process group, as a
    scheduler or an OOM killer would) at random moments, three times in a row on one folder;
    after each kill the folder is consistent; the rerun then finishes with artifacts
    byte-identical to the uninterrupted run's (JSON summaries: identical but for wall-clock
    durations) and the same report. Kill times are drawn from [0.3 s, 0.8 x the uninterrupted
    run's wall time] with a fixed seed; each rerun resumes, so later kills land later."""
    import random

    rng = random.Random(seed)
    out = tmp_path / "out"
    wall = BASELINE_WALL.get("s", 30.0)
    kills = []
    for _ in range(3):
        at = rng.uniform(0.3, 0.8 * wall)
        proc = subprocess.Popen(cli_args(cfg, out), env=cli_env(), cwd=REPO, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            proc.wait(timeout=at)
            kills.append((round(at, 2), "finished first"))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            kills.append((round(at, 2), "killed"))
        proc.stderr.close()
        if run_dir(out).exists():
            assert_consistent(run_dir(out))
    assert any(k[1] == "killed" for k in kills), kills
    proc = run_cli(cfg, out)
    assert proc.returncode == 0, (kills, proc.stderr[-3000:])
    assert artifacts(run_dir(out)) == artifacts(baseline), kills
    assert sum(r.endswith((".onnx", ".ckpt", ".npy")) for r in artifacts(baseline)) >= 8
    assert stable(report_of(run_dir(out))) == stable(report_of(baseline)), kills
    assert_consistent(run_dir(out))

