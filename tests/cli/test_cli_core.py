from __future__ import annotations

import hashlib
import json
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from conftest import light_model_path

from irpass.cli import main
from irpass.errors import ModelLoadError
from irpass.ir import save_model

pytestmark = pytest.mark.usefixtures("test_passes")  # the t_* passes

MODEL = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[1, 4] x) => (float[1, 3] y) <float[4, 3] w = {1,2,3,4,5,6,7,8,9,10,11,12}> {
    a = Identity(x)
    b = Identity(a)
    y = MatMul(b, w)
}
"""


@pytest.fixture
def small_model(tmp_path: pathlib.Path) -> pathlib.Path:
    path = tmp_path / "in.onnx"
    onnx.save(onnx.parser.parse_model(MODEL), path)
    return path


def _digest(path: pathlib.Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_optimize_to_directory_writes_model_and_report(
    small_model: pathlib.Path, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    digest = _digest(small_model)
    out = tmp_path / "out"
    code = main(
        [
            "optimize",
            str(small_model),
            "-o",
            str(out),
            "--passes",
            "fixpoint(t_remove_one_identity)",
        ]
    )
    assert code == 0
    assert _digest(small_model) == digest  # the input is never modified
    model = onnx.load(out / "model.onnx")
    assert [n.op_type for n in model.graph.node] == ["MatMul"]
    report = json.loads((out / "report.json").read_text())
    assert report["pipeline"] == "fixpoint(t_remove_one_identity)"
    assert report["before"]["nodes"] == 3 and report["after"]["nodes"] == 1
    assert [p["modified"] for p in report["passes"]] == [True, True, False]
    printed = capsys.readouterr().out
    assert "before / after" in printed and "2 of 3 changed the model" in printed
    assert not [p for p in out.iterdir() if p.name.startswith(".irpass-tmp")]


def test_optimize_to_onnx_file(small_model: pathlib.Path, tmp_path: pathlib.Path) -> None:
    out = tmp_path / "sub" / "opt.onnx"
    assert (
        main(["optimize", str(small_model), "-o", str(out), "--passes", "t_remove_one_identity"])
        == 0
    )
    assert sorted(p.name for p in out.parent.iterdir()) == ["opt.onnx"]


def test_optimize_refuses_to_overwrite_its_input(
    small_model: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    digest = _digest(small_model)
    assert main(["optimize", str(small_model), "-o", str(small_model), "--passes", "t_raise"]) == 2
    assert "never overwrites its input" in capsys.readouterr().err
    assert _digest(small_model) == digest


def test_failing_pass_names_pass_and_saves_reproducer(
    small_model: pathlib.Path, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    argv = ["optimize", str(small_model), "-o", str(out), "--passes", "t_lying_lossless"]
    assert main([*argv, "--strict"]) == 2
    err = capsys.readouterr().err
    assert "t_lying_lossless" in err and "Traceback" not in err
    assert (out / "reproducer" / "input.onnx").exists()
    assert not (out / "model.onnx").exists()
    # by default the pass is rolled back with a warning and the run goes on
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "t_lying_lossless" in err and "rolled back" in err
    assert (out / "model.onnx").exists()


def test_bad_pipeline_lists_valid_passes(
    small_model: pathlib.Path, tmp_path: pathlib.Path, capsys
) -> None:
    assert main(["optimize", str(small_model), "-o", str(tmp_path / "o"), "--passes", "nope"]) == 2
    err = capsys.readouterr().err
    assert "unknown pass 'nope'" in err and "t_raise" in err
    assert not (tmp_path / "o").exists()


def _bad_inputs(tmp: pathlib.Path) -> dict[str, pathlib.Path]:
    (tmp / "empty.onnx").write_bytes(b"")
    (tmp / "text.onnx").write_text("this is a readme, not a model\n")
    (tmp / "trunc.onnx").write_bytes(light_model_path("squeezenet").read_bytes()[:3000])
    custom = onnx.parser.parse_model(
        """<ir_version: 8, opset_import: ["" : 17, "com.example" : 1]>
        g (float[2] x) => (float[2] y) { y = com.example.Mystery(x) }"""
    )
    onnx.save(custom, tmp / "custom.onnx")
    save_model(
        ir.from_proto(onnx.parser.parse_model(MODEL)),
        tmp / "ext.onnx",
        external_data=True,
        size_threshold_bytes=0,
    )
    (tmp / "ext.onnx.data").unlink()
    return {
        "missing": tmp / "nope.onnx",
        "directory": tmp,
        "empty": tmp / "empty.onnx",
        "text": tmp / "text.onnx",
        "truncated": tmp / "trunc.onnx",
        "custom_op": tmp / "custom.onnx",
        "missing_external_data": tmp / "ext.onnx",
    }


@pytest.mark.parametrize(
    "kind",
    ["missing", "directory", "empty", "text", "truncated", "custom_op", "missing_external_data"],
)
def test_bad_input_one_line_nonzero_nothing_written(
    kind: str, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    path = _bad_inputs(inputs)[kind]
    out = tmp_path / "out"
    code = main(["optimize", str(path), "-o", str(out), "--passes", "t_remove_one_identity"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: "), err
    assert "Traceback" not in err
    assert len([line for line in err.splitlines() if line.startswith("error:")]) == 1
    assert not out.exists() or not any(out.iterdir())


def test_custom_ops_pass_through_when_allowed(tmp_path: pathlib.Path) -> None:
    path = _bad_inputs(tmp_path)["custom_op"]
    out = tmp_path / "o.onnx"
    assert (
        main(
            [
                "optimize",
                str(path),
                "-o",
                str(out),
                "--allow-custom-ops",
                "--passes",
                "t_remove_one_identity",
            ]
        )
        == 0
    )
    assert [n.op_type for n in onnx.load(out).graph.node] == ["Mystery"]


def test_debug_shows_traceback(small_model: pathlib.Path, tmp_path: pathlib.Path) -> None:
    with pytest.raises(ModelLoadError):
        main(["--debug", "optimize", str(tmp_path / "missing.onnx"), "-o", str(tmp_path / "o")])


def test_inspect_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", str(light_model_path("resnet50")), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["opsets"] == {"": 9}
    assert info["inputs"][0]["name"] == "gpu_0/data_0"
    assert info["inputs"][0]["shape"] == [1, 3, 224, 224]
    assert info["ops"]["Conv"] == 53
    assert 4.0e9 < info["macs"] < 4.2e9
    assert len(info["largest_layers"]) == 10
    assert info["largest_layers"][0]["op_type"] == "Conv"


def test_inspect_tables(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", str(light_model_path("squeezenet"))]) == 0
    out = capsys.readouterr().out
    assert "op histogram" in out and "ConstantOfShape" in out and "data_0" in out


def test_passes_lists_options_defaults_and_lossless_flag(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["passes", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    by_name = {p["name"]: p for p in info["passes"]}
    scale = by_name["t_scale_weight"]
    assert scale["lossless"] is False
    assert scale["options"] == [
        {
            "name": "factor",
            "type": "float",
            "default": 0.5,
            "doc": "multiply the first float initializer by this",
            "text": "0.5",
        }
    ]


def test_console_script_is_installed(small_model: pathlib.Path) -> None:
    exe = shutil.which("irpass") or str(pathlib.Path(sys.executable).parent / "irpass")
    proc = subprocess.run(
        [exe, "inspect", str(small_model), "--json"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["nodes"] == 3
    proc = subprocess.run(
        [exe, "inspect", str(small_model) + ".missing"], capture_output=True, text=True
    )
    assert (
        proc.returncode == 2 and proc.stderr.startswith("error:") and "Traceback" not in proc.stderr
    )


def _calibration_stats(report_path: pathlib.Path) -> dict[str, int]:
    report = json.loads(report_path.read_text())
    return report["passes"][0]["stats"]


def test_calib_data_reaches_the_passes_bounded_by_calib_samples(
    small_model: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    rng = np.random.default_rng(0)
    folder = tmp_path / "calib"
    folder.mkdir()
    for i in range(10):
        np.save(folder / f"{i:02d}.npy", rng.standard_normal((1, 4)).astype(np.float32))
    out = tmp_path / "out"
    args = ["optimize", str(small_model), "-o", str(out), "--passes", "t_count_calibration"]
    assert main([*args, "--calib-data", str(folder), "--calib-samples", "3"]) == 0
    stats = _calibration_stats(out / "report.json")
    assert stats["calibration_samples"] == 3 and "random" not in stats
    assert main([*args, "--calib-data", str(folder)]) == 0
    assert _calibration_stats(out / "report.json")["calibration_samples"] == 10
    assert main(args) == 0
    assert _calibration_stats(out / "report.json") == {"no_calibration_data": 1}


def test_random_calibration_is_marked_and_warned(
    small_model: pathlib.Path, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    code = main(["optimize", str(small_model), "-o", str(out), "--passes", "t_count_calibration",
                 "--calib-data", "random:4"])
    assert code == 0
    assert _calibration_stats(out / "report.json")["random"] == 1
    assert "random inputs" in capsys.readouterr().err


def test_bad_calib_samples_is_a_user_error(
    small_model: pathlib.Path, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["optimize", str(small_model), "-o", str(tmp_path / "o"), "--calib-data",
                 "random", "--calib-samples", "0"])
    assert code == 2
    err = capsys.readouterr().err
    assert "error:" in err and "hint:" in err
    assert not (tmp_path / "o").exists()
