import dataclasses

import pytest
from fusion_testlib import assert_rewrites, assert_unchanged, build

from irpass.context import PassContext
from irpass.errors import PassOptionError
from irpass.passes.fusion.decompose_ops import DecomposeOpsPass
from irpass.pipeline import resolve_options


def model(body: str, opset: int = 20, extra: str = "", weights=()):
    text = f"""
    <ir_version: 9, opset_import: ["" : {opset}]>
    g (float[2,3,8] x{extra}) => (float[2,3,8] y) {{
      {body}
    }}"""
    return build(text, weights)


def test_hardswish_decomposes_into_hardsigmoid_or_clip():
    m = model("y = HardSwish(x)", 14)
    assert_rewrites(DecomposeOpsPass, m, {"HardSwish": 1}, ["HardSigmoid", "Mul"],
                    decompose=("HardSwish",))
    m = model("y = HardSwish(x)", 14)
    assert_rewrites(DecomposeOpsPass, m, {"HardSwish": 1}, ["Mul", "Add", "Clip", "Mul"],
                    decompose=("HardSwish", "HardSigmoid"))


def test_hardsigmoid_before_opset_11_uses_clip_attributes():
    m = model("y = HardSigmoid<alpha=0.3, beta=0.4>(x)", 10)
    assert_rewrites(DecomposeOpsPass, m, {"HardSigmoid": 1}, ["Mul", "Add", "Clip"],
                    decompose=("HardSigmoid",))
    assert "min" in m.graph.node(2).attributes


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_decomposes(approximate):
    m = model(f'y = Gelu<approximate="{approximate}">(x)')
    assert_rewrites(DecomposeOpsPass, m, {"Gelu": 1}, None, decompose=("Gelu",))


@pytest.mark.parametrize("opset, axis", [(17, -1), (18, 1), (20, -2)])
def test_layernorm_decomposes(opset, axis):
    shape = "[8]" if axis == -1 else "[3,8]"
    m = model(f"y = LayerNormalization<axis={axis}>(x, s, b)", opset,
              f", float{shape} s, float{shape} b", ["s", "b"])
    assert_rewrites(DecomposeOpsPass, m, {"LayerNormalization": 1}, None,
                    decompose=("LayerNormalization",))


def test_decompose_then_fuse_round_trips():
    from fusion_testlib import clone, op_types, run

    from irpass.passes.fusion.fuse_activations import FuseActivationsPass
    from irpass.testing import assert_equivalent

    m = model("y = Gelu(x)")
    reference = clone(m)
    run(DecomposeOpsPass, m, decompose=("Gelu",))
    modified, _ = run(FuseActivationsPass, m)
    assert modified and op_types(m) == ["Gelu"]
    assert_equivalent(reference, m)


def test_batchnorm_decomposes_into_mul_add():
    text = """
    <ir_version: 9, opset_import: ["" : 15]>
    g (float[2,3,4] x, float[3] s, float[3] b, float[3] m, float[3] v) => (float[2,3,4] y) {
      y = BatchNormalization(x, s, b, m, v)
    }"""
    from fusion_testlib import build as build_model

    model = build_model(text, ["s", "b", "m", "v"], positive=["v"])
    assert_rewrites(DecomposeOpsPass, model, {"BatchNormalization": 1}, ["Mul", "Add"],
                    decompose=("BatchNormalization",))


def test_target_without_an_op_drives_decomposition():
    @dataclasses.dataclass
    class Target:
        supported_ops: frozenset = frozenset({"Mul", "Clip", "Add"})

    m = model("y = HardSwish(x)", 14)
    p = DecomposeOpsPass(context=PassContext(target=Target()))
    assert p(m).modified
    assert "HardSigmoid" not in [n.op_type for n in m.graph]


def test_nothing_to_decompose_by_default_and_bad_names_are_rejected():
    assert_unchanged(DecomposeOpsPass, model("y = HardSwish(x)", 14))
    with pytest.raises(PassOptionError, match="cannot decompose Softmax"):
        resolve_options("decompose_ops", DecomposeOpsPass.Options, {"decompose": ("Softmax",)})


def test_layernorm_with_used_statistics_is_left_alone():
    text = """
    <ir_version: 9, opset_import: ["" : 17]>
    g (float[2,3,8] x, float[8] s) => (float[2,3,8] y, float[2,3,1] mean) {
      y, mean = LayerNormalization(x, s)
    }"""
    assert_unchanged(DecomposeOpsPass, build(text, ["s"]), decompose=("LayerNormalization",))


def test_sum_becomes_an_add_chain_and_mean_divides_it():
    text = """
    <ir_version: 9, opset_import: ["" : 17]>
    g (float[2,3,8] a, float[2,3,8] b, float[3,8] c) => (float[2,3,8] y, float[2,3,8] z) {
      y = Sum(a, b, c)
      z = Mean(a, b, c)
    }"""
    m = build(text)
    assert_rewrites(DecomposeOpsPass, m, {"Sum": 1, "Mean": 1}, ["Add", "Add", "Add", "Add", "Div"],
                    decompose=("Sum", "Mean"))


def test_single_input_sum_is_an_identity():
    m = model("y = Sum(x)", 17)
    assert_rewrites(DecomposeOpsPass, m, {"Sum": 1}, ["Identity"], decompose=("Sum",))


def test_reciprocal_becomes_a_division():
    m = model("y = Reciprocal(x)", 17)
    assert_rewrites(DecomposeOpsPass, m, {"Reciprocal": 1}, ["Div"], decompose=("Reciprocal",))


@pytest.mark.parametrize("opset", [13, 18])
@pytest.mark.parametrize("keepdims", [0, 1])
def test_reducesum_becomes_a_scaled_mean(opset, keepdims):
    text = f"""
    <ir_version: 9, opset_import: ["" : {opset}]>
    g (float[2,3,8] x) => (float[2] y) {{
      axes = Constant<value = int64[2] {{1, -1}}>()
      y = ReduceSum<keepdims={keepdims}>(x, axes)
    }}"""
    m = build(text)
    assert_rewrites(DecomposeOpsPass, m, {"ReduceSum": 1}, None, decompose=("ReduceSum",))
    assert "ReduceSum" not in [n.op_type for n in m.graph]


def test_reducesum_without_static_dims_or_constant_axes_is_left_alone():
    text = """
    <ir_version: 9, opset_import: ["" : 18]>
    g (float[N,3] x, int64[1] axes, int64[1] k) => (float[N,1] y, float[1,3] z) {
      y = ReduceSum(x, axes)
      z = ReduceSum(x, k)
    }"""
    import numpy as np

    m = build(text, values={"k": np.array([0], np.int64)})
    assert_unchanged(DecomposeOpsPass, m, decompose=("ReduceSum",))


def test_erf_approximation_is_equal_within_float32_tolerance_over_the_real_line():
    import numpy as np

    from irpass.testing import run_ir

    m = model("y = Erf(x)", 17)
    reference = __import__("fusion_testlib").clone(m)
    assert_rewrites(DecomposeOpsPass, m, {"Erf": 1}, None, decompose=("Erf",))
    # the whole range, including 0, tiny, large and infinite inputs
    x = np.concatenate([np.linspace(-6, 6, 44), [0.0, -0.0, 1e-30, -1e-38, 40.0, -np.inf, np.inf]])
    x = np.resize(x.astype(np.float32), (2, 3, 8))
    want = run_ir(reference, {"x": x})["y"]
    got = run_ir(m, {"x": x})["y"]
    assert np.max(np.abs(want - got)) <= 2.5e-7
    assert got[x == 0].tolist() == [0.0] * int((x == 0).sum())


def test_gelu_on_a_target_without_erf_ends_without_erf():
    @dataclasses.dataclass
    class Target:
        supported_ops: frozenset = frozenset({"Mul", "Add", "Div", "Abs", "Exp", "Clip", "Sub"})

    m = model("y = Gelu(x)")
    reference = __import__("fusion_testlib").clone(m)
    p = DecomposeOpsPass(context=PassContext(target=Target()))
    assert p(m).modified
    assert dict(p.stats) == {"Gelu": 1}
    assert {n.op_type for n in m.graph} <= Target.supported_ops
    from irpass.testing import assert_equivalent

    assert_equivalent(reference, m)


def test_float16_erf_is_left_alone():
    text = """
    <ir_version: 9, opset_import: ["" : 17]>
    g (float16[4] x) => (float16[4] y) {
      y = Erf(x)
    }"""
    assert_unchanged(DecomposeOpsPass, build(text), decompose=("Erf",))


@pytest.mark.parametrize("size", [1, 3, 5])  # ONNX Runtime's LRN (the reference) takes odd sizes
def test_lrn_becomes_a_channel_window_pool(size):
    text = f"""
    <ir_version: 9, opset_import: ["" : 13]>
    g (float[2,6,3,4] x) => (float[2,6,3,4] y) {{
      y = LRN<size={size}, alpha=0.8, beta=0.75, bias=1.5>(x)
    }}"""
    assert_rewrites(DecomposeOpsPass, build(text), {"LRN": 1},
                    ["Mul", "Transpose", "AveragePool", "Transpose", "Mul", "Add", "Pow", "Div"],
                    decompose=("LRN",))


def test_lrn_not_of_rank_4_is_left_alone():
    text = """
    <ir_version: 9, opset_import: ["" : 13]>
    g (float[2,6,5] x) => (float[2,6,5] y) {
      y = LRN<size=3>(x)
    }"""
    assert_unchanged(DecomposeOpsPass, build(text), decompose=("LRN",))
