from __future__ import annotations

import ml_dtypes
import numpy as np
import onnx_ir as ir
import pytest

from irpass.passes.canonicalize.fold_constants import FoldConstantsPass, weight_bound_values
from irpass.testing import assert_equivalent, assert_unchanged, model_from_text, run_ir, serialized
from irpass.verify import check_structure

WEIGHT_FROM_SHAPE = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[1,3,8,8] x) => (float[1,4,8,8] y)
  <int64[4] w_shape = {4,3,3,3}, int64[1] b_shape = {4}>
{
  w = ConstantOfShape <value = float[1] {0.02}> (w_shape)
  b = ConstantOfShape <value = float[1] {0.5}> (b_shape)
  y = Conv <pads = [1,1,1,1]> (x, w, b)
}
"""

# A 4x512x256 float (2 MiB) constant that only feeds an Add: not a weight.
LARGE_EXPAND = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[4,512,256] x) => (float[4,512,256] y)
  <float[1] one = {1.0}, int64[3] shape = {4,512,256}>
{
  big = Expand (one, shape)
  y = Add (x, big)
}
"""

NOTHING_CONSTANT = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[2,3] x) => (float[2,3] y) {
  r = Relu (x)
  y = Add (r, x)
}
"""

QDQ_WEIGHT = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[2,4] x) => (float[2,3] y)
  <int8[4,3] wq = {1,2,3,4,5,6,7,8,9,10,11,12}, float scale = {0.1}, int8 zp = {0}>
{
  w = DequantizeLinear (wq, scale, zp)
  y = MatMul (x, w)
}
"""

CUSTOM_DOMAIN = """
<ir_version: 8, opset_import: ["" : 17, "com.example" : 1]>
g (float[2] x) => (float[2] y) <float[2] k = {1.0, 2.0}> {
  c = com.example.Magic (k)
  y = Add (x, c)
}
"""

IF_WITH_CONSTANTS = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[2] x, bool c) => (float[2] y) {
  y = If (c) <then_branch = then_g () => (float[2] t_out) {
        k = Constant <value = float[2] {1.0, 2.0}> ()
        k2 = Add (k, k)
        t_out = Add (x, k2)
     }, else_branch = else_g () => (float[2] e_out) {
        e_out = Relu (x)
     }>
}
"""


def _ops(model: ir.Model) -> list[str]:
    return [n.op_type for n in model.graph]


def test_weights_built_by_constant_of_shape_become_initializers() -> None:
    model = model_from_text(WEIGHT_FROM_SHAPE)
    reference = model_from_text(WEIGHT_FROM_SHAPE)
    pass_ = FoldConstantsPass()
    result = pass_(model)
    assert result.modified is True
    assert _ops(model) == ["Conv"]
    conv = next(iter(model.graph))
    assert conv.inputs[1].is_initializer() and conv.inputs[2].is_initializer()
    assert conv.inputs[1].const_value.shape == (4, 3, 3, 3)
    assert pass_.stats["weights_folded"] == 2
    assert_equivalent(reference, model)


@pytest.mark.parametrize("max_output_bytes", [0, 1024])
def test_weights_are_folded_whatever_the_size_limit(max_output_bytes: int) -> None:
    model = model_from_text(WEIGHT_FROM_SHAPE)
    options = FoldConstantsPass.Options(max_output_bytes=max_output_bytes)
    assert FoldConstantsPass(options)(model).modified is True
    assert _ops(model) == ["Conv"]


def test_fold_weights_false_leaves_weights_that_grow_the_model_alone() -> None:
    # w (432 bytes from a 32-byte shape) would grow the model; b (16 bytes) is smaller than the
    # node it replaces
    model = model_from_text(WEIGHT_FROM_SHAPE)
    options = FoldConstantsPass.Options(max_output_bytes=0, fold_weights=False)
    pass_ = FoldConstantsPass(options)
    assert pass_(model).modified is True
    assert _ops(model) == ["ConstantOfShape", "Conv"]
    assert pass_.stats["kept_large"] == 1
    assert not pass_.growth_reasons or "materialized" not in pass_.growth_reasons[0]


LARGE_TILE = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[4,512,256] x) => (float[4,512,256] y)
  <float[1,1,1] one = {1.0}, int64[3] reps = {4,512,256}>
{
  big = Tile (one, reps)
  y = Add (x, big)
}
"""

LARGE_CONSTANT_OF_SHAPE = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[4,512,256] x) => (float[4,512,256] y) <int64[3] shape = {4,512,256}> {
  big = ConstantOfShape <value = float[1] {1.0}> (shape)
  y = Add (x, big)
}
"""


@pytest.mark.parametrize(
    "text,op",
    [(LARGE_EXPAND, "Expand"), (LARGE_TILE, "Tile"), (LARGE_CONSTANT_OF_SHAPE, "ConstantOfShape")],
)
def test_large_non_weight_constant_is_kept(text: str, op: str) -> None:
    model = model_from_text(text)
    pass_ = FoldConstantsPass()
    before = serialized(model)
    assert pass_(model).modified is False
    assert_unchanged(before, model)
    assert _ops(model) == [op, "Add"]
    assert pass_.stats["kept_large"] == 1


@pytest.mark.parametrize("text", [LARGE_EXPAND, LARGE_TILE, LARGE_CONSTANT_OF_SHAPE])
def test_large_non_weight_constant_folds_when_the_limit_allows(text: str) -> None:
    model = model_from_text(text)
    reference = model_from_text(text)
    options = FoldConstantsPass.Options(max_output_bytes=4 * 512 * 256 * 4)
    assert FoldConstantsPass(options)(model).modified is True
    assert _ops(model) == ["Add"]
    assert_equivalent(reference, model)


@pytest.mark.parametrize("text", [NOTHING_CONSTANT, QDQ_WEIGHT, CUSTOM_DOMAIN])
def test_nothing_to_fold_leaves_model_unmodified(text: str) -> None:
    model = model_from_text(text)
    before = serialized(model)
    assert FoldConstantsPass()(model).modified is False
    assert_unchanged(before, model)


def test_folds_inside_if_branches() -> None:
    model = model_from_text(IF_WITH_CONSTANTS)
    reference = model_from_text(IF_WITH_CONSTANTS)
    assert FoldConstantsPass()(model).modified is True
    then_branch = next(iter(model.graph)).attributes["then_branch"].as_graph()
    adds = [n for n in then_branch if n.op_type == "Add"]
    assert len(adds) == 1 and adds[0].inputs[1].const_value is not None
    for cond in (True, False):
        feeds = {"x": np.array([1.0, -2.0], np.float32), "c": np.array(cond)}
        assert_equivalent(reference, model, feeds=feeds)


def test_weight_bound_values_follow_constant_chains() -> None:
    model = model_from_text(WEIGHT_FROM_SHAPE)
    names = {v.name for v in weight_bound_values(model)}
    assert {"w", "b", "w_shape", "b_shape"} <= names
    assert "x" not in names


def test_runs_inside_onnx_ir_pass_manager() -> None:
    model = model_from_text(WEIGHT_FROM_SHAPE)
    manager = ir.passes.PassManager([FoldConstantsPass()])
    result = manager(model)
    assert result.modified is True
    assert _ops(result.model) == ["Conv"]


@pytest.mark.parametrize("opset", [11, 13])
def test_resolved_shapes_are_constants_the_opset_accepts(opset: int) -> None:
    # Found by the fuzzer (irpass.fuzz): onnxscript's folder writes a resolved Shape as
    # Constant <value_ints=...>, which the checker rejects below opset 12.
    text = f"""
    <ir_version: 7, opset_import: ["" : {opset}]>
    g (float[2,5] x) => (float[10] y) {{
        s = Shape (x)
        n = ReduceProd <keepdims = 1> (s)
        y = Reshape (x, n)
    }}
    """
    model, reference = model_from_text(text), model_from_text(text)
    assert FoldConstantsPass()(model).modified is True
    constants = [n for n in model.graph if n.op_type == "Constant"]
    if opset < 12:
        assert all(set(n.attributes) == {"value"} for n in constants)
    assert_equivalent(reference, model)  # the ONNX checker runs first


def test_a_failing_evaluator_leaves_its_node_and_folds_the_rest() -> None:
    # onnxscript's SplitToSequence rewrite raises when `split` is a 0-d graph input
    # (ONNX backend case test_split_to_sequence_1); the constant Add must still fold.
    text = """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[3,6] data, int64 split) => (seq(float[3,?]) s, float[2] y) <float[2] a = {1, 2}> {
      s = SplitToSequence <axis = 1> (data, split)
      y = Add (a, a)
    }
    """
    model, reference = model_from_text(text), model_from_text(text)
    pass_ = FoldConstantsPass()
    assert pass_(model).modified is True
    assert [n.op_type for n in model.graph] == ["SplitToSequence"]
    assert pass_.stats["evaluator_failed"] == 1
    check_structure(model)
    feeds = {"data": np.arange(18, dtype=np.float32).reshape(3, 6), "split": np.array(2)}
    expected, actual = run_ir(reference, feeds), run_ir(model, feeds)
    assert [a.tolist() for a in actual["s"]] == [e.tolist() for e in expected["s"]]
    np.testing.assert_array_equal(actual["y"], expected["y"])


def _tied_weights_text() -> str:
    values = ",".join(str(i % 7) for i in range(1024))
    return f"""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2,32] x) => (float[2,32] y, float[2,32] y2, float[2,32] y3)
      <float[32,32] w = {{{values}}}, float[32,32] v = {{{values}}}>
    {{
      wt = Transpose (w)
      y = MatMul (x, w)
      y2 = MatMul (x, wt)
      vt = Transpose (v)
      y3 = MatMul (x, vt)
    }}
    """


def test_a_transposed_copy_of_a_weight_still_used_is_kept_and_a_dying_one_is_folded() -> None:
    # w is read as it is and transposed (tied embeddings): storing wt would add 4 KiB;
    # v is read only by its Transpose, so storing vt replaces it
    text = _tied_weights_text()
    model, reference = model_from_text(text), model_from_text(text)
    pass_ = FoldConstantsPass()
    assert pass_(model).modified is True
    assert _ops(model) == ["Transpose", "MatMul", "MatMul", "MatMul"]
    assert sorted(model.graph.initializers) == ["vt", "w"]
    assert pass_.stats["kept_large"] == 1
    assert pass_.growth_reasons == []
    assert_equivalent(reference, model)


def test_growth_from_materialized_weights_is_reported_with_its_size() -> None:
    model = model_from_text(WEIGHT_FROM_SHAPE)
    pass_ = FoldConstantsPass()
    pass_(model)
    assert pass_.stats["weights_materialized"] == 1
    (reason,) = [r for r in pass_.growth_reasons if "materialized" in r]
    # w: 4*3*3*3 floats from a 32-byte shape; b (16 bytes from 8) fits and says so apart
    assert "materialized 1 weights" in reason and f"+{4 * 27 * 4 - 32} bytes" in reason


CONSTANT_IF = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[2] x) => (float[2] y) <bool c = {1}, float[2] k = {1.0, 2.0}> {
  y = If (c) <then_branch = then_g () => (float[2] t_out) {
        t_out = Relu (x)
     }, else_branch = else_g () => (float[2] e_out) {
        e_out = Add (x, k)
     }>
}
"""


def test_weights_only_a_discarded_if_branch_read_go_with_it() -> None:
    model, reference = model_from_text(CONSTANT_IF), model_from_text(CONSTANT_IF)
    assert FoldConstantsPass()(model).modified is True
    assert _ops(model) == ["Relu"]
    assert list(model.graph.initializers) == []
    assert_equivalent(reference, model, feeds={"x": np.array([1.0, -2.0], np.float32)})


CHANNEL_SCALE_FROM_FILL = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[1,64,4,4] x) => (float[1,64,4,4] y) <int64[1] c = {64}, int64[1] a = {1}> {
  s = ConstantOfShape <value = float[1] {0.5}> (c)
  s3 = Unsqueeze (s, a)
  s4 = Unsqueeze (s3, a)
  y = Mul (x, s4)
}
"""


def test_a_per_channel_scale_built_from_a_fill_is_materialized_as_a_weight() -> None:
    # a Caffe-style Scale layer: fusion folds it into the Conv/BatchNorm before it, so it is a
    # weight although Mul has no weight slot (a 256-byte result from 16 bytes)
    model, reference = (
        model_from_text(CHANNEL_SCALE_FROM_FILL),
        model_from_text(CHANNEL_SCALE_FROM_FILL),
    )
    pass_ = FoldConstantsPass()
    assert pass_(model).modified is True
    assert _ops(model) == ["Mul"]
    assert pass_.stats["weights_materialized"] == 1
    assert_equivalent(reference, model)


def test_constants_the_folder_derives_become_initializers() -> None:
    # Shape of a static tensor folds to a Constant node; it is lifted like any constant, but a
    # Constant that is itself a graph output stays a node.
    text = """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2,3] x) => (float[2] y, int64[2] s) {
      n = Shape (x)
      f = Cast <to = 1> (n)
      y = Add (f, f)
      s = Shape (x)
    }
    """
    model, reference = model_from_text(text), model_from_text(text)
    pass_ = FoldConstantsPass()
    assert pass_(model).modified is True
    assert [n.op_type for n in model.graph] == ["Constant"]
    assert next(iter(model.graph)).outputs[0].name == "s"
    assert model.graph.outputs[0].const_value is not None
    assert pass_.stats["constants_lifted"] >= 1
    assert_equivalent(reference, model)


def test_types_the_folder_infers_count_as_a_change() -> None:
    # The carried value of the Loop body is declared without a type; the folder takes it from
    # the typed Identity that copies it (ONNX case test_range_float16_type_positive_delta_expanded)
    text = """
    <ir_version: 8, opset_import: ["" : 17]>
    g (int64 n, bool c, float[2] x) => (float[2] y, float[?,2] s) {
      y, s = Loop (n, c, x) <body = b (int64 i, bool c_in, prev) => (
          bool c_out, float[2] next, float[2] seen) {
        c_out = Identity (c_in)
        next = Neg (prev)
        seen = Identity (prev)
      }>
    }
    """
    model = model_from_text(text)
    body = next(iter(model.graph)).attributes["body"].as_graph()
    assert body.inputs[2].type is None
    assert FoldConstantsPass()(model).modified is True
    assert body.inputs[2].type is not None
    assert FoldConstantsPass()(model).modified is False


def test_cast_like_with_saturate_keeps_its_attribute() -> None:
    # onnxscript rewrites CastLike into Cast and drops saturate=0 (ONNX backend cases
    # test_castlike_no_saturate_*): 1e6 must stay inf in float8e5m2, not saturate to 57344.
    text = """
    <ir_version: 10, opset_import: ["" : 21]>
    g (float[2] x, float8e5m2[0] like) => (float8e5m2[2] y) {
      y = CastLike <saturate = 0> (x, like)
    }
    """
    model, snapshot = model_from_text(text), serialized(model_from_text(text))
    assert FoldConstantsPass()(model).modified is False
    assert_unchanged(snapshot, model)
    feeds = {"x": np.array([1e6, 1.0], np.float32), "like": np.zeros(0, ml_dtypes.float8_e5m2)}
    y = run_ir(model, feeds)["y"].astype(np.float32)
    assert np.isinf(y[0]) and y[1] == 1.0


def test_cast_like_without_attributes_still_becomes_cast() -> None:
    text = """
    <ir_version: 10, opset_import: ["" : 21]>
    g (float[2] x, float16[0] like) => (float16[2] y) { y = CastLike (x, like) }
    """
    model, reference = model_from_text(text), model_from_text(text)
    assert FoldConstantsPass()(model).modified is True
    assert [n.op_type for n in model.graph] == ["Cast"]
    assert_equivalent(reference, model)
