"""`edgeskel data SPEC` prints a summary table or JSON; bad input exits 2 with one line."""

from __future__ import annotations

import json

from edgeskel.cli import main


def test_data_cli_json(capsys) -> None:  # noqa: ANN001
    rc = main(["data", "synthetic?classes=3&per_class=2&test_per_class=1&frames=16", "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["layout"] == "kinect20" and out["splits"]["train"]["samples"] == 6
    assert out["splits"]["test"]["per_class"] == [1, 1, 1] and out["skipped"] == []
    assert out["splits"]["train"]["frames_min"] <= out["splits"]["train"]["frames_median"] <= out["splits"]["train"]["frames_max"]


def test_data_cli_table_and_layout(capsys) -> None:  # noqa: ANN001
    rc = main(["data", "synthetic?classes=2&per_class=2&test_per_class=1&frames=16", "--layout", "openni15"])
    out = capsys.readouterr().out
    assert rc == 0 and "openni15" in out and "waving" in out and "T median" in out


def test_data_cli_errors(capsys, tmp_path) -> None:  # noqa: ANN001
    assert main(["data", f"nw-ucla:{tmp_path / 'missing'}"]) == 2
    assert "missing" in capsys.readouterr().err
    assert main(["data", "synthetic?layout=ntu25", "--layout", "kinect20"]) == 2
    assert "contradicts" in capsys.readouterr().err


def test_data_cli_skip_bad_lists_skipped(capsys, tmp_path) -> None:  # noqa: ANN001
    from test_data_fixtures import make_ucla_dir

    root = make_ucla_dir(tmp_path / "u")
    (root / "all_sqe" / "a01_s01_e00_v02.json").write_text("{not json")
    assert main(["data", f"nw-ucla:{root}"]) == 2
    assert "invalid JSON" in capsys.readouterr().err
    assert main(["data", f"nw-ucla:{root}", "--skip-bad"]) == 0
    assert "1 skipped" in capsys.readouterr().out
    assert main(["data", f"nw-ucla:{root}", "--skip-bad", "--json"]) == 0
    skipped = json.loads(capsys.readouterr().out)["skipped"]
    assert len(skipped) == 1 and skipped[0]["sample"].endswith("a01_s01_e00_v02.json")
    assert "invalid JSON" in skipped[0]["problem"]
