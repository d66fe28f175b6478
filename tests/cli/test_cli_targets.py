from __future__ import annotations

import json
import pathlib

import pytest

from irpass.cli import main
from models import zoo_paths


def test_targets_lists_every_target_and_shows_one_in_full(capsys: pytest.CaptureFixture[str]):
    assert main(["targets", "--json"]) == 0
    names = {t["name"] for t in json.loads(capsys.readouterr().out)}
    assert names == {"android", "generic", "ios", "jetson-nano", "jetson-orin", "rpi", "x86"}
    assert main(["targets", "jetson-nano"]) == 0
    assert "Maxwell" in capsys.readouterr().out
    assert main(["targets", "jetson-nano", "--json"]) == 0
    nano = json.loads(capsys.readouterr().out)
    assert nano["runtime"]["version"] == "8.2.1" and "JetPack 4.6" in nano["runtime"]["platform"]
    assert "downgrade_opset(target=13)" in nano["legalize"]
    assert main(["targets", "tpu"]) == 2
    assert "unknown target 'tpu'" in capsys.readouterr().err


def test_optimize_target_writes_the_folder_and_prints_device_steps(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
):
    out = tmp_path / "out"
    code = main(["optimize", str(zoo_paths()["power_cnn1d"]), "--target", "jetson", "-o",
                 str(out), "--verify", "final"])
    assert code == 0
    captured = capsys.readouterr()
    assert "target jetson-orin: TensorRT 10.3" in captured.out
    assert "precision" in captured.out and "./build_engine.sh" in captured.out
    assert {p.name for p in out.iterdir()} >= {"model.onnx", "build_engine.sh", "manifest.json",
                                               "report.json", "report.html"}
    manifest = json.loads((out / "manifest.json").read_text())
    # without calibration data jetson falls back to FP16, written as an FP16-typed model that
    # TensorRT 10 builds strongly typed
    assert manifest["precision"]["effective"] == "fp16" and not manifest["precision"]["at_build"]
    assert "--stronglyTyped" in (out / "build_engine.sh").read_text()
    assert "calibration data" in captured.err  # the fallback is a warning, with its reason


def test_optimize_target_json_and_input_shapes(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
):
    code = main(["optimize", str(zoo_paths()["transformer"]), "--target", "android", "-o",
                 str(tmp_path / "out"), "--input-shapes", "tokens:1x8", "--json",
                 "--verify", "none"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["target"] == "android"
    caveats = {c["name"]: c for c in report["target_checks"]}["NNAPI operator caveats"]
    assert caveats["status"] == "fail" and "Gather" in caveats["detail"]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--target", "jetson-nano", "--precision", "int8"], "runs fp16, fp32, not int8"),
        (["--precision", "fp16"], "need --target"),
        (["--target", "x86", "--max-drop", "1%"], "--max-drop needs --eval-data"),
        (["--target", "nope"], "unknown target 'nope'"),
        (["--target", "android", "--input-shapes", "input:1x2"], "the model fixes it to 64"),
    ],
)
def test_target_option_errors_are_one_line_with_a_hint(
    extra: list[str], message: str, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
):
    code = main(["optimize", str(zoo_paths()["mlp"]), "-o", str(tmp_path / "o"), *extra])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "hint:" in err
    assert not (tmp_path / "o").exists()
