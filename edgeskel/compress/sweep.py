"""Accuracy vs size sweep: several budgets x (plain SVD, data-aware SVD), before and
(optionally) after fine-tuning. Feeds the compression table and plot in docs/BENCHMARKS.md."""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgeskel.checkpoint import load_checkpoint
from edgeskel.compress.api import compress_model
from edgeskel.compress.config import CompressionConfig
from edgeskel.io import atomic_write_json
from edgeskel.train.config import TrainConfig
from edgeskel.train.device import Runtime
from edgeskel.train.metrics import accuracy_summary, predict_logits

METHODS = ("plain", "data-aware")


def sweep(checkpoint: str | Path, data: str, out_dir: str | Path, budgets: list[float], target: str = "params",
          methods: tuple[str, ...] = METHODS, finetune: TrainConfig | None = None,
          finetune_methods: tuple[str, ...] = ("data-aware",), rank_multiple: int = 8, calib_batches: int = 8,
          quiet: bool = False, layout: str | None = None, runtime: Runtime | None = None) -> dict[str, Any]:
    """Compress `checkpoint` at each budget with each method; report top-1 on the test split.
    Fine-tunes (with distillation) only the (budget, method) pairs in `finetune_methods`; their
    best epoch is chosen on the validation split (never on test). The layout comes from the
    checkpoint; `layout` is only for old checkpoints that stored a custom layout's name alone."""
    from edgeskel.data import load_dataset
    from edgeskel.data.splits import holdout
    from edgeskel.data.torch_dataset import SkeletonTorchDataset
    from edgeskel.train.api import check_compatible, prepare_arrays
    from edgeskel.train.trainer import fit

    out = Path(out_dir)
    teacher, spec, extra = load_checkpoint(checkpoint, layout=layout)
    ds = load_dataset(data, layout=spec.layout)
    check_compatible(spec, ds, str(checkpoint), extra)
    split = holdout(ds)
    val_x, val_y = prepare_arrays(ds.test, spec.layout, spec.preprocess)  # reported accuracy: test only
    sel = prepare_arrays(split.val, spec.layout, spec.preprocess)  # fine-tune epoch selection
    idx = np.sort(np.random.default_rng(0).permutation(len(split.train))[: 16 * calib_batches])
    calib_x, _ = prepare_arrays(split.train.subset(idx), spec.layout, spec.preprocess)  # only what calibrates
    calib = [torch.from_numpy(calib_x[i : i + 16]) for i in range(0, len(idx), 16)]
    ref = accuracy_summary(predict_logits(teacher, val_x), val_y)["top1"]
    rows: list[dict[str, Any]] = []
    for budget in budgets:
        for method in methods:
            cfg = CompressionConfig(policy="budget", target=target, budget=budget, data_aware=method == "data-aware",
                                    calib_batches=calib_batches, rank_multiple=rank_multiple)
            t0 = time.perf_counter()
            student, rep = compress_model(copy.deepcopy(teacher), cfg, (1, *spec.input_shape), calib)
            row = {"budget": budget, "target": target, "method": method,
                   "param_ratio": rep["totals"]["param_ratio"], "flop_ratio": rep["totals"]["flop_ratio"],
                   "params": rep["totals"]["params_after"], "top1_reference": ref,
                   "top1_compressed": accuracy_summary(predict_logits(student, val_x), val_y)["top1"],
                   "compress_s": round(time.perf_counter() - t0, 2), "top1_finetuned": None}
            if finetune is not None and finetune.epochs > 0 and method in finetune_methods:
                from dataclasses import replace

                cspec = replace(spec, compression={"plan": rep["plan"], "policy": rep["policy"]})
                train_set = SkeletonTorchDataset.for_training(split.train, spec.layout, spec.preprocess, finetune)
                res = fit(student, cspec, train_set, sel, finetune,
                          out / f"ft-{target}-{budget}-{method}", teacher=teacher, quiet=quiet, runtime=runtime)
                teacher.cpu()  # fit moved it to the training device; the next budget factorizes on CPU
                tuned, _, _ = load_checkpoint(res["best_checkpoint"])
                row["top1_finetuned"] = accuracy_summary(predict_logits(tuned, val_x), val_y)["top1"]
                row["val_top1_finetuned"] = res["best_top1"]
                row["finetune_s"] = res["wall_time_s"]
            rows.append(row)
            if not quiet:
                print(f"budget {budget} {method}: params x{row['param_ratio']:.2f} flops x{row['flop_ratio']:.2f} "
                      f"top-1 {row['top1_compressed']:.2f} -> {row['top1_finetuned']}")
    result = {"checkpoint": str(checkpoint), "data": data, "model": spec.name, "reference_top1": ref,
              "layout": spec.layout.to_dict(), "validation": split.info, "accuracy_split": "test",
              "finetune": finetune.model_dump() if finetune else None, "rows": rows}
    atomic_write_json(out / "sweep.json", result)
    plot_sweep(result, out / "sweep.png")
    return result


def plot_sweep(result: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from edgeskel.io import save_figure_png

    fig, ax = plt.subplots(figsize=(6, 4))
    for method, marker in (("plain", "o"), ("data-aware", "s")):
        rows = sorted((r for r in result["rows"] if r["method"] == method), key=lambda r: r["param_ratio"])
        if rows:
            ax.plot([r["param_ratio"] for r in rows], [r["top1_compressed"] for r in rows], marker=marker,
                    label=f"{method} SVD, no fine-tune")
        ft = [r for r in rows if r["top1_finetuned"] is not None]
        if ft:
            ax.plot([r["param_ratio"] for r in ft], [r["top1_finetuned"] for r in ft], marker=marker, linestyle="--",
                    label=f"{method} SVD + KD fine-tune")
    ax.axhline(result["reference_top1"], color="gray", linestyle=":", label="uncompressed")
    ax.set_xlabel("parameters kept (fraction)")
    ax.set_ylabel("top-1 (%)")
    ax.set_title(f"{result['model']}: accuracy vs size")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure_png(fig, path)
