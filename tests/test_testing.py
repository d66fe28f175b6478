"""irpass.testing.assert_unchanged: byte-identical, where an op-type list would miss changes."""

from __future__ import annotations

import onnx_ir as ir
import pytest

from irpass.testing import assert_unchanged, model_from_text, serialized

TEXT = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[1, 4] x) => (float[1, 4] y) <float[4] w = {1, 2, 3, 4}> {
    a = Mul(x, w)
    y = LeakyRelu<alpha=0.1>(a)
}
"""


def test_a_model_left_alone_passes_from_bytes_proto_or_copy() -> None:
    model = model_from_text(TEXT)
    for snapshot in (serialized(model), ir.to_proto(model), model.clone()):
        assert_unchanged(snapshot, model)


@pytest.mark.parametrize("change", ["attribute", "weight", "opset", "name"])
def test_changes_an_op_list_would_miss_are_caught(change: str) -> None:
    model = model_from_text(TEXT)
    before = serialized(model)
    ops = [n.op_type for n in model.graph]
    if change == "attribute":
        model.graph.node(1).attributes["alpha"] = ir.AttrFloat32("alpha", 0.2)
    elif change == "weight":
        model.graph.initializers["w"].const_value = ir.tensor([4.0, 3.0, 2.0, 1.0], name="w")
    elif change == "opset":
        model.opset_imports[""] = 18
    else:
        model.graph.node(0).outputs[0].name = "renamed"
    assert [n.op_type for n in model.graph] == ops
    with pytest.raises(AssertionError, match="the model changed"):
        assert_unchanged(before, model)


def test_the_model_itself_is_not_a_snapshot() -> None:
    model = model_from_text(TEXT)
    with pytest.raises(TypeError, match="snapshot"):
        assert_unchanged(model, model)
