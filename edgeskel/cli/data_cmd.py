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
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON"),
) -> None:
    """Summarise a dataset: samples per split, classes, frame counts, persons, skipped samples."""
    from edgeskel.data import load_dataset, summarize

    summary = summarize(load_dataset(spec, layout=layout, skip_bad=skip_bad))
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
    t = Table("split", "samples", "T min", "T median", "T max", "persons (count: samples)")
    for name, sp in s["splits"].items():
        hist = ", ".join(f"{k}: {v}" for k, v in sp["persons_hist"].items())
        t.add_row(name, str(sp["samples"]), str(sp["frames_min"]), f"{sp['frames_median']:g}", str(sp["frames_max"]), hist)
    con.print(t)
    c = Table("id", "class", "train", "test")
    for i, name in enumerate(s["classes"]):
        c.add_row(str(i), name, str(s["splits"]["train"]["per_class"][i]), str(s["splits"]["test"]["per_class"][i]))
    con.print(c)
    if s["skipped"]:
        k = Table("skipped sample", "problem", title=f"{len(s['skipped'])} skipped")
        for item in s["skipped"][:50]:
            k.add_row(item["sample"], item["problem"])
        con.print(k)
        if len(s["skipped"]) > 50:
            con.print(f"... and {len(s['skipped']) - 50} more (use --json for all)")
