"""``irpass optimize --passes ...quantize(...)`` end to end: int8 with --calib-data, fp16,
weight-only, and INT8 without data as a user error."""

from __future__ import annotations

import collections
import json
import pathlib

import onnx
import pytest

from irpass.cli import main
from irpass.ir import load_model
from irpass.passes.quantization.rules import ORT
from irpass.passes.quantization.validate import validate
from models import MODELS_DIR

MLP = MODELS_DIR / "trained" / "digits_mlp.onnx"
CALIB = MODELS_DIR / "trained" / "digits8_calib.npz"


def _optimize(tmp_path: pathlib.Path, passes: str, *extra: str) -> tuple[int, pathlib.Path]:
    out = tmp_path / "out"
    return main(["optimize", str(MLP), "-o", str(out), "--passes", passes, *extra]), out


def _stats(out: pathlib.Path) -> dict[str, int]:
    report = json.loads((out / "report.json").read_text())
    return next(r["stats"] for r in report["passes"] if r["name"] == "quantize")


def _ops(path: pathlib.Path) -> collections.Counter[str]:
    return collections.Counter(n.op_type for n in onnx.load(str(path)).graph.node)


def test_int8_with_calib_data_writes_a_valid_qdq_model(tmp_path):
    code, out = _optimize(
        tmp_path,
        "canonicalize,quantize(never_slower=false,max_drop=none)",
        "--calib-data",
        str(CALIB),
        "--calib-samples",
        "64",
    )
    assert code == 0
    assert _stats(out)["quantized_layers"] == 3
    assert _stats(out)["calibration_samples"] == 64
    assert validate(load_model(out / "model.onnx"), ORT, runtime=True) == []


def test_int8_without_calib_data_is_an_error_with_a_hint_and_writes_nothing(tmp_path, capsys):
    code, out = _optimize(tmp_path, "canonicalize,quantize")
    assert code == 2
    err = capsys.readouterr().err
    assert "needs calibration data" in err and "--calib-data" in err
    assert not out.exists()


@pytest.mark.parametrize(
    ("passes", "op", "stat"),
    [
        ("quantize(mode=fp16)", "Cast", "fp16_nodes"),
        ("quantize(mode=int8w,block_size=16)", "MatMulNBits", None),
        ("quantize(mode=int4w,block_size=16)", "MatMulNBits", None),
    ],
)
def test_fp16_and_weight_only_need_no_data(tmp_path, passes, op, stat):
    code, out = _optimize(tmp_path, passes)
    assert code == 0
    assert _ops(out / "model.onnx")[op] >= 1
    if stat:
        assert _stats(out)[stat] >= 1
