"""Could a cheap check on validation data have predicted what `edgeskel tune`'s choice loses on
the test split? (issue 20: tune's validation gate is weak on NW-UCLA cross-view.)

For every fp32 model a tune search left in its folder (the reference, each factorized option,
each fine-tuned option) this prints top-1 on
- the validation slice tune chooses on,
- the same slice rotated about the vertical axis by +-30 and +-45 degrees (a view-shift proxy:
  NW-UCLA's test split is an unseen camera view; only meaningful for 3-D joints),
- the test split (read here for the study only; tune never chooses on it),
and the agreement of each model's validation predictions with the reference's (fidelity).
A proxy is useful if it separates the models that lose on test from those that do not.

Run:  OMP_NUM_THREADS=1 .venv/bin/python scripts/tune_selection_proxies.py runs/stgcn-lortsar/tune-cpu \\
        [--json docs/tune/stgcn-selection-proxies.json]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgeskel.checkpoint import load_checkpoint  # noqa: E402
from edgeskel.io import atomic_write_json  # noqa: E402

ANGLES = (-45.0, -30.0, 30.0, 45.0)


def rotate_vertical(x: np.ndarray, degrees: float) -> np.ndarray:
    """Rotate (N, C>=3, T, V, M) joints about the y (vertical) axis: a camera moved around the subject."""
    a = np.deg2rad(degrees)
    c, s = np.cos(a), np.sin(a)
    y = x.copy()
    y[:, 0] = c * x[:, 0] + s * x[:, 2]
    y[:, 2] = -s * x[:, 0] + c * x[:, 2]
    return y


def predictions(model: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return torch.cat([model(torch.from_numpy(x[i : i + 64])) for i in range(0, len(x), 64)]).argmax(1).numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("tune_dir", type=Path, help="<out>/<recipe>/tune-<device>/ of a finished tune search")
    ap.add_argument("--json", type=Path, help="also write the rows here")
    args = ap.parse_args()
    torch.set_num_threads(1)
    d = args.tune_dir / "data"
    vx, vy, tx, ty = (np.load(d / f"{k}.npy") for k in ("val_x", "val_y", "test_x", "test_y"))
    rotated = vx.shape[1] >= 3
    rx = np.concatenate([rotate_vertical(vx, a) for a in ANGLES]) if rotated else None
    ry = np.concatenate([vy] * len(ANGLES))
    paths = ([args.tune_dir / "reference" / "reference.ckpt"] + sorted(args.tune_dir.glob("factorize-*/model.ckpt"))
             + sorted(args.tune_dir.glob("finetune-*/compressed.ckpt")))
    rows, ref = [], None
    for p in paths:
        model, _, _ = load_checkpoint(p)
        model.eval()
        pv, pt = predictions(model, vx), predictions(model, tx)
        pr = predictions(model, rx) if rotated else None
        if ref is None:
            ref = (pv, pr)
        rows.append({"model": p.parent.name, "val_top1": round(100 * float((pv == vy).mean()), 2),
                     "rotated_val_top1": round(100 * float((pr == ry).mean()), 2) if rotated else None,
                     "test_top1": round(100 * float((pt == ty).mean()), 2),
                     "val_agreement": round(100 * float((pv == ref[0]).mean()), 1),
                     "rotated_val_agreement": round(100 * float((pr == ref[1]).mean()), 1) if rotated else None})
    base = rows[0]
    print(f"{'model':34} {'val':>6} {'rot.val':>7} {'test':>6} {'d.val':>6} {'d.rot':>6} {'d.test':>6} {'agree':>6}")
    for r in rows:
        rot = r["rotated_val_top1"] if rotated else float("nan")
        print(f"{r['model'][:34]:34} {r['val_top1']:6.2f} {rot:7.2f} {r['test_top1']:6.2f} "
              f"{base['val_top1'] - r['val_top1']:6.2f} {(base['rotated_val_top1'] or 0) - (rot if rotated else 0):6.2f} "
              f"{base['test_top1'] - r['test_top1']:6.2f} {r['val_agreement']:6.1f}")
    if args.json:
        atomic_write_json(args.json, {"tune_dir": str(args.tune_dir), "angles": ANGLES, "validation": len(vy),
                                      "test": len(ty), "rows": rows})


if __name__ == "__main__":
    main()
