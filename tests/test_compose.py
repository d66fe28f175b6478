"""irpass.build_pipeline: pipeline text as one onnx-ir pass, run without irpass's runner."""

from __future__ import annotations

import logging

import onnx_ir as ir
import onnxscript.optimizer
import onnxscript.rewriter
import pytest

import irpass
from irpass import registry
from irpass.compose import FixpointPass, PipelinePass
from irpass.context import PassContext
from irpass.errors import PassOptionError, PipelineError
from irpass.pass_base import IrpassPass
from irpass.passes.fusion.fold_batchnorm import FoldBatchNormPass
from irpass.testing import (
    assert_equivalent,
    assert_unchanged,
    inputs_to_random_initializers,
    model_from_text,
    serialized,
)

# weights as inputs (turned into initializers), BN statistics as a Constant-fed Identity chain:
# canonicalize must fold the Identity and constants before fuse can fold the BN into the Conv
CONV_BN = """
<ir_version: 8, opset_import: ["" : 13]>
g (float[1, 3, 8, 8] x, float[4, 3, 3, 3] w, float[4] b, float[4] gamma, float[4] beta,
   float[4] mean, float[4] var) => (float[1, 4, 6, 6] y) {
    c = Conv(x, w, b)
    g2 = Identity(gamma)
    n = BatchNormalization(c, g2, beta, mean, var)
    y = Relu(n)
}
"""
WEIGHTS = ("w", "b", "gamma", "beta", "mean", "var")


def _conv_bn() -> ir.Model:
    model = model_from_text(CONV_BN)
    model = inputs_to_random_initializers(model, WEIGHTS, seed=3)
    var = model.graph.initializers["var"].const_value
    assert var is not None
    model.graph.initializers["var"].const_value = ir.tensor(abs(var.numpy()) + 0.5, name="var")
    return model


def test_pipeline_text_runs_in_a_plain_onnx_ir_pass_manager() -> None:
    model = _conv_bn()
    reference = model.clone()
    pipeline = irpass.build_pipeline("canonicalize,fuse")
    assert isinstance(pipeline, ir.passes.PassBase) and pipeline.in_place
    result = ir.passes.PassManager([pipeline])(model)
    assert result.modified and result.model is model
    assert [n.op_type for n in model.graph] == ["Conv", "Relu"]
    assert model.opset_imports[""] == 17  # canonicalize's upgrade_opset ran too
    assert_equivalent(reference, model)
    assert pipeline.stats()["fold_batchnorm"] == {"into_producer": 1}


def test_pipeline_runs_inside_onnxscripts_optimizer_flow() -> None:
    # onnxscript's optimizer is a sequence of onnx-ir passes; irpass's pipeline is one more
    model = _conv_bn()
    reference = model.clone()
    flow = ir.passes.Sequential(
        ir.passes.common.InlinePass(),
        irpass.build_pipeline("canonicalize"),
        onnxscript.rewriter.RewritePass(FoldBatchNormPass().rule_set()),
        ir.passes.common.RemoveUnusedNodesPass(),
    )
    assert flow(model).modified
    assert [n.op_type for n in model.graph] == ["Conv", "Relu"]  # irpass's BN rule folded it
    assert_equivalent(reference, model)
    onnxscript.optimizer.optimize_ir(model)  # and onnxscript's own optimizer accepts the result
    assert [n.op_type for n in model.graph] == ["Conv", "Relu"]
    assert_equivalent(reference, model)


def test_presets_and_fixpoints_become_onnx_ir_passes() -> None:
    pipeline = irpass.build_pipeline("fuse,eliminate_dead", max_fixpoint_iterations=3)
    assert isinstance(pipeline, PipelinePass)
    assert pipeline.text == "fuse,eliminate_dead"
    fixpoint, dead = pipeline.passes
    assert isinstance(fixpoint, FixpointPass) and fixpoint.max_iterations == 3
    assert [p.name for p in fixpoint.body.passes][:3] == ["remove_noops", "fold_pad",
                                                          "fold_batchnorm"]
    assert isinstance(dead, IrpassPass) and dead.name == "eliminate_dead"


class _AddIdentity(IrpassPass):
    """Appends an Identity after the output every time (never converges)."""

    name = "t_compose_add_identity"
    lossless = True

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        graph = model.graph
        old = graph.outputs[0]
        node = ir.node("Identity", [old])
        graph.append(node)
        graph.outputs[0] = node.outputs[0]
        node.outputs[0].name = f"{old.name}_i"
        node.outputs[0].shape, node.outputs[0].type = old.shape, old.type
        return ir.passes.PassResult(model, True)


def test_a_fixpoint_that_never_converges_stops_at_the_bound_and_warns(
    caplog: pytest.LogCaptureFixture,
) -> None:
    model = model_from_text(
        '<ir_version: 8, opset_import: ["" : 17]> g (float[2] x) => (float[2] y) { y = Relu(x) }'
    )
    with registry.registered(_AddIdentity):
        pipeline = irpass.build_pipeline("fixpoint(t_compose_add_identity)",
                                         max_fixpoint_iterations=4)
    with caplog.at_level(logging.WARNING, logger="irpass.compose"):
        assert pipeline(model).modified
    assert [n.op_type for n in model.graph] == ["Relu"] + ["Identity"] * 4
    assert "after 4 rounds" in caplog.text
    with pytest.raises(PipelineError, match="unknown pass 't_compose_add_identity'"):
        irpass.build_pipeline("t_compose_add_identity")  # the registration was scoped


def test_a_fixpoint_reports_unmodified_when_its_first_round_changes_nothing() -> None:
    model = model_from_text(
        '<ir_version: 8, opset_import: ["" : 17]> g (float[2] x) => (float[2] y) { y = Relu(x) }'
    )
    before = serialized(model)
    assert not irpass.build_pipeline("fixpoint(fold_batchnorm,eliminate_identity)")(model).modified
    assert_unchanged(before, model)


def test_bad_pipelines_fail_when_built_not_when_run() -> None:
    with pytest.raises(PipelineError, match="unknown pass 'fold_everything'"):
        irpass.build_pipeline("canonicalize,fold_everything")
    with pytest.raises(PassOptionError, match="no option 'bogus'"):
        irpass.build_pipeline("fixpoint(fold_batchnorm(bogus=1))")
    with pytest.raises(PipelineError, match="bad pipeline text"):
        irpass.build_pipeline("fuse,(")


def test_the_context_reaches_every_pass() -> None:
    context = PassContext(seed=7)
    pipeline = irpass.build_pipeline("canonicalize,fuse", context)
    assert pipeline.irpass_passes and all(p.context is context for p in pipeline.irpass_passes)


def test_an_embedded_pipeline_leaves_a_model_it_cannot_improve_byte_identical() -> None:
    text = """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[1, 4] x, float[4, 3] w) => (float[1, 3] y) { y = MatMul(x, w) }
    """
    model = model_from_text(text)
    before = serialized(model)
    assert not irpass.build_pipeline("fuse")(model).modified
    assert_unchanged(before, model)
