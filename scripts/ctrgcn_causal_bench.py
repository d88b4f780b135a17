"""CTR-GCN's causal topology: the V-first contraction (models/ctrgcn.py CTRGC._causal) vs the
per-frame topology product it replaced, interleaved on one thread (docs/STREAMING.md).

    .venv/bin/python scripts/ctrgcn_causal_bench.py [--reps 3]

Times one training step (N=16, T=52, NW-UCLA's 20 joints, forward + backward) and one step-graph
call (PyTorch) each way and prints the median of each and the ratios.
"""

from __future__ import annotations

import argparse
import time

import torch


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    import edgeskel.models.ctrgcn as ctrgcn
    from edgeskel import models
    from edgeskel.checkpoint import ModelSpec, Preprocess
    from edgeskel.layouts import get_layout
    from edgeskel.stream import build_step_model

    fast = ctrgcn.CTRGC._causal

    def plain(self, x, a, alpha):  # conv4 seen as "not a plain conv": the per-frame topology path
        conv4 = self._modules["conv4"]
        self._modules["conv4"] = torch.nn.Sequential(conv4)
        try:
            return fast(self, x, a, alpha)
        finally:
            self._modules["conv4"] = conv4

    layout = get_layout("kinect20")
    torch.manual_seed(0)
    net = models.build("ctrgcn", 10, layout, num_person=1, topology_window=52)
    spec = ModelSpec("ctrgcn", 10, layout, {"num_person": 1, "topology_window": 52}, preprocess=Preprocess(52, 1))
    step = build_step_model(net, spec, "keep")
    states, frame, valid = step.initial_states(), torch.randn(step.frame_shape()), step.full_valid()
    x = torch.randn(16, 3, 52, 20, 1)
    times: dict[str, list[float]] = {k: [] for k in ("train plain", "train fast", "step plain", "step fast")}
    for _ in range(args.reps):
        for name, fn in (("plain", plain), ("fast", fast)):
            ctrgcn.CTRGC._causal = fn
            net.train()
            net.zero_grad()
            t0 = time.perf_counter()
            net(x).sum().backward()
            times[f"train {name}"].append(time.perf_counter() - t0)
            with torch.no_grad():
                t0 = time.perf_counter()
                for _ in range(20):
                    step(frame, valid, *states)
                times[f"step {name}"].append((time.perf_counter() - t0) / 20)
    ctrgcn.CTRGC._causal = fast
    med = {k: sorted(v)[len(v) // 2] * 1000 for k, v in times.items()}
    for k, v in med.items():
        print(f"{k:12s} {v:9.1f} ms")
    print(f"training step {med['train plain'] / med['train fast']:.2f}x faster, "
          f"step call {med['step plain'] / med['step fast']:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
