"""Snapshots of IR nodes for the diff: tensor types, weights traced to constants, attributes."""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx_ir as ir

from irpass.diff.model import NodeInfo, TensorInfo, WeightInfo

__all__ = ["dtype_name", "snapshot", "static_dims", "tensor_info", "weight_info"]


def dtype_name(dtype: ir.DataType | None) -> str | None:
    """Lower-case dtype name (``float32``), or None when unknown."""
    if dtype is None:
        return None
    try:
        return ir.DataType(dtype).name.lower()
    except ValueError:
        return str(dtype)


def _shape_tuple(shape: ir.Shape | None) -> tuple[int | str | None, ...] | None:
    if shape is None:
        return None
    dims: list[int | str | None] = []
    for dim in shape:
        if isinstance(dim, int):
            dims.append(dim)
        else:
            dims.append(dim.value if getattr(dim, "value", None) is not None else None)
    return tuple(dims)


def tensor_info(value: ir.Value | None) -> TensorInfo | None:
    """Name, dtype and shape of ``value`` (a constant's own type fills gaps)."""
    if value is None:
        return None
    dtype = value.dtype
    shape = _shape_tuple(value.shape)
    if value.const_value is not None:
        dtype = dtype or value.const_value.dtype
        shape = shape or static_dims(value.const_value.shape)
    return TensorInfo(value.name or "", dtype_name(dtype), shape)


def static_dims(shape: Any) -> tuple[int, ...]:
    """Dims of a tensor's (static) shape as ints; a symbolic dim, which tensors lack, is -1."""
    return tuple(d if isinstance(d, int) else -1 for d in shape)


def _constant_of_shape(node: ir.Node) -> tuple[tuple[int, ...] | None, str | None]:
    shape: tuple[int, ...] | None = None
    if node.inputs and node.inputs[0] is not None and node.inputs[0].const_value is not None:
        shape = tuple(int(d) for d in node.inputs[0].const_value.numpy().reshape(-1))
    fill = node.attributes.get("value")
    dtype = dtype_name(fill.as_tensor().dtype) if fill is not None else "float"
    return shape, dtype


def weight_info(value: ir.Value | None, via: tuple[str, ...] = ()) -> WeightInfo | None:
    """Trace ``value`` back to a constant; None when it is computed from graph inputs."""
    if value is None:
        return None
    producer = value.producer()
    if value.const_value is not None and (value.is_initializer() or producer is None
                                          or producer.op_type == "Constant"):
        tensor = value.const_value
        source = "initializer" if value.is_initializer() else "constant"
        return WeightInfo(value.name or "", dtype_name(tensor.dtype), static_dims(tensor.shape),
                          source, via)
    if producer is None:
        return None
    if producer.op_type == "Constant" and producer.domain in ("", "ai.onnx"):
        attr = producer.attributes.get("value")
        if attr is not None and attr.type == ir.AttributeType.TENSOR:
            tensor = attr.as_tensor()
            return WeightInfo(value.name or "", dtype_name(tensor.dtype), static_dims(tensor.shape),
                              "constant", via)
        return WeightInfo(value.name or "", dtype_name(value.dtype), None, "constant", via)
    if producer.op_type == "ConstantOfShape":
        shape, dtype = _constant_of_shape(producer)
        return WeightInfo(value.name or "", dtype, shape, "constant_of_shape", via)
    if producer.op_type in _WEIGHT_PASS_THROUGH and len(via) < 4:
        inner = weight_info(producer.inputs[0] if producer.inputs else None,
                             (*via, producer.op_type))
        if inner is not None:
            # the consumer sees this value's shape; the stored dtype stays the inner one
            seen = _shape_tuple(value.shape)
            if seen is not None and all(isinstance(d, int) for d in seen):
                inner = dataclasses.replace(inner, shape=tuple(int(d or 0) for d in seen))
            return inner
    return None


#: Ops through which a constant stays a weight (quantized storage, casts, layout changes).
_WEIGHT_PASS_THROUGH = frozenset({"DequantizeLinear", "Cast", "Identity", "Unsqueeze", "Squeeze",
                                  "Reshape", "Flatten", "Transpose"})


def _graph_summary(graph: ir.Graph) -> str:
    """``<graph: 3 nodes: Abs, Identity x2>``: subgraph bodies are compared by op counts."""
    ops = collections.Counter(n.op_type for n in graph)
    listed = ", ".join(op if k == 1 else f"{op} x{k}" for op, k in sorted(ops.items()))
    return f"<graph: {len(graph)} nodes: {listed}>" if ops else "<graph: 0 nodes>"


def _attribute_value(attr: ir.Attr) -> Any:
    kind = attr.type
    if kind == ir.AttributeType.GRAPH:
        return _graph_summary(attr.as_graph())
    if kind == ir.AttributeType.GRAPHS:
        return [_graph_summary(g) for g in attr.as_graphs()]
    if kind == ir.AttributeType.TENSOR:
        tensor = attr.as_tensor()
        shape = static_dims(tensor.shape)
        if int(np.prod(shape)) <= 16:
            try:
                return {"tensor": dtype_name(tensor.dtype), "shape": list(shape),
                        "values": np.asarray(tensor.numpy()).reshape(-1).tolist()}
            except Exception:  # summaries must not fail on exotic dtypes
                pass
        return {"tensor": dtype_name(tensor.dtype), "shape": list(shape)}
    if kind in (ir.AttributeType.TENSORS, ir.AttributeType.SPARSE_TENSOR,
                ir.AttributeType.SPARSE_TENSORS, ir.AttributeType.TYPE_PROTO,
                ir.AttributeType.TYPE_PROTOS):
        return f"<{kind.name.lower()}>"
    value = attr.value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, float):
        return float(value)
    return value


def snapshot(side: str, nodes: Sequence[ir.Node]) -> list[NodeInfo]:
    """Plain :class:`NodeInfo` records of ``nodes`` (index = position in ``nodes``)."""
    infos = []
    for index, node in enumerate(nodes):
        weights = {}
        for slot, value in enumerate(node.inputs):
            weight = weight_info(value)
            if weight is not None:
                weights[slot] = weight
        infos.append(
            NodeInfo(
                side=side,
                index=index,
                name=node.name or "",
                op_type=node.op_type,
                domain=node.domain or "",
                attributes={k: _attribute_value(a) for k, a in sorted(node.attributes.items())},
                inputs=[tensor_info(v) for v in node.inputs],
                outputs=[tensor_info(v) or TensorInfo("", None, None) for v in node.outputs],
                weights=weights,
            )
        )
    return infos
