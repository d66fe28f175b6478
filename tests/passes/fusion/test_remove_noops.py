import pytest
from fusion_testlib import assert_rewrites, assert_unchanged, build, clone, op_types, run

from irpass.passes.fusion.remove_noops import RemoveNoOpsPass
from irpass.testing import assert_equivalent


@pytest.mark.parametrize(
    "expr, consts",
    [
        ("Mul(r, one)", "float[1,4] one = {1,1,1,1}"),
        ("Mul(one, r)", "float one = {1}"),
        ("Div(r, one)", "float[4] one = {1,1,1,1}"),
        ("Add(r, zero)", "float[1] zero = {0}"),
        ("Add(zero, r)", "float zero = {0}"),
        ("Sub(r, zero)", "float[3,1] zero = {0,0,0}"),
        ("Cast<to=1>(r)", "float unused = {0}"),
        ("Expand(r, shape)", "int64[2] shape = {3, 1}"),
        ("Reshape(r, shape)", "int64[2] shape = {0, -1}"),
    ],
)
def test_provable_noop_is_removed(expr, consts):
    text = f"""
    <ir_version: 8, opset_import: ["" : 13]>
    g (float[3,4] x) => (float[3,4] y) <{consts}> {{
      r = Relu(x)
      n = {expr}
      y = Neg(n)
    }}"""
    model = build(text, infer_shapes=True)
    reference = clone(model)
    modified, instance = run(RemoveNoOpsPass, model)
    assert modified and sum(instance.stats.values()) == 1
    assert op_types(model) == ["Relu", "Neg"]
    assert_equivalent(reference, model)


def test_noop_on_graph_output_keeps_an_identity():
    text = """
    <ir_version: 8, opset_import: ["" : 13]>
    g (float[3,4] x) => (float[3,4] y) <float one = {1}> {
      y = Mul(x, one)
    }"""
    model = build(text)
    assert_rewrites(RemoveNoOpsPass, model, {"arith_noop": 1}, ["Identity"])
    assert [v.name for v in model.graph.outputs] == ["y"]


@pytest.mark.parametrize(
    "x_type, expr, consts, y_type",
    [
        ("float[3,4]", "Mul(x, one)", "float[2,1,1] one = {1,1}", "float"),
        ("float[3,1]", "Add(x, zero)", "float[4] zero = {0,0,0,0}", "float"),
        ("float[3,4]", "Mul(x, two)", "float two = {2}", "float"),
        ("float[3,4]", "Cast<to=10>(x)", "float unused = {0}", "float16"),
        ("float[3,1]", "Expand(x, shape)", "int64[2] shape = {3, 4}", "float"),
        ("float[3,4]", "Reshape(x, shape)", "int64[2] shape = {4, 3}", "float"),
    ],
)
def test_operations_that_change_shape_or_value_are_kept(x_type, expr, consts, y_type):
    text = f"""
    <ir_version: 8, opset_import: ["" : 13]>
    g ({x_type} x) => ({y_type}[A,B,C] y) <{consts}> {{
      y = {expr}
    }}"""
    assert_unchanged(RemoveNoOpsPass, build(text, infer_shapes=True))


def test_unknown_rank_operand_is_kept():
    text = """
    <ir_version: 8, opset_import: ["" : 13]>
    g (float[3,4] x) => (float[3,4] y) <float[1,1] one = {1}> {
      r = Relu(x)
      n = Mul(r, one)
      y = Neg(n)
    }"""
    assert_unchanged(RemoveNoOpsPass, build(text))
