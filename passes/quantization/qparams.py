"""Quantization arithmetic: integer types, scales and zero points, (de)quantization in numpy.

The ONNX definitions the rest of the package relies on::

    QuantizeLinear:    q = saturate(round_half_even(x / scale) + zero_point)
    DequantizeLinear:  x = (q - zero_point) * scale

A range ``[lo, hi]`` becomes parameters in one of two ways:

- symmetric (TensorRT everywhere, every rule set's weights): ``zero_point = 0`` and
  ``scale = max(|lo|, |hi|) / qmax`` on the restricted grid ``[-qmax, qmax]`` (``-128`` stays
  unused so that negating a weight never saturates, as TensorRT and ONNX Runtime expect);
- asymmetric (ONNX Runtime and NNAPI activations): the range is widened to include 0 so that
  zero (padding, ReLU's floor) is exact, ``scale = (hi - lo) / (qmax - qmin)`` and
  ``zero_point = round(qmin - lo / scale)``. A ReLU output ([0, hi]) thus gets the lowest
  zero point, which is what lets a Q absorb the ReLU.

Bias is int32 with ``scale = s_input * s_weight`` (per output channel) and zero point 0, the
form ONNX Runtime's QLinearConv/QGemm and NNAPI take.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx_ir as ir

__all__ = [
    "INT4",
    "INT8",
    "INT32",
    "UINT4",
    "UINT8",
    "QType",
    "QuantParams",
    "activation_params",
    "bias_params",
    "dequantize",
    "qtype",
    "quantize",
    "weight_params",
]

#: Smallest scale written to a model: keeps 1/scale finite for constant-zero tensors.
_MIN_SCALE = 1e-12


@dataclasses.dataclass(frozen=True)
class QType:
    """An integer element type for quantized tensors."""

    name: str
    qmin: int
    qmax: int
    numpy: type
    ir_type: ir.DataType

    @property
    def levels(self) -> int:
        """Number of representable values."""
        return self.qmax - self.qmin + 1

    @property
    def signed(self) -> bool:
        """Whether negative values are representable."""
        return self.qmin < 0


INT8 = QType("int8", -128, 127, np.int8, ir.DataType.INT8)
UINT8 = QType("uint8", 0, 255, np.uint8, ir.DataType.UINT8)
INT4 = QType("int4", -8, 7, np.int8, ir.DataType.INT4)
UINT4 = QType("uint4", 0, 15, np.uint8, ir.DataType.UINT4)
INT32 = QType("int32", -(2**31), 2**31 - 1, np.int32, ir.DataType.INT32)

_BY_NAME = {t.name: t for t in (INT8, UINT8, INT4, UINT4, INT32)}


def qtype(name: str) -> QType:
    """The :class:`QType` called ``name`` (int8, uint8, int4, uint4, int32)."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown quantized type {name!r}; known: {', '.join(_BY_NAME)}") from None


@dataclasses.dataclass(frozen=True)
class QuantParams:
    """Scale and zero point of one quantized tensor (per-tensor, per-axis or per-block).

    ``scale`` and ``zero_point`` are 0-d for per-tensor parameters, 1-D along ``axis`` for
    per-channel ones and have the weight's rank for blocked ones (``block_size`` along
    ``axis``).
    """

    scale: np.ndarray
    zero_point: np.ndarray
    qtype: QType
    axis: int | None = None
    block_size: int | None = None

    @property
    def per_tensor(self) -> bool:
        """Whether one scale covers the whole tensor."""
        return self.scale.ndim == 0

    def same_as(self, other: QuantParams) -> bool:
        """Whether both describe the identical quantization grid."""
        return (
            self.qtype == other.qtype
            and self.axis == other.axis
            and self.block_size == other.block_size
            and np.array_equal(self.scale, other.scale)
            and np.array_equal(self.zero_point, other.zero_point)
        )

    def representable(self) -> tuple[float, float]:
        """The float interval a per-tensor grid covers without saturating."""
        scale = float(self.scale)
        zero = int(self.zero_point)
        return (self.qtype.qmin - zero) * scale, (self.qtype.qmax - zero) * scale


def activation_params(lo: float, hi: float, qt: QType, symmetric: bool) -> QuantParams:
    """Per-tensor parameters covering ``[lo, hi]`` (widened to include 0)."""
    lo = min(float(lo), 0.0)
    hi = max(float(hi), 0.0)
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise ValueError(f"range [{lo}, {hi}] is not finite")
    if symmetric:
        if qt.signed:
            bound = max(-lo, hi)
            scale = max(bound / qt.qmax, _MIN_SCALE)
            zero = 0
        else:  # symmetric unsigned: zero sits in the middle of the grid
            bound = max(-lo, hi)
            scale = max(2 * bound / (qt.levels - 1), _MIN_SCALE)
            zero = (qt.qmax + 1) // 2
    else:
        scale = max((hi - lo) / (qt.qmax - qt.qmin), _MIN_SCALE)
        zero = int(np.clip(np.round(qt.qmin - lo / scale), qt.qmin, qt.qmax))
    return QuantParams(
        np.array(scale, dtype=np.float32), np.array(zero, dtype=qt.numpy), qt, axis=None
    )


def weight_params(
    weight: np.ndarray,
    qt: QType,
    axis: int | None,
    *,
    min_scale: np.ndarray | float = 0.0,
) -> QuantParams:
    """Symmetric parameters for a weight: per-tensor (``axis=None``) or per channel of ``axis``.

    ``min_scale`` (scalar or one per channel) raises the scale where the bias would not fit an
    int32 of scale ``s_input * s_weight`` (a nearly dead channel with a live bias).
    """
    w = np.asarray(weight, dtype=np.float32)
    if axis is None:
        bound = np.array(float(np.max(np.abs(w))) if w.size else 0.0, dtype=np.float64)
    else:
        axis = axis % w.ndim
        reduce = tuple(i for i in range(w.ndim) if i != axis)
        bound = np.max(np.abs(w), axis=reduce).astype(np.float64) if w.size else np.zeros(0)
    scale = np.maximum(np.maximum(bound / qt.qmax, min_scale), _MIN_SCALE).astype(np.float32)
    zeros: np.ndarray = np.zeros(scale.shape, dtype=qt.numpy)
    return QuantParams(scale, zeros, qt, axis=axis)


def bias_params(input_scale: np.ndarray, weight_scale: np.ndarray) -> QuantParams:
    """int32 bias parameters: ``scale = s_input * s_weight`` (per weight channel), zero point 0."""
    scale = (np.float32(input_scale) * np.asarray(weight_scale, dtype=np.float32)).astype(
        np.float32
    )
    scale = np.maximum(scale, np.finfo(np.float32).tiny)
    axis = None if scale.ndim == 0 else 0
    return QuantParams(scale, np.zeros(scale.shape, dtype=np.int32), INT32, axis=axis)


def _broadcast(
    values: np.ndarray, params: QuantParams, rank: int, shape: tuple[int, ...]
) -> np.ndarray:
    if values.ndim == 0:
        return values
    if params.block_size is not None and params.axis is not None:
        return np.repeat(values, params.block_size, axis=params.axis)[
            tuple(slice(0, d) for d in shape)
        ]
    assert params.axis is not None
    index = [1] * rank
    index[params.axis] = -1
    return values.reshape(index)


def quantize(x: np.ndarray, params: QuantParams) -> np.ndarray:
    """QuantizeLinear in numpy: round half to even, add the zero point, saturate."""
    x = np.asarray(x, dtype=np.float32)
    scale = _broadcast(params.scale, params, x.ndim, x.shape).astype(np.float32)
    zero = _broadcast(params.zero_point, params, x.ndim, x.shape).astype(np.int64)
    q = np.rint(x / scale).astype(np.int64) + zero
    return np.clip(q, params.qtype.qmin, params.qtype.qmax).astype(params.qtype.numpy)


def dequantize(q: np.ndarray, params: QuantParams) -> np.ndarray:
    """DequantizeLinear in numpy."""
    q = np.asarray(q)
    scale = _broadcast(params.scale, params, q.ndim, q.shape).astype(np.float32)
    zero = _broadcast(params.zero_point, params, q.ndim, q.shape).astype(np.int64)
    return ((q.astype(np.int64) - zero) * scale).astype(np.float32)
