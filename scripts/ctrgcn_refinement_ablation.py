"""How much CTR-GCN's topology refinement carries on a test split: windowed top-1 of a
checkpoint as trained and with every refinement weight (UnitGCN.alpha) set to 0, i.e. the
shared topology PA alone. Why streaming CTR-GCN cannot simply drop its window-mean refinement
(docs/STREAMING.md "Accuracy on NW-UCLA").

    .venv/bin/python scripts/ctrgcn_refinement_ablation.py --checkpoint reference/ctrgcn-nwucla.ckpt \
        --data nw-ucla:../shared/data/nw-ucla
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--data", required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)
    from edgeskel.checkpoint import load_checkpoint
    from edgeskel.data.registry import load_dataset
    from edgeskel.models.ctrgcn import UnitGCN
    from edgeskel.stream.evaluate import windowed_predictions

    model, spec, _ = load_checkpoint(args.checkpoint)
    units = [m for m in model.modules() if isinstance(m, UnitGCN)]
    if not units:
        raise SystemExit(f"error: {args.checkpoint}: not a CTR-GCN checkpoint (no UnitGCN)")
    test = load_dataset(args.data, layout=spec.layout, splits=("test",)).test
    labels = np.asarray(test.labels)

    def top1() -> float:
        return round(float((windowed_predictions(model, spec, test) == labels).mean() * 100), 2)

    res = {"checkpoint": args.checkpoint, "data": args.data, "samples": len(labels),
           "alpha": [round(float(u.alpha.detach()), 4) for u in units], "top1": top1()}
    with torch.no_grad():
        for u in units:
            u.alpha.zero_()
    res["top1_without_refinement"] = top1()
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
