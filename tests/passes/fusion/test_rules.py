"""Fusion rules as plain onnxscript rules: no irpass pass, wrapper or manager around them."""

import onnx
import onnx_ir as ir
import onnxscript.rewriter
import pytest
from fusion_testlib import build, clone, op_types
from onnxscript.rewriter import pattern as orp

from irpass import registry
from irpass.passes.fusion._rules import FusionRule, RuleSetPass
from irpass.passes.fusion.decompose_ops import DECOMPOSABLE, DecomposeOpsPass
from irpass.passes.fusion.fold_batchnorm import FoldBatchNormIntoConv
from irpass.testing import assert_equivalent

BN = ["sc", "bi", "mu", "va"]

TWO_CONV_BN = """
<ir_version: 8, opset_import: ["" : 13]>
g (float[1,3,6,6] x, float[4,3,3,3] W1, float[4] sc1, float[4] bi1, float[4] mu1, float[4] va1,
   float[2,4,1,1] W2, float[2] sc2, float[2] bi2, float[2] mu2, float[2] va2)
  => (float[1,2,4,4] y) {
  c1 = Conv(x, W1)
  n1 = BatchNormalization(c1, sc1, bi1, mu1, va1)
  c2 = Conv(n1, W2)
  y = BatchNormalization(c2, sc2, bi2, mu2, va2)
}"""
TWO_WEIGHTS = [f"{n}{k}" for k in (1, 2) for n in ("W", "sc", "bi", "mu", "va")]

# one graph with something for most fusion passes to do
MIXED = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[2,3,6,6] x, float[4,3,3,3] W, float[4] sc, float[4] bi, float[4] mu, float[4] va,
   float[4,1,1] k, float[144,5] M, float[5] c) => (float[2,5] y) {
  pads = Constant<value = int64[8] {0,0,1,1,0,0,1,1}>()
  one = Constant<value = float {1.0}>()
  shape = Constant<value = int64[2] {2, 144}>()
  p = Pad<mode="constant">(x, pads)
  h = Conv(p, W)
  n = BatchNormalization(h, sc, bi, mu, va)
  s = Mul(n, k)
  s1 = Mul(s, one)
  t = Transpose<perm=[0,2,3,1]>(s1)
  t2 = Transpose<perm=[0,3,1,2]>(t)
  r = Reshape(t2, shape)
  mm = MatMul(r, M)
  y = Add(mm, c)
}"""
MIXED_WEIGHTS = ["W", *BN, "k", "M", "c"]


def _fusion_passes() -> list[type[RuleSetPass]]:
    return [p for p in registry.list_passes() if issubclass(p, RuleSetPass)]


def _with_rules(pass_cls: type[RuleSetPass]) -> RuleSetPass:
    """An instance with every rule enabled (decompose_ops has none by default)."""
    if pass_cls is DecomposeOpsPass:
        return DecomposeOpsPass(DecomposeOpsPass.Options(decompose=DECOMPOSABLE))
    return pass_cls()


def test_a_rule_class_is_a_plain_onnxscript_rule() -> None:
    # onnxscript's own way to build a rule from a class: Rule.rule(); no irpass code runs it
    model = build(TWO_CONV_BN, TWO_WEIGHTS, positive=["va1", "va2"])
    reference = clone(model)
    proto = onnxscript.rewriter.rewrite(
        ir.to_proto(model), pattern_rewrite_rules=[FoldBatchNormIntoConv.rule()]
    )
    assert [n.op_type for n in proto.graph.node] == ["Conv", "Conv"]
    onnx.checker.check_model(proto)
    assert_equivalent(reference, proto)


@pytest.mark.parametrize("pass_cls", _fusion_passes(), ids=lambda p: p.name)
def test_every_fusion_rule_set_runs_in_onnxscripts_rewriter(pass_cls: type[RuleSetPass]) -> None:
    model = build(MIXED, MIXED_WEIGHTS, positive=["va"], infer_shapes=True)
    reference = clone(model)
    rules = _with_rules(pass_cls).rule_set()
    assert isinstance(rules, orp.RewriteRuleSet)
    onnxscript.rewriter.RewritePass(rules)(model)
    ir.passes.common.RemoveUnusedNodesPass()(model)
    assert_equivalent(reference, model)


def test_the_rule_sets_together_fuse_what_the_passes_fuse() -> None:
    model = build(MIXED, MIXED_WEIGHTS, positive=["va"], infer_shapes=True)
    reference = clone(model)
    fusion = [p for p in _fusion_passes() if p is not DecomposeOpsPass]
    rules = [r for p in fusion for r in p().rule_set().rules]
    for _ in range(4):  # a flat rule set has no fixpoint of its own
        onnxscript.rewriter.RewritePass(orp.RewriteRuleSet(rules))(model)
    ir.passes.common.RemoveUnusedNodesPass()(model)
    # Pad, BN, Mul by k and both Transposes folded away, MatMul+Add became Gemm; x*1 left an
    # Identity (the pass splices those out, a flat rule set cannot) and the Reshape its shape
    assert op_types(model) == ["Constant", "Conv", "Identity", "Reshape", "Gemm"]
    assert_equivalent(reference, model)


def test_rules_keep_no_state_between_matches() -> None:
    # two folds of different channel counts through one rule instance: a rewrite that used
    # data stashed by another match's check would produce wrong weights or shapes
    model = build(TWO_CONV_BN, TWO_WEIGHTS, positive=["va1", "va2"])
    reference = clone(model)
    rule = FoldBatchNormIntoConv()
    rewrite_rule = rule.rewrite_rule()
    state = dict(vars(rule))
    assert orp.RewriteRuleSet([rewrite_rule]).apply_to_model(model) == 2
    assert {k: v for k, v in vars(rule).items() if k != "_compiled_pattern"} == {
        k: v for k, v in state.items() if k != "_compiled_pattern"
    }
    assert op_types(model) == ["Conv", "Conv"]
    assert_equivalent(reference, model)


def test_new_initializers_get_names_unique_in_their_graph() -> None:
    text = """
    <ir_version: 8, opset_import: ["" : 13]>
    g (float[1,4,5,5] x, float[6,4,3,3] W, float[6] sc, float[6] bi, float[6] mu, float[6] va,
       float[2] W_into_producer) => (float[1,6,3,3] y, float[2] z) {
      c = Conv(x, W)
      y = BatchNormalization(c, sc, bi, mu, va)
      z = Identity(W_into_producer)
    }"""
    model = build(text, ["W", *BN, "W_into_producer"], positive=["va"])
    reference = clone(model)
    onnxscript.rewriter.RewritePass(orp.RewriteRuleSet([FoldBatchNormIntoConv.rule()]))(model)
    conv = model.graph.node(0)
    assert conv.op_type == "Conv"
    assert conv.inputs[1].name == "W_into_producer_1"
    assert model.graph.initializers["W_into_producer"].const_value.shape == (2,)
    assert_equivalent(reference, model)


def test_rules_that_add_initializers_refuse_inside_model_local_functions() -> None:
    # functions have no initializers; onnxscript would drop such a rewrite silently
    text = """
    <ir_version: 8, opset_import: ["" : 13, "local" : 1]>
    g (float[1,2,4,4] x) => (float[1,2,4,4] y) { y = local.convbn(x) }
    <domain: "local", opset_import: ["" : 13]>
    convbn (x) => (a) {
      w = Constant<value = float[2,2,1,1] {1.0, 2.0, 3.0, 4.0}>()
      s = Constant<value = float[2] {2.0, 0.5}>()
      b = Constant<value = float[2] {0.1, -0.2}>()
      m = Constant<value = float[2] {0.3, 0.4}>()
      v = Constant<value = float[2] {1.5, 0.25}>()
      c = Conv(x, w)
      a = BatchNormalization(c, s, b, m, v)
    }"""
    model = ir.from_proto(onnx.parser.parse_model(text))
    (function,) = model.functions.values()
    tracer = orp.MatchingTracer()
    rules = orp.RewriteRuleSet([FoldBatchNormIntoConv.rule()])
    assert rules.apply_to_model(model) == 0
    # (onnxscript's constant propagation annotates the function's value types; nothing else)
    assert [n.op_type for n in function][-2:] == ["Conv", "BatchNormalization"]
    assert not model.graph.initializers
    rules.apply_to_model(model, tracer=tracer)
    reasons = [m.match_result.reason for ms in tracer.best_matches_map.values() for m in ms]
    assert any("model-local function" in r for r in reasons), reasons


def test_rule_variants_apply_only_at_their_opsets() -> None:
    text = """
    <ir_version: 8, opset_import: ["" : {opset}]>
    g (float[2,3] x) => (float[2,3] y) {{ y = HardSigmoid<alpha=0.25>(x) }}"""
    for opset, clip_inputs in ((10, 0), (13, 2)):
        model = build(text.format(opset=opset))
        reference = clone(model)
        rules = DecomposeOpsPass(DecomposeOpsPass.Options(decompose=("HardSigmoid",))).rule_set()
        assert rules.apply_to_model(model) == 1
        clip = next(n for n in model.graph if n.op_type == "Clip")
        assert len([v for v in clip.inputs if v is not None]) == 1 + clip_inputs
        assert_equivalent(reference, model)


def test_a_rule_refuses_models_outside_its_opsets() -> None:
    class NeedsOpset99(FusionRule):
        """Relu(x) -> x (a test rule gated on a future opset)."""

        min_opset = 99

        def pattern(self, op, x):
            return op.Relu(x)

        def rewrite(self, op, x, **_):
            return op.Identity(x)

    model = build('<ir_version: 8, opset_import: ["" : 17]> g (float[2] x) => (float[2] y) '
                  "{ y = Relu(x) }")
    assert orp.RewriteRuleSet([NeedsOpset99().rewrite_rule()]).apply_to_model(model) == 0
    assert op_types(model) == ["Relu"]


def test_a_pass_without_rules_says_so() -> None:
    with pytest.raises(ValueError, match="decompose_ops has no rules"):
        DecomposeOpsPass().rule_set()
