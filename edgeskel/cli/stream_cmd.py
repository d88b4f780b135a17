"""`edgeskel stream`: replay a recorded sequence as a live stream and show the decision per
call (issue 29 item 5). From a checkpoint (the PyTorch step model) or from an exported streaming
artifact (`edgeskel export --form streaming`: its ONNX Runtime or OpenVINO graph, driven by its
streaming.json exactly as an application would)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import typer

from edgeskel.cli.app import app
from edgeskel.errors import ConfigError, DataError


def _frames(path: Path, channels: int, joints: int, persons: int) -> np.ndarray:
    """The recorded raw sequence as (C, L, V, M): a .npy of (C, L, V, M) or (1, C, L, V, M)."""
    from edgeskel.predict import load_input

    x = load_input(path)
    if x.shape[0] != 1:
        raise DataError(path, f"one sequence expected, got a batch of {x.shape[0]} (shape {tuple(x.shape)})")
    x = x[0]
    if x.shape[0] != channels or x.shape[2] != joints:
        raise DataError(path, f"shape {tuple(x.shape)} is not (C={channels}, L, V={joints}, M) raw frames")
    if x.shape[3] < persons:  # missing persons are zeros, as a pose source gives them
        x = np.concatenate([x, np.zeros((*x.shape[:3], persons - x.shape[3]), np.float32)], axis=3)
    return np.ascontiguousarray(x[..., :persons], dtype=np.float32)


def _decisions(logits: np.ndarray, stride: int, valid_from: int, names: list[str], length: int,
               end: bool) -> list[dict[str, Any]]:
    """One row per call; with `end`, the calls from the end call on say `ending` (frame = the
    stream's length), and the last one is the decision for the whole stream to its last frame."""
    out = []
    whole = length // stride
    for i, row in enumerate(logits):
        ending = end and i >= whole
        frame = length if ending else (i + 1) * stride  # frames seen so far
        p = np.exp(row - row.max())
        p = p / p.sum() if p.sum() > 0 else p
        k = int(np.argmax(row))
        out.append({"frame": frame, "class": k, "name": names[k] if k < len(names) else str(k),
                    "probability": round(float(p[k]), 4), "ending": ending,
                    "valid": (frame >= valid_from or (ending and i == len(logits) - 1)) and bool(np.any(row))})
    return out


@app.command("stream")
def stream_cmd(
    input: Path = typer.Option(..., "--input", help="recorded raw sequence: .npy of (C, L, V, M) camera-space frames"),
    checkpoint: Path | None = typer.Option(None, "--checkpoint", help="edgeskel checkpoint (PyTorch step model)"),
    artifact: Path | None = typer.Option(None, "--artifact", help="folder of `export --form streaming` (streaming.json)"),
    backend: str = typer.Option("ort", "--backend", help="with --artifact: ort | openvino"),
    stride_mode: str = typer.Option("keep", "--stride-mode", help="with --checkpoint: keep | remove"),
    window: int | None = typer.Option(None, "--window", min=1, help="with --checkpoint: camera frames a decision averages "
                                      "(default: the model's T / its upsample)"),
    every: int = typer.Option(1, "--every", min=1, help="print every N-th decision"),
    plot: Path | None = typer.Option(None, "--plot", help="write a PNG of the top class probability per call"),
    as_json: bool = typer.Option(False, "--json", help="print every decision as JSON"),
    end: bool = typer.Option(True, "--end/--no-end", help="end the stream after the last frame (flush), so the last "
                             "decision covers the recording to its last frame"),
) -> None:
    """Replay a sequence frame by frame through a step model; one decision per call."""
    if (checkpoint is None) == (artifact is None):
        raise ConfigError("give --checkpoint C (PyTorch step model) or --artifact DIR (exported step graph)")
    if checkpoint is not None:
        import torch

        from edgeskel.checkpoint import load_checkpoint
        from edgeskel.stream import build_step_model, run_stream

        model, spec, _ = load_checkpoint(checkpoint)
        step = build_step_model(model, spec, stride_mode=stride_mode, window=window)
        plan = step.plan
        frames = _frames(input, plan.channels, plan.joints, plan.persons)
        logits = run_stream(step, torch.from_numpy(frames), end=end).numpy()
        stride, valid_from, names = plan.stride, plan.valid_from, list(spec.class_names)
        source = f"{checkpoint} (PyTorch step model, strides {stride_mode})"
    else:
        from edgeskel.stream.replay import session_for

        session = session_for(artifact, backend)
        c = session.contract
        _, ch, _, v, m = c["frame_shape"]
        frames = _frames(input, int(ch), int(v), int(m))
        logits = session.replay(frames, end=end)
        stride, valid_from, names = int(c["stride"]), int(c["valid_from"]), list(c.get("class_names") or [])
        source = f"{artifact} ({backend} step graph)"
    rows = _decisions(logits, stride, valid_from, names, frames.shape[1], end)
    if as_json:
        print(json.dumps({"source": source, "input": str(input), "stride": stride, "valid_from": valid_from,
                          "decisions": rows}, indent=2))
    else:
        import textwrap

        print(textwrap.fill(f"{source}: {frames.shape[1]} frames, a decision every {stride}, valid from frame "
                            f"{valid_from}", 80, subsequent_indent="  "))
        for r in rows[every - 1::every]:
            mark = "  (ending)" if r["ending"] else "" if r["valid"] else "  (warming up)"
            print(f"  frame {r['frame']:>5}: {r['name']:<24.24} p={r['probability']:.2f}{mark}")
        if rows:
            last = rows[-1]
            what = "stream ended, decision to its last frame" if end else "last decision"
            print(f"{what} (frame {last['frame']}): {last['name']} (p={last['probability']:.2f})")
    if plot is not None:
        _plot(rows, plot, source)


def _plot(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from edgeskel.io import atomic_path

    fig, ax = plt.subplots(figsize=(8, 3))
    frames = [r["frame"] for r in rows]
    ax.plot(frames, [r["probability"] for r in rows], lw=1)
    for r0, r1 in zip(rows, rows[1:], strict=False):
        if r1["name"] != r0["name"] and r1["valid"]:
            ax.annotate(r1["name"], (r1["frame"], r1["probability"]), fontsize=7, rotation=30)
    valid = [r["frame"] for r in rows if r["valid"]]
    if valid:
        ax.axvline(valid[0], ls="--", lw=0.8, color="grey")
    ax.set_xlabel("frame")
    ax.set_ylabel("top-class probability")
    ax.set_title(title, fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
