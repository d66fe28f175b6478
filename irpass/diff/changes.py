"""What differs in a matched node pair, and in the model's input/output signature."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx_ir as ir

from irpass.diff.model import (
    VALUE_COMPARE_LIMIT,
    Change,
    IOChange,
    NodeInfo,
    TensorInfo,
    fmt_shape,
    shapes_agree,
)
from irpass.diff.snapshot import static_dims, tensor_info

__all__ = ["io_changes", "node_changes"]


def _weights_differ(va: ir.Value | None, vb: ir.Value | None) -> bool | None:
    """True/False when both are comparable constants of equal shape; None when unknown."""
    if va is None or vb is None or va.const_value is None or vb.const_value is None:
        return None
    ta, tb = va.const_value, vb.const_value
    if ta is tb:
        return False
    if ta.dtype != tb.dtype or tuple(ta.shape) != tuple(tb.shape):
        return None
    if int(np.prod(static_dims(ta.shape))) > VALUE_COMPARE_LIMIT:
        return None
    try:
        return not np.array_equal(ta.numpy(), tb.numpy())
    except Exception:  # unreadable external data is "unknown", not an error
        return None


def node_changes(na: ir.Node, nb: ir.Node, ia: NodeInfo, ib: NodeInfo,
                 compare_values: bool) -> list[Change]:
    """Every difference of a matched pair: op, attributes, inputs, weights, outputs."""
    changes: list[Change] = []
    if (ia.domain, ia.op_type) != (ib.domain, ib.op_type):
        changes.append(Change("op_type", "op_type", ia.op_type, ib.op_type,
                              f"op {ia.op_type} -> {ib.op_type}"))
    for key in sorted(set(ia.attributes) | set(ib.attributes)):
        before, after = ia.attributes.get(key), ib.attributes.get(key)
        if before != after:
            if key not in ia.attributes:
                text = f"attribute {key} added: {after}"
            elif key not in ib.attributes:
                text = f"attribute {key} removed (was {before})"
            else:
                text = f"attribute {key}: {before} -> {after}"
            changes.append(Change("attribute", key, before, after, text))
    for slot in range(max(len(ia.inputs), len(ib.inputs))):
        ta = ia.inputs[slot] if slot < len(ia.inputs) else None
        tb = ib.inputs[slot] if slot < len(ib.inputs) else None
        wa, wb = ia.weights.get(slot), ib.weights.get(slot)
        field = f"input {slot}"
        if (ta is None) != (tb is None):
            present = (wb or tb) if ta is None else (wa or ta)
            kind = "weight" if (wb if ta is None else wa) is not None else "tensor"
            assert present is not None
            changes.append(Change("input", field, ta.type_text() if ta else None,
                                  tb.type_text() if tb else None,
                                  f"{field} {'added' if ta is None else 'removed'} "
                                  f"({kind} {present.type_text()})"))
            continue
        if ta is None or tb is None:
            continue
        if wa is not None and wb is not None:
            if wa.shape != wb.shape:
                changes.append(Change("weight_shape", field, list(wa.shape or ()),
                                      list(wb.shape or ()),
                                      f"weight {field} {fmt_shape(wa.shape)} -> "
                                      f"{fmt_shape(wb.shape)}"))
            dq_a, dq_b = "DequantizeLinear" in wa.via, "DequantizeLinear" in wb.via
            if wa.dtype != wb.dtype or dq_a != dq_b:
                quantized = dq_b and not dq_a
                changes.append(Change("quantized" if quantized else "weight_dtype", field,
                                      wa.type_text(), wb.type_text(),
                                      f"weight {field} {wa.type_text()} -> {wb.type_text()}"))
            elif compare_values and wa.shape == wb.shape:
                differ = _weights_differ(na.inputs[slot], nb.inputs[slot])
                if differ:
                    changes.append(Change("weight_values", field, wa.name, wb.name,
                                          f"weight {field} values changed"))
            continue
        if (wa is None) != (wb is None):
            info = wa or wb
            assert info is not None
            changes.append(Change("input", field, wa.type_text() if wa else ta.type_text(),
                                  wb.type_text() if wb else tb.type_text(),
                                  f"{field} became {'a constant' if wb else 'computed'}"))
            continue
        in_a, in_b = na.inputs[slot], nb.inputs[slot]
        prod_a = in_a.producer() if in_a is not None else None
        prod_b = in_b.producer() if in_b is not None else None
        dq_a = prod_a is not None and prod_a.op_type == "DequantizeLinear"
        dq_b = prod_b is not None and prod_b.op_type == "DequantizeLinear"
        if dq_a != dq_b:
            changes.append(Change("quantized", field, "float" if not dq_a else "QDQ",
                                  "QDQ" if dq_b else "float",
                                  f"{field} {'now' if dq_b else 'no longer'} passes through "
                                  f"QuantizeLinear/DequantizeLinear"))
        if ta.dtype != tb.dtype and ta.dtype and tb.dtype:
            changes.append(Change("dtype", field, ta.dtype, tb.dtype,
                                  f"{field} dtype {ta.dtype} -> {tb.dtype}"))
        if not shapes_agree(ta.shape, tb.shape):
            changes.append(Change("input_shape", field, list(ta.shape or ()), list(tb.shape or ()),
                                  f"{field} shape {fmt_shape(ta.shape)} -> "
                                  f"{fmt_shape(tb.shape)}"))
    for slot in range(max(len(ia.outputs), len(ib.outputs))):
        field = f"output {slot}"
        if slot >= len(ia.outputs) or slot >= len(ib.outputs):
            changes.append(Change("output", field, slot < len(ia.outputs), slot < len(ib.outputs),
                                  f"{field} {'added' if slot >= len(ia.outputs) else 'removed'}"))
            continue
        ta, tb = ia.outputs[slot], ib.outputs[slot]
        if ta.dtype != tb.dtype and ta.dtype and tb.dtype:
            changes.append(Change("dtype", field, ta.dtype, tb.dtype,
                                  f"{field} dtype {ta.dtype} -> {tb.dtype}"))
        if not shapes_agree(ta.shape, tb.shape):
            changes.append(Change("output_shape", field, list(ta.shape or ()), list(tb.shape or ()),
                                  f"{field} shape {fmt_shape(ta.shape)} -> "
                                  f"{fmt_shape(tb.shape)}"))
    return changes


# ----------------------------------------------------------------------------- signature, cost


def _signature(values: Sequence[ir.Value]) -> dict[str, str]:
    return {v.name or f"#{k}": (tensor_info(v) or TensorInfo("", None, None)).type_text()
            for k, v in enumerate(values)}


def io_changes(a: ir.Graph, b: ir.Graph) -> list[IOChange]:
    """Inputs (initializers excluded) and outputs added, removed or retyped from A to B."""
    changes = []
    for kind, sig_a, sig_b in (
        ("input", _signature([v for v in a.inputs if not v.is_initializer()]),
         _signature([v for v in b.inputs if not v.is_initializer()])),
        ("output", _signature(a.outputs), _signature(b.outputs)),
    ):
        for name in list(sig_a) + [n for n in sig_b if n not in sig_a]:
            before, after = sig_a.get(name), sig_b.get(name)
            if before == after:
                continue
            change = "added" if before is None else "removed" if after is None else "changed"
            changes.append(IOChange(kind, change, name, before, after))
    return changes
