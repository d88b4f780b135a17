"""Outputs of a benchmark: PNG plots, the generated Markdown section (inserted between
`<!-- bench:begin -->` / `<!-- bench:end -->` so hand-written text around it survives), and
a rich summary table for the terminal."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from edgeskel.bench.settings import BEGIN_MARKER, END_MARKER
from edgeskel.errors import ConfigError
from edgeskel.io import atomic_write_text


# ------------------------------------------------------------------------ markers
def insert_between_markers(path: Path, body: str, begin: str = BEGIN_MARKER, end: str = END_MARKER,
                           title: str = "# Benchmarks") -> str:
    """Replace the text between the markers in `path` with `body` (create the file, or append
    the markers at the end, if missing). Everything outside the markers is kept byte for byte."""
    path = Path(path)
    text = path.read_text() if path.is_file() else f"{title}\n\n"
    block = f"{begin}\n{body.rstrip()}\n{end}"
    nb, ne = text.count(begin), text.count(end)
    if nb == 0 and ne == 0:
        new = text.rstrip("\n") + "\n\n" + block + "\n"
    elif nb == 1 and ne == 1 and text.index(begin) < text.index(end):
        i, j = text.index(begin), text.index(end) + len(end)
        new = text[:i] + block + text[j:]
    else:
        raise ConfigError(f"{path}: expected one {begin} followed by one {end} (found {nb} begin and {ne} end "
                          "markers); fix the file so the generated section can be replaced")
    atomic_write_text(path, new)
    return new


# ------------------------------------------------------------------------ formatting
def _f(v: Any, fmt: str = ".2f", none: str = "–") -> str:
    return none if v is None else format(v, fmt)


def _x(v: Any) -> str:
    return "–" if v is None else f"{v:.2f}x"


def _rel(target: Path, start_dir: Path) -> str:
    return Path(os.path.relpath(Path(target).resolve(), Path(start_dir).resolve())).as_posix()


def variant_table(m: dict[str, Any], tb: int) -> list[str]:
    hdr = (f"| Variant | Top-1 % | ΔTop-1 | Agree % | p50 b1 ms | p99 b1 ms | b{tb} samples/s | Size MB | Params | GFLOPs | "
           "GFLOP/s b1 | % fp32 peak b1 | vs PyTorch | vs best baseline | Size vs ONNX | Gates |")
    lines = [hdr, "|" + "---|" * 16]
    for k, r in m["variants"].items():
        name = r["label"] + (" **★ best**" if k == m.get("best") else "") + (" (best baseline)" if k == m.get("best_baseline") else "")
        lat = (r.get("latency_ms") or {}).get("1") or {}
        drop = 0.0 - r["top1_drop"] if r.get("top1_drop") is not None else None
        status = r.get("status", "–")
        if status != "pass":
            status = f"{status}: {r.get('reason', '')}".replace("|", "/")
        frac = r.get("fraction_of_peak_b1")
        lines.append(f"| {name} | {_f(r.get('top1'))} | {_f(drop, '+.2f')} | {_f(r.get('agreement'), '.1f')} | "
                     f"{_f(lat.get('p50'), '.3f')} | "
                     f"{_f(lat.get('p99'), '.3f')} | {_f(r.get('throughput_fps'), '.0f')} | {_f(r.get('size_mb'), '.3f')} | "
                     f"{r['params']:,} | {r['gflops']:.3f} | {_f(r.get('gflops_per_s_b1'), '.1f')} | "
                     f"{_f(None if frac is None else 100 * frac, '.1f')} | {_x(r.get('speedup_vs_torch'))} | "
                     f"{_x(r.get('speedup_vs_best_baseline'))} | {_x(r.get('size_reduction_vs_onnx'))} | {status} |")
    return lines


def _pivot(rows: list[dict[str, Any]], key: str, val: str, fmt: str) -> list[str]:
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    keys = sorted({r[key] for r in rows})
    lines = [f"| {key} | " + " | ".join(variants) + " |", "|" + "---|" * (len(variants) + 1)]
    for k in keys:
        cell = {r["variant"]: r[val] for r in rows if r[key] == k}
        lines.append(f"| {k} | " + " | ".join(_f(cell.get(v), fmt) for v in variants) + " |")
    return lines


def selection_note(comp: dict[str, Any]) -> str:
    """Where the compressed model's choices were made. Rows measured before validation splits
    existed (issue 16) chose fine-tune epochs and INT8 gates on the very samples they report;
    their compression record has no `deployed` entry (nor a `selection`)."""
    validated = (comp.get("selection") or {}).get("split") == "validation" or "deployed" in (comp.get("top1") or {})
    return ("every choice inside compression used the validation slice" if validated else
            "measured before validation splits existed: its fine-tune epoch and INT8 gates were chosen on these samples")


def model_section(m: dict[str, Any], results: dict[str, Any], plots: dict[str, str], md_dir: Path) -> list[str]:
    tb = results["settings"]["throughput_batch"]
    ref, comp = m["reference"], m["compressed"]
    out = [f"### {m['model']}", "",
           f"Data `{m['data']}` (layout {m['layout']}), {m['num_val']} test samples (accuracy; {selection_note(comp)}), input (C, T, V, M) = "
           f"{tuple(m['input_shape'])}. Reference: {ref.get('source')}, top-1 {ref['top1']:.2f}%, "
           f"{ref['params']:,} params, {ref['gflops']:.3f} GFLOPs. Compressed (recipe `{m['recipe']}`): "
           f"{comp['params']:,} params ({ref['params'] / max(comp['params'], 1):.2f}x fewer), {comp['gflops']:.3f} GFLOPs; "
           f"compression + fine-tune took {_f(comp.get('wall_time_s'), '.0f')} s."
           + (f" Measured {m['measured_at']}." if m.get("measured_at") else ""), "",
           *variant_table(m, tb), ""]
    streams = [r for r in m["variants"].values() if r.get("group") == "streaming"]
    if streams or m.get("streaming_skipped"):
        out += ["Streaming rows (edgeskel step graphs, docs/STREAMING.md): p50/p99 are one step call = one decision "
                "on recorded test frames (a windowed row's are one window = one decision), timed in the same "
                "interleaved run at batch 1; GFLOPs per call; top-1 = the ended stream's final decision on the same "
                "test sequences, fed raw at their own rate (a model trained on resampled clips loses accuracy here: "
                "fine-tune it for streams)."
                + "".join(f" No {w} streaming row: {why}." for w, why in (m.get("streaming_skipped") or {}).items()), ""]
    judged = [(r["label"], r["parity_vs_torch"]) for r in m["variants"].values() if r.get("parity_vs_torch")]
    if judged:
        out += ["Baselines under the parity rule edgeskel applies to its own artifacts of the same precision "
                "(vs PyTorch fp32 of the original; logit errors in units of the largest |logit|; not gating): "
                + "; ".join(f"{label}: {'passes' if pr['passed'] else '**fails**'} (max {pr['max_abs_x_scale']:.2f}"
                            + (f", p95 per-sample {pr['quantile_abs_x_scale']:.2f}" if pr.get("quantile_abs_x_scale") is not None else "")
                            + f", agreement {100 * pr['agreement']:.1f}%)" for label, pr in judged) + ".", ""]
    out += ["Targets for the best edgeskel variant "
            f"({m['variants'][m['best']]['label'] if m.get('best') else 'none passed the gates'}):", "",
            "| Target | Goal | Value | Met | Gap |", "|---|---|---|---|---|"]
    for t in m["targets"]:
        out.append(f"| {t['target']} | {t['goal']} | {_f(t['value'])} | {'yes' if t['met'] else '**no**'} | {t['gap'] or ''} |")
    prof = m.get("op_profile")
    if prof:
        out += ["", f"Where the time goes in `{prof['variant']}` at batch 1 ({prof.get('tool', '')}):", ""]
        if prof.get("error"):
            out.append(f"profiling failed: {prof['error']}")
        else:
            out += ["| Op type | ms per run | Share | Nodes |", "|---|---|---|---|"]
            for o in prof["ops"][:10]:
                out.append(f"| {o['op_type']} | {o['ms_per_run']:.3f} | {100 * o['share']:.1f}% | {o['nodes_per_run']:.0f} |")
    ts, bs = m["scaling"]["T"], m["scaling"]["batch"]
    out += ["", "Latency (p50 ms, batch 1) vs sequence length T:", "", *_pivot(ts["rows"], "T", "p50_ms", ".3f")]
    for k, e in (ts.get("errors") or {}).items():
        out.append(f"\n{k}: {e}")
    out += ["", f"Latency (p50 ms) and throughput (samples/s) vs batch at T={bs['T']}:", "",
            *_pivot(bs["rows"], "batch", "p50_ms", ".3f"), "", *_pivot(bs["rows"], "batch", "throughput_fps", ".0f"), ""]
    if m.get("stage_seconds"):
        out += ["Benchmark time for this model (s): " + ", ".join(f"{k} {v:.0f}" for k, v in m["stage_seconds"].items()), ""]
    for key in ("T", "batch", "accuracy"):
        p = plots.get(f"{m['model']}:{key}")
        if p:
            out.append(f"![{m['model']} {key}]({_rel(Path(p), md_dir)})")
    return out + [""]


def render_markdown(results: dict[str, Any], plots: dict[str, str], md_dir: Path) -> str:
    mach, tim = results["machine"], results["timing"]
    peak = mach["peak"]
    libs = ", ".join(f"{k} {v}" for k, v in results["libraries"].items() if v)
    lines = [
        "## Side-by-side benchmark (generated by `edgeskel bench`; do not edit by hand)", "",
        f"- Command: `{results['command']}`",
        f"- Date: {results['date']}; wall time {results.get('wall_time_s', 0):.0f} s"
        + (" (**--quick**: tiny models, few repeats: checks the benchmark, not the published numbers)" if results["settings"]["quick"] else ""),
        f"- Machine: {mach['cpu_model']} ({mach['vendor']}, family {mach['family']}), {mach['cpus']} CPUs"
        + (f", {mach['hypervisor']} VM" if mach.get("hypervisor") else "") + f", {mach['os']}; ISA: {', '.join(mach['flags_summary'])}",
        f"- fp32 peak: {peak['formula']} ({peak['flops_per_cycle_reason']}; clock from {peak['clock_source']}). "
        "`% fp32 peak` divides every row's rate by this fp32 peak, bf16 and INT8 rows included: their kernels "
        "(VNNI, AMX, bf16 dot products) do more operations per cycle than fp32 FMAs, so they can exceed 100%",
        f"- Timing: {tim['method']}; {tim['threads']} threads for every runtime (torch.set_num_threads({tim['torch_threads']})), "
        f"{tim['warmup']} warm-up + {tim['runs_per_round']} runs x {tim['rounds']} rounds per variant and batch size",
        f"- Libraries: {libs}",
        f"- 1-min load average at start/end: {mach.get('load_average_start')}/{mach.get('load_average_end')}"
        + (" (**busy machine: other processes competed for the CPU; latencies are inflated and noisy**)"
           if max(mach.get("load_average_start") or 0, mach.get("load_average_end") or 0) > tim["threads"] + 0.5 else ""),
        f"- Best edgeskel variant: lowest batch-1 p50 among the `{results['device_profile']['name']}` profile's variants "
        f"passing its gates ({', '.join(f'{k}={v}' for k, v in results['device_profile']['gates'].items() if v is not None)}); "
        "best baseline: lowest batch-1 p50 among the uncompressed baselines within the same top-1 drop.",
        "",
    ]
    if results.get("missing_models"):
        lines += [f"**Partial results**: the run has not measured {', '.join(results['missing_models'])} yet "
                  "(`--resume` continues it).", ""]
    for m in results["models"].values():
        lines += model_section(m, results, plots, md_dir)
    ct = results.get("compression_times") or []
    if ct:
        lines += ["### Compression + fine-tune wall time vs model size", "",
                  "| Model | Width | Data | Params before | Params after | Fine-tune epochs | Wall time s |", "|---|---|---|---|---|---|---|"]
        for r in ct:
            lines.append(f"| {r['model']} | {r['width']} | `{r['data']}` | {_f(r['params_before'], ',')} | "
                         f"{_f(r['params_after'], ',')} | {r['finetune_epochs']} | {_f(r['wall_time_s'], '.1f')} |")
        if plots.get("compression"):
            lines += ["", f"![compression time]({_rel(Path(plots['compression']), md_dir)})"]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------ plots
def make_plots(results: dict[str, Any], out: Path) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plots: dict[str, str] = {}
    for name, m in results["models"].items():
        for key, rows, xk in (("T", m["scaling"]["T"]["rows"], "T"), ("batch", m["scaling"]["batch"]["rows"], "batch")):
            if not rows:
                continue
            fig, ax = plt.subplots(figsize=(6, 4))
            for v in dict.fromkeys(r["variant"] for r in rows):
                pts = sorted((r[xk], r["p50_ms"]) for r in rows if r["variant"] == v)
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=v)
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel("sequence length T (frames)" if xk == "T" else "batch size")
            ax.set_ylabel("p50 latency (ms)")
            ax.set_title(f"{name}: latency vs " + ("T (batch 1)" if xk == "T" else f"batch (T={m['scaling']['batch']['T']})"))
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=8)
            p = out / f"{name}-latency-vs-{key}.png"
            fig.tight_layout()
            fig.savefig(p, dpi=110)
            plt.close(fig)
            plots[f"{name}:{key}"] = str(p)
        pts = [(r["latency_ms"]["1"]["p50"], r["top1"], r["label"], r["group"]) for r in m["variants"].values()
               if r.get("latency_ms") and r.get("top1") is not None]
        if pts:
            fig, ax = plt.subplots(figsize=(7, 4.5))
            for lat, top1, label, group in pts:
                ax.scatter(lat, top1, marker="o" if group == "baseline" else "^", color="tab:gray" if group == "baseline" else "tab:blue")
                ax.annotate(label, (lat, top1), fontsize=6, xytext=(3, 3), textcoords="offset points")
            ax.set_xscale("log")
            ax.set_xlabel("p50 latency at batch 1 (ms)")
            ax.set_ylabel("top-1 (%)")
            ax.set_title(f"{name}: accuracy vs latency (gray: baselines, blue: edgeskel)")
            ax.grid(True, alpha=0.3)
            p = out / f"{name}-accuracy-vs-latency.png"
            fig.tight_layout()
            fig.savefig(p, dpi=110)
            plt.close(fig)
            plots[f"{name}:accuracy"] = str(p)
    ct = [r for r in results.get("compression_times") or [] if r.get("params_before") and r.get("wall_time_s")]
    if ct:
        fig, ax = plt.subplots(figsize=(6, 4))
        for r in ct:
            ax.scatter(r["params_before"], r["wall_time_s"])
            ax.annotate(f"{r['model']} w={r['width']} ({r['finetune_epochs']} ep)", (r["params_before"], r["wall_time_s"]),
                        fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("parameters before compression")
        ax.set_ylabel("compression + fine-tune wall time (s)")
        ax.grid(True, which="both", alpha=0.3)
        p = out / "compression-time-vs-size.png"
        fig.tight_layout()
        fig.savefig(p, dpi=110)
        plt.close(fig)
        plots["compression"] = str(p)
    return plots


def write_outputs(results: dict[str, Any], settings: Any) -> dict[str, Any]:
    """Plots into settings.out, the Markdown section into settings.markdown_path."""
    out = Path(settings.out)
    out.mkdir(parents=True, exist_ok=True)
    plots = make_plots(results, out)
    md = Path(settings.markdown_path)
    md.parent.mkdir(parents=True, exist_ok=True)
    insert_between_markers(md, render_markdown(results, plots, md.parent))
    return {"results": str(out / "results.json"), "markdown": str(md), "plots": plots}


# ------------------------------------------------------------------------ terminal
def print_summary(results: dict[str, Any], console: Any = None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console(width=None if sys.stdout.isatty() else 160)
    tb = results["settings"]["throughput_batch"]
    for name, m in results["models"].items():
        t = Table(title=f"{name}: side by side (batch-1 p50/p99 ms, batch-{tb} samples/s)")
        for c in ("variant", "top-1", "p50", "p99", f"b{tb}/s", "MB", "vs torch", "vs best base", "gates"):
            t.add_column(c, justify="left" if c in ("variant", "gates") else "right")
        for k, r in m["variants"].items():
            lat = (r.get("latency_ms") or {}).get("1") or {}
            star = " ★" if k == m.get("best") else ""
            t.add_row(k + star, _f(r.get("top1")), _f(lat.get("p50"), ".3f"), _f(lat.get("p99"), ".3f"),
                      _f(r.get("throughput_fps"), ".0f"), _f(r.get("size_mb"), ".3f"), _x(r.get("speedup_vs_torch")),
                      _x(r.get("speedup_vs_best_baseline")), r.get("status", "–"))
        console.print(t)
        for tg in m["targets"]:
            mark = "[green]met[/]" if tg["met"] else f"[red]missed[/]: {tg['gap']}"
            console.print(f"  target {tg['target']} ({tg['goal']}): {_f(tg['value'])} {mark}")
