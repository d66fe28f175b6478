"""One set of functions to compare model outputs: tolerance, cosine, SQNR, max-abs, agreement.

Verification (is a lossless pass equal?), numeric diff (where do two models diverge?),
evaluation (what did a lossy pass cost?) and the quantization / pruning / low-rank passes
(per-layer SQNR, drift budgets) all compare arrays; they do it here so that a metric means the
same thing in every report.

Every function accepts arrays of any rank, 0-d included, and compares in float64. Non-numeric
arrays (strings, objects) compare by equality. The narrow types numpy lacks (ml_dtypes'
bfloat16, float8, float4, int4, int2) compare by value in float64: floats within one unit in
the last place of their type, integers exactly.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import ml_dtypes
import numpy as np

__all__ = [
    "SQNR_CAP_DB",
    "FidelityAccumulator",
    "OutputMismatch",
    "TensorComparison",
    "Tolerance",
    "compare_outputs",
    "compare_tensor",
    "cosine",
    "max_abs_error",
    "sqnr_db",
    "tolerance_for",
    "top1_agreement",
]

#: SQNR reported for outputs identical to the reference (float32 rounding is ~140 dB); a cap
#: keeps reports valid JSON (no infinities).
SQNR_CAP_DB = 200.0


@dataclasses.dataclass(frozen=True)
class Tolerance:
    """When a float tensor equals its reference up to rounding.

    Per element (``b`` the reference, ``a`` the candidate)::

        |a - b| <= atol * s + rtol * |b|        s = max(1, rms(b))

    The rounding error of an element is proportional to the magnitudes of the terms that
    produced it, not to its own value (cancellation leaves small elements with absolute
    errors) and not to the largest element of the tensor: the tensor's RMS estimates that
    magnitude, so one large element (1000) does not license a 0.01 -> 0.09 change elsewhere,
    as scaling by ``max|b|`` did. On top of that a whole-tensor guard: the SQNR must reach
    ``min_sqnr_db`` (a systematic shift of every element by just under the per-element bound
    is not rounding), checked when the reference carries signal above ``atol``.
    """

    rtol: float
    atol: float
    min_sqnr_db: float

    def scale(self, reference: np.ndarray) -> float:
        """``max(1, rms)`` of the finite elements of ``reference`` (float64, flat)."""
        finite = reference[np.isfinite(reference)]
        if finite.size == 0:
            return 1.0
        return max(1.0, float(np.sqrt(np.mean(finite * finite))))


_TOLERANCES: dict[Any, Tolerance] = {
    np.dtype(np.float64): Tolerance(rtol=1e-7, atol=1e-9, min_sqnr_db=160.0),
    np.dtype(np.float32): Tolerance(rtol=1e-3, atol=1e-4, min_sqnr_db=80.0),
    np.dtype(np.float16): Tolerance(rtol=1e-2, atol=1e-3, min_sqnr_db=40.0),
}


def _allowed(tol: Tolerance, reference: np.ndarray, tolerance_scale: float) -> np.ndarray:
    """Per-element bound for finite float64 ``reference`` values."""
    return tolerance_scale * (tol.atol * tol.scale(reference) + tol.rtol * np.abs(reference))


def _sqnr_guard(
    tol: Tolerance, reference: np.ndarray, actual: np.ndarray, tolerance_scale: float
) -> float | None:
    """The SQNR (dB) when it is below the tolerance's guard, else None."""
    signal = float(np.dot(reference, reference))
    if reference.size == 0 or math.sqrt(signal / reference.size) <= tol.atol * tolerance_scale:
        return None
    diff = reference - actual
    sqnr = _sqnr_from_sums(signal, float(np.dot(diff, diff)))
    guard = tol.min_sqnr_db - 20.0 * math.log10(max(tolerance_scale, 1e-12))
    return sqnr if sqnr < guard else None


def tolerance_for(dtype: Any) -> Tolerance | None:
    """The tolerance for a float dtype; None means exact comparison (ints, bools, strings)."""
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        return None
    if dtype in _TOLERANCES:
        return _TOLERANCES[dtype]
    if _is_ml_dtype(dtype):
        try:
            eps = float(ml_dtypes.finfo(dtype).eps)
        except ValueError:  # ml_dtypes' narrow integers
            return None
        # one unit in the last place (the smallest normal near zero): a rounding flip is all
        # a lossless rewrite may cost
        tiny = float(ml_dtypes.finfo(dtype).smallest_normal)
        return Tolerance(rtol=eps, atol=tiny, min_sqnr_db=-20.0 * math.log10(eps))
    return None


def _is_ml_dtype(dtype: np.dtype) -> bool:
    """A narrow type numpy lacks (bfloat16, float8, int4, ...), provided by ml_dtypes."""
    return dtype.type.__module__ == ml_dtypes.__name__


def _numeric(array: np.ndarray) -> bool:
    return array.dtype.kind in "biufc"


def _flat64(array: np.ndarray) -> np.ndarray:
    """A flat float64 view of a numeric array (0-d becomes length 1)."""
    return np.asarray(array).astype(np.float64, copy=False).reshape(-1)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of the flattened arrays over elements finite in both.

    1.0 when both are all zero, 0.0 when exactly one is; 1.0 for equal non-numeric arrays.
    """
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"cosine of arrays of shapes {list(a.shape)} and {list(b.shape)}")
    if not (_numeric(a) and _numeric(b)):
        return 1.0 if np.array_equal(a, b) else 0.0
    x, y = _flat64(a), _flat64(b)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    nx, ny = float(np.dot(x, x)), float(np.dot(y, y))
    if nx == 0.0 and ny == 0.0:
        return 1.0
    if nx == 0.0 or ny == 0.0:
        return 0.0
    return float(np.clip(np.dot(x, y) / math.sqrt(nx * ny), -1.0, 1.0))


def _sqnr_from_sums(signal: float, noise: float) -> float:
    if noise == 0.0:
        return SQNR_CAP_DB
    if signal == 0.0:
        return -SQNR_CAP_DB
    return float(np.clip(10.0 * math.log10(signal / noise), -SQNR_CAP_DB, SQNR_CAP_DB))


def sqnr_db(reference: np.ndarray, test: np.ndarray) -> float:
    """``10 log10(sum ref^2 / sum (ref - test)^2)`` in dB, capped at ±:data:`SQNR_CAP_DB`."""
    r, t = _flat64(reference), _flat64(test)
    if r.shape != t.shape:
        raise ValueError(f"sqnr of arrays of {r.size} and {t.size} elements")
    keep = np.isfinite(r) & np.isfinite(t)
    r, t = r[keep], t[keep]
    return _sqnr_from_sums(float(np.dot(r, r)), float(np.dot(r - t, r - t)))


def max_abs_error(a: np.ndarray, b: np.ndarray) -> float:
    """Largest absolute difference over finite elements; inf on a shape or value mismatch.

    Non-numeric arrays give 0.0 when equal and inf otherwise.
    """
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        return float("inf")
    if not (_numeric(a) and _numeric(b)):
        return 0.0 if np.array_equal(a, b) else float("inf")
    x, y = _flat64(a), _flat64(b)
    keep = np.isfinite(x) & np.isfinite(y)  # inf - inf would warn and compare nothing
    if not keep.any():
        return 0.0
    diff = np.abs(x[keep] - y[keep])
    finite = np.isfinite(diff)  # float64 extremes can still overflow
    return float(diff[finite].max()) if finite.any() else float("inf")


def top1_agreement(reference: np.ndarray, test: np.ndarray, axis: int = -1) -> float:
    """Fraction of positions where the argmax over ``axis`` agrees (1.0 for empty arrays)."""
    reference, test = np.asarray(reference), np.asarray(test)
    if reference.ndim == 0 or reference.size == 0:
        return 1.0
    agree = np.argmax(reference, axis=axis) == np.argmax(test, axis=axis)
    return float(np.mean(agree))


@dataclasses.dataclass(frozen=True)
class TensorComparison:
    """How one tensor compares with its reference."""

    cosine: float
    max_abs_error: float
    mean_abs_error: float
    reference_max: float
    diverged: bool


def compare_tensor(
    reference: np.ndarray, actual: np.ndarray, tolerance_scale: float = 1.0
) -> TensorComparison:
    """Cosine, max/mean abs error, max|ref| and whether ``actual`` leaves the tolerance.

    "Diverged" applies the reference dtype's :class:`Tolerance` (per element and the SQNR
    guard; exact equality for non-float dtypes); differing non-finite values and shape
    mismatches diverge.
    """
    reference, actual = np.asarray(reference), np.asarray(actual)
    if reference.shape != actual.shape:
        return TensorComparison(0.0, float("inf"), float("inf"), float("nan"), True)
    if reference.size == 0:
        return TensorComparison(1.0, 0.0, 0.0, 0.0, False)
    if not (_numeric(reference) and _numeric(actual)):
        equal = bool(np.array_equal(reference, actual))
        inf = float("inf")
        return TensorComparison(float(equal), 0.0 if equal else inf, 0.0 if equal else inf,
                                float("nan"), not equal)
    if reference.dtype == actual.dtype and np.array_equal(reference, actual):
        # lossless rewrites often reproduce tensors bit for bit: skip the arithmetic
        ref_max = float(np.max(np.abs(reference)))
        if np.isfinite(ref_max):
            return TensorComparison(1.0, 0.0, 0.0, ref_max, False)
    r, g = _flat64(reference), _flat64(actual)
    finite_r, finite_g = np.isfinite(r), np.isfinite(g)
    nonfinite_differs = not np.array_equal(finite_r, finite_g) or not np.array_equal(
        r[~finite_r], g[~finite_r], equal_nan=True
    )
    keep = finite_r & finite_g
    r, g = r[keep], g[keep]
    if r.size == 0:
        nan = float("nan")
        return TensorComparison(nan, nan, nan, nan, nonfinite_differs)
    err = np.abs(r - g)
    abs_r = np.abs(r)
    ref_max = float(abs_r.max())
    tol = tolerance_for(reference.dtype)
    if tol is None:
        diverged = bool(err.max() > 0.0)
    else:
        diverged = bool(np.any(err > _allowed(tol, r, tolerance_scale)))
        diverged = diverged or _sqnr_guard(tol, r, g, tolerance_scale) is not None
    return TensorComparison(
        cosine=cosine(r, g),
        max_abs_error=float(err.max()),
        mean_abs_error=float(err.mean()),
        reference_max=ref_max,
        diverged=diverged or nonfinite_differs,
    )


@dataclasses.dataclass(frozen=True)
class OutputMismatch:
    """The worst difference found for one output."""

    output: str
    max_abs_error: float
    allowed: float
    detail: str

    def __str__(self) -> str:
        return f"output {self.output!r}: {self.detail}"


def _mismatch(
    name: str, reference: Any, actual: Any, tolerance_scale: float
) -> OutputMismatch | None:
    ref, got = np.asarray(reference), np.asarray(actual)
    if ref.shape != got.shape:
        shapes = f"shape {list(got.shape)} != {list(ref.shape)}"
        return OutputMismatch(name, float("inf"), 0.0, shapes)
    if ref.dtype != got.dtype:
        return OutputMismatch(name, float("inf"), 0.0, f"dtype {got.dtype} != {ref.dtype}")
    tol = tolerance_for(ref.dtype)
    if tol is None:
        if _is_ml_dtype(ref.dtype):  # narrow integers: compare their values
            ref, got = ref.astype(np.int64), got.astype(np.int64)
        if not np.array_equal(ref, got):
            count = int(np.sum(ref != got))
            return OutputMismatch(name, float("inf"), 0.0, f"{count} elements differ exactly")
        return None
    if ref.size == 0:
        return None
    r, g = _flat64(ref), _flat64(got)
    finite = np.isfinite(r)
    if not np.array_equal(finite, np.isfinite(g)) or not np.array_equal(
        r[~finite], g[~finite], equal_nan=True
    ):
        return OutputMismatch(name, float("inf"), 0.0, "non-finite values differ")
    r, g = np.where(finite, r, 0.0), np.where(finite, g, 0.0)
    allowed = _allowed(tol, r, tolerance_scale)
    err = np.abs(r - g)
    if not np.any(err > allowed):
        sqnr = _sqnr_guard(tol, r, g, tolerance_scale)
        if sqnr is None:
            return None
        return OutputMismatch(
            name,
            float(err.max()),
            float(allowed.max()),
            f"every element is within tolerance but the output drifted as a whole: SQNR "
            f"{sqnr:.1f} dB < {tol.min_sqnr_db:.0f} dB (max abs error {float(err.max()):.3g})",
        )
    worst = int(np.argmax(err - allowed))
    return OutputMismatch(
        name,
        float(err[worst]),
        float(allowed[worst]),
        f"max abs error {float(err.max()):.3g} exceeds tolerance "
        f"(at flat index {worst}: {g[worst]:.6g} vs {r[worst]:.6g})",
    )


def compare_outputs(
    reference: Mapping[str, Any],
    actual: Mapping[str, Any],
    tolerance_scale: float = 1.0,
) -> list[OutputMismatch]:
    """Compare outputs by name; returns the mismatches (empty when equal).

    Float outputs use the :class:`Tolerance` of their dtype (per element, scaled by the
    output's RMS, plus the SQNR guard); other dtypes must be equal. Values that are not
    arrays (sequences, optionals) compare element by element.
    """
    missing = [n for n in reference if n not in actual]
    if missing or len(reference) != len(actual):
        return [
            OutputMismatch(
                ",".join(missing) or "?",
                float("inf"),
                0.0,
                f"outputs differ: expected {list(reference)}, got {list(actual)}",
            )
        ]
    mismatches: list[OutputMismatch] = []
    for name, ref in reference.items():
        got = actual[name]
        if isinstance(ref, (list, tuple)) or isinstance(got, (list, tuple)):
            found = _compare_sequence(name, ref, got, tolerance_scale)
        elif ref is None or got is None:
            found = None if ref is None and got is None else OutputMismatch(
                name, float("inf"), 0.0, "one optional value is empty, the other is not")
        else:
            found = _mismatch(name, ref, got, tolerance_scale)
        if found is not None:
            mismatches.append(found)
    return mismatches


def _compare_sequence(
    name: str, ref: Any, got: Any, tolerance_scale: float
) -> OutputMismatch | None:
    if not isinstance(ref, (list, tuple)) or not isinstance(got, (list, tuple)):
        return OutputMismatch(name, float("inf"), 0.0, "a sequence was compared with a tensor")
    if len(ref) != len(got):
        return OutputMismatch(name, float("inf"), 0.0, f"sequence length {len(got)} != {len(ref)}")
    for index, (r, g) in enumerate(zip(ref, got, strict=True)):
        found = compare_outputs({f"{name}[{index}]": r}, {f"{name}[{index}]": g}, tolerance_scale)
        if found:
            return found[0]
    return None


@dataclasses.dataclass
class FidelityAccumulator:
    """Streaming fidelity of one output against its reference, batch by batch.

    ``class_axis`` enables top-1 agreement (argmax over that axis). Cosine is the mean over
    samples (the first axis) of per-sample cosines; SQNR is computed from the summed signal
    and noise energies, so it equals :func:`sqnr_db` of the concatenated outputs.
    """

    class_axis: int | None = None
    is_float: bool = True
    samples: int = 0
    cosine_sum: float = 0.0
    signal: float = 0.0
    noise: float = 0.0
    max_abs: float = 0.0
    agree: int = 0
    positions: int = 0
    equal: int = 0
    elements: int = 0

    def update(self, reference: np.ndarray, actual: np.ndarray) -> None:
        """Add one batch; raises ValueError when the shapes differ."""
        reference, actual = np.asarray(reference), np.asarray(actual)
        if reference.shape != actual.shape:
            raise ValueError(
                f"has shape {list(actual.shape)}, the reference has {list(reference.shape)}"
            )
        if not self.is_float:
            self.equal += int(np.sum(reference == actual))
            self.elements += reference.size
            self.max_abs = max(self.max_abs, max_abs_error(reference, actual))
            return
        r = reference.astype(np.float64)
        o = actual.astype(np.float64)
        self.max_abs = max(self.max_abs, max_abs_error(r, o))
        if r.size == 0:
            return
        rows_r = r.reshape(r.shape[0], -1) if r.ndim else r.reshape(1, -1)
        rows_o = o.reshape(rows_r.shape)
        # as in sqnr_db and cosine: only elements finite in both count (inf - inf is nan)
        finite = np.isfinite(rows_r) & np.isfinite(rows_o)
        rows_r, rows_o = np.where(finite, rows_r, 0.0), np.where(finite, rows_o, 0.0)
        diff = rows_r - rows_o
        self.signal += float(np.sum(rows_r * rows_r))
        self.noise += float(np.sum(diff * diff))
        norm_r = np.sum(rows_r * rows_r, axis=1)
        norm_o = np.sum(rows_o * rows_o, axis=1)
        dots = np.sum(rows_r * rows_o, axis=1)
        both = norm_r * norm_o
        cos = np.divide(dots, np.sqrt(both), out=np.zeros_like(dots), where=both > 0)
        cos[(norm_r == 0) & (norm_o == 0)] = 1.0
        self.cosine_sum += float(np.clip(cos, -1.0, 1.0).sum())
        self.samples += rows_r.shape[0]
        if self.class_axis is not None and r.ndim:
            agree = np.argmax(r, axis=self.class_axis) == np.argmax(o, axis=self.class_axis)
            self.agree += int(agree.sum())
            self.positions += agree.size

    def result(self) -> dict[str, float]:
        """The metrics so far (exact_match and max_abs_error for non-float outputs)."""
        if not self.is_float:
            return {
                "exact_match": self.equal / self.elements if self.elements else 1.0,
                "max_abs_error": self.max_abs,
            }
        metrics = {
            "cosine": self.cosine_sum / self.samples if self.samples else 1.0,
            "sqnr_db": _sqnr_from_sums(self.signal, self.noise),
            "max_abs_error": self.max_abs,
        }
        if self.class_axis is not None:
            metrics["top1_agreement"] = self.agree / self.positions if self.positions else 1.0
        return metrics
