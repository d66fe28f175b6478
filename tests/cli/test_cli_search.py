"""``irpass optimize --max-drop`` end to end on the trained digits MLP."""

from __future__ import annotations

import json
import pathlib

import onnx
import pytest

from irpass.cli import main
from irpass.data import load_labels, open_data
from irpass.evaluate import evaluate
from irpass.ir import load_model

pytestmark = pytest.mark.usefixtures("test_passes")  # the t_* passes

REPO = pathlib.Path(__file__).resolve().parents[2]
MLP = REPO / "models" / "trained" / "digits_mlp.onnx"
TEST = REPO / "models" / "trained" / "digits8_test.npz"


def _run(tmp_path: pathlib.Path, ratio: float, budget: str) -> tuple[int, dict]:
    out = tmp_path / f"out-{ratio}"
    code = main(["optimize", str(MLP), "-o", str(out), "--passes",
                 f"canonicalize,t_drop_hidden(ratio={ratio})", "--eval-data", str(TEST),
                 "--labels", "data", "--max-drop", budget, "--executor", "serial",
                 "--search", "t_drop_hidden"])  # not prune or svd: they join the default space
    report = json.loads((out / "report.json").read_text()) if code == 0 else {}
    return code, report


def test_a_setting_within_budget_is_chosen_verified_and_written(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, report = _run(tmp_path, 0.06, "2%")
    assert code == 0
    search = report["search"]
    assert search["found"] and search["chosen"]["description"] == "t_drop_hidden on"
    assert "t_drop_hidden(ratio=0.06)" in report["pipeline"]
    written = load_model(tmp_path / "out-0.06" / "model.onnx")
    metrics = evaluate(written, open_data(str(TEST), written), labels=load_labels(str(TEST)))
    assert metrics["accuracy"] >= search["threshold"]
    assert report["after"]["params"] < report["before"]["params"]
    html = (tmp_path / "out-0.06" / "report.html").read_text()
    assert 'id="search"' in html and 'href="#search-point-1"' in html
    printed = capsys.readouterr().out
    assert "settings tried" in printed and "chosen" in printed


def test_no_setting_within_budget_keeps_the_lossless_result(tmp_path: pathlib.Path) -> None:
    code, report = _run(tmp_path, 0.5, "2%")
    assert code == 0
    assert not report["search"]["found"]
    assert "t_drop_hidden" not in report["pipeline"]
    written = onnx.load(tmp_path / "out-0.5" / "model.onnx")
    assert report["after"]["params"] == report["before"]["params"]
    assert written.graph.initializer


def test_max_drop_without_eval_data_is_a_user_error(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["optimize", str(MLP), "-o", str(tmp_path / "o"), "--max-drop", "1%"])
    assert code == 2
    err = capsys.readouterr().err
    assert "--eval-data" in err and "hint:" in err
    assert not (tmp_path / "o").exists()


def test_target_run_searches_and_prints_the_search(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "x86"
    code = main(["optimize", str(MLP), "--target", "x86", "--precision", "fp32", "-o", str(out),
                 "--eval-data", str(TEST), "--labels", "data", "--max-drop", "1%",
                 "--search", "prune", "--executor", "serial", "--max-candidates", "4"])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert report["search"]["found"] and "prune(round_to=16," in report["pipeline"]
    printed = capsys.readouterr().out
    assert "settings tried" in printed and "target x86" in printed


def test_target_search_without_eval_data_is_one_clear_error(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["optimize", str(MLP), "--target", "x86", "-o", str(tmp_path / "o"),
                 "--max-drop", "1%"])
    assert code != 0
    assert "--max-drop needs --eval-data" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
