"""Remote devices through the whole pipeline (issue 8), against a real sshd on 127.0.0.1
(the `sshd` fixture of test_remote_ssh.py).

A finished local run of the tiny recipe is copied, then validated over SSH with a profile of
the same name: an unknown host key (refused, never added to known_hosts) and a device that
drops the connection in the middle of device_runner.py each leave a consistent run folder, a
report that says why the variants were not measured, no host details in any file, and a
validate stage that is retried (not taken as finished) by the next run, which then measures.
(Timeouts, a missing runtime and a changed host key at the run_remote level: test_remote_ssh.py.)
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from test_reliability_interrupt import PROFILE, TIMING_KEYS, assert_consistent, write_config
from test_remote_ssh import sshd  # noqa: F401, F811 - module-scoped fixture: a real sshd

from edgeskel.pipeline import run_pipeline

# kills the per-connection sshd process serving this command (its nearest sshd ancestor):
# the TCP connection drops in the middle of the run, as when a device loses power or network
DISCONNECT = """#!/bin/sh
case "$*" in
  *device_runner.py*)
    p=$$
    while [ "$p" -gt 1 ]; do
      p=$(ps -o ppid= -p "$p" | tr -d ' ')
      case "$(ps -o comm= -p "$p")" in sshd*) kill -9 "$p"; sleep 5; exit 1;; esac
    done;;
esac
exec {python} "$@"
"""


@pytest.fixture(scope="module")
def local_run(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("local")
    cfg = write_config(d / "cfg")
    report = run_pipeline(str(cfg["device"]), recipe=str(cfg["recipe"]), out_root=d / "runs", quiet=True,
                          log=lambda s: None)
    assert report["passed"]
    return {"rd": d / "runs" / "tiny" / "tinydev", "report": report}


def _ssh_profile(path: Path, sshd, **ssh) -> Path:  # noqa: ANN001, F811
    block = {"host": "testdevice", "config_file": str(sshd["dir"] / "ssh_config"), "python": sys.executable,
             "workdir": str(path.parent / "remote"), "connect_timeout_s": 5, "command_timeout_s": 120, **ssh}
    path.write_text(PROFILE + "ssh: " + json.dumps(block) + "\n")
    return path


def _run(tmp_path: Path, device: Path) -> tuple[dict, list[str]]:
    logs: list[str] = []
    rep = run_pipeline(str(device), recipe=str(tmp_path / "cfg" / "recipe.yaml"), out_root=tmp_path / "runs",
                       quiet=True, log=logs.append)
    return rep, logs


def _no_host_details(rd: Path, sshd, secrets: list[str]) -> None:  # noqa: ANN001, F811
    """No file in the run folder names the host alias, address, port, key or ssh config."""
    leaks = ["testdevice", "127.0.0.1", f":{sshd['port']}", str(sshd["dir"]), *secrets]
    for p in rd.rglob("*"):
        if p.is_file() and p.suffix in (".json", ".md", ".html", ".log", ".txt"):
            text = p.read_text(errors="replace")
            found = [s for s in leaks if s in text]
            assert not found, f"{p} contains {found}"


def _failed_then_recovers(tmp_path: Path, local_run: dict, sshd, bad_profile: Path, expect: str,  # noqa: ANN001, F811
                          secrets: list[str]) -> None:
    rd = tmp_path / "runs" / "tiny" / "tinydev"
    shutil.copytree(local_run["rd"], rd)
    rep, logs = _run(tmp_path, bad_profile)
    assert "[export] up to date, skipped" in logs and "[validate] up to date, skipped" not in logs
    assert rep["passed"] is False
    for v in rep["variants"]:
        assert v["status"] == "skipped" and v["measured_on"] == "none"
        assert v["reason"].startswith("device unreachable or remote run failed: ") and expect in v["reason"], v["reason"]
    m = json.loads((rd / "manifest.json").read_text())
    assert m["stages"]["validate"]["status"] == "incomplete" and m["stages"]["report"]["status"] == "done"
    assert not (rd / "validate" / "results.json").exists()  # no partial or stale results
    assert_consistent(rd)
    _no_host_details(rd, sshd, secrets)
    # the device is fixed: the next run retries validation (and only it, and the report)
    good = _ssh_profile(tmp_path / "good.yaml", sshd)
    rep2, logs2 = _run(tmp_path, good)
    assert [ln for ln in logs2 if "skipped" in ln] == [f"[{s}] up to date, skipped" for s in
                                                     ("data", "check", "reference", "compress", "export", "baseline")]
    assert rep2["passed"] is True
    assert [v["measured_on"] for v in rep2["variants"]] == ["ssh://tinydev"] * 2
    local = {v["name"]: v for v in local_run["report"]["variants"]}
    for v in rep2["variants"]:  # same numbers as measured locally, except timings
        same = {k: v[k] for k in ("top1", "agreement", "nonfinite", "status", "size_mb")}
        assert same == {k: local[v["name"]][k] for k in same}
        assert v["latency_by_batch"]["1"]["runs"] == 5
    assert set(TIMING_KEYS) <= set(rep2["variants"][0])
    assert all(s["status"] == "done" for s in json.loads((rd / "manifest.json").read_text())["stages"].values())
    _no_host_details(rd, sshd, secrets)


def test_unknown_host_key_is_refused_then_recovers(tmp_path, local_run, sshd):  # noqa: F811
    write_config(tmp_path / "cfg")
    kh = tmp_path / "empty_known_hosts"
    kh.write_text("")
    bad = _ssh_profile(tmp_path / "bad.yaml", sshd, known_hosts_file=str(kh))
    _failed_then_recovers(tmp_path, local_run, sshd, bad, "is unknown (not in known_hosts) and edgeskel never "
                          "accepts host keys automatically", [str(kh)])
    assert kh.read_text() == ""  # never auto-accepted


def test_device_disconnecting_mid_run(tmp_path, local_run, sshd):  # noqa: F811
    if not shutil.which("ps"):
        pytest.skip("needs `ps` to find the sshd session to cut")
    write_config(tmp_path / "cfg")
    wrapper = tmp_path / "python-that-disconnects"
    wrapper.write_text(DISCONNECT.format(python=sys.executable))
    wrapper.chmod(0o755)
    bad = _ssh_profile(tmp_path / "bad.yaml", sshd, python=str(wrapper))
    _failed_then_recovers(tmp_path, local_run, sshd, bad, "was lost during device_runner.py", [str(wrapper)])


HIDE_ORT = """#!/bin/sh
PYTHONPATH={hide} exec {python} "$@"
"""
HANG = """#!/bin/sh
case "$*" in *device_runner.py*) exec sleep 60;; esac
exec {python} "$@"
"""


@pytest.mark.slow
@pytest.mark.parametrize("kind, expect, timeout", [
    ("missing-runtime", "onnxruntime is not installed on the device 'tinydev'", 120),
    ("hang", "device_runner.py timed out on device 'tinydev' after 3 s", 3),
])
def test_missing_runtime_and_command_timeout(tmp_path, local_run, sshd, kind, expect, timeout):  # noqa: F811
    write_config(tmp_path / "cfg")
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "onnxruntime.py").write_text("raise ImportError('hidden by the test')\n")
    wrapper = tmp_path / f"python-{kind}"
    wrapper.write_text((HIDE_ORT if kind == "missing-runtime" else HANG).format(hide=hide, python=sys.executable))
    wrapper.chmod(0o755)
    bad = _ssh_profile(tmp_path / "bad.yaml", sshd, python=str(wrapper), command_timeout_s=timeout)
    _failed_then_recovers(tmp_path, local_run, sshd, bad, expect, [str(wrapper), str(hide)])


def test_unreachable_device_names_no_address_or_port(tmp_path, local_run, sshd):  # noqa: F811
    """A profile pointing at a closed port: one clear reason, the port is not in the report."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    write_config(tmp_path / "cfg")
    rd = tmp_path / "runs" / "tiny" / "tinydev"
    shutil.copytree(local_run["rd"], rd)
    bad = tmp_path / "bad.yaml"
    bad.write_text(PROFILE + "ssh: " + json.dumps({"host": "127.0.0.1", "port": port, "connect_timeout_s": 3,
                                                   "known_hosts_file": str(sshd["dir"] / "known_hosts"),
                                                   "workdir": str(tmp_path / "remote")}) + "\n")
    rep, _ = _run(tmp_path, bad)
    reasons = {v["reason"] for v in rep["variants"]}
    assert len(reasons) == 1 and "unreachable: connection refused" in reasons.pop()
    _no_host_details(rd, sshd, [str(port)])
