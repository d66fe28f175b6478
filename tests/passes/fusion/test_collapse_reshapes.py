import pytest
from fusion_testlib import assert_rewrites, assert_unchanged, build

from irpass.passes.fusion.collapse_reshapes import CollapseReshapesPass


@pytest.mark.parametrize(
    "first",
    [
        "Reshape(x, s1)",
        "Flatten<axis=2>(x)",
        "Unsqueeze(x, ax)",
        "Squeeze(x, ax0)",
    ],
)
def test_chain_into_constant_reshape_collapses(first):
    text = f"""
    <ir_version: 8, opset_import: ["" : 13]>
    g (float[1,2,3,4] x) => (float[6,4] y) <int64[3] s1 = {{2, 3, 4}}, int64[1] ax = {{0}},
                                              int64[1] ax0 = {{0}}, int64[2] s2 = {{-1, 4}}> {{
      t = {first}
      y = Reshape(t, s2)
    }}"""
    assert_rewrites(CollapseReshapesPass, build(text), {"into_reshape": 1}, ["Reshape"])


def test_chain_with_static_output_becomes_one_reshape():
    text = """
    <ir_version: 8, opset_import: ["" : 13]>
    g (float[1,2,3,4] x) => (float[6,4,1] y) <int64[1] ax = {2}> {
      t = Flatten<axis=3>(x)
      y = Unsqueeze(t, ax)
    }"""
    model = build(text, infer_shapes=True)
    assert_rewrites(CollapseReshapesPass, model, {"to_static_reshape": 1}, ["Reshape"])


def test_copy_zero_target_and_unknown_shapes_are_left_alone():
    text = """
    <ir_version: 8, opset_import: ["" : 13]>
    g (float[1,2,3,4] x) => (float[A,B] y) <int64[2] s1 = {2, 12}, int64[2] s2 = {0, -1}> {
      t = Reshape(x, s1)
      y = Reshape(t, s2)
    }"""
    assert_unchanged(CollapseReshapesPass, build(text))
    dynamic = """
    <ir_version: 8, opset_import: ["" : 13]>
    g (float[N,2,3] x) => (float[N,6,1] y) <int64[1] ax = {2}> {
      t = Flatten<axis=1>(x)
      y = Unsqueeze(t, ax)
    }"""
    assert_unchanged(CollapseReshapesPass, build(dynamic, infer_shapes=True))


def test_intermediate_with_other_users_is_left_alone():
    text = """
    <ir_version: 8, opset_import: ["" : 13]>
    g (float[1,2,3,4] x) => (float[6,4] y, float[2,3,4] t)
      <int64[3] s1 = {2, 3, 4}, int64[2] s2 = {6, 4}> {
      t = Reshape(x, s1)
      y = Reshape(t, s2)
    }"""
    assert_unchanged(CollapseReshapesPass, build(text))


def test_new_target_shape_beside_shared_axes_is_explained_growth():
    # the chain's axes constant is shared with another Unsqueeze, so it stays: the new target
    # shape grows the weights (ONNX case test_group_normalization_example_expanded)
    text = """
    <ir_version: 8, opset_import: ["" : 13]>
    g (float[1,2,3,4] x, float[5] z) => (float[6,4] y, float[1,5] w) <int64[1] ax = {0}> {
      t = Flatten<axis=3>(x)
      u = Unsqueeze(t, ax)
      y = Squeeze(u, ax)
      w = Unsqueeze(z, ax)
    }"""
    model = build(text, infer_shapes=True)
    pass_ = CollapseReshapesPass()
    assert pass_(model).modified is True
    assert "ax" in model.graph.initializers
    assert pass_.growth_reasons == [CollapseReshapesPass.growth_reason]
