import numpy as np
import pytest
from fusion_testlib import assert_rewrites, assert_unchanged, build, clone, op_types, run

from irpass.passes.fusion.fold_batchnorm import FoldBatchNormPass
from irpass.testing import assert_equivalent

BN = ["sc", "bi", "mu", "va"]
BN_DECL = "float[{c}] sc, float[{c}] bi, float[{c}] mu, float[{c}] va"


def conv_bn(group: int, bias: bool, pads: str = "[1,1,1,1]", weight_decl: str = "") -> str:
    b = ", B" if bias else ""
    b_decl = ", float[6] B" if bias else ""
    return f"""
    <ir_version: 8, opset_import: ["" : 13]>
    g (float[1,4,5,5] x, float[6,{4 // group},3,3] W{b_decl}, {BN_DECL.format(c=6)})
      => (float[1,6,5,5] y) {{
      c = Conv<group={group}, pads={pads}>(x, W{b})
      y = BatchNormalization<epsilon=0.001>(c, sc, bi, mu, va)
    }}"""


@pytest.mark.parametrize("group", [1, 2])
@pytest.mark.parametrize("bias", [False, True])
def test_conv_bn_folds_into_conv(group, bias):
    weights = ["W", *BN] + (["B"] if bias else [])
    model = build(conv_bn(group, bias), weights, positive=["va"])
    assert_rewrites(FoldBatchNormPass, model, {"into_producer": 1}, ["Conv"])


@pytest.mark.parametrize("group", [1, 2])
@pytest.mark.parametrize("bias", [False, True])
def test_conv_transpose_bn_folds_with_groups(group, bias):
    b, b_decl = (", B", ", float[6] B") if bias else ("", "")
    text = f"""
    <ir_version: 8, opset_import: ["" : 13]>
    g (float[1,4,5,5] x, float[4,{6 // group},3,3] W{b_decl}, {BN_DECL.format(c=6)})
      => (float[1,6,7,7] y) {{
      c = ConvTranspose<group={group}>(x, W{b})
      y = BatchNormalization(c, sc, bi, mu, va)
    }}"""
    model = build(text, ["W", *BN] + (["B"] if bias else []), positive=["va"])
    assert_rewrites(FoldBatchNormPass, model, {"into_producer": 1}, ["ConvTranspose"])


@pytest.mark.parametrize("trans_b", [0, 1])
@pytest.mark.parametrize("with_c", [False, True])
def test_gemm_bn_folds_honouring_transb_and_beta(trans_b, with_c):
    w_shape = "[5,3]" if trans_b else "[3,5]"
    c, c_decl = (", C", ", float[5] C") if with_c else ("", "")
    text = f"""
    <ir_version: 8, opset_import: ["" : 13]>
    g (float[2,3] x, float{w_shape} W{c_decl}, {BN_DECL.format(c=5)}) => (float[2,5] y) {{
      h = Gemm<transB={trans_b}, alpha=0.5, beta=2.0>(x, W{c})
      y = BatchNormalization(h, sc, bi, mu, va)
    }}"""
    model = build(text, ["W", *BN] + (["C"] if with_c else []), positive=["va"])
    assert_rewrites(FoldBatchNormPass, model, {"into_producer": 1}, ["Gemm"])


def test_matmul_bn_becomes_matmul_add():
    text = f"""
    <ir_version: 8, opset_import: ["" : 13]>
    g (float[2,3] x, float[3,5] W, {BN_DECL.format(c=5)}) => (float[2,5] y) {{
      h = MatMul(x, W)
      y = BatchNormalization(h, sc, bi, mu, va)
    }}"""
    model = build(text, ["W", *BN], positive=["va"])
    assert_rewrites(FoldBatchNormPass, model, {"into_producer": 1}, ["MatMul", "Add"])


def test_bn_before_unpadded_conv_folds_into_it():
    text = f"""
    <ir_version: 8, opset_import: ["" : 13]>
    g (float[1,4,5,5] x, float[6,2,3,3] W, float[6] B, {BN_DECL.format(c=4)})
      => (float[1,6,3,3] y) {{
      n = BatchNormalization(x, sc, bi, mu, va)
      y = Conv<group=2>(n, W, B)
    }}"""
    model = build(text, ["W", "B", *BN], positive=["va"])
    assert_rewrites(FoldBatchNormPass, model, {"into_consumer": 1}, ["Conv"])


def test_bn_before_padded_conv_becomes_mul_add():
    text = f"""
    <ir_version: 8, opset_import: ["" : 13]>
    g (float[1,4,5,5] x, float[6,4,3,3] W, {BN_DECL.format(c=4)}) => (float[1,6,5,5] y) {{
      n = BatchNormalization(x, sc, bi, mu, va)
      y = Conv<pads=[1,1,1,1]>(n, W)
    }}"""
    model = build(text, ["W", *BN], positive=["va"])
    assert_rewrites(FoldBatchNormPass, model, {"to_mul_add": 1}, ["Mul", "Add", "Conv"])


@pytest.mark.parametrize("trans_b", [0, 1])
def test_bn_before_gemm_folds_into_it(trans_b):
    w_shape = "[5,3]" if trans_b else "[3,5]"
    text = f"""
    <ir_version: 8, opset_import: ["" : 13]>
    g (float[2,3] x, float{w_shape} W, float[5] C, {BN_DECL.format(c=3)}) => (float[2,5] y) {{
      n = BatchNormalization(x, sc, bi, mu, va)
      y = Gemm<transB={trans_b}, alpha=1.5, beta=0.5>(n, W, C)
    }}"""
    model = build(text, ["W", "C", *BN], positive=["va"])
    assert_rewrites(FoldBatchNormPass, model, {"into_consumer": 1}, ["Gemm"])


LONE_BN = f"""
    <ir_version: 8, opset_import: ["" : 13]>
    g (float[2,4,3,3] x, {BN_DECL.format(c=4)}) => (float[2,4,3,3] y) {{
      r = Relu(x)
      y = BatchNormalization(r, sc, bi, mu, va)
    }}"""


def test_lone_bn_becomes_per_channel_mul_add_when_asked():
    model = build(LONE_BN, BN, positive=["va"])
    assert_rewrites(
        FoldBatchNormPass, model, {"to_mul_add": 1}, ["Relu", "Mul", "Add"], lone="mul_add"
    )


def test_lone_bn_nothing_can_absorb_is_kept_by_default():
    # Mul+Add would be two elementwise passes where BN is one
    assert_unchanged(FoldBatchNormPass, build(LONE_BN, BN, positive=["va"]))


def test_lone_bn_option_keep_leaves_bn_before_padded_conv():
    text = f"""
    <ir_version: 8, opset_import: ["" : 13]>
    g (float[1,4,5,5] x, float[6,4,3,3] W, {BN_DECL.format(c=4)}) => (float[1,6,5,5] y) {{
      n = BatchNormalization(x, sc, bi, mu, va)
      y = Conv<pads=[1,1,1,1]>(n, W)
    }}"""
    model = build(text, ["W", *BN], positive=["va"])
    assert_unchanged(FoldBatchNormPass, model, lone="keep")


def test_conv_weight_graph_input_is_not_folded():
    # the BN still goes (no BN is left after a linear op): runtimes fuse Conv+Mul+Add
    model = build(conv_bn(1, False), BN, positive=["va"])
    reference = clone(model)
    _modified, p = run(FoldBatchNormPass, model)
    assert dict(p.stats) == {"to_mul_add": 1}
    assert op_types(model) == ["Conv", "Mul", "Add"]
    assert_equivalent(reference, model)


def test_weight_shared_with_a_plain_conv_is_not_folded():
    text = f"""
    <ir_version: 8, opset_import: ["" : 13]>
    g (float[1,4,5,5] x, float[6,4,3,3] W, {BN_DECL.format(c=6)})
      => (float[1,6,3,3] y, float[1,6,3,3] z) {{
      c = Conv(x, W)
      y = BatchNormalization(c, sc, bi, mu, va)
      z = Conv(x, W)
    }}"""
    model = build(text, ["W", *BN], positive=["va"])
    reference = clone(model)
    _modified, p = run(FoldBatchNormPass, model)
    assert "into_producer" not in p.stats
    convs = [n for n in model.graph if n.op_type == "Conv"]
    assert all(n.inputs[1] is model.graph.initializers["W"] for n in convs)
    assert_equivalent(reference, model)


def test_weight_shared_only_by_conv_bn_pairs_is_folded_per_user():
    text = f"""
    <ir_version: 8, opset_import: ["" : 13]>
    g (float[1,4,5,5] x, float[6,4,3,3] W, {BN_DECL.format(c=6)}, float[6] s2)
      => (float[1,6,3,3] y, float[1,6,3,3] z) {{
      c = Conv(x, W)
      y = BatchNormalization(c, sc, bi, mu, va)
      d = Conv(x, W)
      z = BatchNormalization(d, s2, bi, mu, va)
    }}"""
    model = build(text, ["W", *BN, "s2"], positive=["va"])
    shared = model.graph.initializers["W"].const_value
    assert_rewrites(FoldBatchNormPass, model, {"into_producer": 2}, ["Conv", "Conv"])
    weights = [v for v in model.graph.initializers.values() if len(v.shape or ()) == 4]
    assert len(weights) == 2 and all(v.const_value is not shared for v in weights)


def test_folding_replaces_weights_instead_of_accumulating_them():
    # Conv -> BN -> Mul: the BN fold and the following scale fold both rewrite W and B. The
    # folded weights must replace the originals (same names, same count, same bytes), not pile
    # up as W_into_producer, W_into_producer_after, ... with the old ones left unused.
    from irpass.passes.fusion.fold_channel_affine import FoldChannelAffinePass

    text = f"""
    <ir_version: 8, opset_import: ["" : 13]>
    g (float[1,4,5,5] x, float[6,4,3,3] W, float[6] B, {BN_DECL.format(c=6)}, float[6,1,1] k,
       float[6,1,1] m) => (float[1,6,3,3] y) {{
      c = Conv(x, W, B)
      n = BatchNormalization(c, sc, bi, mu, va)
      s = Mul(n, k)
      y = Add(s, m)
    }}"""
    model = build(text, ["W", "B", *BN, "k", "m"], positive=["va"])
    reference = clone(model)
    bytes_before = sum(v.const_value.nbytes for v in model.graph.initializers.values())
    FoldBatchNormPass()(model)
    FoldChannelAffinePass()(model)
    assert op_types(model) == ["Conv"]
    assert sorted(model.graph.initializers) == ["B", "W"]
    assert all(v.uses() for v in model.graph.initializers.values())
    bytes_after = sum(v.const_value.nbytes for v in model.graph.initializers.values())
    assert bytes_after < bytes_before
    assert_equivalent(reference, model)


def test_training_mode_bn_is_left_alone():
    text = f"""
    <ir_version: 8, opset_import: ["" : 15]>
    g (float[1,6,5,5] x, float[6,6,1,1] W, {BN_DECL.format(c=6)}) => (float[1,6,5,5] y) {{
      c = Conv(x, W)
      y = BatchNormalization<training_mode=1>(c, sc, bi, mu, va)
    }}"""
    assert_unchanged(FoldBatchNormPass, build(text, ["W", *BN], positive=["va"]))


def test_non_constant_bn_parameters_are_left_alone():
    model = build(conv_bn(1, True), ["W", "B", "sc", "bi", "mu"])
    assert_unchanged(FoldBatchNormPass, model)


def test_bn_inside_if_branch_is_folded():
    text = """
    <ir_version: 8, opset_import: ["" : 13]>
    g (bool cond, float[1,2,4,4] x) => (float[1,2,4,4] y) {
      y = If(cond) <
        then_branch = t () => (float[1,2,4,4] a) {
          w = Constant<value = float[2,2,1,1] {1.0, 2.0, 3.0, 4.0}>()
          s = Constant<value = float[2] {2.0, 0.5}>()
          b = Constant<value = float[2] {0.1, -0.2}>()
          m = Constant<value = float[2] {0.3, 0.4}>()
          v = Constant<value = float[2] {1.5, 0.25}>()
          c = Conv(x, w)
          a = BatchNormalization(c, s, b, m, v)
        },
        else_branch = e () => (float[1,2,4,4] a2) { a2 = Relu(x) }
      >
    }"""
    model = build(text)
    reference = clone(model)
    modified, p = run(FoldBatchNormPass, model)
    assert modified and p.stats["into_producer"] == 1
    branch = model.graph.node(0).attributes["then_branch"].as_graph()
    assert "BatchNormalization" not in [n.op_type for n in branch]
    x = np.random.default_rng(0).standard_normal((1, 2, 4, 4)).astype(np.float32)
    feeds = {"cond": np.array(True), "x": x}
    assert_equivalent(reference, model, feeds=feeds)
