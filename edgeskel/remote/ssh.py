"""Run commands and copy files on a device with the system OpenSSH client.

Why the system client: it honours the user's ~/.ssh/config (aliases, ProxyJump, agents,
keys), known_hosts and hardware keys, with no extra dependency. We only add safety options
that nothing can override: BatchMode=yes (never prompt), StrictHostKeyChecking=yes (never
trust an unknown or changed host key), a connect timeout and keep-alives, no local commands and
no known_hosts updates, and we pass -p/-l/-i only when the profile sets them so the user's config
stays in charge otherwise. A profile is untrusted text: its host and user are validated, `--`
ends the options before the destination, and it may set only the allow-listed ssh options
(`ssh_policy`). Every failure becomes a RemoteError that says what happened and what to do.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeskel.errors import ConfigError, RemoteError
from edgeskel.ssh_policy import SAFETY_OPTIONS, check_config_file, check_host, check_options, check_user

if TYPE_CHECKING:
    from edgeskel.devices import DeviceProfile

__all__ = ["SAFETY_OPTIONS", "SSHTarget", "rpath"]


@dataclass
class SSHTarget:
    """How to reach one device. `name` is the profile name: reports and logs use it, never the host."""

    name: str
    host: str
    user: str | None = None
    port: int = 22
    identity_file: str | None = None
    workdir: str = "~/edgeskel-run"
    python: str = "python3"
    connect_timeout_s: int = 10
    command_timeout_s: int = 1800
    config_file: str | None = None
    known_hosts_file: str | None = None
    options: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Every way of building a target (profile or code) gets the same checks, so nothing
        from a profile reaches the ssh command line unvalidated."""
        try:
            check_host(self.host)
            check_user(self.user)
            self.options = check_options(dict(self.options))
        except ValueError as exc:
            raise ConfigError(f"device profile {self.name!r}: {exc}") from None
        if not 1 <= int(self.port) <= 65535:
            raise ConfigError(f"device profile {self.name!r}: ssh.port {self.port} is not in 1..65535")
        if self.config_file:
            check_config_file(self.config_file)

    @classmethod
    def from_profile(cls, profile: DeviceProfile) -> SSHTarget:
        if profile.ssh is None:
            raise ConfigError(f"device profile {profile.name!r} has no `ssh:` block: set ssh.host to measure remotely")
        return cls(name=profile.name, **profile.ssh.model_dump())

    @property
    def label(self) -> str:
        """What reports say (`measured_on`): the profile name, not the host."""
        return f"ssh://{self.name}"

    def redact(self, text: str) -> str:
        """Replace host, user and key/config paths in `text` (for logs and reports)."""
        for secret, repl in ((self.identity_file, "<identity_file>"), (self.config_file, "<ssh_config>"),
                             (self.known_hosts_file, "<known_hosts>"), (self.host, "<host>")):
            if secret:
                text = text.replace(secret, repl)
        if self.user:
            text = re.sub(rf"\b{re.escape(self.user)}@", "<user>@", text)
        return text

    # ------------------------------------------------------------------ command lines

    def ssh_args(self) -> list[str]:
        args = ["ssh"]
        if self.config_file:
            args += ["-F", os.path.expanduser(self.config_file)]
        args += ["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
                 "-o", f"ConnectTimeout={int(self.connect_timeout_s)}",
                 "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3",
                 "-o", "PermitLocalCommand=no", "-o", "UpdateHostKeys=no"]
        if self.known_hosts_file:
            args += ["-o", f"UserKnownHostsFile={os.path.expanduser(self.known_hosts_file)}"]
        for k, v in self.options.items():
            args += ["-o", f"{k}={v}"]
        if self.port != 22:
            args += ["-p", str(self.port)]
        if self.user:
            args += ["-l", self.user]
        if self.identity_file:
            args += ["-i", os.path.expanduser(self.identity_file)]
        return args + ["--", self.host]  # `--`: the destination is never read as an option

    def run(self, command: str, timeout: float | None = None, stdin: Any = None, what: str = "remote command",
            check: bool = True) -> subprocess.CompletedProcess:
        """Run `command` through the remote shell; RemoteError on ssh failure, timeout, or
        (with check) a non-zero exit."""
        timeout = timeout or self.command_timeout_s
        try:
            proc = subprocess.Popen(self.ssh_args() + [command],
                                    stdin=stdin if stdin is not None else subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        except FileNotFoundError:
            raise RemoteError("the OpenSSH client `ssh` is not installed here: apt install openssh-client") from None
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise RemoteError(f"{what} on device {self.name!r} timed out after {timeout:.0f} s "
                              f"(raise ssh.command_timeout_s in the profile if the device is just slow)") from None
        res = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
        if proc.returncode == 255:
            raise RemoteError(self._ssh_failure(err.decode(errors="replace"), what))
        if check and proc.returncode != 0:
            raise RemoteError(f"{what} failed on device {self.name!r} with exit code {proc.returncode}:\n"
                              f"{_tail(err.decode(errors='replace'))}")
        return res

    def _ssh_failure(self, stderr: str, what: str) -> str:
        """Turn ssh's own error (exit 255) into a message with the fix."""
        where = f"device {self.name!r} ({self.host}{'' if self.port == 22 else f':{self.port}'})"
        kh = f"-f {self.known_hosts_file} " if self.known_hosts_file else ""
        port = f"-p {self.port} " if self.port != 22 else ""
        s = stderr
        if "REMOTE HOST IDENTIFICATION HAS CHANGED" in s or "has changed and you have requested strict" in s:
            return (f"host key of {where} has CHANGED since it was recorded in known_hosts: refusing to connect "
                    f"(possible man-in-the-middle, or the device was reinstalled). Verify the new key on the device "
                    f"(ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub), then remove the old entry with "
                    f"`ssh-keygen {kh}-R {self._kh_name()}` and add the new one.")
        if "Host key verification failed" in s or "host key is known for" in s:
            return (f"host key of {where} is unknown (not in known_hosts) and edgeskel never accepts host keys "
                    f"automatically. Verify the device's fingerprint, then add it: "
                    f"`ssh-keyscan {port}{self.host} >> {self.known_hosts_file or '~/.ssh/known_hosts'}` "
                    f"(or connect once with `ssh {port}{self.host}` and confirm).")
        if "Permission denied" in s or "Too many authentication failures" in s:
            return (f"authentication to {where} failed ({_tail(s, 1)}): BatchMode allows key-based login only. "
                    f"Install your public key on the device (ssh-copy-id), load it into ssh-agent, or set "
                    f"ssh.identity_file / ssh.user in the profile.")
        if "Connection refused" in s:
            return f"{where} is unreachable: connection refused (is sshd running there, and is the port right?)"
        if "timed out" in s.lower() or "Timeout, server" in s:
            return (f"{where} did not answer: {_tail(s, 1)} (is it powered on and on the network? "
                    f"connect timeout {self.connect_timeout_s} s)")
        if "Could not resolve hostname" in s or "Name or service not known" in s:
            return f"{where}: hostname cannot be resolved ({_tail(s, 1)})"
        if "No route to host" in s or "Network is unreachable" in s:
            return f"{where} is unreachable: {_tail(s, 1)}"
        if "closed by remote host" in s or "Broken pipe" in s or "Connection reset" in s:
            return f"connection to {where} was lost during {what}: {_tail(s, 2)}"
        return f"ssh to {where} failed during {what} (exit 255): {_tail(s) or 'no error output'}"

    def _kh_name(self) -> str:
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"

    # ------------------------------------------------------------------ helpers

    def check_connection(self) -> None:
        self.run("true", timeout=self.connect_timeout_s + 20, what="connection check")

    def upload_dir(self, local_dir: Path, remote_dir: str, timeout: float | None = None) -> None:
        """Copy `local_dir`'s contents to `remote_dir` (a tar stream over ssh), atomically:
        unpacked into a temp folder, then renamed into place."""
        local_dir = Path(local_dir)
        rd = rpath(remote_dir)
        tmp = rpath(remote_dir + ".partial")
        with tempfile.TemporaryFile() as fh:
            with tarfile.open(fileobj=fh, mode="w") as tar:
                for p in sorted(local_dir.iterdir()):
                    tar.add(p, arcname=p.name)
            fh.seek(0)
            self.run(f"rm -rf {tmp} {rd} && mkdir -p {tmp} && tar -xf - -C {tmp} && mv {tmp} {rd}",
                     timeout=timeout, stdin=fh, what="bundle upload")

    def read_file(self, remote_path: str, timeout: float | None = None) -> bytes:
        return self.run(f"cat {rpath(remote_path)}", timeout=timeout or 120, what=f"fetching {remote_path}").stdout


def rpath(path: str) -> str:
    """Quote a remote path for the remote shell, keeping a leading `~/` expandable."""
    if path == "~":
        return '"$HOME"'
    if path.startswith("~/"):
        return '"$HOME"/' + shlex.quote(path[2:])
    return shlex.quote(path)


def _tail(text: str, n: int = 8) -> str:
    lines = [ln for ln in text.replace("\r", "").splitlines() if ln.strip() and not set(ln.strip()) <= {"@"}]
    return "\n".join(lines[-n:])
