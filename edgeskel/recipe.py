"""Compression recipes: YAML files under `recipes/`, validated with pydantic.

A recipe says what to do to a model (data, reference model, compression policy, fine-tune
schedule, export settings). It is data, not code, and it is recorded (hashed) in every run
manifest. Unknown keys and bad values are errors naming the file, the key path and what is
allowed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from edgeskel.compress.config import CompressionConfig
from edgeskel.config_errors import did_you_mean, load_yaml_model, name_list
from edgeskel.errors import ConfigError
from edgeskel.train.config import TrainConfig

REPO_ROOT = Path(__file__).resolve().parents[1]


class StreamEntry(BaseModel):
    """One member of an ensemble (`model.streams`, docs/ENSEMBLES.md): a checkpoint, or a model
    trained here on its input view."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, description="stream name (default: its input view)")
    checkpoint: str | None = Field(None, description="edgeskel checkpoint, or an official one with import_from")
    import_from: str | None = Field(None, description="code base of an official checkpoint, or 'auto'")
    train: TrainConfig | bool | None = Field(None, description="train this stream here: true (the recipe's train "
                                             "section) or a train section of its own")
    model: str | None = Field(None, description="registered architecture (streams trained here; for official "
                              "checkpoints: our model name, default detected)")
    input: str | None = Field(None, description="input view: joint, bone, motion (joint motion) or bone_motion "
                              "(default: the checkpoint's own)")
    weight: float | None = Field(None, gt=0, description="fusion weight (default: the code base's, e.g. 2:2:1:1)")
    width: float = Field(1.0, gt=0, le=4)
    kwargs: dict[str, Any] = Field(default_factory=dict)

    @field_validator("input")
    @classmethod
    def _check_input(cls, v: str | None) -> str | None:
        if v is None:
            return v
        from edgeskel.models.ensemble import canonical_view

        try:
            return canonical_view(v, "input")
        except ConfigError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("import_from")
    @classmethod
    def _check_stream_source(cls, v: str | None) -> str | None:
        return _check_import_source(v)

    @model_validator(mode="after")
    def _check_stream(self) -> StreamEntry:
        trains = self.train is not None and self.train is not False
        if trains == bool(self.checkpoint):
            raise ValueError("a stream needs exactly one of checkpoint or train")
        if trains and not (self.model and self.input):
            raise ValueError("a stream trained here needs model (the architecture) and input (its view)")
        if self.import_from and not self.checkpoint:
            raise ValueError("import_from needs checkpoint")
        if self.name is not None:
            from edgeskel.models.ensemble import check_streams

            try:
                check_streams([{"name": self.name, "model": "x", "input": self.input or "joint", "weight": 1}])
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
        return self

    def train_config(self, default: TrainConfig) -> TrainConfig:
        return self.train if isinstance(self.train, TrainConfig) else default


def _check_import_source(v: str | None) -> str | None:
    if v is None or v == "auto":
        return v
    from edgeskel.importers import available_sources

    if v not in available_sources():
        raise ValueError(f"unknown import source {v!r}{did_you_mean(v, available_sources())}; "
                         f"allowed: auto, {name_list(available_sources())}")
    return v


class ModelSection(BaseModel):
    """The reference model: a checkpoint (edgeskel or official) or a model trained from scratch."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(..., description="registered model name (stgcn, ctrgcn, hyperformer)")
    checkpoint: str | None = Field(None, description="edgeskel checkpoint, or an official one with import_from")
    import_from: str | None = Field(None, description="code base of an official checkpoint: a registered import "
                                    "source (`edgeskel import-sources`) or 'auto' (detected from the keys)")
    width: float = Field(1.0, gt=0, le=4)
    kwargs: dict[str, Any] = Field(default_factory=dict)
    entrypoint: str | None = Field(None, description="your own model: 'package.module:function' returning an "
                                   "nn.Module for (N, C, T, V, M) input (RUNS THAT CODE; name: user; kwargs go to it)")
    streams: list[StreamEntry] | None = Field(None, description="an ensemble (name: ensemble): stream models on "
                                              "joint/bone/motion views of one input, fused (docs/ENSEMBLES.md)")
    fusion: Literal["logits", "softmax"] | None = Field(None, description="ensemble fusion: weighted sum of logits "
                                                       "(CTR-GCN) or of softmax scores (PYSKL); default: the streams' "
                                                       "code base's")

    @model_validator(mode="before")
    @classmethod
    def _user_name(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("entrypoint") and "name" not in data:
            return {**data, "name": "user"}
        if isinstance(data, dict) and data.get("streams") and "name" not in data:
            return {**data, "name": "ensemble"}
        return data

    @model_validator(mode="after")
    def _check_ensemble(self) -> ModelSection:
        if self.streams is not None:
            if not self.streams:
                raise ValueError("model.streams is empty: list the ensemble's streams")
            if self.name != "ensemble":
                raise ValueError(f"model.streams makes an ensemble: name must be 'ensemble' or omitted, not {self.name!r}")
            if self.checkpoint or self.import_from or self.entrypoint:
                raise ValueError("model.streams: each stream names its own checkpoint (model.checkpoint, import_from "
                                 "and entrypoint are for one model)")
        elif self.name == "ensemble":
            raise ValueError("model name 'ensemble' needs model.streams")
        elif self.fusion is not None:
            raise ValueError("model.fusion is for ensembles (model.streams)")
        return self

    @model_validator(mode="after")
    def _check_user(self) -> ModelSection:
        if self.entrypoint is not None:
            from edgeskel.models.user import check_entrypoint

            try:
                check_entrypoint(self.entrypoint)
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
            if self.name != "user":
                raise ValueError(f"model.entrypoint builds your own model: name must be 'user' or omitted, not {self.name!r}")
            if self.import_from:
                raise ValueError("model.import_from is for official code bases; a user model loads its own weights")
        elif self.name == "user":
            raise ValueError("model name 'user' needs model.entrypoint ('package.module:function')")
        return self

    def has_edgeskel_checkpoint(self) -> bool:
        """model.checkpoint is an edgeskel checkpoint (not an official one, not a user's own weights)."""
        if not self.checkpoint or self.import_from:
            return False
        if self.entrypoint is None:
            return True
        from edgeskel.models.user import is_edgeskel_checkpoint

        return is_edgeskel_checkpoint(self.checkpoint)

    def build_kwargs(self) -> dict[str, Any]:
        """Model kwargs for `models.build`: a user model gets its entrypoint and its own kwargs."""
        if self.entrypoint is not None:
            return {"entrypoint": self.entrypoint, "kwargs": dict(self.kwargs)}
        return dict(self.kwargs)

    @field_validator("import_from")
    @classmethod
    def _check_source(cls, v: str | None) -> str | None:
        return _check_import_source(v)

    def trains_streams(self) -> bool:
        """An ensemble with at least one stream trained here."""
        return any(s.train not in (None, False) for s in self.streams or [])


class DataSection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    spec: str = "synthetic"
    layout: str | None = None
    class_names: str | None = Field(None, description="text file, one class name per line in label order")
    frames: int | None = Field(None, ge=4, le=1024)
    persons: int | None = Field(None, ge=1, le=8)
    streams: Literal["joint", "bone", "motion", "bone_motion"] = "joint"
    skip_bad: bool = False
    val_samples: int | None = Field(None, ge=1, description="cap on validation samples used per variant (None: all)")
    validation: Literal["train", "test"] = Field(
        "train", description="where the validation split comes from when the data gives none: a stratified slice "
        "of train, or of test (when test is the deployment domain, e.g. an unseen camera view; the report's "
        "accuracy is then on the rest of test)")
    validation_fraction: float = Field(0.1, gt=0.0, lt=1.0, description="per-class fraction held out for validation")


class ExportSection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    opset: int = Field(17, ge=17, le=21)
    calibration: Literal["minmax", "entropy", "percentile"] = "minmax"
    calib_samples: int = Field(128, ge=8, le=100_000)
    agreement_samples: int = Field(
        512, ge=0, le=100_000,
        description="INT8 gates: unlabelled clips (training clips outside calibration, then augmented training "
                    "views) on which INT8 may flip at most max_top1_drop of the float model's predictions; 0: off")
    percentiles: list[float] = Field(
        default_factory=lambda: [99.999],
        description="percentile calibration: candidates tried in order until the INT8 accuracy gate passes "
                    "(the best is kept for the node fallback when none does)")
    int8_op_types: list[str] | None = Field(
        None, description="ONNX op types ONNX Runtime quantizes (None: every op it can, e.g. [Conv, MatMul, Gemm])")
    int8_fallback: bool = True
    nncf_ranges: list[str] = Field(
        default_factory=lambda: ["minmax", "histogram"],
        description="OpenVINO INT8: NNCF activation range estimators tried in order until the INT8 accuracy gate "
                    "passes (then accuracy control from the best); minmax = NNCF's default")

    @field_validator("nncf_ranges")
    @classmethod
    def _check_nncf_ranges(cls, v: list[str]) -> list[str]:
        from edgeskel.quantize.openvino import NNCF_RANGE_ESTIMATORS

        if not v or any(r not in NNCF_RANGE_ESTIMATORS for r in v):
            raise ValueError(f"nncf_ranges must be a non-empty list from {list(NNCF_RANGE_ESTIMATORS)}, got {v}")
        return v

    @field_validator("percentiles")
    @classmethod
    def _check_percentiles(cls, v: list[float]) -> list[float]:
        if not v or any(not 50.0 < p <= 100.0 for p in v):
            raise ValueError(f"percentiles must be a non-empty list of values in (50, 100], got {v}")
        return v

    def quant_options(self) -> dict[str, Any]:
        """The export options every caller (pipeline, benchmark) passes to `export_variant`."""
        opts: dict[str, Any] = {"calibration": self.calibration, "opset": self.opset, "int8_fallback": self.int8_fallback,
                                "nncf_ranges": list(self.nncf_ranges)}
        if self.calibration == "percentile":
            opts["percentiles"] = list(self.percentiles)
        if self.int8_op_types:
            opts["op_types"] = list(self.int8_op_types)
        return opts


class StreamingSection(BaseModel):
    """`make export` also exports each variant's step graph (docs/STREAMING.md "In make
    export"): measured frame by frame on recorded test sequences beside the windowed variant."""

    model_config = ConfigDict(extra="forbid")

    stride_mode: Literal["keep", "remove"] = Field(
        "keep", description="strided temporal layers: keep (stride frames per call) or remove (a decision every "
        "frame; the model must be fine-tuned so: edgeskel train --remove-strides)")
    window: int | None = Field(None, ge=1, le=100_000, description="camera frames the decision averages (None: the model's "
                                "num_frames / its upsample)")
    variants: list[str] | None = Field(None, description="profile variant names to stream (None: every variant whose "
                                       "backend and precision have a step graph)")
    max_sequences: int = Field(256, ge=1, le=1_000_000, description="recorded test sequences replayed for streaming "
                               "top-1 (a seeded subset when the test split has more)")
    batch: int = Field(1, ge=1, le=1024, description="streams one step call serves (N independent streams, each "
                       "with its own state rows; streams sustained = N x stride x 1000 / (fps x call ms))")
    checkpoint: str | None = Field(None, description="stream this checkpoint instead of the deployed model: the model "
                                   "fine-tuned for streams (edgeskel train --init ... --native-rate / --streamable), "
                                   "same classes and layout; the report compares it with the windowed variants")


class Recipe(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    model: ModelSection
    data: DataSection = Field(default_factory=DataSection)
    train: TrainConfig = Field(default_factory=TrainConfig, description="used only when no checkpoint is given")
    compress: CompressionConfig | None = None
    finetune: TrainConfig | None = Field(None, description="fine-tune after compression (kd_weight>0 distils from the original)")
    export: ExportSection = Field(default_factory=ExportSection)
    streaming: StreamingSection | None = Field(None, description="also export and measure step graphs (streams)")

    @field_validator("name")
    @classmethod
    def _safe_name(cls, v: str) -> str:
        from edgeskel.names import check_name

        return check_name(v, "recipe name")  # becomes runs/<name>/: never a path

    @model_validator(mode="after")
    def _check(self) -> Recipe:
        if self.model.import_from and not self.model.checkpoint:
            raise ValueError("model.import_from needs model.checkpoint")
        if self.model.streams and self.data.streams != "joint":
            raise ValueError("an ensemble takes raw joints (data.streams: joint); each stream's input view is "
                             "model.streams[i].input")
        return self


def list_recipes() -> list[str]:
    return sorted(p.stem for p in (REPO_ROOT / "recipes").glob("*.yaml"))


def resolve_recipe_path(name_or_path: str | Path) -> Path:
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml"):
        return p
    cand = REPO_ROOT / "recipes" / f"{name_or_path}.yaml"
    if cand.is_file():
        return cand
    cwd = Path("recipes") / f"{name_or_path}.yaml"
    if cwd.is_file():
        return cwd
    names = list_recipes()
    raise ConfigError(f"unknown recipe {str(name_or_path)!r}{did_you_mean(str(name_or_path), names)}; "
                      f"available: {name_list(names)} (or a path to a .yaml file)")


def load_recipe(name_or_path: str | Path) -> tuple[Recipe, Path]:
    """Load and validate a recipe by name (`recipes/<name>.yaml`) or path. Relative paths inside
    the recipe (checkpoint, data dir) are resolved against the recipe file's repository root."""
    path = resolve_recipe_path(name_or_path)
    recipe = load_yaml_model(path, Recipe, "recipe")
    if recipe.model.entrypoint:  # the user named their own code in the recipe they run
        from edgeskel.models.user import trust_entrypoint

        trust_entrypoint(recipe.model.entrypoint)
    return recipe, path


def resolve_data_path(spec: str, base: Path) -> str:
    """Make a relative dataset path in `kind:path[?opts]` absolute against `base` if it exists there."""
    if ":" not in spec:
        return spec
    kind, rest = spec.split(":", 1)
    path, sep, opts = rest.partition("?")
    p = Path(path)
    if not p.is_absolute() and not p.exists() and (base / p).exists():
        path = str((base / p).resolve())
    return f"{kind}:{path}{sep}{opts}"


def with_overrides(recipe: Recipe, checkpoint: str | Path | None = None, data: str | None = None,
                   source: str | Path | None = None) -> Recipe:
    """Apply CLI overrides and make the recipe's relative paths absolute (against the repo root,
    where shipped recipes point: `reference/...`, `../shared/data/...`). `source`: the recipe
    file, named in errors."""
    model = recipe.model
    if checkpoint:
        model = model.model_copy(update={"checkpoint": str(checkpoint), "import_from": None})
    elif model.checkpoint and not Path(model.checkpoint).is_absolute() and not Path(model.checkpoint).exists():
        cand = REPO_ROOT / model.checkpoint
        if cand.exists():
            model = model.model_copy(update={"checkpoint": str(cand)})
    if model.checkpoint and not Path(model.checkpoint).is_file():
        if checkpoint:  # the user's own path: no advice to pass the option they passed
            raise ConfigError(f"--checkpoint {checkpoint}: file {model.checkpoint} not found (give an existing "
                              "edgeskel or official checkpoint file)")
        where = f"{source or f'recipe {recipe.name!r}'}: model.checkpoint"
        raise ConfigError(f"{where}: file {model.checkpoint} not found (allowed: an existing edgeskel or official "
                          "checkpoint file; see reference/README.md for the command that creates the reference "
                          "checkpoints, or pass --checkpoint)")
    if model.streams:
        if checkpoint:
            raise ConfigError(f"--checkpoint {checkpoint}: recipe {recipe.name!r} is an ensemble; its streams name "
                              "their checkpoints (model.streams)")
        model = model.model_copy(update={"streams": [_resolve_stream(s, i, recipe, source)
                                                     for i, s in enumerate(model.streams)]})
    spec = resolve_data_path(data or recipe.data.spec, REPO_ROOT)
    update: dict[str, Any] = {"model": model, "data": recipe.data.model_copy(update={"spec": spec})}
    if recipe.streaming is not None and recipe.streaming.checkpoint is not None:
        path = _recipe_file(recipe.streaming.checkpoint, f"{source or f'recipe {recipe.name!r}'}: streaming.checkpoint",
                            "an existing edgeskel checkpoint, e.g. from `edgeskel train --init C --native-rate`")
        update["streaming"] = recipe.streaming.model_copy(update={"checkpoint": path})
    return recipe.model_copy(update=update)


def _recipe_file(given: str, where: str, allowed: str) -> str:
    """A file a recipe names: as given, else relative to the repo root (where shipped recipes
    point); one error naming the key when neither exists."""
    path = Path(given)
    if not path.is_absolute() and not path.exists() and (REPO_ROOT / path).exists():
        path = REPO_ROOT / path
    if not path.is_file():
        raise ConfigError(f"{where}: file {given} not found (allowed: {allowed})")
    return str(path)


def _resolve_stream(stream: StreamEntry, index: int, recipe: Recipe, source: str | Path | None) -> StreamEntry:
    if not stream.checkpoint:
        return stream
    path = _recipe_file(stream.checkpoint, f"{source or f'recipe {recipe.name!r}'}: model.streams[{index}].checkpoint",
                        "an existing edgeskel or official checkpoint file")
    return stream.model_copy(update={"checkpoint": path})
