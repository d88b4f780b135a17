"""The SSH device path end-to-end against a REAL sshd on 127.0.0.1 started by the test.

The remote python is this venv's python (it has onnxruntime), so remote results must equal
a local run of the same bundle. Failure cases: closed port, changed host key, failing remote
command, missing runtime; each must raise RemoteError and leave no results file behind.
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_devices_common import tiny_data, tiny_onnx

from edgeskel.devices import load_profile
from edgeskel.errors import RemoteError
from edgeskel.remote import SSHTarget, make_bundle, run_remote
from edgeskel.remote.device_runner import run_bundle

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path.with_suffix(".pub").read_text().strip()


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    if not os.path.exists(SSHD) or not shutil.which("ssh") or not shutil.which("ssh-keygen"):
        pytest.skip("sshd not installed (run .ci/run to install openssh-server)")
    d = tmp_path_factory.mktemp("sshd")
    host_pub = _keygen(d / "host_key")
    user_pub = _keygen(d / "user_key")
    (d / "authorized_keys").write_text(user_pub + "\n")
    port = _free_port()
    cfg = d / "sshd_config"
    cfg.write_text(
        f"ListenAddress 127.0.0.1\nPort {port}\nHostKey {d / 'host_key'}\nPidFile {d / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {d / 'authorized_keys'}\nStrictModes no\nUsePAM no\nPermitRootLogin prohibit-password\n"
        "PubkeyAuthentication yes\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nLogLevel ERROR\n"
    )
    if os.geteuid() == 0:
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # privilege separation dir sshd insists on
    log = open(d / "sshd.log", "wb")
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(cfg)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 10
        while True:
            if proc.poll() is not None:
                pytest.skip(f"sshd could not start: {(d / 'sshd.log').read_text()[-300:]}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.time() > deadline:
                    pytest.skip("sshd did not start listening within 10 s")
                time.sleep(0.05)
        (d / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_pub}\n")
        (d / "ssh_config").write_text(
            f"Host testdevice\n  HostName 127.0.0.1\n  Port {port}\n  User {getpass.getuser()}\n"
            f"  IdentityFile {d / 'user_key'}\n  IdentitiesOnly yes\n  UserKnownHostsFile {d / 'known_hosts'}\n"
        )
        yield {"dir": d, "port": port}
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _target(sshd, tmp_path, **kw) -> SSHTarget:
    d = sshd["dir"]
    base = dict(name="cpu", host="testdevice", config_file=str(d / "ssh_config"), workdir=str(tmp_path / "remote"),
                python=sys.executable, connect_timeout_s=5, command_timeout_s=120)
    base.update(kw)
    return SSHTarget(**base)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    d = tmp_path_factory.mktemp("b")
    w, b = tiny_onnx(d / "m.onnx")
    x, y, ref = tiny_data(w, b)
    prof = load_profile("cpu")
    return make_bundle(d / "run" / "bundle", [{"name": "ort-fp32", "backend": "ort", "precision": "fp32",
                                                "path": d / "m.onnx"}], x, y, ref, prof, runs=100)


def test_remote_matches_local(sshd, bundle, tmp_path):
    target = _target(sshd, tmp_path)
    out = tmp_path / "results.json"
    remote = run_remote(bundle, target, out=out)
    assert out.is_file() and json.loads(out.read_text())["measured_on"] == "ssh://cpu"
    local = run_bundle(bundle, tmp_path / "local.json")
    rv, lv = remote["variants"][0], local["variants"][0]
    assert rv["status"] == lv["status"] == "ok", (rv, lv)
    assert rv["accuracy"]["top1"] == lv["accuracy"]["top1"]
    assert rv["accuracy"]["agreement"] == lv["accuracy"]["agreement"] == 100.0
    assert rv["latency_ms"]["1"]["runs"] == 100 and rv["memory"]["peak_rss_mb"] > 0
    text = out.read_text() + out.with_suffix(".log").read_text()
    assert "testdevice" not in text and str(sshd["dir"]) not in text
    # second run re-uses the uploaded bundle (same id) and still works
    assert run_remote(bundle, target, out=out)["bundle_id"] == remote["bundle_id"]


def test_unreachable_host(sshd, bundle, tmp_path):
    target = SSHTarget(name="cpu", host="127.0.0.1", port=_free_port(), connect_timeout_s=3,
                       known_hosts_file=str(sshd["dir"] / "known_hosts"), workdir=str(tmp_path / "r"))
    out = tmp_path / "results.json"
    with pytest.raises(RemoteError, match="unreachable: connection refused"):
        run_remote(bundle, target, out=out)
    assert not out.exists()


def test_host_key_mismatch(sshd, bundle, tmp_path):
    other = _keygen(tmp_path / "other_host_key")
    kh = tmp_path / "known_hosts"
    kh.write_text(f"[127.0.0.1]:{sshd['port']} {other}\n")
    target = SSHTarget(name="cpu", host="127.0.0.1", port=sshd["port"], identity_file=str(sshd["dir"] / "user_key"),
                       known_hosts_file=str(kh), python=sys.executable, workdir=str(tmp_path / "r"))
    out = tmp_path / "results.json"
    out.write_text("{}")  # a stale file from an earlier run must not survive a failed run
    with pytest.raises(RemoteError, match="host key .* CHANGED") as e:
        run_remote(bundle, target, out=out)
    assert "ssh-keygen" in str(e.value)
    assert not out.exists()
    kh.write_text("")  # unknown host key: never auto-accepted
    with pytest.raises(RemoteError, match="host key .* unknown.*ssh-keyscan"):
        target.check_connection()
    assert kh.read_text() == ""


def test_failing_remote_command(sshd, tmp_path):
    target = _target(sshd, tmp_path)
    with pytest.raises(RemoteError, match="exit code 3") as e:
        target.run("echo boom >&2; exit 3", what="test command")
    assert "boom" in str(e.value)


def test_missing_runtime(sshd, bundle, tmp_path):
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "onnxruntime.py").write_text("raise ImportError('hidden by the test')\n")
    wrapper = tmp_path / "python-without-ort"
    wrapper.write_text(f"#!/bin/sh\nPYTHONPATH={hide} exec {sys.executable} \"$@\"\n")
    wrapper.chmod(0o755)
    target = _target(sshd, tmp_path, python=str(wrapper))
    out = tmp_path / "results.json"
    with pytest.raises(RemoteError, match="onnxruntime is not installed on the device .*pip install onnxruntime"):
        run_remote(bundle, target, out=out)
    assert not out.exists() and not (tmp_path / "remote").exists()  # nothing uploaded either
    target = _target(sshd, tmp_path, python="/nonexistent/python3")
    with pytest.raises(RemoteError, match="remote python .* not found"):
        run_remote(bundle, target, out=out)
    assert not out.exists()


def test_device_runner_standalone_and_cli(bundle, tmp_path):
    """`python device_runner.py BUNDLE` works with no edgeskel importable; the CLI wraps it."""
    isolated = tmp_path / "bundle"
    shutil.copytree(bundle, isolated)
    block = tmp_path / "block"
    block.mkdir()
    (block / "edgeskel.py").write_text("raise ImportError('edgeskel must not be needed on the device')\n")
    env = dict(os.environ, PYTHONPATH=str(block))  # shadows the installed package, also in child processes
    proc = subprocess.run([sys.executable, str(isolated / "device_runner.py"), str(isolated), "--out",
                           str(tmp_path / "r.json")], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["variants"][0]["status"] == "ok" and doc["variants"][0]["accuracy"]["agreement"] == 100.0
    from edgeskel.cli import main

    assert main(["device-run", str(isolated), "--out", str(tmp_path / "cli.json")]) == 0
    assert json.loads((tmp_path / "cli.json").read_text())["variants"][0]["accuracy"]["top1"] == doc["variants"][0]["accuracy"]["top1"]
    assert main(["device-run", str(tmp_path)]) == 2  # not a bundle: clear error, exit 2


def test_timeouts_leave_no_results(sshd, bundle, tmp_path):
    target = _target(sshd, tmp_path)
    with pytest.raises(RemoteError, match="timed out after 1 s"):
        target.run("sleep 20", timeout=1, what="sleep")
    meta = json.loads((bundle / "bundle.json").read_text())
    w, b = tiny_onnx(tmp_path / "m.onnx")
    x, y, ref = tiny_data(w, b)
    slow = make_bundle(tmp_path / "slow", [{"name": "ort-fp32", "backend": "ort", "precision": "fp32",
                                             "path": tmp_path / "m.onnx"}], x, y, ref, load_profile("cpu"),
                       runs=10**9)  # would time forever: only the timeout stops it
    assert json.loads((slow / "bundle.json").read_text())["bundle_id"] != meta["bundle_id"]
    out = tmp_path / "results.json"
    t0 = time.time()
    with pytest.raises(RemoteError, match="timed out"):
        run_remote(slow, target, timeout=2, out=out)
    assert time.time() - t0 < 30
    assert not out.exists()


def test_devices_check_cli_with_profile_ssh_block(sshd, tmp_path, capsys):
    import yaml

    from edgeskel.cli import main
    from edgeskel.devices import profiles_dir

    data = yaml.safe_load((profiles_dir() / "cpu.yaml").read_text())
    data["ssh"] = {"host": "testdevice", "config_file": str(sshd["dir"] / "ssh_config"), "python": sys.executable,
                   "workdir": str(tmp_path / "r"), "connect_timeout_s": 5}
    (tmp_path / "cpu-ssh.yaml").write_text(yaml.safe_dump(data))
    assert main(["devices", "check", str(tmp_path / "cpu-ssh.yaml")]) == 0
    assert "ssh://cpu" in capsys.readouterr().out
    data["ssh"]["options"] = {"StrictHostKeyChecking": "no"}  # safety options cannot be overridden
    (tmp_path / "cpu-ssh.yaml").write_text(yaml.safe_dump(data))
    assert main(["devices", "check", str(tmp_path / "cpu-ssh.yaml")]) == 2
    err = capsys.readouterr().err
    assert "'StrictHostKeyChecking' is a safety option" in err and err.count("error:") == 1


# ------------------------------------------------------------------ issue 17: hostile profiles
# Configuration rules first: these need no sshd, so they run (and fail loudly) everywhere.

def _profile_yaml(tmp_path: Path, ssh: dict, name: str = "cpu") -> Path:
    import yaml

    from edgeskel.devices import profiles_dir

    data = yaml.safe_load((profiles_dir() / "cpu.yaml").read_text())
    data["name"] = name
    data["ssh"] = ssh
    p = tmp_path / "hostile.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def _check_cli(profile: Path, capsys) -> tuple[int, str]:
    from edgeskel.cli import main

    rc = main(["devices", "check", str(profile)])
    return rc, capsys.readouterr().err


HOSTILE_HOSTS = ["-oProxyCommand=touch {m}", "-F/dev/null", "dev ice", "dev\nice", "a\tb", "user@host", "dev;touch {m}",
                 "$(touch {m})", ""]


@pytest.mark.parametrize("host", HOSTILE_HOSTS)
def test_hostile_host_is_refused_without_sshd(host, tmp_path, capsys):
    marker = tmp_path / "marker"
    host = host.format(m=marker).replace("\\n", "\n").replace("\\t", "\t")
    rc, err = _check_cli(_profile_yaml(tmp_path, {"host": host}), capsys)
    assert rc == 2 and err.startswith("error: ") and "ssh.host" in err and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1 and not marker.exists()
    with pytest.raises(Exception, match="ssh.host"):  # the same rule when code builds a target
        SSHTarget(name="cpu", host=host)


@pytest.mark.parametrize("user", ["-oProxyCommand=x", "a b", "a\nb", "root@evil", "a;b"])
def test_hostile_user_is_refused_without_sshd(user, tmp_path, capsys):
    user = user.replace("\\n", "\n")
    rc, err = _check_cli(_profile_yaml(tmp_path, {"host": "dev", "user": user}), capsys)
    assert rc == 2 and "ssh.user" in err and len(err.strip().splitlines()) == 1, err
    from edgeskel.errors import ConfigError

    with pytest.raises(ConfigError, match="ssh.user"):
        SSHTarget(name="cpu", host="dev", user=user)


@pytest.mark.parametrize("option, value", [
    ("ProxyCommand", "touch {m}"), ("LocalCommand", "touch {m}"), ("PermitLocalCommand", "yes"),
    ("KnownHostsCommand", "/bin/echo %H %t %K"), ("proxycommand", "touch {m}"), ("Include", "/etc/passwd"),
    ("StrictHostKeyChecking", "no"), ("UserKnownHostsFile", "/dev/null"), ("UpdateHostKeys", "yes"),
    ("PKCS11Provider", "/tmp/evil.so"), ("ControlPath", "/tmp/sock"), ("Compression", "yes\nProxyCommand touch"),
    ("ProxyJump", "-oProxyCommand=touch"), ("ProxyJump", "ok,-evil"), ("Ciphers", "aes128-ctr touch"),
])
def test_ssh_options_outside_the_allow_list_are_refused(option, value, tmp_path, capsys):
    marker = tmp_path / "marker"
    value = value.format(m=marker).replace("\\n", "\n")
    rc, err = _check_cli(_profile_yaml(tmp_path, {"host": "dev", "options": {option: value}}), capsys)
    assert rc == 2 and err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
    assert "ssh.options" in err and ("ssh option" in err) and not marker.exists()


def test_allowed_ssh_options_and_the_command_line():
    """Allow-listed options pass (canonical spelling); `--` ends the options right before the
    destination; the safety options come before anything the profile sets."""
    from edgeskel.ssh_policy import ALLOWED_OPTIONS

    t = SSHTarget(name="cpu", host="jetson-7.lab", user="ubuntu", port=2222,
                  options={"proxyjump": "admin@bastion:22,[fe80::1%eth0]:2200", "Compression": "yes",
                           "HostKeyAlgorithms": "ssh-ed25519,rsa-sha2-512"})
    args = t.ssh_args()
    assert args[-2:] == ["--", "jetson-7.lab"] and args.count("--") == 1
    assert "ProxyJump=admin@bastion:22,[fe80::1%eth0]:2200" in args and "PermitLocalCommand=no" in args
    assert args.index("BatchMode=yes") < args.index("Compression=yes")
    assert "ProxyCommand" not in ALLOWED_OPTIONS and "LocalCommand" not in ALLOWED_OPTIONS
    for host in ("127.0.0.1", "::1", "fe80::1%eth0", "my_box", "a.b-c"):
        assert SSHTarget(name="x", host=host).ssh_args()[-1] == host
    from edgeskel.devices import SSHSpec

    spec = SSHSpec.model_validate({"host": "dev", "options": {"Compression": True, "TCPKeepAlive": False}})
    assert spec.options == {"Compression": "yes", "TCPKeepAlive": "no"}  # YAML's unquoted yes/no


@pytest.mark.parametrize("line", ["ProxyCommand touch {m}", "  localcommand touch {m}", "KnownHostsCommand /bin/echo",
                                  "Match exec \"touch {m}\"", "Include /tmp/other", "PermitLocalCommand=yes",
                                  "Compression yes;touch"])
def test_profile_ssh_config_file_is_held_to_the_allow_list(line, tmp_path, capsys):
    marker = tmp_path / "marker"
    cfg = tmp_path / "ssh_config"
    cfg.write_text(f"Host dev\n  HostName 127.0.0.1\n  {line.format(m=marker)}\n")
    rc, err = _check_cli(_profile_yaml(tmp_path, {"host": "dev", "config_file": str(cfg)}), capsys)
    assert rc == 2 and err.startswith(f"error: {cfg}:3: ") and len(err.strip().splitlines()) == 1, err
    assert not marker.exists()


# End to end against the real sshd: each attack worked before issue 17 (ran the command or
# connected to a host whose key is in no known_hosts file); now: one error line, nothing run.

def test_attacks_against_a_real_sshd(sshd, tmp_path, capsys):
    d = sshd["dir"]
    marker = tmp_path / "marker"
    base = {"host": "127.0.0.1", "port": sshd["port"], "identity_file": str(d / "user_key"),
            "known_hosts_file": str(tmp_path / "empty_known_hosts"), "python": sys.executable,
            "workdir": str(tmp_path / "r"), "connect_timeout_s": 5}
    (tmp_path / "empty_known_hosts").write_text("")
    attacks = {
        "host": {**base, "host": f"-oProxyCommand=touch {marker}"},
        "ProxyCommand": {**base, "options": {"ProxyCommand": f"sh -c 'touch {marker}; nc 127.0.0.1 {sshd['port']}'"}},
        "LocalCommand": {**base, "known_hosts_file": str(d / "known_hosts"),
                         "options": {"LocalCommand": f"touch {marker}", "PermitLocalCommand": "yes"}},
        "KnownHostsCommand": {**base, "options": {"KnownHostsCommand": f"/bin/sh -c 'touch {marker}; echo %H %t %K'"}},
    }
    for what, ssh in attacks.items():
        rc, err = _check_cli(_profile_yaml(tmp_path, ssh), capsys)
        assert not marker.exists(), f"{what}: the profile ran a local command"
        assert rc == 2 and err.startswith("error: ") and len(err.strip().splitlines()) == 1, (what, err)
    assert (tmp_path / "empty_known_hosts").read_text() == ""
    # the same device with a known host key and allowed options still works end to end
    ok = {**base, "known_hosts_file": str(d / "known_hosts"), "options": {"Compression": "yes", "IdentitiesOnly": "yes"}}
    rc, err = _check_cli(_profile_yaml(tmp_path, ok), capsys)
    assert rc == 0, err


def test_host_is_never_an_option_even_if_validation_is_bypassed(sshd, tmp_path):
    """Defence in depth: even a target whose host skipped validation is placed after `--`,
    so ssh treats `-oProxyCommand=...` as a host name, not an option."""
    marker = tmp_path / "marker"
    t = _target(sshd, tmp_path)
    object.__setattr__(t, "host", f"-oProxyCommand=touch {marker}")
    with pytest.raises(RemoteError):
        t.run("true", timeout=20, what="check")
    assert not marker.exists()
