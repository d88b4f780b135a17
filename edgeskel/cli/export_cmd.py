"""`edgeskel export`: one artifact (`--checkpoint --backend --precision`) or the whole
device pipeline (`--device D [--recipe R]`, what `make export DEVICE=D` runs)."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console

from edgeskel.cli.app import app
from edgeskel.errors import ConfigError

# Options of one mode only: giving one in the other mode is an error, never silently ignored.
SINGLE_ONLY = ("backend", "precision", "calib_data", "calibration", "calib_samples", "form", "stride_mode", "window")
FORMS = ("windowed", "streaming")
PIPELINE_ONLY = ("recipe", "data")


def _given(ctx: typer.Context, names: tuple[str, ...]) -> list[str]:
    from typer._click.core import ParameterSource

    return [f"--{n.replace('_', '-')}" for n in names
            if ctx.get_parameter_source(n) not in (None, ParameterSource.DEFAULT)]


@app.command("export")
def export_cmd(
    ctx: typer.Context,
    device: str | None = typer.Option(None, "--device", help="device profile (devices/<name>.yaml): run the whole pipeline"),
    recipe: str = typer.Option("default", "--recipe", help="recipe name (recipes/<name>.yaml) or path"),
    checkpoint: Path | None = typer.Option(None, "--checkpoint", help="edgeskel checkpoint (overrides the recipe's model)"),
    data: str | None = typer.Option(None, "--data", help="dataset spec (overrides the recipe's data)"),
    out: Path | None = typer.Option(None, "--out", help="output folder (default runs/ for --device, else export/)"),
    backend: str | None = typer.Option(None, "--backend", help="single export: onnx | ort | openvino | tensorrt"),
    precision: str = typer.Option("fp32", "--precision", help="single export: fp32 | fp16 | bf16 | int8"),
    calib_data: str | None = typer.Option(None, "--calib-data", help="single export: dataset spec for calibration/parity"),
    calibration: str = typer.Option("minmax", "--calibration", help="INT8 calibration: minmax | entropy | percentile"),
    calib_samples: int = typer.Option(128, "--calib-samples"),
    form: str = typer.Option("windowed", "--form", help="single export: windowed (T-frame clips) | streaming "
                             "(a step graph fed frame by frame + streaming.json; docs/STREAMING.md)"),
    stride_mode: str = typer.Option("keep", "--stride-mode", help="--form streaming: keep (a decision every 2^s "
                                    "frames) | remove (every frame; the network changes: fine-tune it first)"),
    window: int | None = typer.Option(None, "--window", min=1, help="--form streaming: camera frames a decision averages "
                                      "(default: the model's T / its upsample)"),
    quiet: bool = typer.Option(False, "--quiet"),
) -> None:
    """Export a checkpoint for one backend/precision, or run the full pipeline for a device."""
    if device is not None and _given(ctx, SINGLE_ONLY):
        raise ConfigError(f"{', '.join(_given(ctx, SINGLE_ONLY))}: only for a single export (--checkpoint C --backend B); "
                          f"with --device the profile {device!r} names the backends and precisions")
    if device is None and _given(ctx, PIPELINE_ONLY):
        raise ConfigError(f"{', '.join(_given(ctx, PIPELINE_ONLY))}: only for the device pipeline (--device D); a single "
                          "export takes --checkpoint, --backend, --precision and --calib-data")
    if device is not None:
        from edgeskel.pipeline import run_pipeline

        report = run_pipeline(device, recipe=recipe, checkpoint=str(checkpoint) if checkpoint else None, data=data,
                              out_root=out or Path("runs"), quiet=quiet)
        run_dir = Path(out or "runs") / report["recipe"] / report["device"]
        Console().print(f"reports: {run_dir / 'report.md'}  {run_dir / 'report.html'}  {run_dir / 'report.json'}")
        code = report.get("exit_code", 0 if report["passed"] else 1)  # 0 PASSED, 1 FAILED, 3 NOT MEASURED
        if code:
            raise typer.Exit(code)
        return
    if checkpoint is None or backend is None:
        raise ConfigError("give --device D (full pipeline) or --checkpoint C --backend B [--precision P] (one artifact)")
    if form not in FORMS:
        raise ConfigError(f"--form {form!r}: choose one of {list(FORMS)}")
    if form != "streaming" and _given(ctx, ("stride_mode", "window")):
        raise ConfigError("--stride-mode, --window: only for --form streaming")
    if form == "streaming":
        unused = _given(ctx, ("calibration",) if precision == "int8" else ("calib_data", "calibration", "calib_samples"))
        if unused:
            raise ConfigError(f"{', '.join(unused)}: not used by --form streaming at {precision} (only INT8 step "
                              "graphs take --calib-data/--calib-samples; they calibrate min/max)")
        from edgeskel.stream.export import export_streaming_checkpoint

        res = export_streaming_checkpoint(checkpoint, backend, precision, out or Path("export"), stride_mode=stride_mode,
                                          calib_data=calib_data, calib_samples=calib_samples, window=window)
        print(json.dumps({k: res.get(k) for k in ("status", "files", "parity", "plan")}, indent=2, default=str))
        return
    from edgeskel.export.single import export_single

    res = export_single(checkpoint, backend, precision, out or Path("export"), calib_data=calib_data,
                        calibration=calibration, calib_samples=calib_samples)
    print(json.dumps({k: res.get(k) for k in ("status", "files", "parity")}, indent=2, default=str))
    if res.get("status") not in (None, "ok", "pass", "passed"):
        raise typer.Exit(1)
