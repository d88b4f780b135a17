"""OpenVINO IR conversion (fp32 / fp16-compressed) and NNCF post-training INT8.

Facts behind the choices (TOOLCHAIN.md): convert from the ONNX file (converting the torch
module traces through TorchScript and failed on a transformer); `compress_to_fp16` only halves
the file, CPU compute stays f32; NNCF's default model type is used because
`ModelType.TRANSFORMER` (SmoothQuant) cut a transformer's top-1 agreement to 67%.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgeskel.errors import ExportError
from edgeskel.io import atomic_path


def _read_model(src: Path):
    import openvino as ov

    src = Path(src)
    if not src.is_file():
        raise ExportError(f"{src}: model to convert not found")
    try:
        if src.suffix.lower() == ".xml":
            return ov.Core().read_model(str(src))
        return ov.convert_model(str(src))
    except Exception as exc:  # noqa: BLE001
        raise ExportError(f"{src}: OpenVINO cannot read the model: {str(exc).splitlines()[0]}") from None


def _save_ir(model, out_xml: Path, fp16: bool) -> Path:
    """ov.save_model via temp names, then rename .bin before .xml (the .xml names the .bin)."""
    import openvino as ov

    out_xml = Path(out_xml)
    if out_xml.suffix.lower() != ".xml":
        raise ExportError(f"{out_xml}: OpenVINO IR path must end in .xml")
    out_xml.parent.mkdir(parents=True, exist_ok=True)
    tmp_xml = out_xml.with_name(f".{out_xml.stem}.tmp.xml")
    try:
        ov.save_model(model, str(tmp_xml), compress_to_fp16=fp16)
        xml_text = tmp_xml.read_text()
        with atomic_path(out_xml.with_suffix(".bin")) as tmp_bin:
            tmp_bin.write_bytes(tmp_xml.with_suffix(".bin").read_bytes())
        with atomic_path(out_xml) as tmp:
            tmp.write_text(xml_text)
    finally:
        for p in (tmp_xml, tmp_xml.with_suffix(".bin")):
            p.unlink(missing_ok=True)
    return out_xml


def _copy_rt_info(model, meta: dict[str, str]) -> None:
    """Carry edgeskel ONNX metadata into the IR's rt_info (so the IR is self-describing too)."""
    for k, v in meta.items():
        model.set_rt_info(v, ["edgeskel", k])


def _onnx_meta(src: Path) -> dict[str, str]:
    if src.suffix.lower() != ".onnx":
        return {}
    import onnx

    return {p.key: p.value for p in onnx.load(str(src), load_external_data=False).metadata_props}


def to_openvino_ir(onnx: str | Path, out_xml: str | Path, fp16: bool = False) -> Path:
    """ONNX -> OpenVINO IR (.xml + .bin); `fp16` stores weights as fp16 (compute stays f32 on CPU)."""
    src = Path(onnx)
    model = _read_model(src)
    _copy_rt_info(model, _onnx_meta(src))
    return _save_ir(model, Path(out_xml), fp16)


def _top1(compiled, items) -> float:
    out = compiled.output(0)
    hits = total = 0
    for x, y in items:
        pred = np.asarray(compiled(x)[out]).argmax(1)
        hits += int((pred == np.asarray(y)).sum())
        total += len(pred)
    return hits / max(total, 1)


def _logits(compiled, x: np.ndarray, b: int) -> np.ndarray:
    """Logits of a compiled model for every full batch of `b` in `x` (the model's batch may be fixed)."""
    out = compiled.output(0)
    return np.concatenate([np.asarray(compiled(x[i : i + b])[out], np.float32) for i in range(0, len(x) - b + 1, b)])


# Activation range estimators the OpenVINO INT8 search may try ("minmax" = NNCF's default).
# Why more than one: on SBU Kinect the default min-max ranges let a few outlier activations
# stretch every range, and any single ST-GCN block in INT8 flipped 2-3% of predictions
# (normalized logit MSE 0.065 for the whole model); histogram (MSE-optimal) ranges brought that
# to 0.002 with 99.5% agreement, where reverting layers to float (accuracy control) could not
# (docs/BENCHMARKS.md, scripts/int8_sensitivity.py).
NNCF_RANGE_ESTIMATORS = ("minmax", "histogram", "mean_minmax", "median_minmax", "mean_no_outliers_minmax", "mean_quantile")


def _range_parameters(name: str):
    """NNCF advanced parameters for one activation range estimator (None: NNCF's defaults)."""
    if name not in NNCF_RANGE_ESTIMATORS:
        raise ExportError(f"unknown NNCF activation range estimator {name!r}; use one of {list(NNCF_RANGE_ESTIMATORS)}")
    if name == "minmax":
        return None
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    return AdvancedQuantizationParameters(activations_range_estimator_params=getattr(RangeEstimatorParametersSet, name.upper()))


def quantize_nncf(
    model: str | Path,
    out_xml: str | Path,
    calib: np.ndarray,
    val_x: np.ndarray | None = None,
    val_y: np.ndarray | None = None,
    max_drop: float | None = None,
    subset_size: int = 300,
    *,
    preset: str = "performance",
    batch: int = 1,
    ranking_subset_size: int = 32,
    max_iterations: int = 16,
    ranges: Sequence[str] = ("minmax",),
    unlabelled: np.ndarray | None = None,
) -> dict[str, Any]:
    """NNCF post-training INT8 of an ONNX file or an IR, saved as IR at `out_xml`.

    `unlabelled` (clips without labels): the float model's predictions there become their
    labels, so a candidate must also keep its flip rate on them within `max_drop`
    (validate/agreement.py), and accuracy control restores accuracy on the labelled and
    unlabelled clips together (more clips than a small validation slice can resolve).

    With `val_x`, `val_y` and `max_drop`, the activation range estimators in `ranges` are tried
    in order (whole model INT8, top-1 of the compiled model on the validation data) until one
    meets the absolute top-1 drop; if none does, nncf.quantize_with_accuracy_control starts
    from the best of them and reverts the most harmful layers to float. Without a gate, the
    first estimator is used. Returns the settings (every attempt and, with a gate, the achieved
    metrics). NNCF's accuracy-control defaults rank every quantizer on 300 samples and revert
    without limit: on CTR-GCN (460 quantized ops) that ran for over 20 minutes on 2 cores, so
    ranking uses `ranking_subset_size` samples and at most `max_iterations` reverts.
    """
    import nncf
    import openvino as ov

    src = Path(model)
    calib = np.ascontiguousarray(calib, dtype=np.float32)
    if calib.ndim != 5 or len(calib) == 0:
        raise ExportError(f"{src}: calibration data must be a non-empty (N, C, T, V, M) array, got {calib.shape}")
    ranges = list(ranges) or ["minmax"]
    params = {r: _range_parameters(r) for r in ranges}
    ov_model = _read_model(src)
    fixed = ov_model.input(0).get_partial_shape()[0]
    b = fixed.get_length() if fixed.is_static else max(1, batch)
    calib_items = [calib[i : i + b] for i in range(0, len(calib) - b + 1, b)]
    if not calib_items:
        raise ExportError(f"{src}: need at least {b} calibration samples for the model's fixed batch")
    subset = min(subset_size, len(calib_items) * b)
    presets = {"performance": nncf.QuantizationPreset.PERFORMANCE, "mixed": nncf.QuantizationPreset.MIXED}
    if preset not in presets:
        raise ExportError(f"{src}: unknown NNCF preset {preset!r}; use {sorted(presets)}")
    settings: dict[str, Any] = {
        "tool": "nncf.quantize", "nncf_version": nncf.__version__, "openvino_version": ov.__version__,
        "preset": preset, "model_type": "default", "subset_size": subset, "calib_samples": len(calib_items) * b,
        "activation_ranges": ranges[0],
    }
    calib_ds = nncf.Dataset(calib_items)

    def quantize(rng: str):
        extra = {"advanced_parameters": params[rng]} if params[rng] is not None else {}
        return nncf.quantize(ov_model, calib_ds, preset=presets[preset], subset_size=subset, **extra)

    try:
        if val_x is not None and val_y is not None and max_drop is not None:
            val_x = np.ascontiguousarray(val_x, dtype=np.float32)
            val_y = np.asarray(val_y).astype(np.int64).reshape(-1)
            val_items = [(val_x[i : i + b], val_y[i : i + b]) for i in range(0, len(val_x) - b + 1, b)]
            core = ov.Core()
            cfg = {"INFERENCE_PRECISION_HINT": "f32"}
            float_compiled = core.compile_model(ov_model, "CPU", cfg)
            top1_fp32 = _top1(float_compiled, val_items)
            u_items, u_float = [], None
            if unlabelled is not None and len(unlabelled) >= b:
                ux = np.ascontiguousarray(unlabelled, dtype=np.float32)
                u_float = _logits(float_compiled, ux, b)
                u_items = [(ux[i : i + b], u_float[i : i + b].argmax(1)) for i in range(0, len(ux) - b + 1, b)]

            def judge(model) -> dict[str, Any]:
                compiled = core.compile_model(model, "CPU", cfg)
                top1 = _top1(compiled, val_items)
                res = {"top1_int8": top1, "drop": top1_fp32 - top1}
                if u_float is not None:
                    from edgeskel.validate.agreement import agreement_gate

                    n = len(u_items) * b
                    res["unlabelled"] = agreement_gate(_logits(compiled, ux[:n], b), u_float[:n], max_drop)
                res["passed"] = res["drop"] <= max_drop + 1e-12 and res.get("unlabelled", {}).get("passed", True)
                res["worst"] = max(res["drop"], res.get("unlabelled", {}).get("flip_rate", 0.0))
                return res

            attempts, qmodel, best = [], None, None
            for rng in ranges:
                candidate = quantize(rng)
                res = judge(candidate)
                attempts.append({"activation_ranges": rng, **{k: v for k, v in res.items() if k != "worst"}})
                if best is None or res["worst"] < best[1]:
                    best = (rng, res["worst"], candidate)
                if res["passed"]:
                    qmodel, final = candidate, res
                    break
            assert best is not None
            settings.update(activation_ranges=best[0], attempts=attempts, max_drop=max_drop, val_samples=len(val_items) * b)
            if qmodel is None:  # no range estimator held the gate: revert the most harmful layers to float
                from nncf.quantization.advanced_parameters import AdvancedAccuracyRestorerParameters

                restore_items = val_items + u_items  # unlabelled clips carry the float model's predictions
                restorer = AdvancedAccuracyRestorerParameters(max_num_iterations=max_iterations,
                                                              ranking_subset_size=min(ranking_subset_size, len(restore_items)))
                extra = {"advanced_quantization_parameters": params[best[0]]} if params[best[0]] is not None else {}
                qmodel = nncf.quantize_with_accuracy_control(
                    ov_model, calib_ds, nncf.Dataset(restore_items, lambda item: item[0]), validation_fn=_top1,
                    max_drop=max_drop, drop_type=nncf.DropType.ABSOLUTE, preset=presets[preset], subset_size=subset,
                    advanced_accuracy_restorer_parameters=restorer, **extra)
                settings.update(tool="nncf.quantize_with_accuracy_control",
                                ranking_subset_size=restorer.ranking_subset_size, max_iterations=max_iterations,
                                restore_samples=len(restore_items) * b)
                final = judge(qmodel)
            settings["top1_int8"] = final["top1_int8"]
            if "unlabelled" in final:
                settings["unlabelled"] = final["unlabelled"]
            settings["top1_fp32"] = top1_fp32
        else:
            qmodel = quantize(ranges[0])
    except ExportError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise ExportError(f"{src}: NNCF quantization failed: {type(exc).__name__}: {str(exc).splitlines()[0]}") from None
    _copy_rt_info(qmodel, _onnx_meta(src))
    _save_ir(qmodel, Path(out_xml), fp16=False)
    settings["fake_quantize_nodes"] = sum(op.get_type_name() == "FakeQuantize" for op in qmodel.get_ops())
    return settings
