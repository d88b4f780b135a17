"""Machine description and the CPU's theoretical fp32 peak (for "fraction of peak").

peak GFLOP/s = cores x clock (GHz) x FLOP/cycle/core, with FLOP/cycle from the widest vector
unit and the number of FMA pipes (an FMA is 2 FLOPs):
  AVX-512 with two full-width FMA pipes (Intel server cores, AMD Zen 5): 2 x 16 lanes x 2 = 64
  AVX-512 on AMD Zen 4 (family 25: 512-bit ops double-pumped on 256-bit pipes): 32
  AVX2 + FMA: 2 x 8 x 2 = 32;  AVX without FMA: 8 adds + 8 muls = 16;  SSE2: 8
cores = the physical cores the runtimes may use (min(cores, threads)); clock = "CPU max MHz"
from lscpu, else "cpu MHz" from /proc/cpuinfo, else BogoMIPS / 2 (the TSC clock on x86).
It is an upper bound no real kernel reaches; small GCN layers typically get 5-30% of it.
"""

from __future__ import annotations

import platform
import re
import subprocess
from pathlib import Path
from typing import Any

_KEY_FLAGS = ("avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8", "avx2", "fma", "avx_vnni", "neon", "asimd")


def read_lscpu() -> str:
    """`lscpu` output ('' if unavailable, e.g. macOS)."""
    try:
        return subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10, env={"LC_ALL": "C"}).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def read_cpuinfo() -> str:
    p = Path("/proc/cpuinfo")
    return p.read_text(errors="replace") if p.is_file() else ""


def parse_lscpu(text: str) -> dict[str, str]:
    """'Key:   value' lines -> {key: value}."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, val = line.partition(":")
        if sep and key.strip() and key.strip() not in out:
            out[key.strip()] = val.strip()
    return out


def _num(s: str | None) -> float | None:
    m = re.search(r"[\d.]+", s or "")
    return float(m.group()) if m else None


def flops_per_cycle(flags: set[str], vendor: str = "", family: int | None = None) -> tuple[int, str]:
    """fp32 FLOP/cycle/core and the reason (see the module docstring)."""
    if "avx512f" in flags:
        if vendor == "AuthenticAMD" and family == 25:
            return 32, "AVX-512 on Zen 4: 512-bit FMAs double-pumped on two 256-bit pipes = 2 x 8 lanes x 2"
        return 64, "AVX-512: 2 FMA pipes x 16 fp32 lanes x 2 FLOP/FMA"
    if "avx2" in flags and "fma" in flags:
        return 32, "AVX2+FMA: 2 FMA pipes x 8 fp32 lanes x 2 FLOP/FMA"
    if "avx" in flags:
        return 16, "AVX without FMA: 8 adds + 8 muls per cycle"
    if "asimd" in flags or "neon" in flags:
        return 16, "NEON/ASIMD: 2 (assumed) 128-bit FMA pipes x 4 lanes x 2 FLOP/FMA"
    return 8, "SSE2: 4 adds + 4 muls per cycle"


def cpu_peak(lscpu_text: str, cpuinfo_text: str = "", threads: int | None = None) -> dict[str, Any]:
    """Theoretical fp32 peak of the cores the benchmark uses, with every number it came from."""
    info = parse_lscpu(lscpu_text)
    flags = set((info.get("Flags") or "").split())
    if not flags and cpuinfo_text:
        m = re.search(r"^(?:flags|Features)\s*:\s*(.*)$", cpuinfo_text, re.M)
        flags = set(m.group(1).split()) if m else set()
    cores_per_socket = int(_num(info.get("Core(s) per socket")) or 0)
    sockets = int(_num(info.get("Socket(s)")) or 1)
    cores = cores_per_socket * sockets or int(_num(info.get("CPU(s)")) or 1)
    used = min(cores, threads) if threads else cores
    family = int(_num(info.get("CPU family"))) if _num(info.get("CPU family")) is not None else None
    vendor = info.get("Vendor ID", "")
    clock, clock_src = _num(info.get("CPU max MHz")), "lscpu CPU max MHz"
    if not clock and cpuinfo_text:
        m = re.search(r"^cpu MHz\s*:\s*([\d.]+)", cpuinfo_text, re.M)
        clock, clock_src = (float(m.group(1)), "/proc/cpuinfo cpu MHz") if m else (None, "")
    if not clock and _num(info.get("BogoMIPS")):
        clock, clock_src = _num(info.get("BogoMIPS")) / 2, "BogoMIPS / 2 (TSC clock)"
    if not clock:
        clock, clock_src = 2000.0, "unknown clock: assumed 2.0 GHz"
    fpc, why = flops_per_cycle(flags, vendor, family)
    ghz = clock / 1000.0
    peak = used * ghz * fpc
    return {
        "gflops_fp32": round(peak, 1),
        "cores_total": cores,
        "cores_used": used,
        "clock_ghz": round(ghz, 3),
        "clock_source": clock_src,
        "flops_per_cycle": fpc,
        "flops_per_cycle_reason": why,
        "formula": f"{used} cores x {ghz:.3f} GHz x {fpc} FLOP/cycle = {peak:.1f} GFLOP/s",
    }


def machine_description(threads: int) -> dict[str, Any]:
    """lscpu model name, cores, key ISA flags, OS, and the computed peak."""
    text, cpuinfo = read_lscpu(), read_cpuinfo()
    info = parse_lscpu(text)
    flags = set((info.get("Flags") or "").split())
    model = info.get("Model name")
    if not model and cpuinfo:
        m = re.search(r"^model name\s*:\s*(.*)$", cpuinfo, re.M)
        model = m.group(1).strip() if m else None
    return {
        "cpu_model": model or platform.processor() or "unknown",
        "vendor": info.get("Vendor ID"),
        "family": info.get("CPU family"),
        "cpus": info.get("CPU(s)"),
        "hypervisor": info.get("Hypervisor vendor"),
        "flags_summary": [f for f in _KEY_FLAGS if f in flags],
        "os": f"{platform.system()} {platform.release()}",
        "arch": platform.machine(),
        "threads": threads,
        "peak": cpu_peak(text, cpuinfo, threads),
    }
