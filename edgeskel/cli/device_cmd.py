"""`edgeskel devices [show NAME | check NAME]` and `edgeskel device-run BUNDLE`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from edgeskel.cli.app import app

devices_app = typer.Typer(help="List and inspect device profiles (devices/*.yaml).", no_args_is_help=False)
app.add_typer(devices_app, name="devices")


@devices_app.callback(invoke_without_command=True)
def devices_list(ctx: typer.Context) -> None:
    """List the device profiles."""
    if ctx.invoked_subcommand is not None:
        return
    from rich import box

    from edgeskel.devices import list_profiles, load_profile, profiles_dir

    t = Table(title="Device profiles (p99 budget ms at batch 1, max top-1 drop in points)", caption=str(profiles_dir()),
              box=box.SIMPLE_HEAD)  # no outer border: fits 80 columns
    t.add_column("Name", no_wrap=True)
    t.add_column("Arch")
    t.add_column("Variants", min_width=17, overflow="fold")
    for col in ("Batch", "p99", "Δmax", "Where"):
        t.add_column(col)
    for name in list_profiles():
        p = load_profile(name)
        t.add_row(name, p.arch, "\n".join(p.variant_names), ",".join(map(str, p.batch_sizes)),
                  f"{p.gates.p99_latency_ms:g}" if p.gates.p99_latency_ms else "-", f"{p.gates.max_top1_drop:g}",
                  where(p))
    Console().print(t)
    from edgeskel.invocation import edgeskel_command

    Console().print("Where: here = measured on this machine; ssh = on the device over SSH; by hand = run the "
                    f"bundle on the device, then `{edgeskel_command()} results import`.", markup=False, highlight=False)


def where(p: Any, host_arch: str | None = None) -> str:
    """Where `edgeskel export --device p` measures: over SSH, on this machine (same architecture,
    no TensorRT variant), or nowhere until the bundle is run on the device by hand."""
    import platform

    if p.ssh:
        return "ssh"
    host = host_arch or platform.machine().lower()
    host = {"amd64": "x86_64", "arm64": "aarch64"}.get(host, host)
    if p.arch == host and not any(v.backend == "tensorrt" for v in p.variants):
        return "here"
    return "by hand"


@devices_app.command("show")
def devices_show(name: str = typer.Argument(..., help="profile name or YAML path")) -> None:
    """Show one profile, fully resolved (defaults filled in)."""
    import yaml

    from edgeskel.devices import load_profile

    p = load_profile(name)
    data = p.model_dump(mode="json")
    typer.echo(yaml.safe_dump(data, sort_keys=False, width=1000).rstrip())


@devices_app.command("check")
def devices_check(name: str = typer.Argument(..., help="profile name or YAML path")) -> None:
    """Check that the profile's device is reachable over SSH and has the runtimes it needs."""
    from edgeskel.devices import load_profile
    from edgeskel.remote import SSHTarget, check_runtimes

    p = load_profile(name)
    target = SSHTarget.from_profile(p)
    target.check_connection()
    info = check_runtimes(target, sorted({v.backend for v in p.variants}), p.arch)
    Console().print(f"[green]ok[/]: {target.label} python {info['python']} on {info['machine']}, runtimes present")


@app.command("device-run")
def device_run(
    bundle: Path = typer.Argument(..., help="bundle folder (contains bundle.json)"),
    out: Path = typer.Option(None, "--out", help="results file (default: BUNDLE/results.json)"),
    variant: list[str] = typer.Option(None, "--variant", help="only this variant (repeatable)"),
    no_interleave: bool = typer.Option(False, "--no-interleave",
                                       help="time each variant alone, one after another (default: round-robin)"),
) -> None:
    """Measure a bundle's variants on THIS machine (run it on the device). Without edgeskel
    installed, the same works as `python3 device_runner.py BUNDLE` inside the bundle.
    Exit status as the runner's: 0 all measured, 3 some variant errored (results written;
    its row says why), 2 a wrong bundle folder or variant name."""
    from rich.markup import escape

    from edgeskel.errors import ConfigError
    from edgeskel.remote.bundle import read_bundle
    from edgeskel.remote.device_runner import EXIT_VARIANT_ERRORS, run_bundle

    meta = read_bundle(bundle)  # clear ConfigError for a wrong folder
    names = [v["name"] for v in meta.get("variants") or []]
    unknown = [n for n in variant or [] if n not in names]
    if unknown:
        raise ConfigError(f"--variant {', '.join(unknown)}: not in this bundle (has: {', '.join(names)})")
    doc = run_bundle(bundle, out, variant or None, interleave=not no_interleave)
    t = Table(title=f"{doc['bundle_id']} on this machine")
    for col in ("Variant", "Status", "Top-1 %", "Agreement %", "p50 ms (b=1)", "p99 ms (b=1)"):
        t.add_column(col)
    for v in doc["variants"]:
        acc = v.get("accuracy") or {}
        lat = (v.get("latency_ms") or {}).get("1") or {}
        fmt = lambda x, f="{:.2f}": "-" if x is None else f.format(x)  # noqa: E731
        t.add_row(v["name"], v["status"] if v["status"] == "ok" else f"[red]ERROR {escape(str(v['error']))}[/]",
                  fmt(acc.get("top1")),
                  fmt(acc.get("agreement"), "{:.1f}"), fmt(lat.get("p50")), fmt(lat.get("p99")))
    Console().print(t)
    results = out or Path(bundle) / "results.json"
    Console().print(f"results: {results}")
    bad = [v["name"] for v in doc["variants"] if v["status"] != "ok"]
    if bad:  # measured what could be measured; say so in the exit status, as device_runner.py does
        typer.echo(f"error: {len(bad)} of {len(doc['variants'])} variants failed ({', '.join(bad)}); "
                   f"the reasons are in the table and in {results}", err=True)
        raise typer.Exit(EXIT_VARIANT_ERRORS)
