"""`edgeskel models`, `edgeskel import`, `edgeskel predict`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from edgeskel.cli.app import app


def list_models(layout: str = "ntu25", num_classes: int = 60, num_person: int = 2, frames: int = 64) -> list[dict[str, Any]]:
    """Name, family, params and GFLOPs (batch 1) of every registered model at default width."""
    from edgeskel.layouts import get_layout
    from edgeskel.models import available_models, build, model_entry
    from edgeskel.models.profile import count_flops, count_params
    from edgeskel.stream.support import streaming_support

    lay = get_layout(layout)
    rows = []
    for name in available_models():
        model = build(name, num_classes, lay, num_person=num_person)
        shape = (1, lay.channels, frames, lay.num_joints, num_person)
        rows.append({
            "name": name,
            "family": model_entry(name).family,
            "params": count_params(model),
            "gflops": round(count_flops(model, shape) / 1e9, 3),
            "input": list(shape[1:]),
            "description": model_entry(name).description,
            "streams": {**dict(zip(("streams", "why"), streaming_support(name), strict=True)),
                        "causal_forms": {k: f.description for k, f in model_entry(name).causal_forms.items()}},
        })
    return rows


@app.command("models")
def models_cmd(
    layout: str = typer.Option("ntu25", "--layout", help="layout name or YAML file"),
    num_classes: int = typer.Option(60, "--num-classes"),
    persons: int = typer.Option(2, "--persons", help="M persons"),
    frames: int = typer.Option(64, "--frames", help="T frames for the GFLOPs column"),
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of a table"),
) -> None:
    """List registered models with parameters and GFLOPs (batch 1, default width)."""
    rows = list_models(layout, num_classes, persons, frames)
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table(title=f"edgeskel models ({layout}, T={frames}, M={persons}, {num_classes} classes)")
    for col in ("Name", "Family", "Params", "GFLOPs", "Streams", "Description"):
        table.add_column(col, justify="right" if col in ("Params", "GFLOPs") else "left")
    for r in rows:
        table.add_row(r["name"], r["family"], f"{r['params']:,}", f"{r['gflops']:.2f}", r["streams"]["streams"],
                      r["description"])
    Console().print(table)


def _read_class_names(path: Path | None) -> list[str] | None:
    from edgeskel.errors import DataError

    if path is None:
        return None
    try:
        names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    except OSError as exc:
        raise DataError(path, f"cannot read class names: {exc.strerror}") from None
    return names


@app.command("import")
def import_cmd(
    files: list[Path] = typer.Argument(..., help="checkpoint written by another code base (.pt/.pth/.safetensors/"
                                       ".pdparams); several: the streams of one ensemble (docs/ENSEMBLES.md)"),
    out: Path = typer.Option(..., "--out", help="edgeskel checkpoint to write"),
    source: str | None = typer.Option(None, "--from", help="code base (default: detected from the keys); "
                                      "see `edgeskel import-sources`"),
    model: str | None = typer.Option(None, "--model", help="our model name (default: detected)"),
    layout: str | None = typer.Option(None, "--layout", help="layout name or YAML file (default: the built-in "
                                      "layout with the checkpoint's joint count)"),
    num_classes: int | None = typer.Option(None, "--num-classes", help="checked against the classifier weights"),
    num_person: int | None = typer.Option(None, "--num-person", help="default: from data_bn (else 2)"),
    frames: int = typer.Option(64, "--frames", help="T that training/calibration data is cut to (the model "
                               "itself accepts any T)"),
    class_names: Path | None = typer.Option(None, "--class-names", help="text file, one class name per line"),
    as_json: bool = typer.Option(False, "--json", help="print the summary as JSON"),
    entrypoint: str | None = typer.Option(None, "--entrypoint", help="your own model: 'package.module:function' "
                                          "(RUNS THAT CODE); FILE holds its weights; needs --layout, --num-classes"),
    model_kwargs: str | None = typer.Option(None, "--model-kwargs", help="with --entrypoint: JSON object of the "
                                            "function's own arguments"),
    inputs: str | None = typer.Option(None, "--inputs", help="ensemble: each file's input view, comma-separated "
                                      "(joint, bone, motion, bone_motion); edgeskel checkpoints know their own"),
    weights: str | None = typer.Option(None, "--weights", help="ensemble: fusion weights, comma-separated (default: "
                                       "the code base's, 0.6/0.4 CTR-GCN, 2:2:1:1 PYSKL)"),
    fusion: str | None = typer.Option(None, "--fusion", help="ensemble: logits (CTR-GCN) or softmax (PYSKL); "
                                      "default: the code base's"),
    names: str | None = typer.Option(None, "--names", help="ensemble: stream names, comma-separated (default: "
                                     "the input views)"),
) -> None:
    """Convert a checkpoint from another code base (CTR-GCN, Hyperformer, PYSKL, mmaction2, ...)
    into an edgeskel checkpoint; source, model, layout and sizes are detected. With
    --entrypoint, wrap the weights of your own model instead."""
    from edgeskel.checkpoint import Preprocess, save_checkpoint
    from edgeskel.importers import import_checkpoint
    from edgeskel.io import sha256_file
    from edgeskel.models.profile import count_params

    ensemble = len(files) > 1 or any(v is not None for v in (inputs, weights, fusion, names))
    if ensemble:
        if entrypoint is not None:
            from edgeskel.errors import ConfigError

            raise ConfigError("--entrypoint wraps one user model; import its streams one by one, then list the "
                              "edgeskel checkpoints here")
        _import_ensemble(files, out, source, model, layout, num_classes, num_person, frames,
                         _read_class_names(class_names), inputs, weights, fusion, names, as_json)
        return
    file = files[0]
    names = _read_class_names(class_names)
    if entrypoint is not None:
        net, spec, info = _import_user_model(file, entrypoint, model_kwargs, layout, num_classes, num_person, frames,
                                             names)
    else:
        net, spec, info = import_checkpoint(file, source=source, model=model, layout=layout, num_classes=num_classes,
                                            num_person=num_person, class_names=names)
    spec.preprocess = Preprocess(num_frames=frames, num_person=spec.preprocess.num_person)
    extra = {"imported_from": {**info, "file": str(file), "sha256": sha256_file(file)}}
    save_checkpoint(out, net, spec, extra=extra)
    summary = {
        "out": str(out), "source": info["source"], "format": info["format"], "model": spec.name,
        "layout": spec.layout.name, "num_classes": spec.num_classes, "num_person": spec.preprocess.num_person,
        "frames": frames, "params": count_params(net), "kwargs": spec.kwargs,
    }
    if info.get("ignored_objects"):  # pickled training objects (args, logs) dropped, never constructed
        summary["ignored_objects"] = info["ignored_objects"]
    if as_json:
        print(json.dumps(summary, indent=2))
        return
    table = Table(title=f"imported {file.name}", show_header=False)
    for k, v in summary.items():
        if k == "kwargs":  # long graph lists (edges, parts) are in --json and the checkpoint; here their size
            v = {a: (f"<{len(b)} entries>" if isinstance(b, list) and len(b) > 6 else b) for a, b in v.items()}
        table.add_row(k, f"{v:,}" if k == "params" else json.dumps(v) if isinstance(v, dict) else str(v))
    Console().print(table)


def _split(option: str, value: str | None, n: int) -> list[str | None]:
    from edgeskel.errors import ConfigError

    if value is None:
        return [None] * n
    parts = [p.strip() for p in value.split(",")]
    if len(parts) != n or any(not p for p in parts):
        raise ConfigError(f"{option} {value!r}: give {n} comma-separated values, one per checkpoint")
    return list(parts)


def _import_ensemble(files: list[Path], out: Path, source: str | None, model: str | None, layout: str | None,
                     num_classes: int | None, num_person: int | None, frames: int, class_names: list[str] | None,
                     inputs: str | None, weights: str | None, fusion: str | None, names: str | None,
                     as_json: bool) -> None:
    """`edgeskel import J.pt B.pt JM.pt BM.pt --inputs joint,bone,motion,bone_motion --out ens.ckpt`."""
    from edgeskel.checkpoint import Preprocess, save_checkpoint
    from edgeskel.ensembles import StreamSpec, assemble, load_stream, stream_extra
    from edgeskel.errors import ConfigError
    from edgeskel.models.profile import count_params

    n = len(files)
    ws: list[float | None] = []
    for w in _split("--weights", weights, n):
        try:
            ws.append(None if w is None else float(w))
        except ValueError:
            raise ConfigError(f"--weights {weights!r}: {w!r} is not a number") from None
    if fusion is not None and fusion not in ("logits", "softmax"):
        raise ConfigError(f"--fusion {fusion!r}; allowed: logits, softmax")
    loaded = []
    for i, (f, view, w, name) in enumerate(zip(files, _split("--inputs", inputs, n), ws, _split("--names", names, n),
                                               strict=True)):
        entry = StreamSpec(f, name, view, w, source, model)
        stream = load_stream(entry, i, layout=layout, num_person=num_person, class_names=class_names,
                             preprocess=Preprocess(num_frames=frames, num_person=num_person) if num_person else None)
        if num_classes is not None and stream.spec.num_classes != num_classes:
            raise ConfigError(f"{f}: the checkpoint has {stream.spec.num_classes} classes, --num-classes {num_classes}")
        if stream.source is not None:  # imported: the clip length given here (edgeskel checkpoints keep theirs)
            stream.spec.preprocess = Preprocess(frames, stream.spec.preprocess.num_person, stream.view)
        loaded.append(stream)
    net, spec = assemble(loaded, fusion=fusion)
    save_checkpoint(out, net, spec, extra=stream_extra(loaded))
    summary = {
        "out": str(out), "model": "ensemble", "fusion": spec.kwargs["fusion"], "layout": spec.layout.name,
        "num_classes": spec.num_classes, "num_person": spec.preprocess.num_person,
        "frames": spec.preprocess.num_frames, "params": count_params(net),
        "streams": [{"name": s["name"], "input": s["input"], "weight": s["weight"], "model": s["model"],
                     "source": x.source or "edgeskel", "file": str(x.origin)}
                    for s, x in zip(spec.kwargs["streams"], loaded, strict=True)],
    }
    if as_json:
        print(json.dumps(summary, indent=2))
        return
    table = Table(title=f"ensemble of {n} streams -> {out}", show_header=True)
    for col in ("stream", "input", "weight", "model", "source", "file"):
        table.add_column(col)
    for s in summary["streams"]:
        table.add_row(s["name"], s["input"], f"{s['weight']:g}", s["model"], s["source"], s["file"])
    Console().print(table)
    print(f"fusion {summary['fusion']}, {summary['num_classes']} classes, layout {summary['layout']}, "
          f"{summary['params']:,} parameters")


def _import_user_model(file: Path, entrypoint: str, model_kwargs: str | None, layout: str | None,
                       num_classes: int | None, num_person: int | None, frames: int,
                       names: list[str] | None) -> tuple[Any, Any, dict[str, Any]]:
    """`edgeskel import WEIGHTS --entrypoint pkg.mod:build`: the user's module with their weights."""
    from edgeskel.checkpoint import Preprocess
    from edgeskel.errors import ConfigError
    from edgeskel.importers.user import load_user_reference
    from edgeskel.layouts import get_layout
    from edgeskel.models.user import trust_entrypoint
    from edgeskel.weights import sniff

    if layout is None or num_classes is None:
        raise ConfigError("--entrypoint needs --layout and --num-classes (a user model's sizes are not detected)")
    try:
        kwargs = json.loads(model_kwargs) if model_kwargs else {}
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--model-kwargs: not valid JSON: {exc.msg}") from None
    if not isinstance(kwargs, dict):
        raise ConfigError("--model-kwargs must be a JSON object of the function's arguments")
    trust_entrypoint(entrypoint)  # named by the user on the command line
    pre = Preprocess(num_frames=frames, num_person=num_person or 1)
    net, spec, _ = load_user_reference(entrypoint, kwargs, file, num_classes, get_layout(layout), pre, names or [])
    return net, spec, {"source": "user", "format": sniff(file), "entrypoint": entrypoint}


@app.command("import-sources")
def import_sources_cmd(as_json: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """List the code bases `edgeskel import` reads and the models each provides."""
    from edgeskel.importers import get_importer, sources

    rows = [{"source": s, "models": list(m), "description": get_importer(s).description} for s, m in sources().items()]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table(title="edgeskel import sources")
    for col in ("Source", "Models", "Checkpoint"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["source"], ", ".join(r["models"]), r["description"])
    Console().print(table)


@app.command("predict")
def predict_cmd(
    checkpoint: Path = typer.Option(..., "--checkpoint", help="edgeskel checkpoint"),
    input: Path = typer.Option(..., "--input", help=".npy float array (N, C, T, V, M), already preprocessed"),
    out: Path = typer.Option(..., "--out", help="logits .npy to write (N, num_classes)"),
    batch_size: int = typer.Option(64, "--batch-size"),
    as_json: bool = typer.Option(False, "--json", help="print the summary as JSON"),
) -> None:
    """Run a checkpoint on a raw canonical tensor and save the logits."""
    from edgeskel.predict import predict_file

    res = predict_file(checkpoint, input, out, batch_size)
    if as_json:
        print(json.dumps(res, indent=2))
    else:
        Console().print(f"wrote {res['out']}: {res['samples']} x {res['num_classes']} logits ({res['model']})")
