"""Other INT8 forms of a MatMul / Gemm layer that never_slower may pick instead of float.

Static QDQ is not the only integer form ONNX Runtime runs fast. For a layer the speed check
would keep float, two more forms are timed (:mod:`.speed`), both with float input and output,
so the layer's neighbours do not change:

``dynamic`` (what ``onnxruntime.quantization.quantize_dynamic`` writes; ORT fuses it into
com.microsoft.DynamicQuantizeMatMul, the bias Add included)::

    y = Gemm(x, W, b, transB=1)   ->   xq, sx, zx = DynamicQuantizeLinear(x)
                                        s  = Mul(sx, s_w)              s_w: [N] per column
                                        y  = Add(Mul(Cast<to=FLOAT>(MatMulInteger(xq, Wq, zx)),
                                                     s), b)

with ``Wq [K, N]`` int8 symmetric per output column (zero point 0, implied) and the activation
grid measured per call (uint8, asymmetric), so no calibrated range is used;

``int8w`` (weight-only, block-wise: :mod:`.weight_only`'s com.microsoft.MatMulNBits, bits=8).

Left float (the rewrite returns why): weights that are not 2-D float constants, Gemm with
transA, alpha/beta != 1 or a bias that is not one value per output column, and, for int8w,
K smaller than one block.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

import numpy as np
import onnx_ir as ir

from .weight_only import block_quantize, logical_weight, replace_with_matmulnbits

__all__ = ["FORMS", "apply_forms", "to_dynamic", "to_int8w"]

logger = logging.getLogger(__name__)

_INT8W_BLOCK = 32


def _initializer(graph: ir.Graph, base: str, array: np.ndarray) -> ir.Value:
    name, index = base, 1
    while name in graph.initializers:
        name, index = f"{base}_{index}", index + 1
    tensor = ir.tensor(array, name=name)
    value = ir.Value(name=name, shape=ir.Shape(array.shape), type=ir.TensorType(tensor.dtype))
    value.const_value = tensor
    graph.register_initializer(value)
    return value


def to_dynamic(graph: ir.Graph, node: ir.Node) -> str | None:
    """Rewrite ``node`` to ORT's dynamic INT8 pattern; None when done, else why not."""
    found = logical_weight(node)
    if isinstance(found, str):
        return found
    weight, bias = found
    bound = np.max(np.abs(weight), axis=0)
    scale = np.where(bound > 0, bound / 127.0, 1.0).astype(np.float32)
    codes = np.clip(np.rint(weight / scale), -127, 127).astype(np.int8)
    base = node.name or "layer"
    quantized = _initializer(graph, f"{base}_weight_quantized", codes)
    weight_scale = _initializer(graph, f"{base}_weight_scale", scale)
    dql = ir.node("DynamicQuantizeLinear", [node.inputs[0]], num_outputs=3, name=f"{base}_dql")
    xq, sx, zx = dql.outputs
    xq.name, sx.name, zx.name = f"{base}_xq", f"{base}_x_scale", f"{base}_x_zero_point"
    scales = ir.node("Mul", [sx, weight_scale], name=f"{base}_scales")
    scales.outputs[0].name = f"{base}_scales"
    # the weights' zero point (0) is left implied: ORT still fuses, and it saves N bytes
    integer = ir.node("MatMulInteger", [xq, quantized, zx], name=f"{base}_matmulinteger")
    integer.outputs[0].name = f"{base}_int32"
    cast = ir.node("Cast", [integer.outputs[0]], {"to": ir.DataType.FLOAT}, name=f"{base}_cast")
    cast.outputs[0].name = f"{base}_cast"
    rescale = ir.node("Mul", [cast.outputs[0], scales.outputs[0]], name=f"{base}_rescale")
    added = [dql, scales, integer, cast, rescale]
    result = rescale.outputs[0]
    if bias is not None:
        add = ir.node(
            "Add", [result, _initializer(graph, f"{base}_bias", bias)], name=f"{base}_bias_add"
        )
        added.append(add)
        result.name = f"{base}_matmul"
        result = add.outputs[0]
    _replace(graph, node, added, result)
    return None


def to_int8w(graph: ir.Graph, node: ir.Node) -> str | None:
    """Rewrite ``node`` to MatMulNBits with int8 blocks; None when done, else why not."""
    found = logical_weight(node)
    if isinstance(found, str):
        return found
    weight, bias = found
    if weight.shape[0] < _INT8W_BLOCK:
        return f"K={weight.shape[0]} is smaller than one block ({_INT8W_BLOCK})"
    replace_with_matmulnbits(
        graph, node, block_quantize(weight, 8, _INT8W_BLOCK), bias, weight.shape[0]
    )
    return None


def _replace(graph: ir.Graph, node: ir.Node, added: list[ir.Node], result: ir.Value) -> None:
    output = node.outputs[0]
    result.shape, result.type = output.shape, output.type
    for new in added:
        graph.insert_before(node, new)
    original = output.name
    output.replace_all_uses_with(result, replace_graph_outputs=True)
    graph.remove(node, safe=True)
    result.name = original


#: Form name -> rewrite (None when done, else the reason it does not apply).
FORMS: Mapping[str, Callable[[ir.Graph, ir.Node], str | None]] = {
    "dynamic": to_dynamic,
    "int8w": to_int8w,
}


def apply_forms(model: ir.Model, forms: Mapping[str, str]) -> dict[str, str]:
    """Rewrite each node named in ``forms`` (node -> form) that is still float.

    Returns the nodes left as they were, with why. The weights the rewritten nodes read are
    removed when nothing else reads them.
    """
    graph = model.graph
    by_name = {node.name: node for node in graph}
    before = _used(graph)
    left: dict[str, str] = {}
    for name, form in forms.items():
        node = by_name.get(name)
        if node is None or node.op_type not in ("MatMul", "Gemm"):
            left[name] = "not a float MatMul/Gemm in this model"
            continue
        weight = node.inputs[1] if len(node.inputs) > 1 else None
        if weight is not None and weight.producer() is not None:
            left[name] = "its weight is already quantized"
            continue
        reason = FORMS[form](graph, node)
        if reason is not None:
            left[name] = reason
    if len(left) < len(forms):
        orphaned = before - _used(graph)
        for name in orphaned:
            value = graph.initializers[name]
            if not value.is_graph_input() and not value.is_graph_output():
                del graph.initializers[name]
        if any(f == "int8w" for n, f in forms.items() if n not in left):
            model.opset_imports.setdefault("com.microsoft", 1)
    return left


def _used(graph: ir.Graph) -> set[str]:
    """Initializers some node reads."""
    read = {v.name for n in graph.all_nodes() for v in n.inputs if v is not None}
    return {name for name in graph.initializers if name in read}
