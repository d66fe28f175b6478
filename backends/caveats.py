"""Per-node conditions an execution provider puts on ops it otherwise supports, as rule data.

ORT's usability checker decides by op type alone and only *prints* the caveats of the EP's
list ("Only 2D Conv is supported", "Input indices should be constant if not int32 type"); a
node that breaks one is rejected on the device and splits the graph there. Each rule below is
one such documented caveat made checkable: ``(op types, condition, what the EP requires)``.
:func:`violations` names every node that breaks a rule.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence

import onnx_ir as ir

from irpass.passes.fusion._rules import const_array

__all__ = [
    "CaveatRule",
    "const_inputs",
    "input_rank_in",
    "is_constant",
    "violations",
]

Condition = Callable[[ir.Node], bool]


@dataclasses.dataclass(frozen=True)
class CaveatRule:
    """Nodes of ``ops`` must satisfy ``holds``; ``requirement`` says what the EP needs."""

    ops: tuple[str, ...]
    holds: Condition
    requirement: str


def _rank(value: ir.Value | None) -> int | None:
    if value is None:
        return None
    array = const_array(value)
    if array is not None:
        return array.ndim
    return None if value.shape is None else len(value.shape)


def input_rank_in(*ranks: int, index: int = 0) -> Condition:
    """Input ``index`` has one of ``ranks`` (an unknown rank does not hold: it is unproven)."""
    return lambda node: len(node.inputs) > index and _rank(node.inputs[index]) in ranks


def is_constant(value: ir.Value) -> bool:
    """A constant, or a DequantizeLinear of constants (the EP takes a quantized weight whole)."""
    if const_array(value) is not None:
        return True
    producer = value.producer()
    return (
        producer is not None
        and producer.op_type == "DequantizeLinear"
        and all(v is None or const_array(v) is not None for v in producer.inputs)
    )


def const_inputs(*indices: int) -> Condition:
    """Inputs at ``indices`` that are present are constants (initializers, folded, or DQ'd)."""

    def holds(node: ir.Node) -> bool:
        return all(
            index >= len(node.inputs)
            or node.inputs[index] is None
            or is_constant(node.inputs[index])  # type: ignore[arg-type]
            for index in indices
        )

    return holds


def violations(
    nodes: Iterable[ir.Node], rules: Sequence[CaveatRule]
) -> list[dict[str, str]]:
    """``{"node", "op", "requirement"}`` for every node that breaks a rule of its op."""
    by_op: dict[str, list[CaveatRule]] = {}
    for rule in rules:
        for op in rule.ops:
            by_op.setdefault(op, []).append(rule)
    found = []
    for node in nodes:
        if node.domain not in ("", "ai.onnx"):
            continue
        for rule in by_op.get(node.op_type, ()):
            if not rule.holds(node):
                found.append(
                    {"node": str(node.name), "op": node.op_type, "requirement": rule.requirement}
                )
    return found
