from fusion_testlib import assert_rewrites, assert_unchanged, build

from irpass.passes.fusion.simplify_transposes import SimplifyTransposesPass


def test_inverse_pair_cancels():
    text = """
    <ir_version: 8, opset_import: ["" : 13]>
    g (float[1,2,3,4] x) => (float[1,2,3,4] y) {
      t = Transpose<perm=[0,2,3,1]>(x)
      u = Transpose<perm=[0,3,1,2]>(t)
      y = Relu(u)
    }"""
    assert_rewrites(SimplifyTransposesPass, build(text), {"merge_transposes": 1}, ["Relu"])


def test_consecutive_transposes_merge():
    text = """
    <ir_version: 8, opset_import: ["" : 13]>
    g (float[1,2,3,4] x) => (float[3,1,4,2] y) {
      t = Transpose<perm=[0,2,3,1]>(x)
      y = Transpose<perm=[1,0,2,3]>(t)
    }"""
    assert_rewrites(SimplifyTransposesPass, build(text), {"merge_transposes": 1}, ["Transpose"])


def test_cancelling_pair_on_graph_output_keeps_the_output_name():
    text = """
    <ir_version: 8, opset_import: ["" : 13]>
    g (float[2,3] x) => (float[2,3] y) {
      t = Transpose(x)
      y = Transpose(t)
    }"""
    model = build(text)
    assert_rewrites(SimplifyTransposesPass, model, {"merge_transposes": 1}, ["Identity"])
    assert model.graph.outputs[0].name == "y" and model.graph.inputs[0].name == "x"


def test_identity_transpose_is_removed():
    text = """
    <ir_version: 8, opset_import: ["" : 13]>
    g (float[2,3] x) => (float[2,3] y) {
      t = Transpose<perm=[0,1]>(x)
      y = Relu(t)
    }"""
    assert_rewrites(SimplifyTransposesPass, build(text), {"identity_transpose": 1}, ["Relu"])


def test_shared_inner_transpose_is_left_alone():
    text = """
    <ir_version: 8, opset_import: ["" : 13]>
    g (float[2,3,4] x) => (float[4,3,2] t, float[2,3,4] y) {
      t = Transpose(x)
      y = Transpose(t)
    }"""
    assert_unchanged(SimplifyTransposesPass, build(text))
