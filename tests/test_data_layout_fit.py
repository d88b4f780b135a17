"""Layout sanity check: 20-joint NW-UCLA data in a permuted joint order warns with the fit
numbers; the right order does not; a wrong custom layout names the built-in that fits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from edgeskel.data import load_dataset
from edgeskel.data.layout_fit import check_layout, layout_fit
from edgeskel.layouts import KINECT20

UCLA = Path(__file__).resolve().parents[2] / "shared" / "data" / "nw-ucla"
needs_ucla = pytest.mark.skipif(not (UCLA / "all_sqe").is_dir(), reason="NW-UCLA not in ../shared/data")


@pytest.fixture(scope="module")
def ucla_samples() -> list[np.ndarray]:
    ds = load_dataset(f"nw-ucla:{UCLA}", check_layout=False)
    return ds.train.samples[::4]


@needs_ucla
def test_right_order_fits_and_does_not_warn(ucla_samples) -> None:  # noqa: ANN001
    info, warning = check_layout(ucla_samples, KINECT20)
    assert warning is None and info["likely_wrong"] is False
    assert info["bone_to_joint_distance"] < 0.5 and info["left_right_asymmetry"] < 0.1


@needs_ucla
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_permuted_order_warns_with_numbers(ucla_samples, seed) -> None:  # noqa: ANN001
    perm = np.random.default_rng(seed).permutation(20)
    info, warning = check_layout([x[:, :, perm] for x in ucla_samples], KINECT20)
    assert info["likely_wrong"] is True and warning is not None
    assert f"{info['bone_to_joint_distance']:.2f}x" in warning and "left/right bones differ by" in warning
    assert "kinect20" in warning and "--layout FILE.yaml" in warning


@needs_ucla
def test_wrong_custom_layout_names_the_builtin_that_fits(tmp_path, capsys) -> None:  # noqa: ANN001
    perm = np.random.default_rng(0).permutation(20)
    inv = np.argsort(perm)  # joint perm[i] of kinect20 is joint i of the custom order
    custom = {"name": "shuffled20", "joints": [KINECT20.joints[p] for p in perm],
              "bones": [[int(inv[a]), int(inv[b])] for a, b in KINECT20.bones], "center": int(inv[KINECT20.center])}
    path = tmp_path / "shuffled20.yaml"
    path.write_text(yaml.safe_dump(custom))
    ds = load_dataset(f"nw-ucla:{UCLA}", layout=str(path))  # data is in kinect20 order: wrong layout
    err = capsys.readouterr().err
    assert ds.warnings and "built-in layout 'kinect20' fits better" in ds.warnings[0]
    assert "warning:" in err and "--layout kinect20" in err
    assert ds.info["layout_fit"]["likely_wrong"] is True
    # the same custom layout on data really in that order fits
    fit = layout_fit([x[:, :, perm] for x in ds.train.samples[::8]], ds.layout)
    assert fit is not None and fit.ratio < 0.5


def test_synthetic_data_fits_its_layout(capsys) -> None:  # noqa: ANN001
    ds = load_dataset("synthetic?classes=3&per_class=4&test_per_class=2&frames=16")
    assert not ds.warnings and ds.info["layout_fit"]["likely_wrong"] is False
    assert "warning" not in capsys.readouterr().err


@needs_ucla
def test_spine_head_first_order_names_utd20(ucla_samples) -> None:  # noqa: ANN001
    """The issue's case: UTD-MHAD-ordered data (spine listed head-first) taken as kinect20."""
    from edgeskel.layouts import UTD20

    order = [KINECT20.joints.index(j) for j in UTD20.joints]
    info, warning = check_layout([x[:, :, order] for x in ucla_samples], KINECT20)
    assert warning is not None and "built-in layout 'utd20' fits better" in warning and "--layout utd20" in warning
    assert check_layout([x[:, :, order] for x in ucla_samples], UTD20)[1] is None
