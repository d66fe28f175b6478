from __future__ import annotations

import json

import onnx_ir as ir
import pytest

from irpass.diff import diff_models
from tests.diff_models_for_tests import light_resnet_folded_renamed, net


def _by_name(diff, name):
    return next(m for m in diff.matches if m.a.name == name)


def test_identical_models_have_no_changes():
    diff = diff_models(net(), net())
    assert diff.is_identical
    assert diff.summary()["matched"] == 4
    assert diff.regions == []
    assert json.dumps(diff.to_dict())  # JSON-serialisable


def test_pruned_channels_show_as_weight_shape_changes():
    diff = diff_models(net(8), net(6))
    assert not diff.added and not diff.removed
    conv1 = _by_name(diff, "conv1")
    kinds = {(c.kind, c.field): c for c in conv1.changes}
    assert kinds[("weight_shape", "input 1")].before == [8, 3, 3, 3]
    assert kinds[("weight_shape", "input 1")].after == [6, 3, 3, 3]
    assert kinds[("output_shape", "output 0")].after == [1, 6, 8, 8]
    conv2 = _by_name(diff, "conv2")
    w2 = next(c for c in conv2.changes if c.kind == "weight_shape")
    assert (w2.before, w2.after) == ([4, 8, 1, 1], [4, 6, 1, 1])
    bn = _by_name(diff, "bn1")
    assert any(c.kind == "weight_shape" and c.after == [6] for c in bn.changes)
    assert _by_name(diff, "relu1").changes[0].kind == "input_shape"
    cost = diff.to_dict()["cost"]
    assert cost["delta"]["params"] < 0


def test_folded_batchnorm_is_removed_and_conv_weights_change():
    diff = diff_models(net(), net(fold_bn=True))
    assert [n.op_type for n in diff.removed] == ["BatchNormalization"]
    assert not diff.added
    conv1 = _by_name(diff, "conv1")
    assert {c.kind for c in conv1.changes} == {"weight_values"}
    assert diff.op_delta() == {"BatchNormalization": (1, 0)}
    assert diff.regions and {n["status"] for n in diff.regions[0]["nodes"]} >= {
        "removed", "changed"}


def test_folded_batchnorm_with_renamed_nodes_still_matches_by_structure():
    diff = diff_models(net(), net(fold_bn=True, prefix="new_", rename_tensors=True))
    assert [n.op_type for n in diff.removed] == ["BatchNormalization"]
    assert not diff.added
    pairs = {(m.a.name, m.b.name) for m in diff.matches}
    assert pairs == {("conv1", "new_conv1"), ("relu1", "new_relu1"), ("conv2", "new_conv2")}
    # conv2 keeps its graph-output tensor name "y"; the others are found by structure
    assert {m.method for m in diff.matches} == {"structure", "outputs"}


def test_inserted_qdq_is_added_and_conv_inputs_are_quantized():
    diff = diff_models(net(), net(qdq=True))
    assert sorted(n.op_type for n in diff.added) == [
        "DequantizeLinear", "DequantizeLinear", "QuantizeLinear"]
    assert not diff.removed
    conv1 = _by_name(diff, "conv1")
    quantized = {c.field: c for c in conv1.changes if c.kind == "quantized"}
    assert set(quantized) == {"input 0", "input 1"}
    assert "int8" in quantized["input 1"].after and "DequantizeLinear" in quantized["input 1"].after
    assert diff.op_delta()["QuantizeLinear"] == (0, 1)


def test_inserted_qdq_with_renamed_nodes_matches_conv_through_qdq():
    diff = diff_models(net(), net(qdq=True, prefix="z_", rename_tensors=True))
    pairs = {(m.a.name, m.b.name) for m in diff.matches}
    assert ("conv1", "z_conv1") in pairs and ("conv2", "z_conv2") in pairs
    assert len(diff.added) == 3 and not diff.removed


def test_renamed_nodes_match_without_changes():
    diff = diff_models(net(), net(prefix="renamed/", rename_tensors=True))
    assert not diff.added and not diff.removed and not diff.changed
    assert {(m.a.name, m.b.name) for m in diff.matches} == {
        (n, "renamed/" + n) for n in ("conv1", "bn1", "relu1", "conv2")}


def test_io_signature_and_opset_changes():
    a = net()
    b = net()
    b.graph.outputs[0].shape = ir.Shape([1, 4, "h", 8])
    b.opset_imports[""] = 18
    diff = diff_models(a, b, infer_shapes=False)
    assert [(c.kind, c.change, c.name) for c in diff.io_changes] == [("output", "changed", "y")]
    assert diff.opset_changes == {"ai.onnx": (17, 18)}


def test_diff_does_not_modify_inputs():
    a, b = net(), net(fold_bn=True)
    before = ir.to_proto(a).SerializeToString(), ir.to_proto(b).SerializeToString()
    diff_models(a, b)
    assert (ir.to_proto(a).SerializeToString(), ir.to_proto(b).SerializeToString()) == before


def test_light_resnet50_folded_and_renamed():
    a, b = light_resnet_folded_renamed()
    diff = diff_models(a, b)
    assert [n.op_type for n in diff.removed] == ["BatchNormalization"]
    assert not diff.added
    # every matched pair is the same node: its first output keeps the tensor name
    wrong = [m for m in diff.matches if m.a.outputs[0].name != m.b.outputs[0].name]
    assert wrong == []
    assert len(diff.matches) == len(diff.nodes_a) - 1
    assert len(diff.regions) == 1
    statuses = {n["status"] for n in diff.regions[0]["nodes"]}
    assert "removed" in statuses


@pytest.mark.parametrize("seed", [1, 2])
def test_light_resnet50_renamed_tensors_matched_by_structure(seed):
    a = ir.load(__import__("tests.diff_models_for_tests", fromlist=["x"]).LIGHT_RESNET50)
    b = ir.load(__import__("tests.diff_models_for_tests", fromlist=["x"]).LIGHT_RESNET50)
    original = {}
    for k, node in enumerate(b.graph):
        node.name = f"n{seed}_{k}"
        for v in node.outputs:
            if not v.is_graph_output():
                original[f"s{seed}_{v.name}"] = v.name
                v.name = f"s{seed}_{v.name}"
    diff = diff_models(a, b, compare_values=False)
    assert diff.is_identical
    wrong = [m for m in diff.matches
             if original.get(m.b.outputs[0].name, m.b.outputs[0].name) != m.a.outputs[0].name]
    assert wrong == []


def _branches(order=(0, 1, 2), channels=(16, 8, 4), prefix=""):
    """x -> three Conv branches (1x1, 3x3, 5x5) -> Concat, nodes listed in ``order``."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    convs, inits = [], []
    for k, (kernel, ch) in enumerate(zip((1, 3, 5), channels, strict=True)):
        w = rng.standard_normal((ch, 3, kernel, kernel)).astype(np.float32)
        inits.append(numpy_helper.from_array(w, f"{prefix}w{k}"))
        convs.append(helper.make_node("Conv", ["x", f"{prefix}w{k}"], [f"{prefix}c{k}"],
                                      name=f"{prefix}conv{kernel}x{kernel}",
                                      pads=[kernel // 2] * 4))
    concat = helper.make_node("Concat", [f"{prefix}c{k}" for k in range(3)], ["y"], axis=1,
                              name=f"{prefix}cat")
    graph = helper.make_graph(
        [convs[k] for k in order] + [concat], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, sum(channels), 8, 8])],
        inits)
    return ir.from_proto(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))


@pytest.mark.parametrize("channels", [(16, 8, 4), (16, 6, 4)])
def test_parallel_branches_pair_by_kernel_when_renamed_and_reordered(channels):
    diff = diff_models(_branches(), _branches((2, 0, 1), channels, prefix="new_"))
    pairs = {(m.a.name, m.b.name) for m in diff.matches}
    assert pairs == {("conv1x1", "new_conv1x1"), ("conv3x3", "new_conv3x3"),
                     ("conv5x5", "new_conv5x5"), ("cat", "new_cat")}


def test_order_fallback_is_opt_in():
    from irpass.testing import model_from_text

    a = model_from_text("""<ir_version: 8, opset_import: ["" : 17]>
        g (float[2] x) => (float[2] y) { n = Neg(x) \n y = Sigmoid(n) }""")
    b = model_from_text("""<ir_version: 8, opset_import: ["" : 17]>
        g (float[2] x) => (float[2] y) { t = Tanh(x) \n m = Neg(t) \n y = Abs(m) }""")
    # nothing anchors the two Neg nodes: by default they stay removed + added
    strict = diff_models(a, b)
    assert strict.matches == [] and len(strict.removed) == 2 and len(strict.added) == 3
    loose = diff_models(a, b, order_fallback=True)
    assert [(m.a.op_type, m.b.op_type, m.method) for m in loose.matches] == [
        ("Neg", "Neg", "order")]


def test_subgraph_bodies_are_compared_by_op_counts():
    from irpass.testing import model_from_text

    text = """<ir_version: 8, opset_import: ["" : 17]>
    g (float[N, 4] x, bool c) => (float[N, 4] y) {
      r = Relu(x)
      y = If(c) <then_branch = t () => (float[N, 4] o) { o = Neg(r) },
                 else_branch = e () => (float[N, 4] o) { o = Abs(r) }>
    }"""
    a = model_from_text(text)
    b = model_from_text(text.replace("o = Abs(r)", "o2 = Abs(r)\n o = Identity(o2)"))
    diff = diff_models(a, b)
    assert not diff.added and not diff.removed
    (change,) = [c for m in diff.changed for c in m.changes]
    assert change.field == "else_branch"
    assert (change.before, change.after) == ("<graph: 1 nodes: Abs>",
                                             "<graph: 2 nodes: Abs, Identity>")


def test_shapes_agree_ignores_invented_symbolic_names():
    from irpass.diff import shapes_agree

    assert shapes_agree(("unk__214", 512, 256), ("unk__3", 512, 256))
    assert shapes_agree(None, (1, 2))
    assert not shapes_agree(("N", 3), (1, 3))  # batch fixed: a real change
    assert not shapes_agree((1, 3), (1, 3, 1))
    assert not shapes_agree((1, 8), (1, 6))


def test_real_optimizer_output_matches_node_for_node(tmp_path):
    """The default pipeline on the light ResNet-50 folds every BN (and ConstantOfShape)."""
    from irpass.cli import main
    from irpass.diff import shapes_agree
    from irpass.numeric_diff import numeric_diff
    from tests.diff_models_for_tests import LIGHT_RESNET50

    out = str(tmp_path / "out.onnx")
    assert main(["optimize", LIGHT_RESNET50, "-o", out, "--verify", "none"]) == 0
    a, b = ir.load(LIGHT_RESNET50), ir.load(tmp_path / "out.onnx")
    diff = diff_models(a, b)
    removed_ops = {n.op_type for n in diff.removed}
    assert "Conv" not in removed_ops and "Relu" not in removed_ops
    assert [n for n in diff.added if not n.is_constant] == []
    # every matched pair computes a tensor of the same shape: no cross-wired matches
    for m in diff.matches:
        for ta, tb in zip(m.a.outputs, m.b.outputs, strict=False):
            assert shapes_agree(ta.shape, tb.shape), (m.a.label, m.b.label)
    assert len([m for m in diff.matches if m.a.op_type == "Conv"]) == 53
    result = numeric_diff(a, b, diff=diff)
    assert result.first_divergence is None
    assert all(not t.diverged for t in result.outputs)


def test_malformed_caller_model_is_an_error_naming_the_node_not_a_crash():
    from irpass.errors import UnsupportedModelError

    broken = net()
    first, *_, last = list(broken.graph)
    first.replace_input_with(0, last.outputs[0])
    with pytest.raises(UnsupportedModelError, match="B: the main graph has a cycle"):
        diff_models(net(), broken)
