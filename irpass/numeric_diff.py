"""Numeric diff of two models through ONNX Runtime, output by output and layer by layer.

:func:`numeric_diff` runs both models on the same inputs (given, or seeded random ones from
:func:`irpass.verify.random_feeds`) and reports, per output and per *matched intermediate
tensor* (the activations that nodes matched by :func:`irpass.diff.diff_models` consume, where
shapes agree), the cosine similarity, max/mean absolute error and whether the difference
exceeds the manager's dtype-aware tolerance (:func:`irpass.metrics.compare_tensor`).
Intermediates are read by exposing them as extra graph outputs on shallow copies of the
models; the caller's models are not touched. The first diverging intermediate in
topological order of A is the layer where the results start to differ.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import onnx_ir as ir

from irpass.diff import CONSTANT_OPS, GraphDiff, diff_models, shapes_agree
from irpass.errors import DataError
from irpass.metrics import compare_tensor
from irpass.verify import make_session, random_feeds, run_model

__all__ = [
    "NumericDiff",
    "TensorError",
    "feeds_from_file",
    "numeric_diff",
]

logger = logging.getLogger(__name__)

#: Intermediate tensors above this many elements are not compared (memory bound).
MAX_INTERMEDIATE_ELEMENTS = 16_000_000


@dataclasses.dataclass
class TensorError:
    """How one tensor of B differs from its counterpart in A (worst case over all samples)."""

    a_name: str
    b_name: str
    node: str
    op_type: str
    order: int
    shape: list[int]
    cosine: float
    max_abs: float
    mean_abs: float
    ref_max: float
    diverged: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (NaN becomes None)."""
        data = dataclasses.asdict(self)
        for key in ("cosine", "max_abs", "mean_abs", "ref_max"):
            if isinstance(data[key], float) and not np.isfinite(data[key]):
                data[key] = None if np.isnan(data[key]) else str(data[key])
        return data


@dataclasses.dataclass
class NumericDiff:
    """Per-output and per-intermediate errors of B relative to A."""

    inputs: str
    samples: int
    outputs: list[TensorError]
    intermediates: list[TensorError]
    skipped: list[str]
    runs: int = 1

    @property
    def first_divergence(self) -> TensorError | None:
        """The earliest (in A's topological order) intermediate that exceeds the tolerance."""
        return next((t for t in self.intermediates if t.diverged), None)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        first = self.first_divergence
        return {
            "inputs": self.inputs,
            "samples": self.samples,
            "outputs": [t.to_dict() for t in self.outputs],
            "intermediates": [t.to_dict() for t in self.intermediates],
            "first_divergence": first.to_dict() if first is not None else None,
            "skipped": self.skipped,
            "runs": self.runs,
        }


def _compare(ref: np.ndarray, got: np.ndarray) -> tuple[float, float, float, float, bool]:
    """cosine, max_abs, mean_abs, max|ref|, diverged for one sample (see compare_tensor)."""
    c = compare_tensor(ref, got)
    return c.cosine, c.max_abs_error, c.mean_abs_error, c.reference_max, c.diverged


def _merge(samples: Sequence[tuple[float, float, float, float, bool]]) -> tuple[
        float, float, float, float, bool]:
    return (
        min(s[0] for s in samples),
        max(s[1] for s in samples),
        float(np.mean([s[2] for s in samples])),
        max(s[3] for s in samples),
        any(s[4] for s in samples),
    )


def _float_like(dtype: ir.DataType | None) -> bool:
    return dtype is not None and dtype.is_floating_point()


def _typed_copy(model: ir.Model) -> tuple[ir.Model, dict[str, ir.Value]]:
    """Return a shallow copy with inferred types and its node outputs by name."""
    from onnx_ir.passes.common import ShapeInferencePass

    copy = model.clone()
    try:
        ShapeInferencePass(check_type=False, strict_mode=False, data_prop=True)(copy)
    except Exception as exc:  # untyped values are skipped by the caller
        logger.debug("shape inference failed: %s", exc)
    values = {v.name: v for node in copy.graph for v in node.outputs if v.name}
    return copy, values


def _value_bytes(value: ir.Value) -> int:
    """Bytes of a typed value; unknown dimensions count as 1 (batch), unknown shapes as 4 MiB."""
    if value.shape is None or value.dtype is None:
        return 4 << 20
    count = 1
    for dim in value.shape:
        count *= dim if isinstance(dim, int) else 1
    if value.dtype == ir.DataType.STRING:  # no fixed width; count a short string each
        return count * 64
    return int(count * max(1, value.dtype.itemsize))


def _with_outputs(copy: ir.Model, values: Sequence[ir.Value]) -> ir.Model:
    """Return a shallow copy of ``copy`` whose graph also outputs ``values``."""
    exposed = copy.clone()
    by_name = {v.name: v for node in exposed.graph for v in node.outputs if v.name}
    present = {v.name for v in exposed.graph.outputs}
    for value in values:
        if value.name not in present:
            exposed.graph.outputs.append(by_name[value.name or ""])
            present.add(value.name)
    return exposed


_FLOAT_TYPES: dict[str, np.dtype[Any]] = {
    "tensor(float)": np.dtype(np.float32),
    "tensor(float16)": np.dtype(np.float16),
    "tensor(double)": np.dtype(np.float64),
}


def _feeds_for_b(feeds_a: Mapping[str, np.ndarray], a_inputs: Sequence[Any],
                 b_inputs: Sequence[Any]) -> dict[str, np.ndarray]:
    """A's feeds renamed and cast for B (inputs matched by name, else by position)."""
    by_position = [feeds_a.get(i.name) for i in a_inputs]
    feeds: dict[str, np.ndarray] = {}
    for k, arg in enumerate(b_inputs):
        value = feeds_a.get(arg.name)
        if value is None and k < len(by_position):
            value = by_position[k]
        if value is None:
            raise DataError(f"no data for input {arg.name!r} of the second model",
                            hint="the models' inputs differ; give data with matching names")
        dtype = _FLOAT_TYPES.get(str(arg.type))
        if dtype is not None and value.dtype != dtype and np.issubdtype(value.dtype, np.floating):
            value = value.astype(dtype)
        feeds[arg.name] = value
    return feeds


def _tensor_pairs(diff: GraphDiff) -> tuple[list[tuple[str, str, str, str, int]], list[str]]:
    """Tensor pairs that matched nodes consume: (A name, B name, B producer, its op, A order).

    Pairing what a matched consumer reads, rather than what a matched producer writes, keeps
    rewrites that move computation between nodes from looking like divergence: after BN
    folding, A's BatchNormalization output and B's Conv output both feed the matched Relu and
    are compared, while A's bare Conv output (consumed by the removed BN) is not.
    """
    producer_a = {t.name: n for n in diff.nodes_a for t in n.outputs if t.name}
    producer_b = {t.name: n for n in diff.nodes_b for t in n.outputs if t.name}
    pairs: dict[tuple[str, str], tuple[str, str, int]] = {}
    skipped: list[str] = []
    for match in diff.matches:
        if match.a.op_type in CONSTANT_OPS or match.method == "order":
            continue  # positional guesses would show up as false divergence
        for slot in range(min(len(match.a.inputs), len(match.b.inputs))):
            ta, tb = match.a.inputs[slot], match.b.inputs[slot]
            if ta is None or tb is None or slot in match.a.weights or slot in match.b.weights:
                continue
            pa, pb = producer_a.get(ta.name), producer_b.get(tb.name)
            if pa is None or pb is None or (ta.name, tb.name) in pairs:
                continue  # graph inputs are the feeds themselves
            if not shapes_agree(ta.shape, tb.shape):
                skipped.append(f"{pb.label} -> {match.b.label}: shapes differ "
                               f"{list(ta.shape or ())} vs {list(tb.shape or ())}")
                continue
            pairs[(ta.name, tb.name)] = (pb.label, pb.op_type, pa.index)
    ordered = sorted(((a, b, *rest) for (a, b), rest in pairs.items()), key=lambda p: p[4])
    return ordered, skipped


def numeric_diff(
    a: ir.Model,
    b: ir.Model,
    *,
    diff: GraphDiff | None = None,
    feeds: Sequence[Mapping[str, np.ndarray]] | None = None,
    inputs_label: str | None = None,
    seed: int = 0,
    samples: int = 1,
    intermediates: bool = True,
    max_intermediates: int = 5000,
    max_bytes: int = 1 << 30,
) -> NumericDiff:
    """Run ``a`` and ``b`` on the same inputs and measure how far B's tensors are from A's.

    ``feeds`` is a list of input dicts (one per sample); without it ``samples`` sets of
    seeded random inputs are drawn (``seed``, ``seed+1``, ...). ``diff`` is the structural
    diff that pairs intermediates (computed when not given and ``intermediates`` is True).
    Intermediates are read in as many runs as needed to hold at most about ``max_bytes`` of
    them (both models together) at a time.
    """
    skipped: list[str] = []
    pairs: list[tuple[str, str, str, str, int]] = []
    if intermediates:
        if diff is None:
            diff = diff_models(a, b, compare_values=False, with_cost=False)
        pairs, skipped = _tensor_pairs(diff)
        if len(pairs) > max_intermediates:
            skipped.append(f"{len(pairs) - max_intermediates} intermediates beyond the first "
                           f"{max_intermediates} not compared")
            pairs = pairs[:max_intermediates]

    typed_a, values_a = _typed_copy(a)
    typed_b, values_b = _typed_copy(b)
    inter_pairs = []
    for p in pairs:
        va, vb = values_a.get(p[0]), values_b.get(p[1])
        if va is None or vb is None or va.type is None or vb.type is None:
            skipped.append(f"{p[2]}: type of {p[0]!r}/{p[1]!r} unknown, not compared")
        else:
            inter_pairs.append((p, va, vb))
    # one run per chunk of intermediates, so that holding them all never exceeds the budget
    chunks: list[list[tuple[tuple[str, str, str, str, int], ir.Value, ir.Value]]] = [[]]
    used = 0
    for item in inter_pairs:
        size = _value_bytes(item[1]) + _value_bytes(item[2])
        if chunks[-1] and used + size > max_bytes:
            chunks.append([])
            used = 0
        chunks[-1].append(item)
        used += size

    out_a = [o.name or "" for o in a.graph.outputs]
    out_b = [o.name or "" for o in b.graph.outputs]
    output_pairs = [(n, n if n in out_b else out_b[k]) for k, n in enumerate(out_a)
                    if n in out_b or k < len(out_b)]
    results_out: dict[str, list[tuple[float, float, float, float, bool]]] = {}
    results_int: dict[tuple[str, str], list[tuple[float, float, float, float, bool]]] = {}
    shapes: dict[str, list[int]] = {}
    feed_sets: list[dict[str, np.ndarray]] = []
    label = ""
    for number, chunk in enumerate(chunks):
        session_a = make_session(_with_outputs(typed_a, [item[1] for item in chunk]))
        session_b = make_session(_with_outputs(typed_b, [item[2] for item in chunk]))
        if number == 0:
            if feeds is None:
                feed_sets = [random_feeds(session_a, seed=seed + k) for k in range(samples)]
                label = inputs_label or f"seeded random inputs (seed {seed}, {samples} sample(s))"
            else:
                feed_sets = [dict(f) for f in feeds]
                label = inputs_label or f"given inputs ({len(feed_sets)} sample(s))"
            if not feed_sets:
                raise DataError("no input samples to run", hint="give at least one sample")
        for feed in feed_sets:
            got_a = run_model(session_a, feed)
            got_b = run_model(session_b, _feeds_for_b(feed, session_a.get_inputs(),
                                                      session_b.get_inputs()))
            if number == 0:
                for name_a, name_b in output_pairs:
                    ra, rb = got_a[name_a], got_b[name_b]
                    if ra.shape != rb.shape:
                        skipped.append(f"output {name_a}: shapes differ {ra.shape} vs {rb.shape}")
                        continue
                    shapes[name_a] = list(ra.shape)
                    results_out.setdefault(name_a, []).append(_compare(ra, rb))
            for (name_a, name_b, *_), _va, _vb in chunk:
                ra, rb = got_a[name_a], got_b[name_b]
                if ra.shape != rb.shape or ra.size > MAX_INTERMEDIATE_ELEMENTS:
                    continue
                if not (np.issubdtype(ra.dtype, np.number)
                        and np.issubdtype(rb.dtype, np.number)):
                    continue
                shapes[name_a] = list(ra.shape)
                results_int.setdefault((name_a, name_b), []).append(_compare(ra, rb))
            del got_a, got_b

    outputs = [
        TensorError(name_a, name_b, name_a, "output", -1, shapes[name_a],
                    *_merge(results_out[name_a]))
        for name_a, name_b in output_pairs if name_a in results_out
    ]
    inters = [
        TensorError(name_a, name_b, node, op_type, order, shapes[name_a],
                    *_merge(results_int[(name_a, name_b)]))
        for (name_a, name_b, node, op_type, order), _va, _vb in inter_pairs
        if (name_a, name_b) in results_int
    ]
    return NumericDiff(label, len(feed_sets), outputs, inters, list(dict.fromkeys(skipped)),
                       runs=len(chunks))


def feeds_from_file(
    path: str | os.PathLike[str],
    inputs: Mapping[str, Sequence[int | str | None] | None],
    max_samples: int = 16,
) -> list[dict[str, np.ndarray]]:
    """Read ``.npz`` (arrays keyed by input name) or ``.npy`` (single-input model) feeds.

    ``inputs`` maps each model input to its shape (None entries or dims when unknown).
    Samples go along axis 0, as in :mod:`irpass.data`: an array of one more dimension than its
    input holds one feed per row; an array of the input's rank whose first dimension is a
    multiple of a fixed batch size is split into feeds of that batch size. At most
    ``max_samples`` feeds are returned.
    """
    path = pathlib.Path(path)
    names = list(inputs)
    if not path.exists():
        raise DataError(f"{path}: no such file", hint="give a .npz or .npy file of inputs")
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                arrays = {k: archive[k] for k in archive.files}
        elif path.suffix == ".npy":
            if len(names) != 1:
                raise DataError(f"{path}: a .npy file can only feed a single-input model "
                                f"(this one has {len(names)})",
                                hint="use a .npz keyed by input name")
            arrays = {names[0]: np.load(path, allow_pickle=False)}
        else:
            raise DataError(f"{path}: unsupported data format {path.suffix!r}",
                            hint="give a .npz (keyed by input name) or .npy file")
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read ({exc})", hint="is it a numpy .npz/.npy?") from exc
    missing = [n for n in names if n not in arrays]
    if missing and len(arrays) == len(names) == 1:
        arrays = {names[0]: next(iter(arrays.values()))}
        missing = []
    if missing:
        raise DataError(f"{path}: no array for input(s) {missing}; it has {sorted(arrays)}",
                        hint="name the arrays after the model's inputs")
    chunks: dict[str, list[np.ndarray]] = {}
    for name in names:
        array, shape = arrays[name], inputs[name]
        rank = len(shape) if shape is not None else array.ndim
        batch = shape[0] if shape and isinstance(shape[0], int) and shape[0] > 0 else None
        if array.ndim == rank + 1:
            chunks[name] = [array[k] for k in range(array.shape[0])]
        elif array.ndim == rank and batch and array.shape[0] > batch and (
                array.shape[0] % batch == 0):
            chunks[name] = [array[k:k + batch] for k in range(0, array.shape[0], batch)]
        else:
            chunks[name] = [array]
    count = min(min(len(c) for c in chunks.values()), max_samples)
    return [{name: chunks[name][k] for name in names} for k in range(count)]
