"""Benchmark settings: one dataclass, two presets (full and `--quick`).

Why presets: the full benchmark is what goes into docs/BENCHMARKS.md (reference checkpoints,
all validation samples, many interleaved rounds); `--quick` checks the whole benchmark path
in minutes on 2 cores (tiny widths trained for a few epochs, short grids, few repeats), so
`make bench-quick` works on a fresh clone with no checkpoints.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgeskel.errors import ConfigError


def bench_models() -> list[str]:
    """Registered models that have a benchmark recipe (`recipes/<model>-lortsar.yaml`): adding a
    model to the benchmark is adding its recipe, not editing a list here."""
    from edgeskel.models import available_models
    from edgeskel.recipe import REPO_ROOT

    return [m for m in available_models() if (REPO_ROOT / "recipes" / f"{m}-lortsar.yaml").is_file()]


BEGIN_MARKER = "<!-- bench:begin -->"
END_MARKER = "<!-- bench:end -->"


@dataclass
class BenchSettings:
    """Everything that changes what the benchmark measures (recorded in results.json)."""

    models: list[str] = field(default_factory=bench_models)
    data: str | None = None  # None: each model's recipe data (NW-UCLA, view 3 held out)
    out: Path = Path("docs/bench")  # results.json + PNG plots
    markdown: Path | None = None  # None: docs/BENCHMARKS.md for docs/bench, else <out>/BENCHMARKS.md
    reference_dir: Path = Path("reference")  # <model>-nwucla.ckpt when present
    cache_dir: Path = Path("runs/bench")  # trained references, compressed models, artifacts
    device: str = "cpu"  # device profile whose variants/gates pick the best edgeskel variant
    quick: bool = False
    threads: int = 2
    warmup: int = 10
    runs: int = 30  # timed calls per variant per round
    rounds: int = 3  # interleaved round-robin rounds; stats pool all rounds
    max_seconds: float | None = 10.0  # cap on one timed block (>= 10 runs always; warm-up <= a quarter of it)
    throughput_batch: int = 16
    val_samples: int | None = None  # cap on validation samples (None: the whole split)
    width: float | None = None  # model width override (forces training: references are full width)
    frames: int | None = None  # T override (None: the recipe's)
    train_epochs: int | None = None  # reference training schedule override (None: recipe's train:)
    finetune_epochs: int | None = None  # fine-tune epochs override (None: recipe's finetune:)
    t_grid: list[int] = field(default_factory=lambda: [32, 64, 128, 300])
    batch_grid: list[int] = field(default_factory=lambda: [1, 4, 16, 64])
    scaling_runs: int = 20
    scaling_rounds: int = 3
    profile_runs: int = 30
    profile_always: bool = False  # per-op profile even when every target is met
    resume: bool = False  # keep models a stopped run with the same settings already measured
    recipes: dict[str, str] = field(default_factory=dict)  # model -> recipe file (default recipes/<model>-lortsar.yaml),
    # e.g. the recipe `edgeskel tune` wrote, so the benchmark compares tune's choice with the baselines
    command: str = ""  # the exact command line, for the report

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        self.reference_dir = Path(self.reference_dir)
        self.cache_dir = Path(self.cache_dir)
        if self.markdown is not None:
            self.markdown = Path(self.markdown)
        known = bench_models()
        bad = [m for m in self.models if m not in known]
        if not self.models or bad:
            raise ConfigError(f"--models: unknown model(s) {bad or '(none given)'}; choose from {known} "
                              "(models with a recipes/<model>-lortsar.yaml)")
        stray = sorted(set(self.recipes) - set(self.models))
        if stray:
            raise ConfigError(f"--recipe: {stray} not among the benchmarked models {self.models}")
        for name in ("t_grid", "batch_grid"):
            vals = getattr(self, name)
            if not vals or any(int(v) < 1 for v in vals):
                raise ConfigError(f"{name} must be a non-empty list of positive integers, got {vals}")
        if self.rounds < 1 or self.runs < 1 or self.threads < 1:
            raise ConfigError("rounds, runs and threads must be >= 1")

    @property
    def markdown_path(self) -> Path:
        if self.markdown is not None:
            return self.markdown
        if self.out.name == "bench" and self.out.parent.name == "docs":
            return self.out.parent / "BENCHMARKS.md"
        return self.out / "BENCHMARKS.md"

    def to_json(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}


def quick_settings(**overrides: Any) -> BenchSettings:
    """`--quick`: tiny width, synthetic data, few epochs/repeats, short grids (< 10 min on 2 cores)."""
    base: dict[str, Any] = dict(
        models=["stgcn"], data="synthetic", out=Path("runs/bench/quick"), quick=True, width=0.25, frames=32,
        train_epochs=4, finetune_epochs=1, val_samples=64, warmup=3, runs=10, rounds=3, max_seconds=3.0,
        t_grid=[32, 64], batch_grid=[1, 4, 16], scaling_runs=6, scaling_rounds=2, profile_runs=10,
    )
    base.update({k: v for k, v in overrides.items() if v is not None})
    return BenchSettings(**base)


def full_settings(**overrides: Any) -> BenchSettings:
    return BenchSettings(**{k: v for k, v in overrides.items() if v is not None})
