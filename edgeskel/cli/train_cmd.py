"""`edgeskel train` and `edgeskel eval`."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from edgeskel.cli.app import app
from edgeskel.errors import ConfigError
from edgeskel.train.config import TrainConfig
from edgeskel.train.device import DEVICE_HELP, Runtime, check_device_spec
from edgeskel.train.distributed import is_main


@app.command("train")
def train_cmd(
    model: str | None = typer.Option(None, "--model", help="registered model name (see `edgeskel models`); "
                                     "not with --init"),
    data: str = typer.Option("synthetic", "--data", help="dataset spec, e.g. synthetic, nw-ucla:DIR, ntu:DIR?benchmark=xsub"),
    out: Path = typer.Option(Path("runs/train"), "--out", help="output folder (best.ckpt, last.pt, history.json)"),
    epochs: int = typer.Option(30, "--epochs"),
    batch_size: int = typer.Option(16, "--batch-size"),
    optimizer: str = typer.Option("sgd", "--optimizer", help="sgd or adamw"),
    lr: float | None = typer.Option(None, "--lr", help="default 0.1 (sgd) / 1e-3 (adamw)"),
    weight_decay: float = typer.Option(4e-4, "--weight-decay"),
    warmup_epochs: float = typer.Option(2, "--warmup-epochs"),
    label_smoothing: float = typer.Option(0.1, "--label-smoothing"),
    seed: int = typer.Option(0, "--seed"),
    rotate_deg: float = typer.Option(0.0, "--rotate-deg", help="augment: random rotation about each axis, +/- degrees"),
    scale_jitter: float = typer.Option(0.0, "--scale-jitter", help="augment: random scale 1 +/- this"),
    layout: str | None = typer.Option(None, "--layout", help="layout name or YAML (default: implied by the data)"),
    frames: int | None = typer.Option(None, "--frames", help="T after resampling (default from data)"),
    persons: int | None = typer.Option(None, "--persons", help="M persons (default from data)"),
    streams: str = typer.Option("joint", "--streams", "--stream", help="input view: joint | bone | motion | "
                                 "bone_motion (one stream of an ensemble, docs/ENSEMBLES.md)"),
    width: float = typer.Option(1.0, "--width", help="channel width multiplier"),
    threads: int | None = typer.Option(None, "--threads"),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="skip unreadable samples instead of failing"),
    no_resume: bool = typer.Option(False, "--no-resume", help="start over even if OUT/last.pt exists"),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
    workers: int | None = typer.Option(None, "--workers", min=0, help="DataLoader workers (default 0 on CPU, up to 8 on GPU)"),
    no_amp: bool = typer.Option(False, "--no-amp", help="no mixed precision on GPU (fp32 throughout)"),
    class_names: Path | None = typer.Option(None, "--class-names", help="text file, one class name per line in label order"),
    validation: str = typer.Option("train", "--validation",
                                   help="where the best epoch is chosen when the data has no validation split: a slice "
                                        "of train, or of test (the deployment domain; test top-1 then on the rest)"),
    validation_fraction: float | None = typer.Option(None, "--validation-fraction", help="per-class fraction (default 0.1)"),
    native_rate: bool = typer.Option(False, "--native-rate", help="train on windows of at most --frames frames at the "
                                     "source's rate, as a stream sees them (no resampling; docs/STREAMING.md)"),
    upsample: int | None = typer.Option(None, "--upsample", min=1, help="with --native-rate: the network sees this many "
                                        "frames per source frame (linear, causal; the stream does it in its graph; "
                                        "default: --init's, else 1): keeps the time scale a model learned on "
                                        "resampled clips (docs/STREAMING.md, Upsampling)"),
    streamable: bool = typer.Option(False, "--streamable", help="train for streams: --native-rate, and the "
                                    "model's causal form where it needs one (CTR-GCN: one learned topology per layer)"),
    causal_form: str | None = typer.Option(None, "--causal-form", help="which causal form (implies --streamable; "
                                           "CTR-GCN: static (default) or trailing; `edgeskel models --json` lists them)"),
    remove_strides: bool = typer.Option(False, "--remove-strides", help="every temporal stride set to 1: a stream "
                                        "then decides every frame (fine-tune with --init)"),
    init: Path | None = typer.Option(None, "--init", help="start from this checkpoint (architecture + weights): a "
                                     "fine-tune, e.g. --init C --native-rate for streams"),
    distill: float = typer.Option(0.0, "--distill", min=0.0, max=1.0, help="with --init: distil from that checkpoint "
                                  "as it is, fed each clip as it was trained to see it (e.g. resampled), this weight "
                                  "of the loss (docs/STREAMING.md, Training for streams)"),
    teacher: Path | None = typer.Option(None, "--teacher", help="with --distill: distil from this checkpoint instead "
                                        "of --init (e.g. a windowed model while a streaming form trains from scratch)"),
    as_json: bool = typer.Option(False, "--json", help="print the result as JSON"),
) -> None:
    """Train a recognizer; resumable (rerun the same command to continue after an interruption)."""
    from edgeskel.train.api import train

    if (model is None) == (init is None):
        raise ConfigError("give --model NAME (train from scratch) or --init CHECKPOINT (fine-tune it), not both")
    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, optimizer=optimizer,  # type: ignore[arg-type]
                      lr=lr if lr is not None else (0.1 if optimizer == "sgd" else 1e-3),
                      weight_decay=weight_decay, warmup_epochs=warmup_epochs, label_smoothing=label_smoothing,
                      seed=seed, threads=threads, rotate_deg=rotate_deg, scale_jitter=scale_jitter)
    res = train(model, data, out, cfg, layout=layout, num_frames=frames, num_person=persons, streams=streams,
                model_kwargs={"width": width} if width != 1.0 else None, skip_bad=skip_bad, resume=not no_resume,
                runtime=Runtime(check_device_spec(device), amp=not no_amp, workers=workers), class_names=class_names,
                validation=validation, validation_fraction=validation_fraction, native_rate=native_rate, init=init,
                upsample=upsample, streamable=streamable, remove_strides=remove_strides, distill=distill,
                causal_form=causal_form, teacher=teacher)
    if not is_main():  # under torchrun: one summary, printed by rank 0
        return
    summary = {k: res[k] for k in ("model", "data", "val_top1", "test_top1", "best_epoch", "wall_time_s", "best_checkpoint",
                                   "skipped", "device", "world_size", "amp")}
    if as_json:
        print(json.dumps(summary, indent=2))
        return
    table = Table(title="training summary")
    table.add_column("key")
    table.add_column("value")
    for k, v in summary.items():
        table.add_row(k, f"{v:.2f}" if isinstance(v, float) else str(v))
    Console().print(table)


@app.command("eval")
def eval_cmd(
    checkpoint: Path = typer.Option(..., "--checkpoint", help="edgeskel checkpoint"),
    data: str = typer.Option("synthetic", "--data", help="dataset spec"),
    split: str = typer.Option("test", "--split", help="test, val or train (only this split is read)"),
    batch_size: int = typer.Option(64, "--batch-size"),
    skip_bad: bool = typer.Option(False, "--skip-bad"),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
    as_json: bool = typer.Option(False, "--json", help="print JSON with keys top1, top5, num_samples"),
) -> None:
    """Evaluate a checkpoint: top-1 / top-5 (percent) on a dataset split."""
    from edgeskel.train.api import evaluate

    res = evaluate(checkpoint, data, skip_bad=skip_bad, batch_size=batch_size, split=split,
                   device=check_device_spec(device))
    if as_json:
        print(json.dumps(res, indent=2))
        return
    table = Table(title=f"{checkpoint} on {data} ({split})")
    for col in ("top-1 %", "top-5 %", "samples"):
        table.add_column(col, justify="right")
    table.add_row(f"{res['top1']:.2f}", f"{res['top5']:.2f}", str(res["num_samples"]))
    Console().print(table)
