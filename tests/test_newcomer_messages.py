"""Messages a newcomer meets first (issue 27 B): each is one `error:` line that says what is
wrong and what would be right, with names as people write them (not Python lists)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from test_data_fixtures import make_ntu_dir

from edgeskel.cli import main
from edgeskel.data import load_dataset
from edgeskel.devices import list_profiles, load_profile
from edgeskel.errors import ConfigError, DataError
from edgeskel.recipe import REPO_ROOT, list_recipes, load_recipe


def _err(capsys, *argv: str) -> tuple[int, str]:
    capsys.readouterr()
    rc = main(list(argv))
    err = capsys.readouterr().err
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return rc, lines[0]


@pytest.mark.parametrize("argv", [["export", "--device", "jetsonorin", "--out", "{tmp}/o"],
                                  ["devices", "show", "jetsonorin"]], ids=["export", "devices-show"])
def test_wrong_device_name_suggests_the_close_one(capsys, tmp_path, argv):
    rc, line = _err(capsys, *[a.format(tmp=tmp_path) for a in argv])
    assert rc == 2 and "device profile not found (did you mean 'jetson-orin'?)" in line, line
    assert f"available profiles: {', '.join(list_profiles())} " in line and "['" not in line


def test_device_name_suggestion_ignores_case_and_separators():
    with pytest.raises(ConfigError, match=r"did you mean 'jetson-orin-nx'\?"):
        load_profile("Jetson_Orin_NX")
    with pytest.raises(ConfigError) as ei:
        load_profile("zzzz")  # nothing close: no suggestion
    assert "did you mean" not in str(ei.value)


def test_wrong_recipe_name_suggests_and_lists_plain_names(capsys, tmp_path):
    rc, line = _err(capsys, "export", "--device", "cpu", "--recipe", "ctrgcn-lortsa", "--out", str(tmp_path / "o"))
    assert rc == 2 and "unknown recipe 'ctrgcn-lortsa' (did you mean 'ctrgcn-lortsar'?)" in line, line
    assert f"available: {', '.join(list_recipes())} (or a path to a .yaml file)" in line and "['" not in line


def _recipe(tmp_path: Path, mutate) -> Path:  # noqa: ANN001
    d = yaml.safe_load((REPO_ROOT / "recipes" / "default.yaml").read_text())
    mutate(d)
    p = tmp_path / "r.yaml"
    p.write_text(yaml.safe_dump(d))
    return p


def test_invalid_enum_value_is_said_once_with_a_suggestion(tmp_path):
    p = _recipe(tmp_path, lambda d: d["export"].update(calibration="minmaxx"))
    with pytest.raises(ConfigError) as ei:
        load_recipe(p)
    assert str(ei.value) == (f"{p}: invalid recipe: export.calibration: 'minmaxx' is not one of: "
                             f"minmax, entropy, percentile (did you mean 'minmax'?)")


def test_invalid_enum_value_without_a_close_name(tmp_path):
    p = _recipe(tmp_path, lambda d: d["compress"].update(policy="magic"))
    with pytest.raises(ConfigError) as ei:
        load_recipe(p)
    msg = str(ei.value)
    assert msg.endswith("compress.policy: 'magic' is not one of: fixed, energy, budget, latency"), msg
    assert "Input should be" not in msg and msg.count("'magic'") == 1


def test_unknown_key_suggests_the_close_one(tmp_path):
    p = _recipe(tmp_path, lambda d: d["train"].update(epocs=3))
    with pytest.raises(ConfigError, match=r"train\.epocs: unknown key \(did you mean 'epochs'\?\) \(allowed: epochs, "):
        load_recipe(p)


def _ntu_train_subjects_only(tmp_path: Path) -> Path:
    root = make_ntu_dir(tmp_path / "ntu")
    for f in [*root.glob("*P003*"), *root.glob("*P006*")]:  # x-sub test subjects
        f.unlink()
    return root


def test_empty_requested_split_says_what_the_folder_holds(tmp_path):
    root = _ntu_train_subjects_only(tmp_path)
    with pytest.raises(DataError) as ei:
        load_dataset(f"ntu:{root}", splits=("test",))  # what `edgeskel eval` reads
    msg = str(ei.value)
    assert "no samples could be read" not in msg, msg  # nothing is broken
    assert msg == (f"{root}: the test split is empty: the folder holds 2 train samples and no readable test "
                   f"samples (protocol xsub)")


def test_eval_on_an_empty_split_is_one_clear_error(capsys, tmp_path):
    import torch

    from edgeskel import models
    from edgeskel.checkpoint import ModelSpec, Preprocess, save_checkpoint
    from edgeskel.layouts import get_layout

    root = _ntu_train_subjects_only(tmp_path)
    layout = get_layout("ntu25")
    kwargs = {"num_person": 2, "width": 0.25}
    torch.manual_seed(0)
    net = models.build("stgcn", 60, layout, **kwargs)
    spec = ModelSpec(name="stgcn", num_classes=60, layout=layout, kwargs=kwargs,
                     preprocess=Preprocess(num_frames=16, num_person=2))
    ckpt = save_checkpoint(tmp_path / "m.ckpt", net, spec)
    rc, line = _err(capsys, "eval", "--checkpoint", str(ckpt), "--data", f"ntu:{root}", "--device", "cpu")
    assert rc == 2 and line.startswith(f"error: {root}: the test split is empty: the folder holds 2 train"), line


def test_all_zero_sequence_error_names_skip_bad(tmp_path):
    root = tmp_path / "msr"
    root.mkdir()
    (root / "a01_s01_e01_skeleton3D.txt").write_text("0 0 0 1\n" * 40)  # two frames, every joint at 0
    for i, s in enumerate((1, 2, 2)):
        rows = [f"{0.1 * j + i:.2f} {0.2 * j:.2f} {3 + 0.01 * j:.2f} 1" for j in range(40)]
        (root / f"a0{1 + i}_s0{s}_e02_skeleton3D.txt").write_text("\n".join(rows) + "\n")
    with pytest.raises(DataError) as ei:
        load_dataset(f"msr-action3d:{root}", check_layout=False)
    msg = str(ei.value)
    assert "a01_s01_e01_skeleton3D" in msg and "zero-length sequence" in msg and "\n" not in msg
    assert msg.endswith("(to skip such samples: --skip-bad, or data.skip_bad: true in a recipe)"), msg
    ds = load_dataset(f"msr-action3d:{root}", skip_bad=True, check_layout=False)  # what the hint says works
    assert len(ds.skipped) == 1 and "--skip-bad" not in ds.skipped[0][1]


def test_gates_table_parity_column_has_unit_and_bound():
    from edgeskel.report.lines import gate_header, gate_rows

    gates = [{"gate": "parity", "label": "parity vs PyTorch", "unit": "", "bound": "max", "threshold": 6.2,
              "measured": 1.9, "passed": True, "detail": ""},
             {"gate": "max_top1_drop", "label": "top-1 drop", "unit": "points", "bound": "max", "threshold": 1.0,
              "measured": 0.5, "passed": True, "detail": ""}]
    report = {"variants": [{"name": "ort-int8", "status": "passed", "gates": gates}], "gates": {}}
    assert gate_header(report, "parity") == "parity vs PyTorch (max abs logit diff)"
    assert gate_header(report, "max_top1_drop") == "top-1 drop (max 1 points)"
    assert gate_rows(report) == [["ort-int8", "PASSED", "1.9 (max 6.2) pass", "0.50 pass"]]


def test_tune_help_fits_80_columns(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    capsys.readouterr()
    assert main(["tune", "--help"]) == 0
    out = capsys.readouterr().out
    assert "…" not in out and max(len(ln) for ln in out.splitlines()) <= 80
    assert "tune-<device>/ under" in out and "<out>/<recipe>/" in out
