"""Per-decision latency: the exported step graph vs the windowed graph, same backend, batch 1.

Usage: .venv/bin/python scripts/streaming_bench.py [--model stgcn] [--layout ntu25] [--frames 64]
       [--persons 1] [--backend ort|openvino] [--threads 1] [--rounds 15] [--block 30] [--no-hold]
       [--out FILE.json]

For each stride mode (remove: a decision every frame; keep: every 2^s frames) it exports the
model's step graph and the windowed graph (T = --frames) and times one decision of each:
windowed = one run on a (1, C, T, V, M) clip (what recomputing the window costs per decision),
streaming = one step call (its stride frames + every state in, logits + states out, states fed
back as a deployment does). Timing is interleaved in rounds (a short re-warm, then `block`
consecutive calls per graph, start rotated), as the device runner does, because this host's
speed drifts. Weights are random (latency does not depend on them).

A model whose streaming form is a causal variant (the registry's `causal_forms`, e.g. CTR-GCN's
trailing-mean or static topology; `--causal-form NAME`, default the model's first) is timed as
deployed: the windowed graph is the official (window-mean) model, the step graph its causal form
with the same weights (a form's own parameters, e.g. the static topology's input, calibrated on
one random clip: latency does not depend on them). FLOPs (FlopCounterMode: convs and
matmuls) are counted for one windowed run and for one step call.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="stgcn")
    ap.add_argument("--layout", default="ntu25")
    ap.add_argument("--frames", type=int, default=64)
    ap.add_argument("--persons", type=int, default=1)
    ap.add_argument("--classes", type=int, default=60)
    ap.add_argument("--backend", default="ort", choices=("ort", "openvino"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--block", type=int, default=30)
    ap.add_argument("--modes", default="remove,keep")
    ap.add_argument("--no-hold", action="store_true", help="step graphs without the in-graph empty-frame hold")
    ap.add_argument("--precision", default="fp32", choices=("fp32", "int8", "bf16"),
                    help="of both graphs; int8 (ort) is calibrated on random streams/clips (latency only)")
    ap.add_argument("--batch", default="1", help="streams per step call, comma-separated (e.g. 1,8): each a "
                    "batched step graph, timed in the same interleaved run")
    ap.add_argument("--causal-form", default=None, help="the model's causal form to time (default: its first)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    batches = [int(b) for b in str(args.batch).split(",") if b]
    torch.set_num_threads(max(1, args.threads))

    from edgeskel import models
    from edgeskel.checkpoint import ModelSpec, Preprocess
    from edgeskel.export.onnx import export_onnx
    from edgeskel.layouts import get_layout
    from edgeskel.runtime import get_runner
    from edgeskel.stream.export import export_streaming
    from edgeskel.stream.replay import session_for

    layout = get_layout(args.layout)
    kwargs = {"num_person": args.persons}
    net = models.build(args.model, args.classes, layout, **kwargs).eval()
    spec = ModelSpec(args.model, args.classes, layout, kwargs,
                     preprocess=Preprocess(num_frames=args.frames, num_person=args.persons))
    stream_net, stream_spec = net, spec
    from edgeskel.train.api import build_causal_form, pick_causal_form

    causal = pick_causal_form(args.model, args.causal_form)
    rng = np.random.default_rng(0)
    if causal is not None:  # the streaming form is the causal variant, same weights
        stream_net, ckw = build_causal_form(net, spec, causal, args.frames, args.model)
        stream_net.eval()
        if causal.calibrate is not None:
            shape = (1, *spec.input_shape)
            causal.calibrate(stream_net, net, [torch.from_numpy(rng.normal(size=shape).astype(np.float32))])
        stream_spec = ModelSpec(args.model, args.classes, layout, ckw, preprocess=spec.preprocess)
    results: dict = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "args": vars(args) | {"out": str(args.out)},
                     "machine": {"cpu": _cpu(), "cores": os.cpu_count(), "python": platform.python_version(),
                                 "load_avg_start": os.getloadavg()}, "modes": {}}
    with tempfile.TemporaryDirectory() as tmp:
        win_path = export_onnx(net, spec, Path(tmp) / "windowed.onnx", batch=1)
        clip = rng.normal(size=(1, *spec.input_shape)).astype(np.float32)
        if args.precision == "int8":
            from edgeskel.quantize.ort_qdq import quantize_ort_int8

            q = Path(tmp) / "windowed-int8.onnx"
            quantize_ort_int8(win_path, q, rng.normal(size=(32, *spec.input_shape)).astype(np.float32),
                              symmetric_activations=False)
            win_path = q
        win = get_runner(args.backend, win_path, threads=args.threads, precision=args.precision).load()
        fns = {"windowed": lambda: win.infer(clip)}
        plans: dict = {}
        flops: dict = {}
        profiles: dict = {}
        for mode, nb in [(m, b) for m in args.modes.split(",") if m for b in batches]:
            key = mode if nb == 1 else f"{mode}-batch{nb}"
            d = Path(tmp) / f"stream-{key}"
            calib = holdout = None
            if args.precision == "int8":
                from edgeskel.stream import build_step_model
                from edgeskel.stream.export import parity_sequence

                probe = build_step_model(stream_net, stream_spec, mode)
                seqs = [parity_sequence(probe, extra_calls=4, seed=k, hold=False) for k in range(6)]
                calib, holdout = seqs[:4], seqs[4:]
            res = export_streaming(stream_net, stream_spec, "openvino" if args.backend == "openvino" else "ort",
                                   args.precision, d, stride_mode=mode, hold_empty=not args.no_hold, calib=calib,
                                   holdout=holdout, check=args.precision != "int8", batch=nb)
            plans[key] = {**res["plan"], "batch": nb}
            flops[key] = step_flops(stream_net, stream_spec, mode) * nb
            sess = session_for(d, args.backend, threads=args.threads, precision=args.precision)
            frames = rng.normal(size=(spec.input_shape[0], res["plan"]["stride"], layout.num_joints,
                                      args.persons)).astype(np.float32)
            fns[f"streaming-{key}"] = (lambda s=sess, f=frames: s.step(f))
            if args.backend == "ort" and nb == 1:
                profiles[key] = op_profile(d / "model.onnx", sess, frames, args.threads)
        times = interleaved(fns, args.rounds, args.block)
    from edgeskel.compress.costs import count_flops

    results["windowed"] = _stats(times["windowed"])
    results["windowed"]["flops"] = count_flops(net, (1, *spec.input_shape))
    for mode, plan in plans.items():
        st = _stats(times[f"streaming-{mode}"])
        nb = plan["batch"]  # a call serves nb streams: nb decisions
        results["modes"][mode] = {"plan": plan, "step": st, "decision_every_frames": plan["stride"],
                                  "streams_per_call": nb, "step_flops": flops[mode],
                                  "flops_ratio_per_decision": results["windowed"]["flops"] * nb / max(1, flops[mode]),
                                  "speedup_per_decision_p50": results["windowed"]["p50_ms"] * nb / st["p50_ms"],
                                  # streams at 30 fps one thread sustains: every decision recomputed
                                  # from a window vs the step graph (same decision cadence)
                                  "streams_30fps_one_thread": {
                                      "windowed": 1000.0 * plan["stride"] / (30.0 * results["windowed"]["p50_ms"]),
                                      "streaming": nb * 1000.0 * plan["stride"] / (30.0 * st["p50_ms"])},
                                  "op_profile_top": profiles.get(mode),
                                  "speedup_per_frame_p50": results["windowed"]["p50_ms"] * plan["stride"] * nb / st["p50_ms"]}
    results["machine"]["load_avg_end"] = os.getloadavg()
    text = json.dumps(results, indent=2, default=str)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


def op_profile(path: Path, sess, frames: np.ndarray, threads: int, calls: int = 50, top: int = 10) -> dict:
    """ORT's own per-node profile of `calls` step calls: microseconds per call by op type."""
    import collections
    import json as _json

    import onnxruntime as ort

    from edgeskel.runtime.ort import cpu_session_options

    so = cpu_session_options(threads)
    so.enable_profiling = True
    so.profile_file_prefix = str(path.parent / "prof")
    prof = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    feeds = dict(sess.states)
    c = sess.contract
    feeds[c["frame_input"]] = frames[None]
    feeds[c["valid_input"]] = np.full((1,), c["stride"], np.float32)
    for _ in range(calls):
        prof.run(None, feeds)
    events = _json.loads(Path(prof.end_profiling()).read_text())
    by_op: collections.Counter = collections.Counter()
    nodes: collections.Counter = collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            by_op[e["args"]["op_name"]] += e["dur"]
            nodes[e["args"]["op_name"]] += 1
    total = sum(by_op.values()) / calls
    return {"us_per_call": round(total, 1), "nodes_run_per_call": sum(nodes.values()) // calls,
            "by_op_us": {k: round(v / calls, 1) for k, v in by_op.most_common(top)},
            "by_op_nodes": {k: nodes[k] // calls for k, _ in by_op.most_common(top)}}


def step_flops(net, spec, mode: str) -> int:
    """FLOPs of one step call (edgeskel/stream/cost.py)."""
    from edgeskel.stream import build_step_model
    from edgeskel.stream.cost import step_flops as flops

    return flops(build_step_model(net, spec, mode))


def interleaved(fns: dict, rounds: int, block: int, warm: int = 3) -> dict[str, list[float]]:
    names = list(fns)
    for fn in fns.values():  # first calls allocate
        for _ in range(10):
            fn()
    out: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        order = names[r % len(names):] + names[: r % len(names)]
        for n in order:
            fn = fns[n]
            for _ in range(warm):
                fn()
            for _ in range(block):
                t0 = time.perf_counter()
                fn()
                out[n].append(time.perf_counter() - t0)
    return out


def _stats(ts: list[float]) -> dict:
    a = np.asarray(ts) * 1e3
    return {"p50_ms": float(np.percentile(a, 50)), "p90_ms": float(np.percentile(a, 90)),
            "p99_ms": float(np.percentile(a, 99)), "n": int(a.size)}


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    raise SystemExit(main())
