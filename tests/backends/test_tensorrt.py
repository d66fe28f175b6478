from __future__ import annotations

import pathlib
import subprocess

import onnx_ir as ir
import pytest

from irpass.backends.base import EmitRequest
from irpass.backends.checks import qdq_rules_check
from irpass.backends.registry import get_backend
from irpass.backends.tensorrt import (
    build_engine,
    build_script,
    load_table,
    plan_build,
    table_checks,
    tensorrt_available,
    trtexec_args,
)
from irpass.errors import TargetError
from irpass.targets import load_target
from irpass.testing import inputs_to_random_initializers, model_from_text

PROFILE = {"x": ((1, 3, 8, 8), (1, 3, 8, 8), (4, 3, 8, 8))}


def _conv(dtype: str = "float", batch: str = "N") -> ir.Model:
    model = model_from_text(f"""
    <ir_version: 9, opset_import: ["" : 17]>
    g ({dtype}[{batch},3,8,8] x, {dtype}[4,3,3,3] w) => ({dtype}[{batch},4,6,6] y) {{
      y = Conv(x, w)
    }}""")
    return inputs_to_random_initializers(model, ["w"])


def test_operator_tables_carry_their_release_facts():
    old, new = load_table("8.2"), load_table("10.1")
    assert old.opset == (7, 13) and new.opset == (9, 20)
    assert "release/8.2-GA" in old.source and "10.1-GA" in new.source
    assert "LayerNormalization" in new.supported() and "LayerNormalization" not in old.supported()
    assert "HardSwish" in new.supported() and "Reciprocal" not in old.supported()
    assert not new.ops["QLinearConv"]["supported"]
    with pytest.raises(TargetError, match="no onnx-tensorrt operator table"):
        load_table("7.0")


def test_restrictions_of_the_release_are_checked_node_by_node():
    pool_1d = model_from_text("""
    <ir_version: 9, opset_import: ["" : 17]>
    g (float[1,3,8] x, float[4,3,3] w) => (float[1,4,3] y) {
      c = Conv(x, w)
      y = MaxPool<kernel_shape=[2], strides=[2]>(c)
    }""")
    ir.passes.common.ShapeInferencePass()(pool_1d)
    checks = {c.name: c for c in table_checks(pool_1d, load_table("10.1"))}
    restrictions = checks["operator restrictions"]
    assert restrictions.status == "fail" and "only 2-D/3-D" in restrictions.detail
    assert "MaxPool" in restrictions.detail and "Conv" not in restrictions.detail
    # TensorRT 8.2 also needs a constant Conv weight (here a graph input) and 2-D Conv
    old = {c.name: c for c in table_checks(pool_1d, load_table("8.2"))}
    assert "input 1 must be an initializer" in old["operator restrictions"].detail
    fine = {c.name: c for c in table_checks(_conv(), load_table("10.1"))}
    assert fine["operator restrictions"].status == "pass"
    assert fine["operator data types"].status == "pass"


def test_types_outside_the_row_are_reported():
    model = model_from_text("""
    <ir_version: 9, opset_import: ["" : 17]>
    g (double[2,3] x) => (double[2,3] y) { y = Relu(x) }""")
    types = {c.name: c for c in table_checks(model, load_table("10.1"))}["operator data types"]
    assert types.status == "fail" and "DOUBLE" in types.detail


@pytest.mark.parametrize("zero, status", [(0, "pass"), (3, "fail")])
def test_qdq_must_be_symmetric_int8(zero, status):
    model = model_from_text(f"""
    <ir_version: 9, opset_import: ["" : 17]>
    g (float[4] x) => (float[4] y) {{
      s = Constant<value = float {{0.1}}>()
      z = Constant<value = int8 {{{zero}}}>()
      q = QuantizeLinear(x, s, z)
      y = DequantizeLinear(q, s, z)
    }}""")
    assert qdq_rules_check(model, "tensorrt").status == status
    assert qdq_rules_check(_conv(), "tensorrt").status == "skipped"


def test_trtexec_command_follows_release_types_and_profile():
    orin, nano = load_target("jetson"), load_target("jetson-nano")
    fp32 = plan_build(_conv(), orin, "fp16", PROFILE)
    assert not fp32.strongly_typed and fp32.fp16 and not fp32.int8
    args = trtexec_args(fp32)
    assert "--fp16" in args and "--skipInference" in args
    assert "--memPoolSize=workspace:1024" in args
    assert "--minShapes=x:1x3x8x8" in args and "--maxShapes=x:4x3x8x8" in args
    typed = plan_build(_conv("float16"), orin, "fp16", PROFILE)
    assert typed.strongly_typed and "--stronglyTyped" in trtexec_args(typed)
    assert "--fp16" not in trtexec_args(typed)
    old = trtexec_args(plan_build(_conv(), nano, "fp16", PROFILE))
    assert "--fp16" in old and "--workspace=512" in old and "--buildOnly" in old
    assert "--stronglyTyped" not in old
    static = plan_build(_conv(batch="1"), orin, "fp32", {})
    assert static.strongly_typed
    assert not any(a.startswith("--minShapes") for a in trtexec_args(static))
    with pytest.raises(TargetError, match="need an optimization profile"):
        plan_build(_conv(), orin, "fp16", {})


def test_build_script_is_valid_shell_that_finds_trtexec(tmp_path: pathlib.Path):
    plan = plan_build(_conv(), load_target("jetson"), "fp16", PROFILE)
    script = tmp_path / "build_engine.sh"
    script.write_text(build_script(plan, load_target("jetson")))
    assert subprocess.run(["sh", "-n", str(script)]).returncode == 0
    fake = tmp_path / "trtexec"
    fake.write_text('#!/bin/sh\necho "&&&& RUNNING TensorRT.trtexec [TensorRT v100300] # $*"\n')
    fake.chmod(0o755)
    done = subprocess.run(["sh", str(script)], env={"TRTEXEC": str(fake), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "--onnx=model.onnx --saveEngine=model.plan --fp16" in done.stdout
    assert "warning" not in done.stderr
    missing = subprocess.run(["sh", str(script)], env={"TRTEXEC": "/nonexistent", "PATH": "/bin"},
                             capture_output=True, text=True)
    assert missing.returncode == 1 and "trtexec not found" in missing.stderr


def test_emit_writes_model_and_script_and_names_what_remains(tmp_path: pathlib.Path):
    target = load_target("jetson")
    backend = get_backend("tensorrt")
    result = backend.emit(_conv(), target, EmitRequest(tmp_path, "fp16", PROFILE))
    assert {a.path for a in result.artifacts} >= {"model.onnx", "build_engine.sh"}
    assert (tmp_path / "build_engine.sh").stat().st_mode & 0o111
    assert set(backend.planned_files(target, "model.onnx")) >= {a.path for a in result.artifacts}
    assert not result.failed
    if tensorrt_available() is not None:
        assert any("build it on the device with ./build_engine.sh" in g for g in result.gaps)


def test_engine_builds_through_the_tensorrt_python_api(tmp_path: pathlib.Path):
    reason = tensorrt_available()
    if reason is not None:
        pytest.skip(f"TensorRT engine building needs TensorRT and a GPU: {reason}")
    target = load_target("jetson")
    result = get_backend("tensorrt").emit(_conv(), target, EmitRequest(tmp_path, "fp16", PROFILE))
    assert {"model.plan", "timing.cache"} <= {a.path for a in result.artifacts}
    engine = build_engine(tmp_path, plan_build(_conv(), target, "fp16", PROFILE))
    assert engine.stat().st_size > 0 and (tmp_path / "timing.cache").stat().st_size > 0
