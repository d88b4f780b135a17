"""`edgeskel bench [--models ...] [--data SPEC] [--quick] [--out DIR]`: side-by-side benchmark."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import typer
from rich.console import Console

from edgeskel.cli.app import app


@app.command("bench")
def bench_cmd(
    models: str | None = typer.Option(None, "--models", help="comma-separated: stgcn,ctrgcn,hyperformer "
                                         "(default: all three; --quick: stgcn)"),
    data: str | None = typer.Option(None, "--data", help="dataset spec (default: each recipe's NW-UCLA; --quick: synthetic)"),
    quick: bool = typer.Option(False, "--quick", help="tiny models, few repeats, short grids (< 10 min on 2 cores)"),
    out: Path | None = typer.Option(None, "--out", help="results.json + plots (default docs/bench; --quick: runs/bench/quick)"),
    markdown: Path | None = typer.Option(None, "--markdown", help="Markdown file for the generated section "
                                            "(default docs/BENCHMARKS.md for --out docs/bench, else <out>/BENCHMARKS.md)"),
    reference_dir: Path = typer.Option(Path("reference"), "--reference-dir", help="<model>-nwucla.ckpt reference checkpoints"),
    cache_dir: Path = typer.Option(Path("runs/bench"), "--cache-dir", help="trained/compressed models and artifacts (reused)"),
    device: str = typer.Option("cpu", "--device", help="device profile that picks the best edgeskel variant"),
    rounds: int | None = typer.Option(None, "--rounds", help="interleaved rounds"),
    runs: int | None = typer.Option(None, "--runs", help="timed calls per variant per round"),
    val_samples: int | None = typer.Option(None, "--val-samples", help="cap on validation samples"),
    threads: int = typer.Option(2, "--threads", help="intra-op threads for every runtime"),
    recipe: list[str] = typer.Option([], "--recipe", help="MODEL=FILE: benchmark MODEL with this recipe instead of "
                                     "recipes/<model>-lortsar.yaml, e.g. the recipe.yaml `edgeskel tune` wrote (repeatable)"),
    resume: bool = typer.Option(False, "--resume", help="keep the models an earlier (stopped) run with the same "
                                "settings, CPU and libraries already wrote to OUT/results.json"),
) -> None:
    """Benchmark edgeskel's variants side by side with PyTorch eager, plain ONNX Runtime/OpenVINO,
    ORT dynamic INT8 and NNCF INT8 of the uncompressed model (same process, interleaved)."""
    from edgeskel.bench import full_settings, quick_settings, run_bench
    from edgeskel.bench.report import print_summary
    from edgeskel.errors import ConfigError

    console = Console(stderr=True)
    recipes = {}
    for item in recipe:
        name, sep, path = item.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise ConfigError(f"--recipe {item!r}: expected MODEL=FILE, e.g. stgcn=runs/stgcn-lortsar/tune-cpu/recipe.yaml")
        recipes[name.strip()] = path.strip()
    make = quick_settings if quick else full_settings
    settings = make(models=[m.strip() for m in models.split(",") if m.strip()] if models else None, data=data, out=out,
                    markdown=markdown, reference_dir=reference_dir, cache_dir=cache_dir, device=device, rounds=rounds,
                    runs=runs, val_samples=val_samples, threads=threads, resume=resume, recipes=recipes or None,
                    command="edgeskel " + " ".join(shlex.quote(a) for a in sys.argv[1:]))
    results = run_bench(settings, log=console.print, progress=True)
    print_summary(results)
    outs = results["outputs"]
    Console().print(f"wrote {outs['results']}, {outs['markdown']} and {len(outs['plots'])} plots "
                    f"in {results['wall_time_s']:.0f} s")


@app.command("ort-int8-study")
def ort_int8_study_cmd(
    run: Path = typer.Argument(..., help="a pipeline run dir (runs/<recipe>/<device>) with export/ort-fp32 and data/calib_x.npy"),
    out: Path | None = typer.Option(None, "--out", help="where the quantized models and JSON go (default RUN/ort-int8-study)"),
    percentile: float = typer.Option(99.95, "--percentile", help="calibration percentile for both quantizations"),
    calib_samples: int = typer.Option(64, "--calib-samples", help="calibration samples (from the run's calibration set)"),
    op_types: list[str] = typer.Option([], "--op-types", help="also a u8 quantization limited to these op types, "
                                       "comma-separated (repeatable), e.g. Conv,Add,Relu,Concat,MaxPool"),
    rounds: int = typer.Option(3, "--rounds", help="interleaved rounds"),
    threads: int = typer.Option(2, "--threads"),
) -> None:
    """Why ONNX Runtime INT8 is (not) faster than fp32 on this CPU: s8 symmetric vs u8 asymmetric
    activations, with and without ORT's NHWC rewrite, fused-kernel counts and interleaved p50."""
    import numpy as np

    from edgeskel.bench.ort_int8_study import ort_int8_study, study_table
    from edgeskel.errors import ConfigError

    fp32, calib_file, int8 = run / "export/ort-fp32/model.onnx", run / "data/calib_x.npy", run / "export/ort-int8/model.int8.onnx"
    for f in (fp32, calib_file):
        if not f.is_file():
            raise ConfigError(f"{f}: not found; run `edgeskel export --device cpu --recipe ...` first (it writes {run})")
    calib = np.load(calib_file, allow_pickle=False)[:calib_samples]
    res = ort_int8_study(fp32, calib, calib[:1], out or run / "ort-int8-study", percentile=percentile,
                         extra={"edgeskel ort-int8 (pipeline, after its accuracy fallback)": int8} if int8.is_file() else None,
                         op_type_sets=[[o.strip() for o in spec.split(",") if o.strip()] for spec in op_types],
                         threads=threads, rounds=rounds)
    print("\n".join(study_table(res)))  # Markdown, unwrapped
