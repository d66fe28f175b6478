"""Fold a 2-D Transpose feeding Gemm into the Gemm's transA / transB flag.

::

    Gemm(Transpose(A, perm=[1, 0]), B, C, transA=t)  -> Gemm(A, B, C, transA=1-t)
    Gemm(A, Transpose(B, perm=[1, 0]), C, transB=t)  -> Gemm(A, B, C, transB=1-t)

Exact: Gemm reads the same elements. Left alone: a Transpose whose output is used elsewhere too
(the matcher refuses), and a Transpose without ``perm`` on an input whose rank is unknown.
Written with the rewriter rather than reusing a peer's rule because none folds transposes into
Gemm flags (onnxscript folds Transpose into MatMul only for its own fusions).
"""

from __future__ import annotations

from typing import Any

import onnx_ir as ir

from irpass.passes.fusion._rules import (
    FusionRule,
    RuleSetPass,
    attr_int,
    attr_ints,
    node_of,
    rank_of,
)
from irpass.registry import register

__all__ = ["FoldTransposeIntoGemmPass"]


def is_2d_swap(transpose: ir.Node) -> bool:
    """Whether the Transpose swaps the two axes of a 2-D tensor."""
    perm = attr_ints(transpose, "perm")
    if perm is None:
        return 2 in (rank_of(transpose.inputs[0]), rank_of(transpose.outputs[0]))
    return perm == [1, 0]


class FoldTransposeIntoGemm(FusionRule):
    """Gemm(Transpose(X)) -> Gemm(X) with the matching trans flag flipped."""

    stat = "fold_transpose_into_gemm"

    def __init__(self, operand: int) -> None:
        super().__init__(f"transpose_into_gemm_{'AB'[operand]}")
        self.operand = operand

    def pattern(self, op: Any, x: Any, other: Any) -> Any:
        t = op.Transpose(x, _allow_other_attributes=True, _outputs=["t_out"])
        args = (t, other) if self.operand == 0 else (other, t)
        return op.Gemm(*args, _allow_other_inputs=True, _outputs=["gemm_out"])

    def plan(self, t_out: ir.Value, **_: Any) -> Any:
        if not is_2d_swap(node_of(t_out)):
            return "the Transpose is not a 2-D swap"
        return None

    def rewrite(self, op: Any, x: Any, other: Any, gemm_out: ir.Value, **_: Any) -> Any:
        gemm = node_of(gemm_out)
        flag = "transA" if self.operand == 0 else "transB"
        attrs = dict(gemm.attributes)
        attrs[flag] = ir.AttrInt64(flag, 1 - attr_int(gemm, flag, 0))
        inputs = [x, other] if self.operand == 0 else [other, x]
        inputs.extend(gemm.inputs[2:])
        return op.Gemm(*inputs, **attrs)


@register
class FoldTransposeIntoGemmPass(RuleSetPass):
    """Fold 2-D Transposes feeding Gemm's A or B into its transA/transB attributes."""

    name = "fold_transpose_into_gemm"
    lossless = True

    def phases(self) -> list[list[FusionRule]]:
        """One phase: a rule for operand A and one for B."""
        return [[FoldTransposeIntoGemm(0), FoldTransposeIntoGemm(1)]]
