"""Coupling rules of the channel analysis, each on a small ONNX-text graph, positive and negative.

Positive cases also prune the graph (``pruning_testlib.prune_and_check``): the result must pass
the checker, run in ONNX Runtime and compute exactly what the original computes with the
removed channels' consumer weights zeroed.
"""

from __future__ import annotations

import pathlib
import sys

import networkx as nx
import numpy as np
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "passes" / "pruning"))

import itertools

from pruning_testlib import (
    analyze,
    build,
    classes_of,
    group_with,
    prune_and_check,
)

HEAD = '<ir_version: 8, opset_import: ["" : 17]>\n'


def _reasons(analysis: object, name: str, axis: int) -> str:
    return " | ".join(group_with(analysis, name, axis).frozen)  # type: ignore[arg-type]


# -- residual adds --------------------------------------------------------------------------
RESIDUAL = (
    HEAD
    + """
g (float[N, 3, 8, 8] x, float[8, 3, 3, 3] w1, float[8, 8, 3, 3] w2, float[8, 3, 1, 1] w3,
   float[4, 8, 1, 1] w4) => (float[N, 4, 8, 8] y) {
    a = Conv <pads = [1, 1, 1, 1]> (x, w1)
    r = Relu (a)
    b = Conv <pads = [1, 1, 1, 1]> (r, w2)
    c = Conv (x, w3)
    s = Add (b, c)
    t = Relu (s)
    y = Conv (t, w4)
}
"""
)


def test_residual_add_couples_its_producers() -> None:
    model = build(RESIDUAL, ["w1", "w2", "w3", "w4"])
    analysis = analyze(model)
    residual = group_with(analysis, "w2", -4)
    assert residual is group_with(analysis, "w3", -4) is group_with(analysis, "w4", -3)
    assert np.array_equal(classes_of(analysis, "w2", -4), classes_of(analysis, "w3", -4))
    assert residual.prunable and residual.channels == 8
    assert group_with(analysis, "w1", -4) is not residual
    assert group_with(analysis, "w4", -4).fully_frozen  # feeds the graph output
    assert "graph output" in _reasons(analysis, "w4", -4)
    # the dependency graph: the spaces of w2's and w3's output channels are linked by the Add
    spaces = {
        (data["tensor"], data["axis"]): node for node, data in analysis.graph.nodes(data=True)
    }
    path = nx.shortest_path(analysis.graph, spaces[("w2", -4)], spaces[("w3", -4)])
    labels = {
        label
        for a, b in itertools.pairwise(path)
        for label in analysis.graph.edges[a, b]["nodes"]
    }
    assert any(label.startswith("Add") for label in labels)
    prune_and_check(model, ratio=0.5, scope="local")


def test_residual_add_with_a_graph_input_is_frozen() -> None:
    text = RESIDUAL.replace("float[N, 3, 8, 8] x,", "float[N, 3, 8, 8] x, float[N, 8, 8, 8] z,")
    model = build(text.replace("s = Add (b, c)", "s = Add (b, z)"), ["w1", "w2", "w3", "w4"])
    analysis = analyze(model)
    assert group_with(analysis, "w2", -4).fully_frozen
    assert "graph input 'z'" in _reasons(analysis, "w2", -4)
    assert group_with(analysis, "w1", -4).prunable  # upstream of the frozen add: unaffected


# -- concat, split ----------------------------------------------------------------------------
CONCAT = (
    HEAD
    + """
g (float[N, 3, 6, 6] x, float[4, 3, 3, 3] w1, float[6, 3, 1, 1] w2, float[5, 10, 1, 1] w3)
   => (float[N, 5, 6, 6] y) {
    c1 = Conv <pads = [1, 1, 1, 1]> (x, w1)
    c2 = Conv (x, w2)
    cat = Concat <axis = 1> (c1, c2)
    r = Relu (cat)
    y = Conv (r, w3)
}
"""
)


def test_concat_places_each_input_at_its_offset() -> None:
    model = build(CONCAT, ["w1", "w2", "w3"])
    analysis = analyze(model)
    expected = np.concatenate([classes_of(analysis, "w1", -4), classes_of(analysis, "w2", -4)])
    assert np.array_equal(classes_of(analysis, "w3", -3), expected)
    assert group_with(analysis, "w1", -4).channels == 10
    prune_and_check(model, ratio=0.4, scope="local")


def test_concat_with_a_graph_input_freezes_only_the_input_part() -> None:
    text = CONCAT.replace("float[5, 10, 1, 1] w3", "float[5, 9, 1, 1] w3")
    model = build(
        text.replace("Concat <axis = 1> (c1, c2)", "Concat <axis = 1> (x, c2)"), ["w1", "w2", "w3"]
    )
    analysis = analyze(model)
    group = group_with(analysis, "w3", -3)
    assert group.frozen and group.prunable
    assert group.channels - group.free_channels == 3  # x's three channels
    pass_ = prune_and_check(model, ratio=0.5, scope="local")
    assert pass_.stats["groups_partly_frozen"] == 1
    assert model.graph.initializers["w3"].const_value.shape[1] == 3 + 3


SPLIT = (
    HEAD
    + """
g (float[N, 3, 6, 6] x, float[8, 3, 3, 3] w1, float[4, 3, 1, 1] w2, float[4, 5, 1, 1] w3,
   int64[2] sizes) => (float[N, 4, 6, 6] y) {
    c = Conv <pads = [1, 1, 1, 1]> (x, w1)
    s1, s2 = Split <axis = 1> (c, sizes)
    y1 = Conv (s1, w2)
    y2 = Conv (s2, w3)
    y = Add (y1, y2)
}
"""
)


def test_split_gives_each_output_its_range() -> None:
    model = build(SPLIT, ["w1", "w2", "w3"])
    sizes = model.graph.inputs[-1]
    model.graph.inputs.remove(sizes)
    import onnx_ir as ir

    sizes.const_value = ir.tensor(np.array([3, 5], np.int64), name="sizes")
    model.graph.register_initializer(sizes)
    analysis = analyze(model)
    expected = np.concatenate([classes_of(analysis, "w2", -3), classes_of(analysis, "w3", -3)])
    assert np.array_equal(classes_of(analysis, "w1", -4), expected)
    prune_and_check(model, ratio=0.5, scope="local")
    split = next(n for n in model.graph if n.op_type == "Split")
    new_sizes = split.inputs[1].const_value.numpy()
    assert new_sizes.sum() == model.graph.initializers["w1"].const_value.shape[0] < 8


def test_split_of_equal_parts_gets_explicit_sizes() -> None:
    text = SPLIT.replace('opset_import: ["" : 17]', 'opset_import: ["" : 18]')
    text = text.replace(", int64[2] sizes", "").replace("[4, 5, 1, 1] w3", "[4, 4, 1, 1] w3")
    text = text.replace("[4, 3, 1, 1] w2", "[4, 4, 1, 1] w2")
    text = text.replace("Split <axis = 1> (c, sizes)", "Split <axis = 1, num_outputs = 2> (c)")
    model = build(text, ["w1", "w2", "w3"])
    prune_and_check(model, ratio=0.5, scope="local")
    split = next(n for n in model.graph if n.op_type == "Split")
    assert "num_outputs" not in split.attributes and split.inputs[1] is not None


def test_split_with_sizes_from_a_graph_input_is_frozen() -> None:
    model = build(SPLIT, ["w1", "w2", "w3"])
    analysis = analyze(model)
    assert group_with(analysis, "w1", -4).fully_frozen
    assert "split sizes are not constant" in _reasons(analysis, "w1", -4)


# -- depthwise and grouped convolutions, channel shuffle --------------------------------------
DEPTHWISE = (
    HEAD
    + """
g (float[N, 3, 6, 6] x, float[8, 3, 1, 1] w1, float[8, 1, 3, 3] wd, float[8] bd,
   float[4, 8, 1, 1] w2) => (float[N, 4, 6, 6] y) {
    c = Conv (x, w1)
    d = Conv <group = 8, pads = [1, 1, 1, 1]> (c, wd, bd)
    r = Relu (d)
    y = Conv (r, w2)
}
"""
)


def test_depthwise_conv_couples_input_and_output_and_changes_group() -> None:
    model = build(DEPTHWISE, ["w1", "wd", "bd", "w2"])
    analysis = analyze(model)
    assert np.array_equal(classes_of(analysis, "w1", -4), classes_of(analysis, "wd", -4))
    assert group_with(analysis, "bd", -1) is group_with(analysis, "w2", -3)
    prune_and_check(model, ratio=0.5, scope="local")
    depthwise = next(n for n in model.graph if n.attributes.get_int("group", 1) > 1)
    assert depthwise.attributes.get_int("group", 1) == model.graph.initializers["wd"].shape[0] == 4


def test_grouped_conv_removes_a_channel_from_every_group() -> None:
    text = DEPTHWISE.replace("float[8, 1, 3, 3] wd", "float[8, 4, 3, 3] wd")
    model = build(text.replace("group = 8", "group = 2"), ["w1", "wd", "bd", "w2"])
    analysis = analyze(model)
    inputs = classes_of(analysis, "w1", -4)
    assert np.array_equal(inputs[:4], inputs[4:])  # channel k of group 0 == of group 1
    outputs = classes_of(analysis, "wd", -4)
    assert np.array_equal(outputs[:4], outputs[4:])
    prune_and_check(model, ratio=0.5, scope="local")
    grouped = next(n for n in model.graph if n.attributes.get_int("group", 1) > 1)
    assert grouped.attributes.get_int("group", 1) == 2


SHUFFLE = (
    HEAD
    + """
g (float[1, 4, 6, 6] x, float[8, 2, 1, 1] w1, float[8, 4, 1, 1] w2, int64[5] split_shape,
   int64[4] merge_shape) => (float[1, 8, 6, 6] y) {
    c = Conv <group = 2> (x, w1)
    r = Relu (c)
    s = Reshape (r, split_shape)
    t = Transpose <perm = [0, 2, 1, 3, 4]> (s)
    m = Reshape (t, merge_shape)
    y = Conv <group = 2> (m, w2)
}
"""
)


def _shape_constants(model: object) -> None:
    import onnx_ir as ir

    for name, dims in (("split_shape", [1, 2, 4, 6, 6]), ("merge_shape", [1, 8, 6, 6])):
        value = next(v for v in model.graph.inputs if v.name == name)  # type: ignore[attr-defined]
        model.graph.inputs.remove(value)  # type: ignore[attr-defined]
        value.const_value = ir.tensor(np.array(dims, np.int64), name=name)
        model.graph.register_initializer(value)  # type: ignore[attr-defined]


def test_channel_shuffle_after_a_grouped_conv_is_pruned_consistently() -> None:
    model = build(SHUFFLE, ["w1", "w2"])
    _shape_constants(model)
    analysis = analyze(model)
    group = group_with(analysis, "w1", -4)
    # conv 1 removes channel k from both groups (4 classes); after the shuffle, conv 2 must
    # remove its input channel k from both of its groups too, which unites them in pairs
    assert group.prunable and group.channels == 2
    prune_and_check(model, ratio=0.5, scope="local")
    split = next(n for n in model.graph if n.op_type == "Reshape")
    assert split.inputs[1].const_value.numpy().tolist() == [1, 2, 2, 6, 6]


def test_channel_split_without_group_structure_is_frozen_as_ambiguous() -> None:
    text = SHUFFLE.replace("float[8, 2, 1, 1] w1", "float[8, 4, 1, 1] w1")
    model = build(text.replace("c = Conv <group = 2> (x, w1)", "c = Conv (x, w1)"), ["w1", "w2"])
    _shape_constants(model)
    analysis = analyze(model)
    assert group_with(analysis, "w1", -4).fully_frozen
    assert "ambiguous" in _reasons(analysis, "w1", -4)


# -- resampling, flatten, transpose -----------------------------------------------------------
RESIZE = (
    HEAD
    + """
g (float[N, 3, 8, 8] x, float[6, 3, 3, 3] w1, float[4, 3, 1, 1] w2, float[2, 10, 1, 1] w3,
   float[4] scales) => (float[N, 2, 8, 8] y) {
    c1 = Conv <pads = [1, 1, 1, 1], strides = [2, 2]> (x, w1)
    u = Resize <mode = "nearest"> (c1, , scales)
    c2 = Conv (x, w2)
    cat = Concat <axis = 1> (u, c2)
    y = Conv (cat, w3)
}
"""
)


def _scales(model: object, values: list[float]) -> None:
    import onnx_ir as ir

    value = next(v for v in model.graph.inputs if v.name == "scales")  # type: ignore[attr-defined]
    model.graph.inputs.remove(value)  # type: ignore[attr-defined]
    value.const_value = ir.tensor(np.array(values, np.float32), name="scales")
    model.graph.register_initializer(value)  # type: ignore[attr-defined]


def test_resize_skip_connection_passes_channels() -> None:
    model = build(RESIZE, ["w1", "w2", "w3"])
    _scales(model, [1.0, 1.0, 2.0, 2.0])
    analysis = analyze(model)
    assert group_with(analysis, "w1", -4) is group_with(analysis, "w3", -3)
    prune_and_check(model, ratio=0.5, scope="local")


def test_resize_that_scales_channels_is_frozen() -> None:
    model = build(RESIZE, ["w1", "w2", "w3"])
    _scales(model, [1.0, 2.0, 2.0, 2.0])
    analysis = analyze(model)
    assert "resamples the channel axis" in _reasons(analysis, "w1", -4)


FLATTEN = (
    HEAD
    + """
g (float[N, 3, 4, 4] x, float[5, 3, 3, 3] w1, float[7, 80] wg, float[7] bg)
   => (float[N, 7] y) {
    c = Conv <pads = [1, 1, 1, 1]> (x, w1)
    r = Relu (c)
    f = Flatten <axis = 1> (r)
    y = Gemm <transB = 1> (f, wg, bg)
}
"""
)


def test_flatten_into_gemm_expands_each_channel_to_its_block() -> None:
    model = build(FLATTEN, ["w1", "wg", "bg"])
    analysis = analyze(model)
    channels = classes_of(analysis, "w1", -4)
    assert np.array_equal(classes_of(analysis, "wg", -1), np.repeat(channels, 16))
    prune_and_check(model, ratio=0.4, scope="local")
    assert model.graph.initializers["wg"].const_value.shape[1] == 16 * 3


def test_reshape_to_features_rewrites_its_target_shape() -> None:
    text = FLATTEN.replace("float[7] bg)", "float[7] bg, int64[2] shape)")
    model = build(
        text.replace("f = Flatten <axis = 1> (r)", "f = Reshape (r, shape)"), ["w1", "wg", "bg"]
    )
    import onnx_ir as ir

    value = next(v for v in model.graph.inputs if v.name == "shape")
    model.graph.inputs.remove(value)
    value.const_value = ir.tensor(np.array([-1, 80], np.int64), name="shape")
    model.graph.register_initializer(value)
    prune_and_check(model, ratio=0.4, scope="local")
    reshape = next(n for n in model.graph if n.op_type == "Reshape")
    assert reshape.inputs[1].const_value.numpy().tolist() == [-1, 48]


def test_reshape_with_a_run_time_target_is_frozen() -> None:
    text = FLATTEN.replace("float[7] bg)", "float[7] bg, int64[2] shape)")
    model = build(
        text.replace("f = Flatten <axis = 1> (r)", "f = Reshape (r, shape)"), ["w1", "wg", "bg"]
    )
    analysis = analyze(model)
    assert "computed at run time" in _reasons(analysis, "w1", -4)


def test_flatten_that_merges_channels_into_the_batch_is_frozen() -> None:
    text = FLATTEN.replace("float[7, 80] wg", "float[7, 16] wg").replace("axis = 1", "axis = 2")
    model = build(text.replace("=> (float[N, 7] y)", "=> (float[M, 7] y)"), ["w1", "wg", "bg"])
    analysis = analyze(model)
    assert group_with(analysis, "w1", -4).fully_frozen


def test_transpose_to_channels_last_feeds_a_matmul() -> None:
    text = (
        HEAD
        + """
    g (float[N, 3, 4, 4] x, float[8, 3, 1, 1] w1, float[8, 4] wm) => (float[N, 4, 4, 4] y) {
        c = Conv (x, w1)
        t = Transpose <perm = [0, 2, 3, 1]> (c)
        y = MatMul (t, wm)
    }
    """
    )
    model = build(text, ["w1", "wm"])
    analysis = analyze(model)
    assert np.array_equal(classes_of(analysis, "w1", -4), classes_of(analysis, "wm", -2))
    prune_and_check(model, ratio=0.5, scope="local")


# -- ops that mix channels, unknown ops, boundaries -------------------------------------------
MIXER = (
    HEAD
    + """
g (float[N, 3, 4, 4] x, float[6, 3, 1, 1] w1, float[2, 6, 1, 1] w2) => (float[N, 2, 4, 4] y) {
    c = Conv (x, w1)
    m = {op} (c)
    y = Conv (m, w2)
}
"""
)


@pytest.mark.parametrize(
    ("op", "prunable", "reason"),
    [
        ("Relu", True, ""),
        ("Softmax <axis = 3>", True, ""),
        ("Softmax <axis = 1>", False, "normalizes across channels"),
        ("LRN <size = 3>", False, "mixes neighbouring channels"),
        ("MaxPool <kernel_shape = [1, 1]>", True, ""),
        ("ReduceMean <axes = [2], keepdims = 1>", True, ""),
        ("ReduceMean <axes = [1], keepdims = 1>", False, "reduces over channels"),
        ("Pad <pads = [0, 1, 0, 0, 0, 0, 0, 0]>", False, "pads the channel axis"),
        ("Clip", True, ""),
        ("DepthToSpace <blocksize = 1>", False, "has no channel rule"),
    ],
)
def test_op_that_passes_or_mixes_channels(op: str, prunable: bool, reason: str) -> None:
    text = MIXER.replace("{op}", op)
    if "ReduceMean <axes = [1]" in op:
        text = text.replace("float[2, 6, 1, 1] w2", "float[2, 1, 1, 1] w2")
    if op.startswith("Pad"):
        text = HEAD.replace("17", "10") + text[len(HEAD) :]
        text = text.replace("float[2, 6, 1, 1] w2", "float[2, 7, 1, 1] w2")
    if op.startswith("ReduceMean <axes = [2]"):
        text = text.replace("=> (float[N, 2, 4, 4] y)", "=> (float[N, 2, 1, 4] y)")
    model = build(text, ["w1", "w2"])
    analysis = analyze(model)
    group = group_with(analysis, "w1", -4)
    assert group.prunable is prunable, group.frozen
    assert reason in " | ".join(group.frozen)
    if prunable and not op.startswith("Softmax"):
        prune_and_check(model, ratio=0.5, scope="local")


def test_ignored_nodes_and_op_types_are_frozen() -> None:
    model = build(RESIDUAL, ["w1", "w2", "w3", "w4"])
    for node in model.graph:
        node.name = "node_" + node.outputs[0].name
    analysis = analyze(model, ignore=["node_b"])
    assert "ignored by the user" in _reasons(analysis, "w2", -4)
    assert "ignored by the user" in _reasons(analysis, "w1", -4)  # node_b reads it
    by_type = analyze(model, ignore=["Conv"])
    assert all(g.fully_frozen for g in by_type.groups)


def test_value_read_inside_a_subgraph_is_frozen() -> None:
    text = (
        HEAD
        + """
    g (float[N, 3, 4, 4] x, float[6, 3, 1, 1] w1, float[2, 6, 1, 1] w2, bool cond)
       => (float[N, 2, 4, 4] y, float[N, 6, 4, 4] z) {
        c = Conv (x, w1)
        y = Conv (c, w2)
        z = If (cond) <
            then_branch = g1 () => (float[N, 6, 4, 4] o1) { o1 = Relu (c) },
            else_branch = g2 () => (float[N, 6, 4, 4] o2) { o2 = Neg (c) }
        >
    }
    """
    )
    model = build(text, ["w1", "w2"])
    analysis = analyze(model)
    assert "read inside a subgraph" in _reasons(analysis, "w1", -4)


# -- MLPs, norms, embeddings, attention ---------------------------------------------------------
MLP = (
    HEAD
    + """
g (float[N, 16] x, float[16, 32] w1, float[32] b1, float[32, 4] w2) => (float[N, 4] y) {
    h = MatMul (x, w1)
    hb = Add (h, b1)
    r = Relu (hb)
    y = MatMul (r, w2)
}
"""
)


def test_matmul_hidden_units_couple_weights_and_bias() -> None:
    model = build(MLP, ["w1", "b1", "w2"])
    analysis = analyze(model)
    group = group_with(analysis, "w1", -1)
    assert group is group_with(analysis, "b1", -1) is group_with(analysis, "w2", -2)
    prune_and_check(model, ratio=0.5, scope="local")
    assert model.graph.initializers["b1"].const_value.shape[0] == 16


def test_layer_norm_over_channels_couples_its_parameters() -> None:
    text = MLP.replace("float[32] b1,", "float[32] b1, float[32] gamma,").replace(
        "r = Relu (hb)", "r = LayerNormalization <axis = -1> (hb, gamma, b1)"
    )
    model = build(text, ["w1", "b1", "gamma", "w2"])
    analysis = analyze(model)
    assert group_with(analysis, "gamma", -1) is group_with(analysis, "w1", -1)
    # statistics are taken over the kept channels: valid, but not equal to zeroing
    prune_and_check(model, ratio=0.5, scope="local", exact=False)


def test_batch_norm_parameters_follow_the_conv() -> None:
    text = (
        HEAD
        + """
    g (float[N, 3, 4, 4] x, float[6, 3, 1, 1] w1, float[6] s, float[6] b, float[6] m,
       float[6] v, float[2, 6, 1, 1] w2) => (float[N, 2, 4, 4] y) {
        c = Conv (x, w1)
        n = BatchNormalization (c, s, b, m, v)
        y = Conv (n, w2)
    }
    """
    )
    model = build(text, ["w1", "s", "b", "m", "w2"])
    import onnx_ir as ir

    v = next(x for x in model.graph.inputs if x.name == "v")
    model.graph.inputs.remove(v)
    v.const_value = ir.tensor(np.linspace(0.5, 1.5, 6).astype(np.float32), name="v")
    model.graph.register_initializer(v)
    analysis = analyze(model)
    assert all(group_with(analysis, p, -1) is group_with(analysis, "w1", -4) for p in "sbmv")
    prune_and_check(model, ratio=0.5, scope="local")
    assert model.graph.initializers["v"].const_value.shape[0] == 3


def test_embedding_dimension_is_a_group() -> None:
    text = (
        HEAD
        + """
    g (int64[N, T] tokens, float[10, 16] table, float[16, 3] w) => (float[N, T, 3] y) {
        e = Gather (table, tokens)
        y = MatMul (e, w)
    }
    """
    )
    model = build(text, ["table", "w"])
    analysis = analyze(model)
    assert group_with(analysis, "table", -1) is group_with(analysis, "w", -2)
    prune_and_check(model, ratio=0.5, scope="local")


def test_attention_heads_are_frozen_unless_asked_for() -> None:
    from irpass.ir import load_model
    from models import zoo_paths

    model = load_model(zoo_paths()["transformer"])
    default = analyze(model)
    heads = [g for g in default.groups if any("ambiguous" in r for r in g.frozen)]
    assert len(heads) == 2 and all(g.fully_frozen for g in heads)
    asked = analyze(model, attention=True)
    head_groups = [g for g in asked.groups if g.prunable and g.channels == 4]
    assert len(head_groups) == 2  # four heads per layer
    prune_and_check(
        model, ratio=0.5, scope="local", attention=True, ignore=["LayerNormalization"], exact=False
    )
