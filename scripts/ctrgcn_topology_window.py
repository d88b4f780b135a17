"""A CTR-GCN checkpoint in its causal form with a chosen topology window (frames of the trailing
mean each layer refines its topology from), same weights: the `--init` of a streaming fine-tune
that tries another window than the default (the trained T). docs/STREAMING.md "Accuracy on NW-UCLA".

    .venv/bin/python scripts/ctrgcn_topology_window.py --checkpoint reference/ctrgcn-nwucla.ckpt \
        --window 16 --out runs/stream/ctrgcn-tw16-init.ckpt
"""

from __future__ import annotations

import argparse
import dataclasses


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--window", type=int, required=True, help="network frames at the input rate (>= 1)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    from edgeskel import models
    from edgeskel.checkpoint import load_checkpoint, save_checkpoint

    model, spec, _ = load_checkpoint(args.checkpoint)
    if spec.name != "ctrgcn" or args.window < 1:
        raise SystemExit(f"error: {args.checkpoint}: needs a 'ctrgcn' checkpoint and --window >= 1")
    kwargs = {**spec.kwargs, "topology_window": args.window}
    causal = models.build(spec.name, spec.num_classes, spec.layout, **kwargs)
    causal.load_state_dict(model.state_dict(), strict=True)  # a trailing mean has no weights
    save_checkpoint(args.out, causal.eval(), dataclasses.replace(spec, kwargs=kwargs))
    print(f"{args.out}: ctrgcn, topology window {args.window}")


if __name__ == "__main__":
    main()
