"""Hygiene invariants: what a clean model never contains, checked after every pass.

Each invariant is a function returning the offending items (names) of one kind:

- ``unused_initializers``: initializers nobody reads (the BatchNorm-folding bug left 56 of them
  in an OCR model, and the file grew by 60 %);
- ``unused_values``: nodes none of whose outputs is read or a graph output (dead nodes);
- ``unused_opsets``: imported operator domains no node uses (the default domain always counts
  as used);
- ``shadowed_inputs``: graph inputs that also have an initializer (IR < 4 style weights; a
  user can ask to keep them overridable);
- ``constant_nodes``: ``Constant`` nodes in the main graph (canonical form holds constants as
  initializers; subgraph bodies may keep Constant nodes, and so may a constant graph output);
- ``consecutive_slices``: a Slice whose data comes from a Slice that nothing else reads, both
  with constant parameters (one Slice does both).

:func:`hygiene_issues` returns them all as ``{invariant: sorted names}``. The manager compares
them before and after each pass and attributes every new item to the pass that introduced it;
what is still there at the end of the run is reported by invariant and pass name.
"""

from __future__ import annotations

from collections.abc import Callable

import onnx_ir as ir

__all__ = ["INVARIANTS", "hygiene_issues"]


def _onnx(node: ir.Node) -> bool:
    return node.domain in ("", "ai.onnx")


def unused_initializers(model: ir.Model) -> list[str]:
    """Initializers that no node reads and that are no graph output."""
    return [
        name
        for graph in model.graphs()
        for name, value in graph.initializers.items()
        if not value.uses() and not value.is_graph_output() and not value.is_graph_input()
    ]


def unused_values(model: ir.Model) -> list[str]:
    """Outputs of dead nodes (no output read, none a graph output)."""
    found = []
    for graph in model.graphs():
        for node in graph:
            if not any(out.uses() or out.is_graph_output() for out in node.outputs):
                found.append(node.outputs[0].name if node.outputs else node.name or node.op_type)
    return [name or "?" for name in found]


def unused_opsets(model: ir.Model) -> list[str]:
    """Imported domains (other than the default one) that no node or function uses."""
    used = {node.domain for graph in model.graphs() for node in graph}
    for function in model.functions.values():
        used.add(function.domain)
        used.update(node.domain for node in function)
    return sorted(d for d in model.opset_imports if d not in ("", "ai.onnx") and d not in used)


def shadowed_inputs(model: ir.Model) -> list[str]:
    """Graph inputs that an initializer of the same name backs."""
    graph = model.graph
    return [v.name or "" for v in graph.inputs if v.name in graph.initializers]


def constant_nodes(model: ir.Model) -> list[str]:
    """Constant nodes of the main graph, except those producing a graph output.

    A constant graph output stays a node: an initializer listed as an output is legal ONNX
    but not what onnx-ir's constant lifting or every runtime expects.
    """
    return [
        node.outputs[0].name or node.name or "Constant"
        for node in model.graph
        if node.op_type == "Constant" and _onnx(node) and not node.outputs[0].is_graph_output()
    ]


def _is_constant(value: ir.Value | None) -> bool:
    if value is None:
        return False
    if value.const_value is not None:
        return True
    producer = value.producer()
    return producer is not None and producer.op_type == "Constant"


def _has_constant_params(node: ir.Node) -> bool:
    return all(_is_constant(value) for value in node.inputs[1:])


def consecutive_slices(model: ir.Model) -> list[str]:
    """Slices that read a constant-parameter Slice nothing else reads."""
    found = []
    for graph in model.graphs():
        for node in graph:
            if node.op_type != "Slice" or not _onnx(node) or not node.inputs:
                continue
            data = node.inputs[0]
            first = data.producer() if data is not None else None
            if (
                first is not None
                and first.op_type == "Slice"
                and _onnx(first)
                and len(data.uses()) == 1  # type: ignore[union-attr]
                and not data.is_graph_output()  # type: ignore[union-attr]
                and len(first.inputs) > 1
                and len(node.inputs) > 1
                and _has_constant_params(first)
                and _has_constant_params(node)
            ):
                found.append(node.outputs[0].name or node.name or "Slice")
    return found


#: Invariant name -> function listing the offending items.
INVARIANTS: dict[str, Callable[[ir.Model], list[str]]] = {
    "unused_initializers": unused_initializers,
    "unused_values": unused_values,
    "unused_opsets": unused_opsets,
    "shadowed_inputs": shadowed_inputs,
    "constant_nodes": constant_nodes,
    "consecutive_slices": consecutive_slices,
}


def hygiene_issues(model: ir.Model, skip: frozenset[str] = frozenset()) -> dict[str, list[str]]:
    """``{invariant: sorted offending names}`` for every invariant not in ``skip``."""
    issues = {}
    for name, check in INVARIANTS.items():
        if name in skip:
            continue
        found = sorted(set(check(model)))
        if found:
            issues[name] = found
    return issues
