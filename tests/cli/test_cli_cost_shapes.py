"""`irpass optimize` and `irpass inspect` say which input shapes their MACs are for."""

from __future__ import annotations

import json
import pathlib

import pytest
from shape_models_for_tests import batch_view, data_dependent

from irpass.cli import main
from irpass.ir import save_model


def _console(capsys: pytest.CaptureFixture[str]) -> str:
    # rich wraps captions and cells: join the words of the wrapped lines
    return " ".join(capsys.readouterr().out.replace("│", " ").split())


def test_optimize_summary_names_the_shapes(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "m.onnx"
    save_model(batch_view(), source)
    out = tmp_path / "out"
    assert main(["optimize", str(source), "-o", str(out), "--input-shapes", "x:5x64"]) == 0
    text = _console(capsys)
    assert "MACs and activations at inputs x:5x64" in text
    report = json.loads((out / "report.json").read_text())
    assert report["cost_shapes"] == {"x": [5, 64]}
    assert report["before"]["macs"] == report["after"]["macs"] == 5 * 8 * 16 * 8
    html = (out / "report.html").read_text()
    assert "MACs and activations at inputs x:5x64" in html and "file size" in html


def test_optimize_says_what_it_could_not_count(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "m.onnx"
    save_model(data_dependent(), source)
    assert main(["optimize", str(source), "-o", str(tmp_path / "out.onnx")]) == 0
    text = _console(capsys)
    assert "1 nodes' MACs and" in text and "could not be counted at these shapes" in text


def test_inspect_counts_at_given_shapes_and_says_when_it_set_dims_to_one(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "m.onnx"
    save_model(batch_view(), source)
    assert main(["inspect", str(source), "--json", "--input-shapes", "x:3x64"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["cost_shapes"] == {"x": [3, 64]} and info["symbolic_set_to_one"] == []
    assert info["macs"] == 3 * 8 * 16 * 8 and info["unknown_macs_nodes"] == 0
    assert main(["inspect", str(source)]) == 0
    text = _console(capsys)
    assert "MACs and activations at inputs x:1x64 (symbolic dims of x set to 1" in text
