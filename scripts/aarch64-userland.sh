#!/usr/bin/env bash
# Build an aarch64 (arm64) Python userland that runs under qemu-user on an x86_64 machine,
# so that a bundle's device_runner.py can be measured by a REAL arm64 build of Python,
# numpy and ONNX Runtime (real arm64 kernels, emulated CPU) over the SSH runner.
#
# Why this way: no binfmt_misc is needed (containers rarely may register it): the wrapper
# bin/python3 calls qemu-aarch64-static explicitly with -L <rootfs>. Python and its shared
# libraries are Debian arm64 packages, fetched with apt from the SAME sources this machine
# already uses (a private apt state under the cache, so the host's dpkg is never touched);
# numpy and onnxruntime are the aarch64 wheels from PyPI at the versions requirements.txt pins.
#
# Usage:  scripts/aarch64-userland.sh            # idempotent; prints what it did and its time
#         EDGESKEL_AARCH64_HOME=/some/dir scripts/aarch64-userland.sh
# Result: $EDGESKEL_AARCH64_HOME/bin/python3 (default ~/.cache/edgeskel-aarch64), usable as
#         a device profile's `ssh.python`. Remove the folder to start over.
set -euo pipefail

START=$(date +%s)
HOME_DIR=${EDGESKEL_AARCH64_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/edgeskel-aarch64}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYVER=3.11
ROOT=$HOME_DIR/rootfs
SITE=$HOME_DIR/site
APTD=$HOME_DIR/apt
WRAPPER=$HOME_DIR/bin/python3
STAMP=$HOME_DIR/.complete

say() { printf '[aarch64-userland %3ds] %s\n' "$(( $(date +%s) - START ))" "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

pin() {  # the version requirements.txt pins for package $1 (the host's venv runs the same)
  sed -n "s/^$1==\([^ ;#]*\).*/\1/p" "$REPO/requirements.txt" | head -n1
}
NUMPY=$(pin numpy)
ORT=$(pin onnxruntime)
[ -n "$NUMPY" ] && [ -n "$ORT" ] || die "$REPO/requirements.txt: numpy and onnxruntime must be pinned (name==version)"
LAYOUT=2   # bump when this script changes what it builds: an older cache is then rebuilt
WANT="layout=$LAYOUT python=$PYVER numpy=$NUMPY onnxruntime=$ORT"

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] && [ -x "$WRAPPER" ] && [ -x "$ROOT/usr/bin/python$PYVER" ] \
   && [ -d "$SITE/onnxruntime" ]; then
  say "already set up in $HOME_DIR ($WANT)"
  "$WRAPPER" -c 'import platform, numpy, onnxruntime; print("[aarch64-userland]", platform.machine(), "python", platform.python_version(), "numpy", numpy.__version__, "onnxruntime", onnxruntime.__version__)' >&2
  say "done in $(( $(date +%s) - START )) s"
  echo "$WRAPPER"
  exit 0
fi
rm -f "$STAMP"

# 1. qemu-user (Debian's static build; no binfmt registration needed) -------------------
QEMU=$(command -v qemu-aarch64-static || true)
if [ -z "$QEMU" ]; then
  command -v apt-get >/dev/null || die "qemu-aarch64-static not found and no apt-get: install qemu-user-static"
  [ "$(id -u)" = 0 ] || die "qemu-aarch64-static not found: run 'sudo apt-get install qemu-user-static' first"
  say "installing qemu-user-static"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends qemu-user-static >/dev/null \
    || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends qemu-user-static >/dev/null; } \
    || die "apt-get install qemu-user-static failed"
  QEMU=$(command -v qemu-aarch64-static)
fi
say "qemu: $("$QEMU" --version | head -n1)"

# 2. Debian arm64 Python + shared libraries, extracted into ROOT -----------------------------
# A private apt state (Dir::State/Cache under the cache folder, arm64 only, empty dpkg status)
# reads the host's own apt sources, so the whole dependency closure is resolved by apt and
# nothing of the host's package database changes.
mkdir -p "$APTD/state/lists/partial" "$APTD/cache/archives/partial" "$APTD/etc/preferences.d"
: > "$APTD/status"
APT=(apt-get -q -o "Dir::State=$APTD/state" -o "Dir::State::status=$APTD/status" -o "Dir::Cache=$APTD/cache"
     -o "Dir::Etc::Preferences=$APTD/etc/preferences" -o "Dir::Etc::PreferencesParts=$APTD/etc/preferences.d"
     -o "APT::Architecture=arm64" -o "APT::Architectures::=arm64" -o "APT::Install-Recommends=false"
     -o "Debug::NoLocking=true")
say "apt (arm64): updating package lists"
"${APT[@]}" update >"$APTD/update.log" 2>&1 || die "apt-get update for arm64 failed: see $APTD/update.log"
say "apt (arm64): downloading python$PYVER and its libraries"
"${APT[@]}" install -y --download-only "python$PYVER" libstdc++6 libgcc-s1 >"$APTD/install.log" 2>&1 \
  || die "apt-get could not download the arm64 packages: see $APTD/install.log"
rm -rf "$ROOT.partial"
mkdir -p "$ROOT.partial/usr/bin" "$ROOT.partial/usr/lib" "$ROOT.partial/usr/sbin"
for d in bin lib sbin; do ln -s "usr/$d" "$ROOT.partial/$d"; done   # merged /usr, as on Debian 12
n=0
for deb in "$APTD"/cache/archives/*_arm64.deb "$APTD"/cache/archives/*_all.deb; do
  [ -f "$deb" ] || continue
  dpkg-deb --fsys-tarfile "$deb" | tar -x --keep-directory-symlink -C "$ROOT.partial"
  n=$((n + 1))
done
[ -x "$ROOT.partial/usr/bin/python$PYVER" ] || die "python$PYVER was not in the downloaded packages"
# qemu 7.x passes the HOST's /proc/cpuinfo (x86 lines, no MIDR) through to an arm64 guest;
# ONNX Runtime's cpuinfo library then dereferences NULL at import (uncaught SIGSEGV). qemu
# resolves guest paths under -L first, so ROOT/proc/cpuinfo is what the guest reads: one
# Cortex-A76 r4p1 entry (the Raspberry Pi 5's core and the `-cpu cortex-a76` model, with the
# Pi 5's kernel feature list) per host processor that /sys says is present.
mkdir -p "$ROOT.partial/proc"
python3 - "$ROOT.partial/proc/cpuinfo" <<'EOF'
import sys

ids = []
for part in open("/sys/devices/system/cpu/present").read().strip().split(","):
    lo, _, hi = part.partition("-")
    ids += range(int(lo), int(hi or lo) + 1)
entry = ("processor\t: {}\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp "
         "asimdhp cpuid asimdrdm lrcpc dcpop asimddp\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x4\n"
         "CPU part\t: 0xd0b\nCPU revision\t: 1\n\n")
open(sys.argv[1], "w").write("".join(entry.format(i) for i in ids))
EOF
rm -rf "$ROOT" && mv "$ROOT.partial" "$ROOT"
say "rootfs: $n packages extracted into $ROOT"

# 3. aarch64 wheels of numpy + onnxruntime (and their dependencies) from PyPI ---------------
PIP=("$REPO/.venv/bin/python" -m pip)
[ -x "$REPO/.venv/bin/python" ] || PIP=(python3 -m pip)
say "pip: aarch64 wheels numpy==$NUMPY onnxruntime==$ORT"
rm -rf "$SITE.partial"
# PIP_CONSTRAINT is cleared: a machine-wide x86 constraints file must not pin these wheels.
PIP_CONSTRAINT="" "${PIP[@]}" install -q --disable-pip-version-check --no-compile --target "$SITE.partial" \
  --platform manylinux2014_aarch64 --platform "manylinux_2_28_aarch64" --platform "manylinux_2_27_aarch64" \
  --platform "manylinux_2_17_aarch64" --implementation cp --python-version "$PYVER" --abi "cp${PYVER/./}" \
  --only-binary=:all: "numpy==$NUMPY" "onnxruntime==$ORT" >"$HOME_DIR/pip.log" 2>&1 \
  || die "pip could not fetch the aarch64 wheels: see $HOME_DIR/pip.log"
# A subprocess of the emulated python (device_runner.py runs each variant in a child) must
# start through the wrapper too: without binfmt_misc the kernel cannot exec an arm64 binary.
cat > "$SITE.partial/sitecustomize.py" <<'EOF'
"""edgeskel aarch64 userland: children must re-enter qemu through the wrapper (no binfmt_misc)."""
import os
import sys

if os.environ.get("EDGESKEL_AARCH64_PYTHON"):
    sys.executable = os.environ["EDGESKEL_AARCH64_PYTHON"]
EOF
rm -rf "$SITE" && mv "$SITE.partial" "$SITE"

# 4. the wrapper: what a device profile's `ssh.python` points to ----------------------------
CPU=cortex-a76   # the Raspberry Pi 5's core (Armv8.2 + dot product, no SVE): closest to the profiles
CPUS=$("$QEMU" -cpu help || true)   # exits 1 after listing; not piped into grep -q (pipefail + SIGPIPE)
grep -qw "$CPU" <<<"$CPUS" || CPU=max
mkdir -p "$HOME_DIR/bin"
cat > "$WRAPPER.partial" <<EOF
#!/bin/sh
# arm64 Python under qemu-user (made by edgeskel scripts/aarch64-userland.sh). EDGESKEL_EMULATOR
# tells device_runner.py that latency measured here is emulated, not the device's.
export EDGESKEL_AARCH64_PYTHON="$WRAPPER" EDGESKEL_EMULATOR="qemu-user:$CPU" PYTHONNOUSERSITE=1
export PYTHONPATH="$SITE"
unset PYTHONHOME
exec "$QEMU" -cpu "\${EDGESKEL_AARCH64_CPU:-$CPU}" -L "$ROOT" "$ROOT/usr/bin/python$PYVER" "\$@"
EOF
chmod 755 "$WRAPPER.partial" && mv "$WRAPPER.partial" "$WRAPPER"

say "checking: the arm64 python imports numpy and onnxruntime"
"$WRAPPER" - <<'EOF' >&2 || die "the aarch64 python does not work: see above"
import platform
import numpy as np
import onnxruntime as ort
from onnxruntime import __version__ as v
print("[aarch64-userland]", platform.machine(), "python", platform.python_version(), "numpy", np.__version__,
      "onnxruntime", v, ort.get_available_providers())
assert platform.machine() == "aarch64", platform.machine()
EOF
echo "$WANT" > "$STAMP"
say "done in $(( $(date +%s) - START )) s: set ssh.python: $WRAPPER"
echo "$WRAPPER"
