"""Channel layout of weighted ops: which weight axis holds output / input channels, and groups.

Folding, pruning, low-rank factorization and per-channel quantization all need the same facts
about Conv, ConvTranspose, Gemm and MatMul; they read them here instead of re-deriving them:

=============  ====================  ========  ========  =====================  =============
op             weight                out_axis  in_axis   data channel axis      out channels
=============  ====================  ========  ========  =====================  =============
Conv           W [M, C/g, k...]      0         1         input 1, output 1      M
ConvTranspose  W [C, M/g, k...]      1         0         input 1, output 1      g * W.shape[1]
Gemm (B)       B [K, N] / [N, K]     1 / 0     0 / 1     A: 1 (0 if transA)     N
               (transB = 0 / 1)                          Y: 1
Gemm (A)       A [M, K] / [K, M]     0 / 1     1 / 0     B: 0 (1 if transB)     M
MatMul (right) W [..., K, N]         r-1       r-2       x: -1, y: -1           N
MatMul (left)  W [..., M, K]         r-2       r-1       x: -2, y: -2           M
=============  ====================  ========  ========  =====================  =============

With ``group = g`` a Conv's output channel ``m`` reads input channels of group
``m // (M/g)``; a ConvTranspose's input channel ``c`` writes output channels of group
``c // (C/g)``. :meth:`WeightLayout.per_out_channel` and :meth:`WeightLayout.per_in_channel`
expand a per-channel vector into an array that broadcasts against the weight with that group
structure, which is what folding a scale into a weight needs.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx_ir as ir

__all__ = ["WEIGHTED_OPS", "WeightLayout", "is_constant", "weight_layout"]

#: Op types :func:`weight_layout` understands (default ONNX domain).
WEIGHTED_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})


@dataclasses.dataclass(frozen=True)
class WeightLayout:
    """Where the channels of one weighted node live.

    Attributes:
        op_type: Conv, ConvTranspose, Gemm or MatMul.
        weight_input: Input index of the weight.
        bias_input: Input index of the bias (Conv/ConvTranspose: 2, Gemm: 2 (C)), or None.
        weight_rank: Rank of the weight tensor.
        out_axis: Axis of the weight that indexes output channels (non-negative).
        in_axis: Axis of the weight that indexes input channels (non-negative).
        groups: Convolution groups (1 for Gemm/MatMul).
        data_input: Input index of the activation the weight is applied to.
        act_in_axis: Channel axis of that activation (negative for MatMul: counted from the end).
        act_out_axis: Channel axis of the node's output (negative for MatMul).
    """

    op_type: str
    weight_input: int
    bias_input: int | None
    weight_rank: int
    out_axis: int
    in_axis: int
    groups: int
    data_input: int
    act_in_axis: int
    act_out_axis: int

    def out_channels(self, weight_shape: tuple[int, ...] | list[int]) -> int:
        """Number of output channels of a weight of this shape."""
        if self.op_type == "ConvTranspose":
            return int(weight_shape[self.out_axis]) * self.groups
        return int(weight_shape[self.out_axis])

    def in_channels(self, weight_shape: tuple[int, ...] | list[int]) -> int:
        """Number of input channels of a weight of this shape."""
        if self.op_type == "Conv":
            return int(weight_shape[self.in_axis]) * self.groups
        return int(weight_shape[self.in_axis])

    def groups_divide(self, weight_shape: tuple[int, ...] | list[int]) -> bool:
        """Whether the weight's axis 0 (Conv: M, ConvTranspose: C) splits into ``groups``.

        ONNX requires it, but a malformed model may not; :meth:`per_out_channel` and
        :meth:`per_in_channel` refuse such a weight, so callers check this first.
        """
        return self.groups >= 1 and int(weight_shape[0]) % self.groups == 0

    def _broadcast_shape(self, axis: int) -> list[int]:
        shape = [1] * self.weight_rank
        shape[axis] = -1
        return shape

    def _require_groups_divide(self, weight_shape: tuple[int, ...]) -> None:
        if not self.groups_divide(weight_shape):
            raise ValueError(
                f"{self.op_type}: weight {list(weight_shape)} does not split into "
                f"{self.groups} groups"
            )

    def per_out_channel(self, vector: np.ndarray, weight_shape: tuple[int, ...]) -> np.ndarray:
        """Expand one value per output channel so that it broadcasts against the weight.

        ``weight * layout.per_out_channel(scale, weight.shape)`` scales every output channel;
        for a grouped ConvTranspose the result has shape ``[C, M/g, 1, ...]``.
        """
        vector = np.asarray(vector)
        expected = self.out_channels(weight_shape)
        if vector.shape != (expected,):
            raise ValueError(
                f"{self.op_type}: {vector.shape} is not one value per output "
                f"channel ({expected}) of a weight {list(weight_shape)}"
            )
        if self.op_type == "ConvTranspose" and self.groups > 1:
            self._require_groups_divide(weight_shape)
            c_in, m_per_group = int(weight_shape[0]), int(weight_shape[1])
            group_of_row = np.arange(c_in) // (c_in // self.groups)
            index = group_of_row[:, None] * m_per_group + np.arange(m_per_group)[None, :]
            return vector[index].reshape((c_in, m_per_group) + (1,) * (self.weight_rank - 2))
        return vector.reshape(self._broadcast_shape(self.out_axis))

    def per_in_channel(self, vector: np.ndarray, weight_shape: tuple[int, ...]) -> np.ndarray:
        """Expand one value per input channel so that it broadcasts against the weight.

        For a grouped Conv the result has shape ``[M, C/g, 1, ...]`` (row ``m`` reads the
        channels of its group).
        """
        vector = np.asarray(vector)
        expected = self.in_channels(weight_shape)
        if vector.shape != (expected,):
            raise ValueError(
                f"{self.op_type}: {vector.shape} is not one value per input "
                f"channel ({expected}) of a weight {list(weight_shape)}"
            )
        if self.op_type == "Conv" and self.groups > 1:
            self._require_groups_divide(weight_shape)
            m, c_per_group = int(weight_shape[0]), int(weight_shape[1])
            group_of_row = np.arange(m) // (m // self.groups)
            index = group_of_row[:, None] * c_per_group + np.arange(c_per_group)[None, :]
            return vector[index].reshape((m, c_per_group) + (1,) * (self.weight_rank - 2))
        return vector.reshape(self._broadcast_shape(self.in_axis))


def is_constant(value: ir.Value | None) -> bool:
    """Whether ``value`` is an initializer or the output of a Constant node."""
    if value is None:
        return False
    return ir.convenience.get_const_tensor(value) is not None


def _int_attr(node: ir.Node, name: str, default: int) -> int:
    attr = node.attributes.get(name)
    return default if attr is None else int(attr.as_int())


def _rank(value: ir.Value | None) -> int | None:
    if value is None:
        return None
    tensor = ir.convenience.get_const_tensor(value)
    if tensor is not None:
        return len(tensor.shape)
    if value.shape is not None:
        return len(value.shape)
    producer = value.producer()
    if producer is not None and producer.op_type == "ConstantOfShape" and producer.inputs:
        # weights of old exporters: the rank is the length of the (constant) shape input
        shape = ir.convenience.get_const_tensor(producer.inputs[0]) if producer.inputs[0] else None
        return int(shape.numpy().size) if shape is not None and len(shape.shape) == 1 else None
    return None


def _input(node: ir.Node, index: int) -> ir.Value | None:
    return node.inputs[index] if index < len(node.inputs) else None


def weight_layout(node: ir.Node, weight_input: int | None = None) -> WeightLayout | None:
    """The layout of ``node``'s weight, or None when the node has no weight this module knows.

    For Conv/ConvTranspose the weight is input 1 whether it is constant or not. For Gemm and
    MatMul the weight is the constant operand (the right one when both are), or the operand
    ``weight_input`` names; None when neither operand is constant and none is named, or when
    the weight's rank is unknown.
    """
    if node.domain not in ("", "ai.onnx") or node.op_type not in WEIGHTED_OPS:
        return None
    op = node.op_type
    if op in ("Conv", "ConvTranspose"):
        rank = _rank(_input(node, 1))
        if rank is None or rank < 3:
            return None
        groups = _int_attr(node, "group", 1)
        bias = 2 if _input(node, 2) is not None else None
        out_axis, in_axis = (0, 1) if op == "Conv" else (1, 0)
        return WeightLayout(op, 1, bias, rank, out_axis, in_axis, groups, 0, 1, 1)
    if weight_input is None:
        if is_constant(_input(node, 1)):
            weight_input = 1
        elif is_constant(_input(node, 0)):
            weight_input = 0
        else:
            return None
    if weight_input not in (0, 1):
        raise ValueError(f"{op} has no weight at input {weight_input}")
    rank = _rank(_input(node, weight_input))
    if rank is None:
        return None
    if op == "Gemm":
        if rank != 2:
            return None
        bias = 2 if _input(node, 2) is not None else None
        trans_a, trans_b = _int_attr(node, "transA", 0), _int_attr(node, "transB", 0)
        if weight_input == 1:
            out_axis, in_axis = (0, 1) if trans_b else (1, 0)
            return WeightLayout(op, 1, bias, 2, out_axis, in_axis, 1, 0, 0 if trans_a else 1, 1)
        out_axis, in_axis = (1, 0) if trans_a else (0, 1)
        return WeightLayout(op, 0, bias, 2, out_axis, in_axis, 1, 1, 1 if trans_b else 0, 0)
    if rank < 2:
        return None  # a 1-D MatMul operand is a vector: no channel axis survives
    if weight_input == 1:
        return WeightLayout(op, 1, None, rank, rank - 1, rank - 2, 1, 0, -1, -1)
    return WeightLayout(op, 0, None, rank, rank - 2, rank - 1, 1, 1, -2, -2)
