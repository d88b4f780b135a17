"""`edgeskel data SPEC`: read a dataset and print what is in it (counts, lengths, skips)."""

from __future__ import annotations

import json

import typer

from edgeskel.cli.app import app


@app.command("data")
def data_cmd(
    spec: str = typer.Argument(..., help="Dataset spec kind[:path][?key=value], e.g. nw-ucla:../shared/data/nw-ucla"),
    layout: str = typer.Option(None, "--layout", help="Layout name or YAML file (must match the data's joints)"),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Skip unreadable samples and list them instead of failing"),
    class_names: str = typer.Option(None, "--class-names", help="Text file, one class name per line in label order"),
    split: str = typer.Option(None, "--split", help="Only read this split (train, val or test); default: all the data holds"),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON"),
) -> None:
    """Summarise a dataset: what was read (format, layout and how well it fits, classes),
    samples per split, frame counts, persons, skipped samples. See docs/DATA.md."""
    from edgeskel.data import load_dataset, summarize

    splits = (split,) if split else ()
    summary = summarize(load_dataset(spec, layout=layout, skip_bad=skip_bad, splits=splits, class_names=class_names))
    if as_json:
        typer.echo(json.dumps(summary, indent=2, default=str))
        return
    _print_rich(summary)


def _print_rich(s: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    con = Console()
    info = s["info"]
    con.print(f"[bold]{s['spec']}[/]  layout {s['layout']} ({s['joints']} joints, {s['channels']}D), "
              f"{len(s['classes'])} classes, protocol {info.get('protocol', '-')}")
    con.print(_explain(s), highlight=False)
    t = Table("split", "samples", "T min", "T median", "T max", "persons (count: samples)")
    for name, sp in s["splits"].items():
        if not sp["samples"]:
            t.add_row(name, "0", "-", "-", "-", "-")
            continue
        hist = ", ".join(f"{k}: {v}" for k, v in sp["persons_hist"].items())
        t.add_row(name, str(sp["samples"]), str(sp["frames_min"]), f"{sp['frames_median']:g}", str(sp["frames_max"]), hist)
    con.print(t)
    c = Table("id", "class", *s["splits"])
    for i, name in enumerate(s["classes"]):
        c.add_row(str(i), name, *(str(sp["per_class"][i]) for sp in s["splits"].values()))
    con.print(c)
    for w in s.get("warnings", []):
        con.print(f"[yellow]warning:[/] {w}", highlight=False)
    if s["skipped"]:
        k = Table("skipped sample", "problem", title=f"{len(s['skipped'])} skipped")
        for item in s["skipped"][:50]:
            k.add_row(item["sample"], item["problem"])
        con.print(k)
        if len(s["skipped"]) > 50:
            con.print(f"... and {len(s['skipped']) - 50} more (use --json for all)")


def _explain(s: dict) -> str:
    """What was read, in words: format, where the classes and the validation split come from,
    and how well the layout fits the joint positions."""
    info = s["info"]
    lines = [f"format: {info.get('dataset', s['spec'].split(':')[0])}"
             + (f" ({info['format_note']})" if info.get("format_note") else "")]
    src = info.get("class_names_from") or ("the data" if not all(c.startswith("class_") for c in s["classes"])
                                           else "generic (pass --class-names FILE)")
    lines.append(f"class names: {src}")
    lines.append("validation split: " + ("given by the data" if "val" in s["splits"]
                                         else "none given; model selection slices 10% of train (stratified, seed 0)"))
    fit = info.get("layout_fit") or {}
    if fit:
        asym = fit.get("left_right_asymmetry")
        lines.append(f"layout fit: bones {fit['bone_to_joint_distance']:.2f}x the typical joint distance, lengths vary "
                     f"{fit['bone_length_variation']:.0%} over time"
                     + (f", left/right differ {asym:.0%}" if asym is not None else "")
                     + (" -> likely WRONG joint order" if fit.get("likely_wrong") else " -> plausible"))
    return "\n".join(lines)
