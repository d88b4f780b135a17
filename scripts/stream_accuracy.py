"""Streaming vs windowed top-1 of a checkpoint on a dataset's test split (issue 29).

    .venv/bin/python scripts/stream_accuracy.py --checkpoint runs/stream/stgcn/best.ckpt \
        --windowed reference/stgcn-nwucla.ckpt --data nw-ucla:../shared/data/nw-ucla --out FILE.json

Every test sequence is fed raw to the PyTorch step model of --checkpoint and the stream is ended
after its last frame (edgeskel/stream/evaluate.py); its final decision is scored. The windowed
top-1 beside it is --windowed's (default: the same checkpoint) on resampled clips, the
pipeline's evaluation. The step model equals the exported ONNX Runtime / OpenVINO step graphs
to float error (tests/test_streaming.py).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--windowed", help="checkpoint whose windowed top-1 is the baseline (default: --checkpoint)")
    ap.add_argument("--stride-mode", default="keep", choices=["keep", "remove"])
    ap.add_argument("--window", type=int, default=None, help="frames a decision averages (default: the model's T)")
    ap.add_argument("--upsample", type=int, default=None,
                    help="stream with this upsample instead of the checkpoint's (e.g. a windowed checkpoint, untuned)")
    ap.add_argument("--limit", type=int, default=0, help="first N test sequences only (0: all)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(1)
    from edgeskel.checkpoint import load_checkpoint
    from edgeskel.data.registry import load_dataset
    from edgeskel.stream import build_step_model
    from edgeskel.stream.evaluate import compare

    model, spec, _ = load_checkpoint(args.checkpoint)
    stream_spec = spec
    if args.upsample is not None:
        import dataclasses

        stream_spec = dataclasses.replace(spec, preprocess=dataclasses.replace(
            spec.preprocess, native_rate=True, upsample=args.upsample))
    ds = load_dataset(args.data, layout=spec.layout, splits=("test",))
    test = ds.test if not args.limit else ds.test.subset(range(min(args.limit, len(ds.test))))
    step = build_step_model(model, stream_spec, args.stride_mode, window=args.window)
    t0 = time.time()

    def progress(i: int, n: int) -> None:
        if i % 50 == 0 or i == n:
            print(f"  {i}/{n} sequences streamed ({time.time() - t0:.0f} s)", file=sys.stderr, flush=True)

    win_model, win_spec = (model, spec)
    if args.windowed:
        win_model, win_spec, _ = load_checkpoint(args.windowed)
    res = compare(win_model, win_spec, step, test, progress)
    res.update({"checkpoint": args.checkpoint, "windowed_checkpoint": args.windowed or args.checkpoint, "data": args.data, "stride_mode": args.stride_mode, "window": args.window,
                "upsample": step.plan.upsample,
                "seconds": round(time.time() - t0, 1), "torch": torch.__version__})
    text = json.dumps(res, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
