"""The run's verdict and the decision a report opens with.

Verdict (what `edgeskel export --device D` exits with):
- PASSED (exit 0): every variant the profile asks for was measured where the profile says it
  runs (this machine when it is that device, the device over SSH, or results imported from
  the device) and met every gate.
- FAILED (exit 1): some variant failed a gate or is in ERROR (an export, build or runtime
  error is a failure of that variant, never a silent omission).
- NOT MEASURED (exit 3): nothing failed, but some variant has no device measurement: e.g. a
  Jetson profile checked on an x86 laptop. Host checks (accuracy of a CPU-side variant on this
  host) are labelled as such and never count as device numbers.
Streaming rows (report["streaming"], step graphs) count as variants here, judged by the
profile's `streaming:` gates; the decision below is among windowed variants only.
Usage and configuration errors exit 2 (`EdgeskelError`), an interrupt 130.

Decision: among the variants that met every gate, the one with the lowest p99 latency at
batch 1; p99 values within `TIE_FRACTION` of each other are a tie (timing noise), broken by
the smaller artifact. The runner-up is picked by the same rule from the rest.

Then the recommended variant is compared with the uncompressed reference exported on the same
backend and precision (report["baselines"]) when both were timed on the same machine in the
same run (a baseline measured only as a host check or under emulation has no latency, so no
ratio). If compression did not measure more than `TIE_FRACTION` faster at batch 1 (at p50 or
at p99: the smaller ratio counts) the decision says so and recommends shipping the
uncompressed variant (`ship_uncompressed`), unless the uncompressed one misses a gate it was
measured on (top-1 drop, p99, peak memory), as `edgeskel tune` prefers an uncompressed
candidate within its tie margin. Baselines are never gated: the verdict and exit code ignore them.
"""

from __future__ import annotations

from typing import Any

PASSED, FAILED, NOT_MEASURED = "PASSED", "FAILED", "NOT MEASURED"
EXIT_CODES = {PASSED: 0, FAILED: 1, NOT_MEASURED: 3}
TIE_FRACTION = 0.05  # p99 within 5% of the best counts as a tie (run-to-run noise on a quiet host)


def _names(vs: list[dict[str, Any]]) -> str:
    return ", ".join(v["name"] for v in vs)


def overall_verdict(variants: list[dict[str, Any]], device: str) -> dict[str, Any]:
    """{verdict, exit_code, headline, failed, errors, not_measured, passed} over every variant."""
    errors = [v for v in variants if v["status"] == "error"]
    failed = [v for v in variants if v["status"] == "fail"]
    skipped = [v for v in variants if v["status"] == "skipped"]
    ok = [v for v in variants if v["status"] == "pass"]
    n = len(variants)
    parts = []
    if failed:
        parts.append(f"{len(failed)} of {n} variants failed their gates ({_names(failed)})")
    if errors:
        parts.append(f"{len(errors)} of {n} in ERROR ({_names(errors)})")
    if skipped:
        hosts = [v for v in skipped if v.get("host_check")]
        emulated = [v for v in skipped if v.get("emulation")]  # validate/emulation.py
        parts.append(f"{len(skipped)} of {n} not measured on {device} ({_names(skipped)})"
                     + (f"; {len(hosts)} checked on this host only" if hosts else "")
                     + (f"; {len(emulated)} accuracy-checked under emulation (timing not the device's)"
                        if emulated else ""))
    if errors or failed:
        verdict = FAILED
    elif skipped or not variants:
        verdict = NOT_MEASURED
    else:
        verdict = PASSED
    if verdict == PASSED:
        headline = f"PASSED: all {n} variants measured on {device} met every gate"
    else:
        headline = f"{verdict}: " + "; ".join(parts or [f"no variant measured on {device}"])
        if ok:
            headline += f"; {len(ok)} passed ({_names(ok)})"
    return {"verdict": verdict, "exit_code": EXIT_CODES[verdict], "headline": headline,
            "failed": [v["name"] for v in failed], "errors": [v["name"] for v in errors],
            "not_measured": [v["name"] for v in skipped], "passed": [v["name"] for v in ok]}


def _p99(v: dict[str, Any]) -> float:
    return float((v.get("latency_ms") or {}).get("p99"))


def _pick(cands: list[dict[str, Any]]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(winner, the variants it tied with on p99)."""
    best = min(_p99(v) for v in cands)
    tied = [v for v in cands if _p99(v) <= best * (1 + TIE_FRACTION)]
    win = min(tied, key=lambda v: (v.get("size_mb") if v.get("size_mb") is not None else float("inf"), _p99(v), v["name"]))
    return win, [v for v in tied if v is not win]


def _gate_text(v: dict[str, Any]) -> str:
    out = []
    for c in v.get("gates") or []:
        if c["measured"] is None or c["gate"] in ("finite", "parity"):
            continue
        op = "<=" if c["bound"] == "max" else ">="
        value = f"{c['measured']:.0f}" if c["unit"] == "MB" else f"{c['measured']:.2f}"
        out.append(f"{c['label']} {value} {op} {c['threshold']:g} {c['unit']}".rstrip())
    return ", ".join(out)


RULE = ("meets every gate; then lowest p99 at batch 1; ties (within 5%) by size; then the uncompressed variant "
        "of the same backend and precision when compression is not more than 5% faster")


def _tie_text(win: dict[str, Any], tied: list[dict[str, Any]]) -> str:
    """Why `win` among the variants its p99 tied with (within TIE_FRACTION of the lowest)."""
    pct = f"{100 * TIE_FRACTION:g}%"
    low = min([win, *tied], key=lambda v: (_p99(v), v["name"]))
    others = ", ".join(f"{t['name']} {_size(t)}" for t in tied)
    if _p99(low) < _p99(win):  # the tie-break picked a variant slower than the lowest: never call it "lowest"
        return (f"p99 {_p99(win):.2f} ms at batch 1, within {pct} of the lowest ({low['name']} {_p99(low):.2f} ms); "
                f"the smaller artifact ({_size(win)} vs {others})")
    return (f"lowest p99 at batch 1 ({_p99(win):.2f} ms), tied within {pct} with {_names(tied)} "
            f"({', '.join(f'{_p99(t):.2f} ms' for t in tied)}) and the smallest artifact ({_size(win)} vs {others})")


def _lat(row: dict[str, Any], key: str) -> float | None:
    v = (row.get("latency_ms") or {}).get(key)
    return None if v is None else float(v)


def _baseline_misses(b: dict[str, Any], ref_top1: float | None, gates: dict[str, Any]) -> list[str]:
    """Gates the uncompressed row measurably misses (baselines are never gated; this only keeps
    the decision from recommending something that would not pass)."""
    out = []
    drop, p99, mem = gates.get("max_top1_drop"), gates.get("p99_latency_ms"), gates.get("max_memory_mb")
    if drop is not None and ref_top1 is not None and b.get("top1") is not None and ref_top1 - b["top1"] > drop + 1e-9:
        out.append(f"top-1 drop {ref_top1 - b['top1']:.2f} > {drop:g} points")
    if p99 is not None and _lat(b, "p99") is not None and _lat(b, "p99") > p99:
        out.append(f"p99 {_lat(b, 'p99'):.2f} > {p99:g} ms")
    if mem is not None and b.get("peak_memory_mb") is not None and b["peak_memory_mb"] > mem:
        out.append(f"peak memory {b['peak_memory_mb']:.0f} > {mem:g} MB")
    return out


def compare_uncompressed(win: dict[str, Any], baselines: list[dict[str, Any]] | None,
                         ref_top1: float | None = None, gates: dict[str, Any] | None = None) -> dict[str, Any]:
    """The recommended variant vs its uncompressed twin (same backend and precision), timed on
    the same machine: {uncompressed, compression_speedup (the smaller of the p50 and p99 ratios,
    uncompressed / compressed at batch 1), compression_speedup_p50, compression_speedup_p99,
    ship_uncompressed, text}. No ratio (None) when the twin has no latency from that machine."""
    out: dict[str, Any] = {"uncompressed": None, "compression_speedup": None, "compression_speedup_p50": None,
                           "compression_speedup_p99": None, "ship_uncompressed": False, "text": ""}
    b = next((r for r in baselines or [] if r.get("of") == win["name"]), None)
    if b is None:
        return out
    out["uncompressed"] = b.get("name")
    same_machine = (b.get("measured_on") == win.get("measured_on") and not b.get("host_check")
                    and not b.get("emulated") and not win.get("emulation"))
    ratios = {}
    for key in ("p50", "p99"):
        mine, theirs = _lat(win, key), _lat(b, key)
        if same_machine and mine and theirs is not None:
            ratios[key] = round(theirs / mine, 4)
            out[f"compression_speedup_{key}"] = ratios[key]
    if "p99" not in ratios:
        out["text"] = f"no uncompressed {win['name']} timed on the same machine to compare with"
        return out
    speed = min(ratios.values())
    out["compression_speedup"] = speed
    times = "; ".join(f"{k} {_lat(win, k):.2f} vs {_lat(b, k):.2f} ms uncompressed, {ratios[k]:.2f}x" for k in ratios)
    top1 = (f", top-1 {win['top1']:.2f} vs {b['top1']:.2f} uncompressed"
            if win.get("top1") is not None and b.get("top1") is not None else "")
    if speed >= 1 + TIE_FRACTION:
        out["text"] = f"{speed:.2f}x faster than the uncompressed {win['name']} at batch 1 ({times}){top1}"
        return out
    misses = _baseline_misses(b, ref_top1, gates or {})
    if misses:
        out["text"] = (f"compression gave only {speed:.2f}x here ({times}){top1}, but the uncompressed {win['name']} "
                       f"misses {', '.join(misses)}: compression is what meets the gates")
        return out
    out["ship_uncompressed"] = True
    size = (f"; the compressed artifact is smaller ({_size(win)} vs {b['size_mb']:.2f} MB)"
            if win.get("size_mb") is not None and b.get("size_mb") is not None and win["size_mb"] < b["size_mb"] else "")
    out["text"] = f"ship the uncompressed {win['name']}: compression gave {speed:.2f}x here ({times}){top1}{size}"
    return out


def decide(variants: list[dict[str, Any]], device: str, baselines: list[dict[str, Any]] | None = None,
           ref_top1: float | None = None, gates: dict[str, Any] | None = None) -> dict[str, Any]:
    """{recommended, why, runner_up, runner_up_why, rule, ship, ship_uncompressed, uncompressed,
    compression_speedup, ...}: what to ship, by the rule in the module doc. `recommended` is
    always a profile variant (its backend and precision); `ship` names the artifact to ship:
    the variant, or its uncompressed twin (`baseline-<variant>`) when `ship_uncompressed`."""
    cands = [v for v in variants if v["status"] == "pass" and (v.get("latency_ms") or {}).get("p99") is not None]
    if not cands:
        measured = [v for v in variants if v.get("measured_on") not in (None, "none")]
        why = (f"no variant met every gate on {device}" if measured
               else f"no variant was measured on {device}: run the bundle there first (see below)")
        return {"recommended": None, "why": why, "runner_up": None, "runner_up_why": None, "rule": RULE,
                "ship": None, "ship_uncompressed": False, "uncompressed": None, "compression_speedup": None}
    win, tied = _pick(cands)
    gates_met = _gate_text(win)
    why = f"meets every gate ({gates_met}); " if gates_met else "meets every gate; "
    why += _tie_text(win, tied) if tied else f"lowest p99 at batch 1 ({_p99(win):.2f} ms)"
    cmp = compare_uncompressed(win, baselines, ref_top1, gates)
    if cmp["ship_uncompressed"]:
        why = f"{cmp['text']}; among the compressed variants, {win['name']} {why}"
    elif cmp["text"] and baselines:
        why += f"; {cmp['text']}"
    rest = [v for v in cands if v is not win]
    runner = _pick(rest)[0] if rest else None
    return {"recommended": win["name"], "why": why,
            "runner_up": runner["name"] if runner else None,
            "runner_up_why": (f"p99 {_p99(runner):.2f} ms at batch 1, {_size(runner)}" if runner else
                              "no other variant met every gate"),
            "rule": RULE,
            "ship": cmp["uncompressed"] if cmp["ship_uncompressed"] else win["name"],
            **{k: cmp[k] for k in ("ship_uncompressed", "uncompressed", "compression_speedup",
                                   "compression_speedup_p50", "compression_speedup_p99")}}


def _size(v: dict[str, Any]) -> str:
    return "size unknown" if v.get("size_mb") is None else f"{v['size_mb']:.2f} MB"


def summarize(report: dict[str, Any]) -> dict[str, Any]:
    """Fill report's verdict, headline, exit_code, decision and `passed` from its variants (the
    one place that decides; writers only read these fields)."""
    # streaming rows (a profile's `streaming:` gates) count like variants: a failed gate fails the run
    ov = overall_verdict(report["variants"] + list(report.get("streaming") or []), report["device"])
    report.update(verdict=ov["verdict"], exit_code=ov["exit_code"], headline=ov["headline"],
                  passed=ov["verdict"] == PASSED,
                  verdict_detail={k: ov[k] for k in ("failed", "errors", "not_measured", "passed")},
                  decision=decide(report["variants"], report["device"], report.get("baselines"),
                                  (report.get("reference") or {}).get("top1"), report.get("gates")))
    return report


def verdict_of(report: dict[str, Any]) -> dict[str, Any]:
    """The report's verdict fields, computed when a (hand-built) report lacks them."""
    if "verdict" not in report:
        summarize(report)
    return report
