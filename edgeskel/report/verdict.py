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
Usage and configuration errors exit 2 (`EdgeskelError`), an interrupt 130.

Decision: among the variants that met every gate, the one with the lowest p99 latency at
batch 1; p99 values within `TIE_FRACTION` of each other are a tie (timing noise), broken by
the smaller artifact. The runner-up is picked by the same rule from the rest.
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


def decide(variants: list[dict[str, Any]], device: str) -> dict[str, Any]:
    """{recommended, why, runner_up, runner_up_why}: what to ship, by the rule in the module doc."""
    cands = [v for v in variants if v["status"] == "pass" and (v.get("latency_ms") or {}).get("p99") is not None]
    if not cands:
        measured = [v for v in variants if v.get("measured_on") not in (None, "none")]
        why = (f"no variant met every gate on {device}" if measured
               else f"no variant was measured on {device}: run the bundle there first (see below)")
        return {"recommended": None, "why": why, "runner_up": None, "runner_up_why": None,
                "rule": "meets every gate; then lowest p99 at batch 1; ties (within 5%) by size"}
    win, tied = _pick(cands)
    why = f"meets every gate ({_gate_text(win)}); lowest p99 at batch 1 ({_p99(win):.2f} ms)"
    if tied:
        why += (f", tied within {100 * TIE_FRACTION:g}% with {_names(tied)} "
                f"({', '.join(f'{_p99(t):.2f} ms' for t in tied)}) and smallest "
                f"({_size(win)} vs {', '.join(_size(t) for t in tied)})")
    rest = [v for v in cands if v is not win]
    runner = _pick(rest)[0] if rest else None
    return {"recommended": win["name"], "why": why,
            "runner_up": runner["name"] if runner else None,
            "runner_up_why": (f"p99 {_p99(runner):.2f} ms at batch 1, {_size(runner)}" if runner else
                              "no other variant met every gate"),
            "rule": "meets every gate; then lowest p99 at batch 1; ties (within 5%) by size"}


def _size(v: dict[str, Any]) -> str:
    return "size unknown" if v.get("size_mb") is None else f"{v['size_mb']:.2f} MB"


def summarize(report: dict[str, Any]) -> dict[str, Any]:
    """Fill report's verdict, headline, exit_code, decision and `passed` from its variants (the
    one place that decides; writers only read these fields)."""
    ov = overall_verdict(report["variants"], report["device"])
    report.update(verdict=ov["verdict"], exit_code=ov["exit_code"], headline=ov["headline"],
                  passed=ov["verdict"] == PASSED,
                  verdict_detail={k: ov[k] for k in ("failed", "errors", "not_measured", "passed")},
                  decision=decide(report["variants"], report["device"]))
    return report


def verdict_of(report: dict[str, Any]) -> dict[str, Any]:
    """The report's verdict fields, computed when a (hand-built) report lacks them."""
    if "verdict" not in report:
        summarize(report)
    return report
