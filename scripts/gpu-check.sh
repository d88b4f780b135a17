#!/usr/bin/env bash
# Fine-tune a compressed CTR-GCN for one epoch on GPU and on CPU, with 1 and 2 processes
# (torchrun: NCCL on GPUs, gloo on CPU), and print epoch times and top-1.
#
#   scripts/gpu-check.sh              # from the repository root or anywhere; one command
#
# Data: ../shared/data/nw-ucla (or shared/data/nw-ucla) when present, else built-in synthetic
# actions in the NTU layout; override with GPU_CHECK_DATA=SPEC. Output: runs/gpu-check/
# (summary.json + one compress run folder per configuration). GPU_CHECK_QUICK=1 shrinks the
# model and data (a smoke run of the same code paths, e.g. on a 2-core CPU-only machine).
#
# Bootstrap (no network needed if a CUDA build of torch is installed): uses .venv when its torch
# sees CUDA; else a Python whose torch sees CUDA ($PYTHON or python3), in .venv-gpu created with
# --system-site-packages (missing requirements are pip-installed when a registry is reachable);
# else `make setup` (pinned CPU torch) and the GPU rows are reported as missing with the reason.
# edgeskel itself runs from the checkout (PYTHONPATH), so nothing is built or downloaded for it.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
OUT="${GPU_CHECK_OUT:-runs/gpu-check}"
QUICK="${GPU_CHECK_QUICK:-0}"
PYTHON="${PYTHON:-python3}"
log() { printf '[gpu-check] %s\n' "$*" >&2; }

has_cuda() { "$1" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; }

# ---------------------------------------------------------------- bootstrap a Python with torch
if [ -x .venv/bin/python ] && has_cuda .venv/bin/python; then
  PY=.venv/bin/python
elif has_cuda "$PYTHON"; then
  if [ ! -x .venv-gpu/bin/python ]; then
    log "creating .venv-gpu on top of $PYTHON's CUDA torch"
    "$PYTHON" -m venv --system-site-packages .venv-gpu
  fi
  PY=.venv-gpu/bin/python
  if ! PYTHONPATH="$ROOT" "$PY" -c 'import edgeskel.cli, onnx, typer, rich, pydantic, yaml, tensorly' 2>/dev/null; then
    log "installing edgeskel's requirements except torch into .venv-gpu"
    grep -v '^torch==' requirements.txt > .venv-gpu/requirements-no-torch.txt
    "$PY" -m pip install --quiet --disable-pip-version-check -r .venv-gpu/requirements-no-torch.txt \
      || log "warning: pip install failed (offline?); continuing with what is installed"
  fi
else
  log "no CUDA-enabled torch found ($PYTHON, .venv): bootstrapping the CPU environment (make setup)"
  make setup >&2
  PY=.venv/bin/python
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
E=("$PY" -m edgeskel)
TORCHRUN=("$PY" -m torch.distributed.run --standalone --nproc_per_node=2)
read -r NGPU GPU_NAME < <("$PY" -c 'import torch; n = torch.cuda.device_count() if torch.cuda.is_available() else 0; print(n, (torch.cuda.get_device_name(0) if n else "-").replace(" ", "_"))')
CORES=$("$PY" -c 'import os; print(len(os.sched_getaffinity(0)))')
log "python: $PY, torch $("$PY" -c 'import torch; print(torch.__version__)'), CUDA devices: $NGPU ($GPU_NAME), CPU cores: $CORES"

# ------------------------------------------------------------------------------- data + reference
mkdir -p "$OUT"
if [ -n "${GPU_CHECK_DATA:-}" ]; then DATA="$GPU_CHECK_DATA"
elif [ -d ../shared/data/nw-ucla/all_sqe ]; then DATA="nw-ucla:$(cd ../shared/data/nw-ucla && pwd)"
elif [ -d shared/data/nw-ucla/all_sqe ]; then DATA="nw-ucla:$(cd shared/data/nw-ucla && pwd)"
else DATA="synthetic?layout=ntu25&classes=10&per_class=48&test_per_class=16&frames=64"
fi
if [ "$QUICK" = 1 ] && [ -z "${GPU_CHECK_DATA:-}" ]; then
  DATA="synthetic?layout=ntu25&classes=4&per_class=8&test_per_class=4&frames=16"
fi
WIDTH=1.0; FRAMES=52; BATCH=32; BUDGET=0.5
[ "$QUICK" = 1 ] && { WIDTH=0.25; FRAMES=16; BATCH=8; BUDGET=0.8; }
REF_DEV=cpu; [ "$NGPU" -gt 0 ] && REF_DEV=cuda
if [[ "$DATA" == nw-ucla:* ]] && [ "$QUICK" != 1 ] && [ -f reference/ctrgcn-nwucla.ckpt ]; then
  REF=reference/ctrgcn-nwucla.ckpt
  log "reference: $REF (trained CTR-GCN, NW-UCLA)"
else
  REF="$OUT/reference/best.ckpt"
  if [ ! -f "$REF" ]; then
    log "reference: training a CTR-GCN (width $WIDTH) for 2 epochs on $DATA ($REF_DEV)"
    "${E[@]}" train --model ctrgcn --data "$DATA" --width "$WIDTH" --frames "$FRAMES" --epochs 2 \
      --batch-size "$BATCH" --optimizer adamw --lr 0.003 --warmup-epochs 0 --device "$REF_DEV" \
      --out "$OUT/reference" --json >/dev/null
  fi
fi
cat > "$OUT/recipe.yaml" <<EOF
name: gpu-check
model: {name: ctrgcn, checkpoint: $(cd "$(dirname "$REF")" && pwd)/$(basename "$REF")}
data: {spec: "$DATA"}
compress: {policy: budget, target: params, budget: $BUDGET, data_aware: true, calib_batches: 4}
finetune: {epochs: 1, batch_size: $BATCH, optimizer: sgd, lr: 0.01, weight_decay: 0.0004, warmup_epochs: 0,
           kd_weight: 0.5, kd_temperature: 4.0}
export: {calib_samples: 64}
EOF

# -------------------------------------------------------------------- one epoch per configuration
RUNS=()
run_cfg() {  # name device nproc
  local name=$1 dev=$2 nproc=$3 dir="$OUT/$1" t0 t1 cmd
  rm -rf "$dir"
  log "fine-tune 1 epoch: $name"
  if [ "$nproc" = 1 ]; then cmd=("${E[@]}"); else cmd=("${TORCHRUN[@]}" -m edgeskel); fi
  t0=$(date +%s.%N)
  if ! "${cmd[@]}" compress --recipe "$OUT/recipe.yaml" --out "$dir" --device "$dev" --quiet >"$OUT/$name.log" 2>&1; then
    log "FAILED: $name (last lines of $OUT/$name.log follow)"
    tail -n 15 "$OUT/$name.log" >&2
    exit 1
  fi
  t1=$(date +%s.%N)
  echo "$t0 $t1" > "$dir/wall.txt"
  RUNS+=("$name")
}
if [ "$NGPU" -ge 1 ]; then run_cfg gpu-x1 cuda 1; fi
if [ "$NGPU" -ge 2 ]; then run_cfg gpu-x2 cuda 2; fi
OMP_NUM_THREADS="$CORES" run_cfg cpu-x1 cpu 1
if [ "$CORES" -ge 2 ]; then OMP_NUM_THREADS=$((CORES / 2)) run_cfg cpu-x2 cpu 2; fi

# ------------------------------------------------------------------------------------ summary
"$PY" - "$OUT" "$NGPU" "$GPU_NAME" "$CORES" "$DATA" "${RUNS[@]}" <<'EOF'
import json, sys, platform
from pathlib import Path
import torch
out, ngpu, gpu, cores, data, runs = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6:]
rows = []
for name in runs:
    j = json.loads((out / name / "compression.json").read_text())
    t0, t1 = map(float, (out / name / "wall.txt").read_text().split())
    ft = j["finetune"]
    rows.append({"config": name, "device": ft.get("device"), "processes": ft.get("world_size"), "amp": ft.get("amp"),
                 "epoch_s": (ft.get("epoch_train_s") or [None])[0], "top1_finetuned": j["top1"]["after_finetune"],
                 "top1_compressed": j["top1"]["after_compression"], "top1_reference": j["top1"]["reference"],
                 "top1_split": j.get("selection", {}).get("top1_split", "validation"), "command_wall_s": round(t1 - t0, 1)})
missing = None
if ngpu == 0:
    missing = f"no CUDA device visible to torch {torch.__version__} on {platform.node()}: GPU rows not measured"
elif ngpu == 1:
    missing = "one CUDA device: the 2-process GPU row needs 2 GPUs"
summary = {"data": data, "gpu": gpu.replace("_", " "), "gpus": ngpu, "cpu_cores": int(cores), "torch": torch.__version__,
           "rows": rows, "missing": missing}
(out / "summary.json").write_text(json.dumps(summary, indent=2))
print(f"gpu-check: compressed CTR-GCN, 1 fine-tune epoch on {data}")
print(f"{'config':8} {'device':8} {'procs':>5} {'amp':>9} {'epoch s':>8} {'top-1 ft':>9} {'top-1 cmp':>9} {'wall s':>7}")
for r in rows:
    print(f"{r['config']:8} {r['device']:8} {r['processes']:>5} {str(r['amp']):>9} {r['epoch_s']:>8} "
          f"{r['top1_finetuned']:>9.2f} {r['top1_compressed']:>9.2f} {r['command_wall_s']:>7}")
print(f"top-1 on the {rows[0]['top1_split'] if rows else '?'} split; reference top-1 {rows[0]['top1_reference']:.2f}" if rows else "")
if missing:
    print(f"note: {missing}")
print(f"wrote {out / 'summary.json'}")
EOF
