from __future__ import annotations

import onnx_ir as ir
from hypothesis import given, settings
from hypothesis import strategies as st
from shape_models_for_tests import batch_view, upsample

from irpass.analysis.bound_shapes import values_at
from irpass.analysis.shapes import inferred_values
from irpass.testing import model_from_text


def _bound_inference_only(model: ir.Model, shape: list[int]) -> ir.Shape | None:
    """ONNX shape inference alone with the input bound (what the cost analysis did)."""
    clone = model.clone()
    clone.graph.inputs[0].shape = ir.Shape(shape)
    return inferred_values(clone)["y"][0]


def test_batch_survives_shape_arithmetic() -> None:
    model = batch_view()
    # the test is about this: inference alone loses the batch through Squeeze/Reshape/Concat
    lost = _bound_inference_only(model, [3, 64])
    assert lost is None or not isinstance(lost[0], int)
    values = values_at(model, {"x": [3, 64]})
    assert values["y"][0] == ir.Shape([3, 8, 16])
    assert values["v"][0] == ir.Shape([3, 8, 8])
    assert values["y"][1] == ir.DataType.FLOAT


@settings(max_examples=8, deadline=None)
@given(batch=st.integers(1, 64))
def test_bound_batch_reaches_every_value(batch: int) -> None:
    values = values_at(batch_view(), {"x": [batch, 64]})
    assert values["y"][0] == ir.Shape([batch, 8, 16])
    assert values["shape"][0] == ir.Shape([3])


def test_spatial_dims_survive_computed_resize_sizes() -> None:
    model = upsample()
    values = values_at(model, {"images": [2, 3, 40, 24]})
    assert values["f"][0] == ir.Shape([2, 8, 20, 12])
    assert values["y"][0] == ir.Shape([2, 4, 40, 24])


def test_model_is_left_as_it_was() -> None:
    model = batch_view()
    before = ir.serde.serialize_model(model).SerializeToString()
    values_at(model, {"x": [5, 64]})
    assert ir.serde.serialize_model(model).SerializeToString() == before
    assert model.graph.inputs[0].shape == ir.Shape([ir.SymbolicDim("batch"), 64])


def test_data_dependent_dims_stay_unknown() -> None:
    text = """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[N, 4] x) => (int64[2, M] y) {
        y = NonZero(x)
    }
    """
    values = values_at(model_from_text(text), {"x": [3, 4]})
    shape = values["y"][0]
    assert shape is not None and shape[0] == 2 and not isinstance(shape[1], int)
