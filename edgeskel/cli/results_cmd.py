"""`edgeskel results import RUN_DIR results.json`: a by-hand device run's results into the report."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from edgeskel.cli.app import app

results_app = typer.Typer(help="Bring device results into a run's report (after running its bundle by hand).",
                          no_args_is_help=True)
app.add_typer(results_app, name="results")


@results_app.command("import")
def results_import(
    run_dir: Path = typer.Argument(..., metavar="RUN_DIR", help="the pipeline run folder, runs/<recipe>/<device>"),
    results: Path = typer.Argument(..., metavar="RESULTS", help="results.json written by device_runner.py on the device"),
    quiet: bool = typer.Option(False, "--quiet", help="no summary table"),
) -> None:
    """Check that RESULTS belong to this run's bundle (bundle id, artifact hashes, device
    architecture), then re-gate and rewrite the report as an SSH run would. Exits like
    `edgeskel export --device`: 0 PASSED, 1 FAILED, 3 NOT MEASURED, 2 bad input."""
    from edgeskel.pipeline.results_import import import_results

    log = (lambda s: None) if quiet else (lambda s: Console(stderr=True).print(s, markup=False, highlight=False))
    report = import_results(run_dir, results, log=log)
    if not quiet:
        from edgeskel.report import print_report

        print_report(report, run_dir=run_dir)
    Console().print(f"reports: {run_dir / 'report.md'}  {run_dir / 'report.html'}  {run_dir / 'report.json'}",
                    markup=False, highlight=False)
    if report["exit_code"]:
        raise typer.Exit(report["exit_code"])
