"""Weight-only INT8 / INT4 for MatMul-heavy models: block-wise weights, float activations.

Each constant weight ``W [K, N]`` of a MatMul (or Gemm's ``B``, either orientation) is split
into blocks of ``block_size`` consecutive input features per output column; a block gets a
symmetric scale ``max|w| / qmax`` (qmax 127 for int8, 7 for int4)::

    y = MatMul(x, W)                 ort:     y = com.microsoft.MatMulNBits(x, Wq, scales)
                                              (bits=4|8, K, N, block_size; zero point
                                              2**(bits-1) implied, bias as its 6th input)
                                     others:  y = MatMul(x, DequantizeLinear(Wq, s, axis=0,
                                                         block_size))    (opset >= 21)

Activations stay float, so no calibration data are needed; the error is the weights' alone.
ONNX Runtime's MatMulNBits unpacks blocks inside its kernel (memory-bound layers get faster);
the DequantizeLinear form is what TensorRT's weight-only INT4/INT8 path parses. Left float:
weights that are not 2-D constants, a Gemm with transA, alpha/beta != 1 or a 2-D bias, and
K smaller than one block.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np
import onnx_ir as ir

from irpass.errors import UnsupportedModelError
from irpass.ir import default_opset

from .plan import name_nodes

if TYPE_CHECKING:
    from .quantize import QuantizePass

__all__ = [
    "BlockQuantized",
    "block_quantize",
    "logical_weight",
    "quantize_weights_only",
    "replace_with_matmulnbits",
]

logger = logging.getLogger(__name__)

_MS_DOMAIN = "com.microsoft"


class BlockQuantized:
    """A weight ``[K, N]`` quantized in blocks along K: signed codes and one scale per block."""

    def __init__(self, codes: np.ndarray, scales: np.ndarray, bits: int, block_size: int) -> None:
        self.codes = codes  # int8 [K_padded, N]
        self.scales = scales  # float32 [k_blocks, N]
        self.bits = bits
        self.block_size = block_size

    def dequantize(self, rows: int) -> np.ndarray:
        """The float weight these codes stand for (first ``rows`` input features)."""
        scales = np.repeat(self.scales, self.block_size, axis=0)
        return (self.codes.astype(np.float32) * scales)[:rows]

    def packed(self) -> np.ndarray:
        """MatMulNBits' ``B``: uint8 ``[N, k_blocks, block_size * bits / 8]``.

        Codes are stored offset by ``2**(bits-1)``, the zero point MatMulNBits implies.
        """
        k_padded, n = self.codes.shape
        unsigned = (self.codes.astype(np.int16) + (1 << (self.bits - 1))).astype(np.uint8)
        by_column = unsigned.T.reshape(n, k_padded // self.block_size, self.block_size)
        if self.bits == 8:
            return np.ascontiguousarray(by_column)
        low, high = by_column[..., 0::2], by_column[..., 1::2]
        return np.ascontiguousarray((low & 0x0F) | ((high & 0x0F) << 4)).astype(np.uint8)


def block_quantize(weight: np.ndarray, bits: int, block_size: int) -> BlockQuantized:
    """Symmetric block-wise quantization of ``weight [K, N]`` along K (K padded with zeros)."""
    if bits not in (4, 8):
        raise ValueError(f"bits must be 4 or 8, got {bits}")
    k, n = weight.shape
    blocks = -(-k // block_size)
    padded = np.asarray(weight, dtype=np.float32)
    if blocks * block_size != k:
        padded = np.zeros((blocks * block_size, n), dtype=np.float32)
        padded[:k] = weight
    qmax = (1 << (bits - 1)) - 1
    grouped = padded.reshape(blocks, block_size, n)
    # max |w| without an |w| temporary, and rint/clip in place: one float temporary per
    # weight, which matters for multi-GB models (the weight itself may be a memory map)
    scales = np.maximum(grouped.max(axis=1), -grouped.min(axis=1)) / qmax
    scales = np.where(scales > 0, scales, 1.0).astype(np.float32)
    scaled = grouped / scales[:, None, :]
    np.rint(scaled, out=scaled)
    np.clip(scaled, -qmax, qmax, out=scaled)
    codes = scaled.astype(np.int8)
    return BlockQuantized(codes.reshape(blocks * block_size, n), scales, bits, block_size)


def _const(value: ir.Value | None) -> np.ndarray | None:
    if value is None or value.is_graph_input():  # a default the user may override
        return None
    tensor = ir.convenience.get_const_tensor(value)
    return None if tensor is None else tensor.numpy()


def _attr(node: ir.Node, name: str, default: float) -> float:
    attr = node.attributes.get(name)
    return default if attr is None else float(attr.value)


def logical_weight(node: ir.Node) -> tuple[np.ndarray, np.ndarray | None] | str:
    """The logical ``[K, N]`` weight and 1-D bias of a MatMul/Gemm, or why it is left alone."""
    if node.domain not in ("", "ai.onnx"):
        return "custom domain"
    weight = _const(node.inputs[1]) if len(node.inputs) > 1 else None
    if weight is None or weight.ndim != 2 or weight.dtype != np.float32:
        return "the weight is not a 2-D float constant"
    if node.op_type == "MatMul":
        return weight, None
    if (
        _attr(node, "transA", 0)
        or _attr(node, "alpha", 1.0) != 1.0
        or _attr(node, "beta", 1.0) != 1.0
    ):
        return "Gemm with transA or alpha/beta != 1"
    if _attr(node, "transB", 0):
        weight = weight.T
    bias = _const(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] is not None else None
    if (
        len(node.inputs) > 2
        and node.inputs[2] is not None
        and (bias is None or bias.size != weight.shape[1])
    ):
        return "the bias is not a constant vector"
    return weight, (None if bias is None else bias.reshape(-1).astype(np.float32))


def _initializer(graph: ir.Graph, name: str, array: np.ndarray) -> ir.Value:
    taken = set(graph.initializers)
    base, index = name, 1
    while name in taken:
        name, index = f"{base}_{index}", index + 1
    tensor = ir.tensor(array, name=name)
    value = ir.Value(name=name, shape=ir.Shape(array.shape), type=ir.TensorType(tensor.dtype))
    value.const_value = tensor
    graph.register_initializer(value)
    return value


def replace_with_matmulnbits(
    graph: ir.Graph, node: ir.Node, q: BlockQuantized, bias: np.ndarray | None, rows: int
) -> None:
    """Replace the MatMul/Gemm ``node`` by MatMulNBits reading ``q`` (``rows`` = K)."""
    n = q.codes.shape[1]
    weight_name = node.inputs[1].name or node.name  # type: ignore[union-attr]
    packed = _initializer(graph, f"{weight_name}_q{q.bits}", q.packed())
    scales = _initializer(
        graph, f"{weight_name}_scales", np.ascontiguousarray(q.scales.T).reshape(-1)
    )
    inputs: list[ir.Value | None] = [node.inputs[0], packed, scales]
    if bias is not None:
        inputs += [None, None, _initializer(graph, f"{weight_name}_bias", bias)]
    replacement = ir.node(
        "MatMulNBits",
        inputs,
        {"K": rows, "N": int(n), "bits": q.bits, "block_size": q.block_size},
        domain=_MS_DOMAIN,
        name=node.name,
    )
    output = node.outputs[0]
    replacement.outputs[0].name = output.name
    replacement.outputs[0].shape = output.shape
    replacement.outputs[0].type = output.type
    graph.insert_before(node, replacement)
    output.replace_all_uses_with(replacement.outputs[0], replace_graph_outputs=True)
    graph.remove(node, safe=True)


def _to_dequantize(graph: ir.Graph, node: ir.Node, q: BlockQuantized, rows: int) -> None:
    weight_value = node.inputs[1]
    assert weight_value is not None
    transposed = node.op_type == "Gemm" and bool(_attr(node, "transB", 0))
    codes = q.codes[:rows] if not transposed else q.codes[:rows].T
    dtype = ir.DataType.INT4 if q.bits == 4 else ir.DataType.INT8
    name = weight_value.name or node.name
    stored = _initializer(graph, f"{name}_q{q.bits}", codes)
    if dtype == ir.DataType.INT4:
        stored.const_value = ir.tensor(codes, dtype=ir.DataType.INT4, name=stored.name)
        stored.type = ir.TensorType(ir.DataType.INT4)
    scales = q.scales if not transposed else q.scales.T
    axis = 0 if not transposed else 1
    if rows % q.block_size:  # DequantizeLinear needs scales for the unpadded extent only
        scales = (
            scales[: -(-rows // q.block_size)]
            if not transposed
            else scales[:, : -(-rows // q.block_size)]
        )
    scale = _initializer(graph, f"{name}_scale", np.ascontiguousarray(scales))
    dq = ir.node(
        "DequantizeLinear",
        [stored, scale],
        {"axis": axis, "block_size": q.block_size},
        name=f"{node.name}_weight_DequantizeLinear",
    )
    dq.outputs[0].name = f"{name}_dequantized"
    dq.outputs[0].shape = weight_value.shape
    dq.outputs[0].type = ir.TensorType(ir.DataType.FLOAT)
    graph.insert_before(node, dq)
    node.replace_input_with(1, dq.outputs[0])


def _used_initializers(graph: ir.Graph) -> set[str]:
    """Initializers some node (of the graph or a subgraph) reads."""
    used = {v.name for n in graph.all_nodes() for v in n.inputs if v is not None}
    return {name for name in graph.initializers if name in used}


def quantize_weights_only(model: ir.Model, pass_: QuantizePass) -> bool:
    """Quantize every eligible MatMul/Gemm weight of the main graph; returns whether any was."""
    options = pass_.options
    bits = 4 if options.mode == "int4w" else 8
    ort = pass_.rule_set_name().startswith("ort")
    upgraded = False
    if not ort and (default_opset(model) or 0) < 21:
        from irpass.passes.canonicalize.upgrade_opset import UpgradeOpsetPass

        upgraded = UpgradeOpsetPass(UpgradeOpsetPass.Options(target=21))(model).modified
        if not upgraded:
            raise UnsupportedModelError(
                "blocked DequantizeLinear needs opset 21 and the model could not be upgraded",
                hint="use rules=ort (MatMulNBits works at any opset) or upgrade the model first",
            )
    graph = model.graph  # after the upgrade, which may rebuild it
    unnamed: dict[ir.Node, str | None] = {n: n.name for n in graph if not n.name}
    name_nodes(graph)  # names for exclude= and the logs; given back if nothing is quantized
    before = _used_initializers(graph)  # only weights this pass orphans are removed
    changed = 0
    for node in list(graph):
        if node.op_type not in ("MatMul", "Gemm"):
            continue
        if node.name in options.exclude or node.op_type in options.exclude:
            continue
        found = logical_weight(node)
        if isinstance(found, str):
            logger.debug("weight-only: %s left float: %s", node.name, found)
            continue
        weight, bias = found
        if weight.shape[0] < options.block_size:
            logger.debug("weight-only: %s has K=%d < block_size", node.name, weight.shape[0])
            pass_.stats["skipped_small"] += 1
            continue
        quantized = block_quantize(weight, bits, options.block_size)
        if ort:
            replace_with_matmulnbits(graph, node, quantized, bias, weight.shape[0])
        else:
            _to_dequantize(graph, node, quantized, weight.shape[0])
        changed += 1
    for name in before - _used_initializers(graph):
        del graph.initializers[name]
    if changed and ort and _MS_DOMAIN not in model.opset_imports:
        model.opset_imports[_MS_DOMAIN] = 1
    pass_.stats[f"weights_int{bits}"] = changed
    if not changed:
        for node, original in unnamed.items():
            node.name = original
    return changed > 0 or upgraded
