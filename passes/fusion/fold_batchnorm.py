"""Fold BatchNormalization (inference mode) into the linear op next to it.

In inference mode BatchNormalization is a per-channel affine map on axis 1::

    BN(y) = gamma * (y - mean) / sqrt(var + eps) + beta = s * y + t
    s = gamma / sqrt(var + eps),  t = beta - mean * s

Rewrites, tried in this order (each phase to a fixpoint):

1. into the producer::

       BN(Conv(x, W, B))            -> Conv(x, W * s[:, None, ...], B * s + t)
       BN(ConvTranspose(x, W, B))   -> ConvTranspose(x, W', B * s + t)
                                       W is (C_in, M/g, k...): output channel g*(M/g)+j is
                                       W[group g rows, j], so W' scales dim 1 per group
       BN(Gemm(A, B, C))            -> Gemm(A, B * s (along N, honouring transB), beta*C*s + t)
       BN(MatMul(x, W))   x, W 2-D  -> Add(MatMul(x, W * s[None, :]), t)

   A missing bias counts as 0. Gemm's ``beta`` is folded into the new C.
2. into the consumer, where that is exact::

       Conv(BN(x), W, B)  -> Conv(x, W * s[in-channel of each group], B + sum_{c,k} W[m,c,k] t[c])
                             only when Conv pads nothing or t == 0 (padding pads zeros, not t)
       Gemm(BN(x), B, C)  -> Gemm(x, s-scaled B, beta*C + alpha * t @ B)   (transA = 0, x 2-D)
3. a BatchNormalization left alone becomes ``Add(Mul(x, s), t)`` with ``s``, ``t`` shaped
   ``(C, 1, ..., 1)`` for the input's rank (which must be known). By default (option
   ``lone=if_absorbed``) only next to a linear op: a Conv/Gemm/MatMul consumer absorbs the Mul
   (``fold_channel_affine`` does), and after a Conv whose weight could not be folded runtimes
   fuse Conv+Mul+Add (so no BN is ever left after a linear op). Elsewhere Mul+Add is two
   elementwise passes where BN is one (measured slower on DenseNet-121's BN->Relu->Conv).
   ``lone=mul_add`` always decomposes (for runtimes without BatchNormalization), ``lone=keep``
   never.

Which weight axis holds the output / input channels (Gemm's ``transB``, MatMul's last axis) and
how ``group`` splits them (ConvTranspose's columns, Conv's input channels) is read from
:func:`irpass.analysis.layout.weight_layout`, as every pass does.

Left alone: BN in training mode or with used statistics outputs, opset-7 BN with ``spatial=0``,
non-constant BN parameters, and (phases 1-2) a weight or bias that is a graph input, not
constant, or shared with a node that needs it unchanged (folding would keep both copies), and a
malformed grouped weight whose axis 0 does not split into its groups. A
weight shared only by linear ops that each feed a BN (how canonicalize's deduplication leaves
equal weights) is folded once per user and the shared original disappears. The folded constants are
computed in float64 and stored in the weight's dtype, so the result equals the original up to
float rounding.

Written with onnxscript's rewriter (pattern/check/rewrite) but not with its ready-made
``fuse_batchnorm`` rules: those cover Conv/ConvTranspose/Gemm producers only (no MatMul, no
folding into the consumer, no lone BN), do not check training mode or used statistics outputs,
and reuse the weight's name for the folded initializer.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import numpy as np
import onnx_ir as ir

from irpass.analysis.layout import WeightLayout, weight_layout
from irpass.pass_base import option
from irpass.passes.fusion._rules import (
    FusionRule,
    RuleSetPass,
    attr_float,
    attr_int,
    attr_ints,
    attr_str,
    const_array,
    node_of,
    rank_of,
    sole_user_is,
)
from irpass.registry import register

__all__ = ["FoldBatchNormPass"]

_FLOAT_KINDS = "f"


def bn_affine(bn: ir.Node) -> tuple[np.ndarray, np.ndarray] | str:
    """``(s, t)`` in float64 for an inference-mode BatchNormalization, or why not."""
    if attr_int(bn, "training_mode", 0) != 0:
        return "BatchNormalization is in training mode"
    if attr_int(bn, "spatial", 1) != 1:
        return "BatchNormalization has spatial=0 (per-element statistics)"
    if any(out.uses() or out.is_graph_output() for out in bn.outputs[1:]):
        return "BatchNormalization's running-statistics outputs are used"
    params = [const_array(v) for v in bn.inputs[1:5]]
    if len(params) != 4 or any(p is None for p in params):
        return "BatchNormalization's scale/bias/mean/var are not all constants"
    gamma, beta, mean, var = (np.asarray(p, dtype=np.float64).reshape(-1) for p in params)
    if not (gamma.size == beta.size == mean.size == var.size):
        return "BatchNormalization parameters differ in size"
    eps = attr_float(bn, "epsilon", 1e-5)
    s = gamma / np.sqrt(var + eps)
    t = beta - mean * s
    if not (np.all(np.isfinite(s)) and np.all(np.isfinite(t))):
        return "BatchNormalization scale is not finite (var + eps <= 0?)"
    return s, t


def _private_constant(value: ir.Value | None, user: ir.Node, what: str) -> np.ndarray | str:
    """The constant behind ``value`` if only ``user`` reads it, else a refusal reason."""
    if value is None:
        return f"{what} is missing"
    if value.is_graph_input():
        return f"{what} {value.name!r} is a graph input"
    array = const_array(value)
    if array is None:
        return f"{what} {value.name!r} is not a constant"
    if not sole_user_is(value, user) and not _all_users_fold(value):
        return f"{what} {value.name!r} is shared with a node that needs it unchanged"
    if array.dtype.kind not in _FLOAT_KINDS:
        return f"{what} {value.name!r} is not a float tensor"
    return array


_LINEAR_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def _all_users_fold(value: ir.Value) -> bool:
    """Whether every user of ``value`` is a linear op whose output only feeds a BN.

    Each such user (reading ``value`` as weight or bias) gets its own folded copy and the
    shared original goes away; equal weights merged by initializer deduplication look like this.
    """
    if value.is_graph_output():
        return False
    for user, index in value.uses():
        if user.op_type not in _LINEAR_OPS or user.domain not in ("", "ai.onnx") or index == 0:
            return False
        out = user.outputs[0]
        consumers = list(out.uses())
        if out.is_graph_output() or len(consumers) != 1:
            return False
        bn, bn_index = consumers[0]
        if bn.op_type != "BatchNormalization" or bn_index != 0:
            return False
        if isinstance(bn_affine(bn), str):
            return False
    return True


def _weight_and_bias(node: ir.Node) -> tuple[np.ndarray, np.ndarray | None] | str:
    w = _private_constant(node.inputs[1] if len(node.inputs) > 1 else None, node, "weight")
    if isinstance(w, str):
        return w
    bias_value = node.inputs[2] if len(node.inputs) > 2 else None
    if bias_value is None:
        return w, None
    b = _private_constant(bias_value, node, "bias")
    if isinstance(b, str):
        return b
    return w, b


def _name(value: ir.Value | None) -> str:
    return (None if value is None else value.name) or "w"


def _bias_name(node: ir.Node) -> str:
    """The replaced bias's name, or ``<weight>_bias`` when the node had none."""
    bias = node.inputs[2] if len(node.inputs) > 2 else None
    return bias.name if bias is not None and bias.name else _name(node.inputs[1]) + "_bias"


@dataclasses.dataclass(frozen=True)
class _Fold:
    """What folding a BN into a linear node needs.

    The BN's affine map ``s``, ``t``, the node's constant weight and bias, and where the
    weight's channels are (``layout``: output / input channel axes, groups).
    """

    node: ir.Node
    s: np.ndarray
    t: np.ndarray
    w: np.ndarray
    b: np.ndarray | None
    layout: WeightLayout

    def bias64(self, channels: int) -> np.ndarray:
        """The bias in float64 (zeros when the node has none)."""
        return np.zeros(channels) if self.b is None else self.b.astype(np.float64)


def _fold_for(node: ir.Node, affine: tuple[np.ndarray, np.ndarray]) -> _Fold | str:
    """The :class:`_Fold` of ``affine`` into ``node`` (weight at input 1), or why not."""
    wb = _weight_and_bias(node)
    if isinstance(wb, str):
        return wb
    w = wb[0]
    layout = weight_layout(node, weight_input=1)
    if layout is None:
        return f"{node.op_type} weight of shape {w.shape} has no channel layout"
    if not layout.groups_divide(w.shape):
        return f"{node.op_type} weight {w.shape} does not split into {layout.groups} groups"
    return _Fold(node, *affine, *wb, layout)


class _BnAfter(FusionRule):
    """BN(linear(x, W, B)) -> linear(x, W', B'): shared check of the producer side."""

    stat = "into_producer"
    adds_initializers = True
    linear_op = ""

    def pattern(self, op: Any, x: Any) -> Any:
        return op.BatchNormalization(
            getattr(op, self.linear_op)(x, _allow_other_inputs=True, _outputs=["linear_out"]),
            _allow_other_inputs=True,
            _allow_other_attributes=True,
            _outputs=["bn_out"],
        )

    def plan(self, linear_out: ir.Value, bn_out: ir.Value, **_: Any) -> _Fold | str:
        affine = bn_affine(node_of(bn_out))
        if isinstance(affine, str):
            return affine
        node = node_of(linear_out)
        fold = _fold_for(node, affine)
        if isinstance(fold, str):
            return fold
        channels = fold.layout.out_channels(fold.w.shape)
        if channels != fold.s.size:
            return f"{node.op_type} has {channels} output channels, BN has {fold.s.size}"
        return self.check_shapes(fold) or fold

    def check_shapes(self, fold: _Fold) -> str | None:
        """Why the bias does not fit the BN's channel count (None when it does)."""
        if fold.b is not None and fold.b.size != fold.s.size:
            return f"{fold.node.op_type} bias does not match the BN channels"
        return None

    def scaled_weight(self, fold: _Fold) -> np.ndarray:
        """The weight in float64 with every output channel scaled by ``s``."""
        w = fold.w.astype(np.float64)
        return w * fold.layout.per_out_channel(fold.s, w.shape)

    def emit(self, op: Any, x: ir.Value, fold: _Fold, w: np.ndarray, b: np.ndarray) -> Any:
        node = fold.node
        attrs = {k: v for k, v in node.attributes.items() if k != "beta"}
        dtype = fold.w.dtype
        w_value = self.new_initializer(op, w.astype(dtype), _name(node.inputs[1]), node)
        b_value = self.new_initializer(op, b.astype(dtype), _bias_name(node), node)
        return op.op(node.op_type, x, w_value, b_value, **attrs)


class FoldBatchNormIntoConv(_BnAfter):
    """BN(Conv(x, W, B)) -> Conv(x, W * s, B * s + t)."""

    linear_op = "Conv"

    def rewrite(self, op: Any, x: Any, **bindings: Any) -> Any:
        fold = self.planned(x=x, **bindings)
        b = fold.bias64(fold.s.size).reshape(-1) * fold.s + fold.t
        return self.emit(op, x, fold, self.scaled_weight(fold), b)


class FoldBatchNormIntoConvTranspose(FoldBatchNormIntoConv):
    """BN(ConvTranspose(x, W, B)) -> ConvTranspose(x, W scaled per output channel, B*s+t).

    Same algebra as for Conv; the layout knows that output channel ``g*(M/g) + j`` is column
    ``j`` of the rows of group ``g``.
    """

    linear_op = "ConvTranspose"


class FoldBatchNormIntoGemm(_BnAfter):
    """BN(Gemm(A, B, C)) -> Gemm(A, B scaled along N, beta * C * s + t)."""

    linear_op = "Gemm"

    def check_shapes(self, fold: _Fold) -> str | None:
        if fold.b is not None:
            try:
                np.broadcast_shapes(fold.b.shape, (fold.s.size,))
            except ValueError:
                return f"Gemm C {fold.b.shape} does not broadcast to the features"
        return None

    def rewrite(self, op: Any, x: Any, **bindings: Any) -> Any:
        fold = self.planned(x=x, **bindings)
        s, t = fold.s, fold.t
        beta = attr_float(fold.node, "beta", 1.0)
        c = np.zeros(s.size) if fold.b is None else beta * fold.b.astype(np.float64)
        return self.emit(op, x, fold, self.scaled_weight(fold), c * s + t)


class FoldBatchNormIntoMatMul(_BnAfter):
    """BN(MatMul(x, W)) with 2-D x and W -> Add(MatMul(x, W * s), t)."""

    linear_op = "MatMul"

    def check_shapes(self, fold: _Fold) -> str | None:
        if rank_of(fold.node.inputs[0]) != 2 or fold.w.ndim != 2:
            return "MatMul operands are not known to be 2-D (BN's axis 1 would not be features)"
        return None

    def rewrite(self, op: Any, x: Any, **bindings: Any) -> Any:
        fold = self.planned(x=x, **bindings)
        node = fold.node
        dtype = fold.w.dtype
        base = _name(node.inputs[1])
        w_value = self.new_initializer(op, self.scaled_weight(fold).astype(dtype), base, node)
        t_value = self.new_initializer(op, fold.t.astype(dtype), base + "_bias", node)
        return op.Add(op.MatMul(x, w_value), t_value)


def _conv_pads_nothing(node: ir.Node) -> bool:
    auto_pad = attr_str(node, "auto_pad", "NOTSET")
    if auto_pad not in ("NOTSET", "VALID"):
        return False
    pads = attr_ints(node, "pads")
    return pads is None or not any(pads)


class FoldBatchNormIntoNextConv(FusionRule):
    """Conv(BN(x), W, B) -> Conv(x, W * s_in, B + W . t) where padding cannot tell t from 0."""

    stat = "into_consumer"
    adds_initializers = True

    def pattern(self, op: Any, x: Any) -> Any:
        bn = op.BatchNormalization(
            x, _allow_other_inputs=True, _allow_other_attributes=True, _outputs=["bn_out"]
        )
        return op.Conv(bn, _allow_other_inputs=True, _outputs=["conv_out"])

    def plan(self, bn_out: ir.Value, conv_out: ir.Value, **_: Any) -> _Fold | str:
        affine = bn_affine(node_of(bn_out))
        if isinstance(affine, str):
            return affine
        conv = node_of(conv_out)
        fold = _fold_for(conv, affine)
        if isinstance(fold, str):
            return fold
        channels = fold.layout.in_channels(fold.w.shape)
        if channels != fold.s.size:
            return f"Conv has {channels} input channels, BN has {fold.s.size}"
        if np.any(fold.t != 0) and not _conv_pads_nothing(conv):
            return "Conv pads its input: padding would see 0 instead of the BN shift"
        return fold

    def rewrite(self, op: Any, x: Any, **bindings: Any) -> Any:
        fold = self.planned(x=x, **bindings)
        conv, layout = fold.node, fold.layout
        w = fold.w.astype(np.float64)
        m, c_per_group = w.shape[:2]
        w_new = w * layout.per_in_channel(fold.s, w.shape)
        # t of the input channel each (m, c) weight row reads: (M, C/g), or (1, C) ungrouped
        t_in = layout.per_in_channel(fold.t, w.shape)
        t_in = t_in.reshape(t_in.shape[:2])
        kernel_sum = w.reshape(m, c_per_group, -1).sum(axis=2)
        b = fold.bias64(m) + (kernel_sum * t_in).sum(axis=1)
        dtype = fold.w.dtype
        w_value = self.new_initializer(op, w_new.astype(dtype), _name(conv.inputs[1]), conv)
        b_value = self.new_initializer(op, b.astype(dtype), _bias_name(conv), conv)
        return op.Conv(x, w_value, b_value, **conv.attributes)


class FoldBatchNormIntoNextGemm(FusionRule):
    """Gemm(BN(x), B, C) -> Gemm(x, diag(s) B, beta*C + alpha * t B) for 2-D x, transA=0."""

    stat = "into_consumer"
    adds_initializers = True

    def pattern(self, op: Any, x: Any) -> Any:
        bn = op.BatchNormalization(
            x, _allow_other_inputs=True, _allow_other_attributes=True, _outputs=["bn_out"]
        )
        return op.Gemm(bn, _allow_other_inputs=True, _outputs=["gemm_out"])

    def plan(self, x: Any, bn_out: ir.Value, gemm_out: ir.Value, **_: Any) -> _Fold | str:
        affine = bn_affine(node_of(bn_out))
        if isinstance(affine, str):
            return affine
        gemm = node_of(gemm_out)
        if gemm.inputs[0] is not bn_out:
            return "BN does not feed Gemm's A operand"
        if rank_of(x) != 2:
            return "BN input is not known to be 2-D"
        fold = _fold_for(gemm, affine)
        if isinstance(fold, str):
            return fold
        if fold.layout.act_in_axis != 1:
            return "Gemm reads A transposed (BN's axis 1 would not be its features)"
        if fold.layout.in_channels(fold.w.shape) != fold.s.size:
            return "Gemm B does not match the BN channels"
        return fold

    def rewrite(self, op: Any, x: Any, **bindings: Any) -> Any:
        fold = self.planned(x=x, **bindings)
        gemm, layout = fold.node, fold.layout
        w = fold.w.astype(np.float64)
        b_eff = np.moveaxis(w, layout.in_axis, 0)  # (K, N)
        w_new = w * layout.per_in_channel(fold.s, w.shape)
        alpha = attr_float(gemm, "alpha", 1.0)
        beta = attr_float(gemm, "beta", 1.0)
        c = np.zeros(b_eff.shape[1]) if fold.b is None else beta * fold.b.astype(np.float64)
        c = c + alpha * (fold.t @ b_eff)
        dtype = fold.w.dtype
        attrs = {k: v for k, v in gemm.attributes.items() if k != "beta"}
        w_value = self.new_initializer(op, w_new.astype(dtype), _name(gemm.inputs[1]), gemm)
        c_value = self.new_initializer(op, c.astype(dtype), _bias_name(gemm), gemm)
        return op.Gemm(x, w_value, c_value, **attrs)


def _feeds_constant_linear(value: ir.Value) -> bool:
    """``value`` feeds exactly one Conv/Gemm/MatMul, as its data input, with a constant weight."""
    uses = list(value.uses())
    if value.is_graph_output() or len(uses) != 1:
        return False
    user, index = uses[0]
    return (
        user.op_type in ("Conv", "Gemm", "MatMul")
        and index == 0
        and len(user.inputs) > 1
        and const_array(user.inputs[1]) is not None
    )


def _made_by_linear(value: ir.Value) -> bool:
    """Whether ``value`` comes from a Conv/ConvTranspose/Gemm/MatMul.

    Its weights could not be folded (else phase 1 would have): runtimes still fuse a Mul+Add
    into it, and no BN is left after a linear op.
    """
    producer = value.producer()
    return producer is not None and producer.op_type in _LINEAR_OPS


class BatchNormToMulAdd(FusionRule):
    """BN(x) -> Add(Mul(x, s), t) with s, t shaped (C, 1, ..., 1) for x's rank.

    With ``only_if_absorbed`` the rewrite happens only next to a linear op: when the BN's single
    consumer is a Conv/Gemm/MatMul with a constant weight (``fold_channel_affine`` absorbs the
    Mul) or its producer is a linear op whose weights could not be folded (shared with another
    node; runtimes fuse Conv+Mul+Add). Elsewhere (e.g. BN -> Relu -> Conv in pre-activation
    nets) two elementwise passes would replace one and the graph would get slower.
    """

    stat = "to_mul_add"
    adds_initializers = True

    def __init__(self, only_if_absorbed: bool = False) -> None:
        super().__init__()
        self.only_if_absorbed = only_if_absorbed

    def pattern(self, op: Any, x: Any) -> Any:
        return op.BatchNormalization(
            x, _allow_other_inputs=True, _allow_other_attributes=True, _outputs=["bn_out"]
        )

    def plan(
        self, x: ir.Value, bn_out: ir.Value, **_: Any
    ) -> tuple[np.ndarray, np.ndarray, np.dtype] | str:
        """``(s, t, dtype)`` with s and t shaped ``(C, 1, ..., 1)`` for x's rank, or why not."""
        affine = bn_affine(node_of(bn_out))
        if isinstance(affine, str):
            return affine
        if self.only_if_absorbed and not (
            _feeds_constant_linear(bn_out) or _made_by_linear(x)
        ):
            return "no Conv/Gemm/MatMul next to the BN would absorb Mul+Add"
        rank = rank_of(x)
        if rank is None:
            rank = rank_of(bn_out)  # BN keeps the shape
        if rank is None or rank < 2:
            return "BatchNormalization input rank is unknown"
        dtype = x.dtype or bn_out.dtype
        if dtype is None:
            return "BatchNormalization input dtype is unknown"
        shape = (-1,) + (1,) * (rank - 2)
        s, t = affine
        return s.reshape(shape), t.reshape(shape), dtype.numpy()

    def rewrite(self, op: Any, x: ir.Value, bn_out: ir.Value, **bindings: Any) -> Any:
        s, t, dtype = self.planned(x=x, bn_out=bn_out, **bindings)
        bn = node_of(bn_out)
        base = bn.inputs[1].name if bn.inputs[1] is not None else None
        base = base or "bn"
        scale = self.new_initializer(op, s.astype(dtype), f"{base}_scale", bn)
        shift = self.new_initializer(op, t.astype(dtype), f"{base}_shift", bn)
        return op.Add(op.Mul(x, scale), shift)


@dataclasses.dataclass(frozen=True)
class FoldBatchNormOptions:
    """Options of fold_batchnorm."""

    lone: Literal["if_absorbed", "mul_add", "keep"] = option(
        "if_absorbed",
        "a BN folded into neither neighbour becomes Mul+Add: if_absorbed (only next to a "
        "Conv/Gemm/MatMul that absorbs it), mul_add (always), keep (never)",
    )


@register
class FoldBatchNormPass(RuleSetPass):
    """Fold inference BatchNormalization into the adjacent Conv/ConvTranspose/Gemm/MatMul.

    Phase 1 folds into the producing linear op, phase 2 into the consuming Conv/Gemm where
    that is exact, phase 3 turns a BatchNormalization left into Mul+Add (option ``lone``).
    See the module docstring for the algebra and for the cases left alone.
    """

    name = "fold_batchnorm"
    lossless = True
    growth_reason = (
        "a weight shared by several linear ops, each followed by a BatchNormalization "
        "(deduplication merges equal weights), is folded once per user"
    )
    Options = FoldBatchNormOptions

    def phases(self) -> list[list[FusionRule]]:
        """Into the producer, into the consumer, then the lone-BN rewrite the options ask for."""
        lone: list[FusionRule] = []
        if self.options.lone != "keep":
            lone.append(BatchNormToMulAdd(only_if_absorbed=self.options.lone == "if_absorbed"))
        return [
            [
                FoldBatchNormIntoConv(),
                FoldBatchNormIntoConvTranspose(),
                FoldBatchNormIntoGemm(),
                FoldBatchNormIntoMatMul(),
            ],
            [FoldBatchNormIntoNextConv(), FoldBatchNormIntoNextGemm()],
            lone,
        ]
