"""The CLI behaves like the tools people know (issue 18 item 7)."""

from __future__ import annotations

import re

import pytest

from edgeskel import __version__
from edgeskel.cli import main
from edgeskel.cli.device_cmd import where
from edgeskel.devices import load_profile


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_version(capsys):
    rc, out, _ = _run(capsys, "--version")
    assert rc == 0 and out.strip() == f"edgeskel {__version__}"


def test_help_has_clean_metavars_and_commands_in_pipeline_order(capsys):
    rc, out, _ = _run(capsys, "--help")
    assert rc == 0 and "<bool>" not in out
    listed = re.findall(r"^│ ([a-z][a-z0-9-]+) ", out, flags=re.M)
    order = [c for c in ("data", "train", "eval", "compress", "export", "device-run", "results") if c in listed]
    assert order == ["data", "train", "eval", "compress", "export", "device-run", "results"], listed
    assert [c for c in listed if c in order] == order
    rc, out, _ = _run(capsys, "export", "--help")
    assert rc == 0 and "--quiet" in out and "<bool>" not in out


@pytest.mark.parametrize("argv, named", [
    (["export", "--device", "cpu", "--backend", "ort"], "--backend"),
    (["export", "--device", "cpu", "--precision", "int8", "--calib-samples", "8"], "--precision, --calib-samples"),
    (["export", "--checkpoint", "x.ckpt", "--backend", "ort", "--data", "synthetic"], "--data"),
])
def test_options_of_the_other_mode_are_errors(capsys, argv, named):
    rc, _, err = _run(capsys, *argv)
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and lines[0].startswith(f"error: {named}: only for"), err


def test_missing_checkpoint_names_the_given_path_without_telling_to_pass_it(capsys, tmp_path):
    missing = tmp_path / "nope.ckpt"
    rc, _, err = _run(capsys, "export", "--device", "cpu", "--checkpoint", str(missing), "--out", str(tmp_path / "o"))
    assert rc == 2 and f"--checkpoint {missing}: file {missing} not found" in err
    assert "pass --checkpoint" not in err  # the user did


def test_devices_where_column(capsys):
    assert where(load_profile("jetson-orin"), "x86_64") == "by hand"  # was "local"
    assert where(load_profile("jetson-orin"), "aarch64") == "by hand"  # TensorRT: run on the device
    assert where(load_profile("cpu"), "x86_64") == "here"
    assert where(load_profile("arm64-cpu"), "x86_64") == "by hand"
    assert where(load_profile("arm64-cpu"), "aarch64") == "here"
    rc, out, _ = _run(capsys, "devices")
    row = next(ln for ln in out.splitlines() if ln.strip().startswith("jetson-orin "))
    assert rc == 0 and "local" not in out and row.rstrip().endswith("by hand")


def test_third_party_info_logs_are_silenced_unless_verbose():
    # Judged by the logger's own filtering, not by captured text: NNCF's stream handler is bound to
    # whichever sys.stdout existed when nncf was first imported, which under pytest depends on
    # test order.
    import logging

    from nncf.common.logging import nncf_logger  # NNCF's own logger, as the export uses it

    def shown(level: int) -> bool:
        return bool(nncf_logger.filter(nncf_logger.makeRecord("nncf", level, __file__, 1, "quantizing layer 17", (), None)))

    main(["devices"])
    assert not shown(logging.INFO) and shown(logging.WARNING)
    main(["--verbose", "devices"])
    assert shown(logging.INFO)
    main(["devices"])  # back to quiet for the tests after this one


@pytest.mark.parametrize("argv, key", [(["--epochs", "-1"], "epochs"), (["--scale-jitter", "1.5"], "scale_jitter")])
def test_out_of_range_option_values_are_one_error_line(capsys, tmp_path, argv, key):
    assert main(["train", "--model", "stgcn", "--out", str(tmp_path / "t"), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: command line: invalid option value: " + key), err
    assert not (tmp_path / "t").exists()
