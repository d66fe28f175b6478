"""End to end: ``canonicalize,fuse`` on the zoo, the trained models, the light model-zoo graphs
and magika's model is numerically equivalent and leaves no BatchNormalization after a Conv."""

import pathlib

import onnx_ir as ir
import pytest
from fusion_testlib import LIGHT_DIR, clone

from irpass.ir import load_model
from irpass.manager import PipelineRunner, RunOptions
from irpass.pipeline import expand_presets, parse_pipeline
from irpass.testing import assert_equivalent

REPO = pathlib.Path(__file__).resolve().parents[3]
ZOO = sorted((REPO / "models" / "zoo").glob("*.onnx")) + sorted(
    (REPO / "models" / "trained").glob("*.onnx")
)
SLOW_LIGHT = {"vgg19", "densenet121", "bvlc_alexnet"}
LIGHT = [
    pytest.param(name, marks=pytest.mark.slow) if name in SLOW_LIGHT else name
    for name in sorted(p.stem.removeprefix("light_") for p in LIGHT_DIR.glob("light_*.onnx"))
]
#: BatchNormalization nodes directly after a Conv in each light model (after canonicalize)
BN_AFTER_CONV = {"resnet50": 53, "inception_v2": 64, "shufflenet": 49, "densenet121": 59}
DIMS = {"N": 1, "T": 8, "batch": 1, "batch_size": 1}


def _bn_after_conv(model: ir.Model) -> int:
    return sum(
        1
        for n in model.graph
        if n.op_type == "BatchNormalization"
        and n.inputs[0].producer() is not None
        and n.inputs[0].producer().op_type == "Conv"
    )


def _onnxsim_nodes(path: pathlib.Path) -> int:
    """Node count of onnx-simplifier's default run (constant folding plus its BN fusion)."""
    onnx = pytest.importorskip("onnx")
    onnxsim = pytest.importorskip("onnxsim")
    simplified, ok = onnxsim.simplify(onnx.load(path))
    assert ok
    return len(simplified.graph.node)


def canonicalize_then_fuse(model: ir.Model):
    quiet = RunOptions(verify="none")
    PipelineRunner("canonicalize", options=quiet).run(model)
    reference = clone(model)
    before = _bn_after_conv(model)
    result = PipelineRunner("fuse", options=quiet).run(model)
    return reference, before, result


def test_fuse_preset_expands_to_a_fixpoint_of_the_fusion_passes():
    (step,) = expand_presets(parse_pipeline("fuse"))
    assert step.is_fixpoint
    assert {s.name for s in step.children} >= {"fold_batchnorm", "remove_noops", "fold_pad"}


@pytest.mark.parametrize("name", LIGHT)
def test_light_model_fuses_equivalently(name):
    path = LIGHT_DIR / f"light_{name}.onnx"
    model = load_model(path)
    reference, before, result = canonicalize_then_fuse(model)
    if name in BN_AFTER_CONV:
        assert before == BN_AFTER_CONV[name]
    assert _bn_after_conv(model) == 0
    assert_equivalent(reference, model)
    # the default pipeline does at least what onnx-simplifier does (it also fuses BN into Conv)
    assert len(model.graph) <= _onnxsim_nodes(path)
    if name == "resnet50":  # the report carries per-rule counts
        passes = result.report.to_dict()["passes"]
        folded = sum(
            p["stats"].get("into_producer", 0) for p in passes if p["name"] == "fold_batchnorm"
        )
        assert folded == 53


@pytest.mark.skipif(not ZOO, reason="models/ has no zoo models yet")
@pytest.mark.parametrize("path", ZOO, ids=[f"{p.parent.name}/{p.stem}" for p in ZOO])
def test_zoo_model_fuses_equivalently(path):
    model = load_model(path)
    reference, _before, _ = canonicalize_then_fuse(model)
    assert _bn_after_conv(model) == 0
    assert_equivalent(reference, model, dim_values=DIMS)


def test_magika_model_fuses_equivalently(magika_model):
    model = load_model(magika_model)
    reference, _, _ = canonicalize_then_fuse(model)
    assert_equivalent(reference, model, dim_values=DIMS)
    assert len(model.graph) <= _onnxsim_nodes(magika_model)

