"""Factorize Gemm / MatMul layers with a constant weight into two thin ones (truncated SVD).

With the weight seen as ``y = W x`` (W: m x n, alpha folded in) and ``W ~ A B`` at rank r
(A: m x r, B: r x n, from :mod:`irpass.passes.lowrank.decompose`)::

    MatMul(x, W[..., n, m])        -> MatMul(MatMul(x, B^T[..., n, r]), A^T[..., r, m])
    MatMul(W[..., m, n], x)        -> MatMul(A[..., m, r], MatMul(B[..., r, n], x))
    Gemm(X, W, C, alpha, beta,     -> Gemm(Gemm(X, B, transA=tA, transB=1), A, C', transB=1,
         transA=tA, transB=tB)             beta=beta)
    Gemm(W, X, C, alpha, beta, ..) -> Gemm(A, Gemm(B, X, transB=tB), C', beta=beta)

A batched weight (``[..., n, m]``, leading dims broadcast against the activation's) is a
stack of matrices, each factorized at the same rank. The bias stays on the second node; in
data-aware mode the mean output error ``(W - A B) E[x]`` is added to it (C' = C + c / beta;
a MatMul gets it in the Add that already follows it, or a new Add). This saves parameters
and MACs only when ``r (m + n) < m n``; the engine factorizes only at ranks that save at
least ``min_saving`` of both.

Left alone (with the reason logged at debug level): no constant weight, a weight that is a
graph input, shared with another node or not float, 1-D MatMul operands, Gemm/MatMul in
If/Loop/Scan bodies (their inputs cannot be calibrated).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import ClassVar

import numpy as np
import onnx_ir as ir

from irpass.analysis.layout import weight_layout
from irpass.passes.lowrank.layer import (
    Candidate,
    attr_int,
    batch_index,
    constant_array,
    layer_name,
    private_constant,
)
from irpass.passes.lowrank.plan import LowRankPass
from irpass.registry import register

__all__ = ["FactorizeGemmPass", "GemmCandidate", "MatMulCandidate", "find_gemm_candidates"]

logger = logging.getLogger(__name__)


class MatMulCandidate(Candidate):
    """``MatMul`` with a constant weight of rank >= 2 on either side."""

    kind: ClassVar[str] = "matmul"

    @property
    def right(self) -> bool:
        """Whether the weight is the right operand (``x @ W``)."""
        return self.layout.weight_input == 1

    def _matrices(self) -> np.ndarray:
        # The layout's output / input axes of the weight become each slice's rows / columns.
        w = np.moveaxis(self.weight.astype(np.float64),
                        (self.layout.out_axis, self.layout.in_axis), (-2, -1))
        return w.reshape((-1, *w.shape[-2:]))

    def vectors(self, activation: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
        """Rows of ``x`` (weight on the right) or columns of ``x`` (weight on the left)."""
        x = activation
        if x.ndim < 2:
            x = x[None, :] if self.right else x[:, None]
        features = self.shape[2]
        for flat, select in batch_index(x.shape[:-2], self.weight.shape[:-2]):
            part = np.moveaxis(x[select], self.layout.act_in_axis, -1)
            yield flat, part.reshape(-1, features)

    def rewrite(
        self,
        factors: Sequence[tuple[np.ndarray, np.ndarray]],
        correction: np.ndarray | None,
        taken: set[str],
    ) -> list[ir.Node]:
        """Two MatMuls; the correction goes into the following bias Add or a new Add."""
        batch = self.weight.shape[:-2]
        a = np.stack([f[0] for f in factors])  # (slices, m, r)
        b = np.stack([f[1] for f in factors])  # (slices, r, n)
        rank = b.shape[1]
        x = self.activation
        if self.right:
            first_w = np.swapaxes(b, -1, -2).reshape((*batch, -1, rank))
            second_w = np.swapaxes(a, -1, -2).reshape((*batch, rank, -1))
            first = self.make_node("MatMul", [x, self.initializer(first_w, ".lowrank_b", taken)],
                               "/lowrank_in")
            second = self.make_node(
                "MatMul",
                [first.outputs[0], self.initializer(second_w, ".lowrank_a", taken)],
                "/lowrank_out",
            )
        else:
            first_w = b.reshape((*batch, rank, -1))
            second_w = a.reshape((*batch, -1, rank))
            first = self.make_node("MatMul", [self.initializer(first_w, ".lowrank_b", taken), x],
                               "/lowrank_in")
            second = self.make_node(
                "MatMul",
                [self.initializer(second_w, ".lowrank_a", taken), first.outputs[0]],
                "/lowrank_out",
            )
        nodes = [first, second]
        if correction is not None:
            # Broadcast along the output axis: last for x @ W, second to last for W @ x.
            shape = (*batch, 1, -1) if self.right else (*batch, -1, 1)
            c = correction.reshape(shape) if batch else correction.reshape(shape[-2:])
            if not self._fold_into_bias_add(c):
                nodes.append(self.make_node(
                    "Add", [second.outputs[0], self.initializer(c, ".lowrank_c", taken)],
                    "/lowrank_bias",
                ))
        self.replace_with(nodes)
        return nodes

    def _fold_into_bias_add(self, correction: np.ndarray) -> bool:
        """Add the correction to the constant of an ``Add`` that alone reads the output."""
        out = self.node.outputs[0]
        uses = list(out.uses())
        if out.is_graph_output() or len(uses) != 1 or uses[0][0].op_type != "Add":
            return False
        add = uses[0][0]
        if add.domain not in ("", "ai.onnx") or len(add.inputs) != 2:
            return False
        other = add.inputs[1 - uses[0][1]]
        bias = private_constant(other, add)
        if isinstance(bias, str) or other is None:
            return False
        # The output already has the correction's dims (those of the weight), so the Add's
        # output shape cannot change.
        folded = (bias.astype(np.float64) + correction).astype(bias.dtype)
        other.const_value = ir.tensor(folded, name=other.name)
        other.shape = ir.Shape(folded.shape)
        return True


class GemmCandidate(Candidate):
    """``Gemm`` with a constant A or B (``transA``/``transB``/``alpha`` honoured)."""

    kind: ClassVar[str] = "gemm"

    @property
    def right(self) -> bool:
        """Whether the weight is B (``X @ W``)."""
        return self.layout.weight_input == 1

    def _matrices(self) -> np.ndarray:
        # alpha A'B' with the constant operand as (out, in) along the layout's axes.
        w = np.moveaxis(self.weight.astype(np.float64),
                        (self.layout.out_axis, self.layout.in_axis), (0, 1))
        return (self._alpha * w)[None]

    @property
    def _alpha(self) -> float:
        attr = self.node.attributes.get("alpha")
        return 1.0 if attr is None else float(attr.as_float())

    @property
    def _beta(self) -> float:
        attr = self.node.attributes.get("beta")
        return 1.0 if attr is None else float(attr.as_float())

    def vectors(self, activation: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
        """Rows of A' (weight B) or columns of B' (weight A): the data's channel axis last."""
        yield 0, np.moveaxis(activation, self.layout.act_in_axis, -1)

    def rewrite(
        self,
        factors: Sequence[tuple[np.ndarray, np.ndarray]],
        correction: np.ndarray | None,
        taken: set[str],
    ) -> list[ir.Node]:
        """Two Gemms; C (corrected) on the second."""
        (a, b), = factors
        x = self.activation
        c = None
        if correction is not None:
            c = correction[0] if self.right else correction[0][:, None]
        bias, beta, leftover = self._bias_with(c, taken)
        if self.right:
            first = self.make_node(
                "Gemm", [x, self.initializer(b, ".lowrank_b", taken)], "/lowrank_in",
                {"transA": attr_int(self.node, "transA", 0), "transB": 1},
            )
            second = self.make_node(
                "Gemm", [first.outputs[0], self.initializer(a, ".lowrank_a", taken), bias],
                "/lowrank_out", {"transB": 1, "beta": beta},
            )
        else:
            first = self.make_node(
                "Gemm", [self.initializer(b, ".lowrank_b", taken), x], "/lowrank_in",
                {"transB": attr_int(self.node, "transB", 0)},
            )
            second = self.make_node(
                "Gemm", [self.initializer(a, ".lowrank_a", taken), first.outputs[0], bias],
                "/lowrank_out", {"beta": beta},
            )
        nodes = [first, second]
        if leftover is not None:
            nodes.append(self.make_node(
                "Add", [second.outputs[0], self.initializer(leftover, ".lowrank_c", taken)],
                "/lowrank_bias",
            ))
        self.replace_with(nodes)
        return nodes

    def _bias_with(
        self, c: np.ndarray | None, taken: set[str]
    ) -> tuple[ir.Value | None, float, np.ndarray | None]:
        """(C input, beta, correction left for an Add after the Gemm) carrying ``c``."""
        bias = self.node.inputs[2] if len(self.node.inputs) > 2 else None
        beta = self._beta
        if c is None:
            return bias, beta, None
        if bias is None:
            return self.initializer(c, ".lowrank_c", taken), 1.0, None
        array = private_constant(bias, self.node)
        if isinstance(array, str) or beta == 0:
            return bias, beta, c  # C is data or shared: correct after the Gemm
        folded = (array.astype(np.float64) + c / beta).astype(array.dtype)
        bias.const_value = ir.tensor(folded, name=bias.name)
        bias.shape = ir.Shape(folded.shape)
        return bias, beta, None


def find_gemm_candidates(graph: ir.Graph) -> tuple[list[Candidate], dict[str, str]]:
    """Gemm/MatMul nodes of ``graph`` that can be factorized, and why the others cannot."""
    found: list[Candidate] = []
    refused: dict[str, str] = {}
    for node in graph:
        if node.op_type not in ("Gemm", "MatMul") or node.domain not in ("", "ai.onnx"):
            continue
        result = _candidate(node)
        if isinstance(result, str):
            refused[layer_name(node)] = result
            logger.debug("not factorizing %s: %s", node.name, result)
        else:
            found.append(result)
    return found, refused


def _candidate(node: ir.Node) -> Candidate | str:
    layout = weight_layout(node)
    if layout is None:
        return "no constant weight of known rank"
    data = node.inputs[layout.data_input]
    if data is None or constant_array(data) is not None:
        return "both operands are constant (constant folding's job)"
    weight = private_constant(node.inputs[layout.weight_input], node)
    if isinstance(weight, str):
        return f"weight {weight}"
    if weight.ndim < 2 or min(weight.shape[-2:]) < 2:
        return f"weight of shape {list(weight.shape)} has nothing to factorize"
    if node.op_type == "Gemm":
        return GemmCandidate(node, layout, weight)
    return MatMulCandidate(node, layout, weight)


@register
class FactorizeGemmPass(LowRankPass):
    """Factorize Gemm/MatMul layers with a constant weight into two thin ones (SVD).

    Options as in ``svd``; Conv layers are left alone (``factorize_conv`` / ``svd`` do them).
    """

    name = "factorize_gemm"

    def find(self, graph: ir.Graph) -> tuple[list[Candidate], dict[str, str]]:  # noqa: D102
        return find_gemm_candidates(graph)
