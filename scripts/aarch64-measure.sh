#!/usr/bin/env bash
# The numbers docs/AARCH64.md quotes: set-up time of the aarch64 userland, run time of the slow
# test (a raspberry-pi-5 bundle over SSH under qemu-user, then the by-hand import), and the
# report's emulated-run table next to this x86 host's numbers for the same bundle.
# Usage: scripts/aarch64-measure.sh   (keeps the test's run folder when KEEP=1)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=.venv/bin/python
[ -x "$PY" ] || { echo "error: .venv missing: run 'make setup' first" >&2; exit 2; }

t0=$(date +%s)
bash scripts/aarch64-userland.sh >/dev/null
t1=$(date +%s)
BASE=$(mktemp -d /tmp/edgeskel-aarch64-measure.XXXXXX)
OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} "$PY" -m pytest tests/test_remote_aarch64.py -q -p no:cacheprovider \
  -k raspberry --basetemp="$BASE" | tail -n 1
t2=$(date +%s)

run=$(dirname "$(find "$BASE" -path '*raspberry-pi-5/report/report.md' | head -n1)")/..
sed -n '/^## Emulated device runs/,/^## Reasons/p' "$run/report/report.md" | sed '$d'
"$PY" - "$run/validate/results.json" "$(find "$BASE" -name x86.json | head -n1)" <<'EOF'
import json, sys

print(f"{'variant':10} {'where':32} {'top-1':>6} {'agree':>6} {'max|dlogit|':>11} {'p50 b1 ms':>10} {'p50 b8 ms':>10}")
for path in sys.argv[1:]:
    doc = json.load(open(path))
    env = doc["environment"]
    where = f"{env['machine']} {env.get('emulation') or 'native'}"
    for v in doc["variants"]:
        a, lat = v["accuracy"], v["latency_ms"]
        print(f"{v['name']:10} {where:32} {a['top1']:6.2f} {a['agreement']:6.1f} {a['max_abs_vs_ref']:11.3g} "
              f"{lat['1']['p50']:10.2f} {lat.get('8', {}).get('p50', float('nan')):10.2f}")
EOF
echo "set-up (already cached or not): $((t1 - t0)) s; slow test (SSH run + by-hand import): $((t2 - t1)) s"
[ "${KEEP:-0}" = 1 ] && echo "run folder kept: $BASE" || rm -rf "$BASE"
