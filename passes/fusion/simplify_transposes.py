"""Merge consecutive Transposes, cancel inverse pairs, drop identity Transposes.

::

    Transpose(Transpose(x, p1), p2) -> Transpose(x, q),  q[i] = p1[p2[i]]
    Transpose(x, p) with p == [0, 1, ..., r-1]  -> x

(``Transpose(Transpose(x, p), inverse(p))`` composes to the identity and disappears.) A
Transpose without ``perm`` reverses the axes and is handled when the input rank is known.
Left alone: an inner Transpose whose output has other users (the matcher refuses; merging would
duplicate work). Pure data movement, so exact.
"""

from __future__ import annotations

from typing import Any

import onnx_ir as ir

from irpass.passes.fusion._rules import (
    FusionRule,
    RuleSetPass,
    attr_ints,
    node_of,
    passthrough,
    rank_of,
)
from irpass.registry import register

__all__ = ["SimplifyTransposesPass"]


def perm_of(transpose: ir.Node) -> list[int] | None:
    """The permutation of a Transpose (default: reversed axes when the rank is known)."""
    perm = attr_ints(transpose, "perm")
    if perm is not None:
        return perm
    rank = rank_of(transpose.inputs[0])
    if rank is None:
        rank = rank_of(transpose.outputs[0])
    return None if rank is None else list(range(rank))[::-1]


class MergeTransposes(FusionRule):
    """Transpose(Transpose(x, p1), p2) -> Transpose(x, p1[p2]) (or x when that is the identity)."""

    stat = "merge_transposes"

    def pattern(self, op: Any, x: Any) -> Any:
        inner = op.Transpose(x, _allow_other_attributes=True, _outputs=["inner"])
        return op.Transpose(inner, _allow_other_attributes=True, _outputs=["outer"])

    def plan(self, inner: ir.Value, outer: ir.Value, **_: Any) -> list[int] | str:
        p1, p2 = perm_of(node_of(inner)), perm_of(node_of(outer))
        if p1 is None or p2 is None or len(p1) != len(p2):
            return "a permutation is unknown"
        return [p1[i] for i in p2]

    def rewrite(self, op: Any, x: Any, **bindings: Any) -> Any:
        perm = self.planned(x=x, **bindings)
        if perm == list(range(len(perm))):
            return passthrough(op, x)
        return op.Transpose(x, perm=perm)


class DropIdentityTranspose(FusionRule):
    """Transpose(x, [0, 1, ..., r-1]) -> x."""

    stat = "identity_transpose"

    def pattern(self, op: Any, x: Any) -> Any:
        return op.Transpose(x, _allow_other_attributes=True, _outputs=["out"])

    def plan(self, out: ir.Value, **_: Any) -> Any:
        perm = perm_of(node_of(out))
        if perm is None or perm != list(range(len(perm))):
            return "not an identity permutation"
        return None

    def rewrite(self, op: Any, x: Any, **_: Any) -> Any:
        return passthrough(op, x)


@register
class SimplifyTransposesPass(RuleSetPass):
    """Merge consecutive Transposes and remove identity ones (inverse pairs cancel)."""

    name = "simplify_transposes"
    lossless = True
    rule_phases = ((MergeTransposes, DropIdentityTranspose),)
