from __future__ import annotations

import onnx_ir as ir
import pytest
from conftest import light_model_path

from irpass.analysis.cost import cost_shapes_note, model_cost, node_macs
from irpass.ir import load_model
from irpass.testing import inputs_to_random_initializers, model_from_text


@pytest.mark.parametrize("group", [1, 2])
def test_conv_gemm_matmul_macs(group: int) -> None:
    text = f"""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[1, 4, 8, 8] x, float[6, {4 // group}, 3, 3] w, float[6] b,
       float[384, 10] m, float[10, 5] g2, float[5] c) => (float[1, 5] y) {{
        h = Conv<group={group}, pads=[1,1,1,1]>(x, w, b)
        f = Flatten(h)
        z = MatMul(f, m)
        y = Gemm(z, g2, c)
    }}
    """
    model = inputs_to_random_initializers(model_from_text(text), ["w", "b", "m", "g2", "c"])
    cost = model_cost(model)
    conv = 1 * 6 * 8 * 8 * (4 // group) * 9
    assert cost.macs == conv + 384 * 10 + 10 * 5
    assert cost.params == 6 * (4 // group) * 9 + 6 + 3840 + 50 + 5
    assert cost.weight_bytes == cost.params * 4
    assert cost.nodes == 4
    assert cost.ops == {"Conv": 1, "Flatten": 1, "Gemm": 1, "MatMul": 1}
    assert cost.unknown_macs_nodes == 0
    # activation peak: h (1*6*8*8 floats) live together with f is the largest pair
    assert cost.peak_activation_bytes == (6 * 64 + 384) * 4


def test_weights_in_constant_nodes_are_not_activations() -> None:
    # Paddle-style exports put every weight in a Constant node at the top of the graph: they
    # are params, and the activation peak is the same as with initializers.
    weights = "\n".join(
        f"w{i} = Constant<value: tensor = float[64, 64] w{i} {{{', '.join(['0.5'] * 4096)}}}>()"
        for i in range(3)
    )
    text = f"""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[1, 64] x) => (float[1, 64] y) {{
        {weights}
        a = MatMul(x, w0)
        b = MatMul(a, w1)
        y = MatMul(b, w2)
    }}
    """
    cost = model_cost(model_from_text(text))
    assert cost.params == 3 * 64 * 64
    assert cost.peak_activation_bytes == 2 * 64 * 4  # one MatMul's input and output


def test_convtranspose_macs() -> None:
    text = """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[1, 4, 5, 5] x, float[4, 2, 2, 2] w) => (float[1, 2, 10, 10] y) {
        y = ConvTranspose<strides=[2,2]>(x, w)
    }
    """
    model = inputs_to_random_initializers(model_from_text(text), ["w"])
    assert model_cost(model).macs == 4 * 25 * 2 * 4


def test_resnet50_macs_match_the_published_4_1_gmacs() -> None:
    cost = model_cost(load_model(light_model_path("resnet50")))
    assert 4.0e9 < cost.macs < 4.2e9
    assert cost.ops["Conv"] == 53
    # its weights are ConstantOfShape outputs: counted, so params match ResNet-50's 25.6M
    assert 25.5e6 < cost.params < 25.7e6


def test_named_symbolic_dims_count_as_one_sample() -> None:
    text = """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[N, 8] x, float[8, 3] w) => (float[N, 3] y) {
        y = MatMul(x, w)
    }
    """
    model = inputs_to_random_initializers(model_from_text(text), ["w"])
    cost = model_cost(model)
    assert cost.macs == 24 and cost.unknown_macs_nodes == 0


def test_unknown_shapes_are_counted_not_guessed() -> None:
    x = ir.Value(name="x", type=ir.TensorType(ir.DataType.FLOAT))
    w = ir.Value(name="w", shape=ir.Shape([8, 3]), type=ir.TensorType(ir.DataType.FLOAT))
    node = ir.node("MatMul", [x, w])
    assert node_macs(node, {}) is None
    x.shape = ir.Shape([2, 8])
    node.outputs[0].shape = ir.Shape([2, 3])
    assert node_macs(node, {}) == 48


def test_analysis_leaves_the_model_as_it_was() -> None:
    import onnx

    from models import trained_paths

    model = load_model(trained_paths()["digits_resnet"])  # weights > 1 KB between small ones
    before = onnx.helper.printable_graph(ir.to_proto(model).graph)
    order = list(model.graph.initializers)
    model_cost(model)
    assert list(model.graph.initializers) == order
    assert onnx.helper.printable_graph(ir.to_proto(model).graph) == before


def test_macs_at_input_shapes_follow_the_batch_through_shape_arithmetic() -> None:
    from shape_models_for_tests import batch_view

    model = batch_view()
    for batch in (1, 2, 7):
        cost = model_cost(model, input_shapes={"x": [batch, 64]})
        assert cost.macs == batch * 8 * 16 * 8  # MatMul [batch, 8, 8] x [8, 16]
        assert cost.unknown_macs_nodes == 0 and cost.unknown_activation_values == 0
        assert cost.input_shapes == {"x": [batch, 64]}
        # the peak is v [batch, 8, 8] and y [batch, 8, 16] live together at the MatMul
        assert cost.peak_activation_bytes == batch * (8 * 8 + 8 * 16) * 4


def test_detector_macs_scale_with_the_given_spatial_size() -> None:
    from shape_models_for_tests import upsample

    model = upsample()
    small = model_cost(model, input_shapes={"images": [1, 3, 32, 48]})
    large = model_cost(model, input_shapes={"images": [1, 3, 64, 96]})
    conv1 = 8 * 16 * 24 * 3 * 9  # stride 2: [1, 8, 16, 24] outputs, 3x3x3 each
    conv2 = 4 * 32 * 48 * 8  # 1x1 conv on the resized [1, 8, 32, 48] map
    assert small.macs == conv1 + conv2
    assert large.macs == 4 * small.macs
    assert small.unknown_macs_nodes == large.unknown_macs_nodes == 0
    # symbolic H/W counted as 1 is what the summary showed before: far below either
    assert model_cost(model).macs < small.macs / 100


def test_counts_that_cannot_be_made_at_the_shapes_say_so() -> None:
    from shape_models_for_tests import data_dependent

    model = data_dependent()
    cost = model_cost(model, input_shapes={"x": [3, 4]})
    # how many elements are nonzero is data: the MatMul is not counted, not guessed as 1 row
    assert cost.macs == 0 and cost.unknown_macs_nodes == 1
    assert cost.unknown_activation_values == 4  # idx, t, f, y
    note = cost_shapes_note(
        cost.input_shapes, cost.unknown_macs_nodes, cost.unknown_activation_values
    )
    assert note.startswith("MACs and activations at inputs x:3x4")
    assert "1 nodes' MACs and 4 activations could not be counted at these shapes" in note


def test_macs_in_branches_are_counted_at_the_input_shapes() -> None:
    from shape_models_for_tests import branched_view

    cost = model_cost(branched_view(), input_shapes={"x": [4, 64], "c": []})
    # both branches are counted (which one runs is data): 2 MatMuls [4, 8, 8] x [8, 16]
    assert cost.macs == 2 * 4 * 8 * 16 * 8 and cost.unknown_macs_nodes == 0


def test_an_omitted_optional_output_is_no_activation() -> None:
    text = """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[N, 1, 4] x, float[1, 12, 4] w, float[1, 12, 3] r) => (float[1, 1, 3] h) {
        , h = LSTM<hidden_size=3>(x, w, r)
    }
    """
    model = inputs_to_random_initializers(model_from_text(text), ["w", "r"])
    cost = model_cost(model, input_shapes={"x": [5, 1, 4]})
    assert cost.unknown_activation_values == 0
    assert cost.peak_activation_bytes == (5 * 4 + 3) * 4  # x and h; the unused Y is not made
