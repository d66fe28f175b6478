from __future__ import annotations

import pathlib

import numpy as np
import onnxruntime as ort
import pytest

from irpass.backends.base import EmitRequest
from irpass.backends.onnxruntime import cpu_op_support
from irpass.backends.registry import get_backend, list_backends
from irpass.errors import TargetError
from irpass.ir import load_model
from irpass.targets import load_target
from irpass.testing import model_from_text, run_ir
from models import zoo_paths


def test_registry_knows_the_four_backends():
    assert [b.name for b in list_backends()] == ["coreml", "nnapi", "onnxruntime", "tensorrt"]
    with pytest.raises(TargetError, match="unknown backend"):
        get_backend("tflite")


def test_cpu_operator_list_comes_from_ort_kernels():
    support = cpu_op_support()
    assert support.release == ort.__version__
    assert {"Conv", "QLinearConv", "com.microsoft:QLinearAdd"} <= support.ops


def test_rpi_emit_writes_ort_and_offline_models_that_compute_the_same(tmp_path: pathlib.Path):
    model = load_model(zoo_paths()["resnet_cnn"])
    request = EmitRequest(tmp_path, "fp32", {})
    result = get_backend("onnxruntime").emit(model, load_target("rpi"), request)
    assert {a.path for a in result.artifacts} == {
        "model.onnx", "model.basic.onnx", "model.ort", "model.required_operators.config"
    }
    assert not result.failed
    feeds = {"input": np.random.default_rng(0).standard_normal((2, 1, 16, 16)).astype(np.float32)}
    expected = run_ir(model, feeds)["logits"]
    for name in ("model.basic.onnx", "model.ort"):
        session = ort.InferenceSession(str(tmp_path / name), providers=["CPUExecutionProvider"])
        np.testing.assert_allclose(session.run(None, feeds)[0], expected, rtol=1e-4, atol=1e-5)


def test_generic_writes_only_the_model_and_flags_ops_ort_cannot_run(tmp_path: pathlib.Path):
    model = model_from_text("""
    <ir_version: 9, opset_import: ["" : 17, "my.domain" : 1]>
    g (float[2] x) => (float[2] y) { y = my.domain.Frobnicate(x) }""")
    checks = {c.name: c for c in get_backend("onnxruntime").check(model, load_target("generic"))}
    assert checks["operators supported"].status == "fail"
    assert "my.domain:Frobnicate" in checks["operators supported"].detail
