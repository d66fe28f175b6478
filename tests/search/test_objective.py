from __future__ import annotations

import pytest

from irpass.search.objective import estimated_cost, precision_costs_for
from irpass.testing import model_from_text

FLOAT = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[1, 64] x) => (float[1, 32] y) <float[64, 32] w = {WEIGHTS}> {
    y = MatMul(x, w)
}
"""
QDQ = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[1, 64] x) => (float[1, 32] y)
    <int8[64, 32] wq = {WEIGHTS}, float ws = {0.1}, int8 wz = {0}> {
    w = DequantizeLinear(wq, ws, wz)
    y = MatMul(x, w)
}
"""
HALF = """
<ir_version: 8, opset_import: ["" : 17]>
g (float16[1, 64] x) => (float16[1, 32] y) <float16[64, 32] w = {WEIGHTS}> {
    y = MatMul(x, w)
}
"""


def _model(text: str):
    return model_from_text(text.replace("WEIGHTS", ",".join(["1"] * 64 * 32)))


def test_int8_linear_ops_cost_less_than_float_on_every_backend() -> None:
    for backend in ("onnxruntime", "tensorrt", "nnapi", None):
        costs = precision_costs_for(backend)
        assert estimated_cost(_model(QDQ), costs) < estimated_cost(_model(FLOAT), costs)


def test_fp16_pays_off_on_gpus_only() -> None:
    trt, cpu = precision_costs_for("tensorrt"), precision_costs_for("onnxruntime")
    assert estimated_cost(_model(HALF), trt) < estimated_cost(_model(FLOAT), trt)
    macs = 64 * 32
    assert estimated_cost(_model(FLOAT), cpu) == pytest.approx(
        macs + cpu.per_weight_byte * macs * 4)
    assert estimated_cost(_model(HALF), cpu) == pytest.approx(
        macs * cpu.fp16 + cpu.per_weight_byte * macs * 2)
