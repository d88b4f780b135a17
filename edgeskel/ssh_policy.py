"""What a device profile may tell ssh: host/user rules and the allow-list of ssh options.

Why: profiles are files strangers share. ssh treats a destination that starts with `-` as an
option (`-oProxyCommand=...` runs a local command), and many `-o` options run commands or
weaken host-key checking (ProxyCommand, LocalCommand, KnownHostsCommand, Match exec, ...).
A deny-list always misses one, so a profile may set only the options listed here; the same
list applies to the keywords of an `ssh.config_file` the profile names. Pure functions, no
I/O except reading that config file, so the rules are tested without an sshd.
"""

from __future__ import annotations

import re
from pathlib import Path

from edgeskel.errors import ConfigError

# Options a profile's `ssh.options` (and its `ssh.config_file`) may set: transport tuning and
# algorithm choices. None runs a local command, loads code, touches known_hosts or relaxes
# host-key checking. value check: a regex the whole value must match.
_WORDS = r"[A-Za-z0-9@.,+_-]+"
ALLOWED_OPTIONS: dict[str, str] = {
    "AddressFamily": r"any|inet|inet6",
    "Ciphers": _WORDS,
    "Compression": r"yes|no",
    "ConnectionAttempts": r"[1-9][0-9]?",
    "HostKeyAlgorithms": _WORDS,
    "IdentitiesOnly": r"yes|no",
    "IPQoS": r"[A-Za-z0-9 ]+",
    "KexAlgorithms": _WORDS,
    "MACs": _WORDS,
    "ProxyJump": r"none|[A-Za-z0-9@.:_\[\]%,-]+",  # each hop checked like ssh.host below
    "PubkeyAcceptedAlgorithms": _WORDS,
    "RekeyLimit": r"[A-Za-z0-9 ]+",
    "TCPKeepAlive": r"yes|no",
}
# Set by edgeskel on every command line; a profile can never change them.
SAFETY_OPTIONS = ("BatchMode", "StrictHostKeyChecking", "ConnectTimeout", "ServerAliveInterval",
                  "ServerAliveCountMax", "PermitLocalCommand", "UpdateHostKeys")
# Extra keywords an ssh.config_file may use besides ALLOWED_OPTIONS (what the profile's own
# fields set on the command line anyway). `Match` is allowed without `exec`.
CONFIG_FILE_KEYWORDS = ("Host", "Match", "HostName", "User", "Port", "IdentityFile", "UserKnownHostsFile")

# A host: a name, an IPv4 address or a bracket-less IPv6 address; a user: a login name.
_HOST = re.compile(r"[A-Za-z0-9_:][A-Za-z0-9._:%-]*")
_USER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*\$?")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_host(host: str, what: str = "ssh.host") -> str:
    """A destination ssh can never read as an option: no leading `-`, no whitespace/control
    characters, no `@` (the user goes in ssh.user), at most 253 characters."""
    if not isinstance(host, str) or not host or len(host) > 253 or not _HOST.fullmatch(host):
        raise ValueError(f"{what} {host!r} is not a host name or address (allowed: letters, digits, "
                         f"'.', '-', '_', ':' and '%', not starting with '-'; put the user in ssh.user)")
    return host


def check_user(user: str | None) -> str | None:
    if user is None:
        return None
    if not isinstance(user, str) or len(user) > 64 or not _USER.fullmatch(user):
        raise ValueError(f"ssh.user {user!r} is not a login name (allowed: letters, digits, '.', '-', '_', "
                         f"not starting with '-')")
    return user


def _canonical(key: str) -> str | None:
    for k in ALLOWED_OPTIONS:
        if k.lower() == key.lower():
            return k
    return None


def check_options(options: dict[str, str]) -> dict[str, str]:
    """Keep only allow-listed options with well-formed values; anything else is an error
    naming the option (ValueError: the profile validator turns it into file + key path)."""
    out: dict[str, str] = {}
    for key, value in options.items():
        value = str(value)
        canon = _canonical(str(key))
        if canon is None:
            why = ("is a safety option edgeskel sets itself" if str(key).lower() in {s.lower() for s in SAFETY_OPTIONS}
                   else "is not allowed in a profile")
            raise ValueError(f"ssh option {key!r} {why} (allowed: {', '.join(ALLOWED_OPTIONS)})")
        if _CONTROL.search(value) or not re.fullmatch(ALLOWED_OPTIONS[canon], value):
            raise ValueError(f"ssh option {canon}: value {value!r} is not allowed")
        if canon == "ProxyJump" and value != "none":
            for hop in value.split(","):
                user, _, hostport = hop.rpartition("@")
                check_user(user or None)
                host = hostport[1:].split("]")[0] if hostport.startswith("[") else hostport.split(":")[0]
                check_host(host, "ssh option ProxyJump host")
        out[canon] = value
    return out


def check_config_file(path: str | Path) -> None:
    """An ssh config file named by a profile is held to the same allow-list: keywords that run
    commands (ProxyCommand, LocalCommand, KnownHostsCommand, `Match exec`) or pull in other
    files (Include) are refused. ConfigError names the file, line and keyword."""
    p = Path(path).expanduser()
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read ssh config file: {getattr(exc, 'strerror', None) or exc}") from None
    allowed = {k.lower() for k in (*ALLOWED_OPTIONS, *CONFIG_FILE_KEYWORDS)}
    for n, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        m = re.match(r"([A-Za-z0-9]+)\s*(?:=\s*|\s+)?(.*)", s)
        key = m.group(1) if m else s.split()[0]
        rest = m.group(2) if m else ""
        if key.lower() not in allowed:
            raise ConfigError(f"{p}:{n}: ssh config keyword {key!r} is not allowed in a config file a device profile "
                              f"names (allowed: {', '.join((*CONFIG_FILE_KEYWORDS, *ALLOWED_OPTIONS))})")
        if key.lower() == "match" and re.search(r"(^|\s)!?exec\b", rest, re.IGNORECASE):
            raise ConfigError(f"{p}:{n}: `Match exec` runs a command: not allowed in a config file a device profile names")
        if key.lower() in {k.lower() for k in ALLOWED_OPTIONS}:
            try:
                check_options({key: rest.strip().strip('"')})
            except ValueError as exc:
                raise ConfigError(f"{p}:{n}: {exc}") from None
