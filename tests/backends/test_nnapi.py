from __future__ import annotations

import pathlib

import onnx_ir as ir
import pytest

from irpass.backends.base import EmitRequest
from irpass.backends.caveats import violations
from irpass.backends.mobile import check_partitions, mobile_op_support, op_caveats
from irpass.backends.nnapi import NNAPI_CAVEATS, partition_check
from irpass.backends.registry import get_backend
from irpass.errors import TargetError
from irpass.ir import save_model
from irpass.targets import load_target
from irpass.testing import inputs_to_random_initializers, model_from_text


def _hardswish_net() -> ir.Model:
    model = model_from_text("""
    <ir_version: 9, opset_import: ["" : 17]>
    g (float[1,3,8,8] x, float[4,3,3,3] w) => (float[1,4,6,6] y) {
      c = Conv(x, w)
      h = HardSwish(c)
      y = Relu(h)
    }""")
    return inputs_to_random_initializers(model, ["w"])


def test_the_operator_list_is_the_one_the_checker_reads():
    support = mobile_op_support("nnapi", "installed")
    assert "Conv" in support.ops and "HardSwish" not in support.ops
    assert "com.microsoft:QLinearAdd" in support.ops
    assert "Only 2D Conv" in op_caveats("nnapi")["Conv"]
    with pytest.raises(TargetError, match="installed"):
        mobile_op_support("nnapi", "1.17")


def test_checker_partitions_are_reported_with_the_op_and_why(tmp_path: pathlib.Path):
    path = tmp_path / "m.onnx"
    save_model(_hardswish_net(), path)
    report = check_partitions(path, "nnapi")
    # the checker judges the model after ORT's basic optimizations, which turn HardSwish
    # into Mul(x, HardSigmoid(x)): NNAPI lacks that op too
    assert report.unsupported_ops == {"HardSigmoid": 1} and not report.single_partition
    check = partition_check(report)
    assert check.status == "fail" and "HardSigmoid x1" in check.detail
    assert "HardSigmoid" in check.data["not_legalized"]
    legal = model_from_text("""
    <ir_version: 9, opset_import: ["" : 17]>
    g (float[1,3,8,8] x) => (float[1,3,8,8] y) { y = Relu(x) }""")
    save_model(legal, path)
    ok = partition_check(check_partitions(path, "nnapi"))
    assert ok.status == "pass" and ok.data["partitions"] == 1


@pytest.mark.parametrize(
    "body, inputs, requirement",
    [
        ("y = Conv(x3, w3)", "float[1,3,8] x3, float[4,3,3] w3", "only 2-D Conv"),
        ("y = Conv(x, wi)", "float[1,3,8,8] x, float[4,3,3,3] wi", "constant weights"),
        ("y = Gather(t, idx)", "float[10,4] t, int64[2] idx", "constant indices"),
        ('y = Pad<mode="reflect">(x, p)', "float[1,3,8,8] x, int64[8] p", "constant mode"),
    ],
)
def test_caveats_the_checker_does_not_check_are_named(body, inputs, requirement):
    model = model_from_text(f"""
    <ir_version: 9, opset_import: ["" : 17]>
    g ({inputs}) => (float y) {{ {body} }}""")
    ir.passes.common.ShapeInferencePass()(model)
    found = violations(model.graph, NNAPI_CAVEATS)
    assert found and requirement in found[0]["requirement"]


def test_int32_gather_indices_and_constant_weights_meet_the_caveats():
    model = model_from_text("""
    <ir_version: 9, opset_import: ["" : 17]>
    g (float[10,4] t, int32[2] idx, float[1,3,8,8] x, float[4,3,3,3] w) => (float y, float z) {
      y = Gather(t, idx)
      z = Conv(x, w)
    }""")
    model = inputs_to_random_initializers(model, ["w"])
    assert violations(model.graph, NNAPI_CAVEATS) == []


def test_emit_writes_the_ort_model_and_every_check(tmp_path: pathlib.Path):
    backend = get_backend("nnapi")
    target = load_target("android")
    result = backend.emit(_hardswish_net(), target, EmitRequest(tmp_path, "fp32", {}))
    names = {a.path for a in result.artifacts}
    assert {"model.onnx", "model.with_runtime_opt.ort"} <= names <= set(
        backend.planned_files(target, "model.onnx")
    )
    checks = {c.name: c.status for c in result.checks}
    assert checks["ORT format conversion"] == "pass"
    assert checks["operators supported"] == "fail"  # HardSwish was not legalized here
    assert checks["NNAPI partitions (ORT usability checker)"] == "fail"
    assert any("addNnapi" in step for step in result.device_steps)
