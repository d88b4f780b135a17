"""`edgeskel export --checkpoint C --backend B --precision P`: one artifact, checked for parity."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgeskel.checkpoint import load_checkpoint
from edgeskel.errors import ConfigError


def calibration_arrays(spec: Any, data: str, calib_samples: int, val_samples: int = 256, seed: int = 0) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """Calibration inputs from the training split, validation (x, y) for the parity and INT8
    gates from the validation split (never the test split: the gates choose what ships),
    preprocessed exactly as the checkpoint says, in the checkpoint's own layout."""
    from edgeskel.data import load_dataset
    from edgeskel.data.splits import holdout
    from edgeskel.train.api import check_compatible, prepare_arrays

    ds = load_dataset(data, layout=spec.layout, splits=("train",))
    check_compatible(spec, ds, "checkpoint", fix="pass --calib-data SPEC for its dataset")
    split = holdout(ds)
    tr_x, _ = prepare_arrays(split.train, spec.layout, spec.preprocess)
    rng = np.random.default_rng(seed)
    calib = tr_x[np.sort(rng.permutation(len(tr_x))[:calib_samples])]
    val_x, val_y = prepare_arrays(split.val, spec.layout, spec.preprocess)
    if len(val_y) > val_samples:
        idx = np.sort(rng.permutation(len(val_y))[:val_samples])
        val_x, val_y = val_x[idx], val_y[idx]
    return calib, (val_x, val_y)


def export_single(checkpoint: str | Path, backend: str, precision: str, out_dir: str | Path,
                  calib_data: str | None = None, calibration: str = "minmax", calib_samples: int = 128) -> dict[str, Any]:
    from edgeskel.export import export_variant

    model, spec, extra = load_checkpoint(checkpoint)
    data = calib_data or extra.get("data")
    if data is None:
        raise ConfigError(f"{checkpoint}: no --calib-data given and the checkpoint does not record its dataset; "
                          "pass --calib-data SPEC (real samples are needed for calibration and the parity check)")
    calib, val = calibration_arrays(spec, data, calib_samples)
    return export_variant(model, spec, backend, precision, Path(out_dir), calib=calib, val=val,
                          options={"calibration": calibration})
