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
