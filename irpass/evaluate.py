"""Measuring what a lossy pass cost: fidelity against a reference model and task metrics.

:class:`Evaluator` is built once per run with the reference model (the input of the pipeline),
a :class:`~irpass.data.DataSource` and optionally labels; calling it on a candidate model runs
both through ONNX Runtime over the same feeds and returns flat metrics:

- fidelity, per output (when there is a reference):

  * ``top1_agreement``: fraction of positions where the argmax over the class axis agrees
    (outputs of rank >= 2 whose class axis has more than one entry; the class axis is 1, or
    the last axis for rank-3 sequence outputs ``[N, T, C]``; ``class_axis`` overrides);
  * ``cosine``: mean over samples of the cosine similarity of the flattened outputs
    (1.0 for two all-zero samples);
  * ``sqnr_db``: ``10 log10(sum ref^2 / sum (ref - out)^2)``, capped at
    :data:`SQNR_CAP_DB` (identical outputs; keeps reports valid JSON);
  * ``max_abs_error``: the largest absolute difference;
  * for integer / bool outputs: ``exact_match`` (fraction of equal elements) and
    ``max_abs_error``.

  A single-output model gets plain keys. With several outputs each metric also appears as
  ``"<output>:<metric>"``, and the plain key holds the worst value over the outputs.
  Task metrics come first in the returned dict, then fidelity, then user metrics.
- task metrics, on the first output, when labels are given: ``accuracy`` and ``macro_f1``
  for classification (integer labels; one-hot labels are accepted), ``mse`` for regression
  (float labels). ``task`` forces one or the other.
- a user metric: ``metric(outputs, labels)`` gets the candidate's outputs concatenated over
  the data set (name -> array) and the labels (or None) and returns a float (reported under
  the function's name) or a mapping of floats.

The reference is loaded into ONNX Runtime when the evaluator is built (so later in-place
changes to that model object do not matter); its outputs are computed once, on the first call,
and kept in memory up to ``max_reference_bytes`` and spill to a temporary
folder beyond that. Everything else streams: memory holds one batch.
"""

from __future__ import annotations

import dataclasses
import logging
import pathlib
import shutil
import tempfile
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import onnx_ir as ir

from irpass.data import DataSource
from irpass.errors import DataError
from irpass.metrics import SQNR_CAP_DB, FidelityAccumulator
from irpass.verify import make_session, run_model

__all__ = [
    "SQNR_CAP_DB",
    "Evaluator",
    "Metric",
    "evaluate",
    "macro_f1",
]

logger = logging.getLogger(__name__)

#: A user metric: (outputs by name, labels or None) -> a float or a mapping of floats.
Metric = Callable[[Mapping[str, np.ndarray], np.ndarray | None], Any]

_TASKS = ("classification", "regression")
# For each fidelity metric, which value is worse when several outputs are combined.
_WORST = {
    "top1_agreement": min,
    "cosine": min,
    "sqnr_db": min,
    "max_abs_error": max,
    "exact_match": min,
}


def default_class_axis(rank: int) -> int:
    """Class axis of an output of this rank: 1 (``[N, C]``, ``[N, C, H, W]``), -1 for rank 3."""
    return -1 if rank == 3 else 1


def macro_f1(confusion: np.ndarray) -> float:
    """Macro-averaged F1 from a confusion matrix (rows: true class, columns: predicted).

    Classes that appear neither in the labels nor in the predictions are left out, as
    scikit-learn does.
    """
    confusion = np.asarray(confusion, dtype=np.float64)
    tp = np.diag(confusion)
    predicted = confusion.sum(axis=0)
    actual = confusion.sum(axis=1)
    present = (predicted + actual) > 0
    if not present.any():
        return 0.0
    denom = predicted + actual
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    return float(f1[present].mean())


@dataclasses.dataclass
class _Task:
    """Streaming task metrics on the first output against the labels."""

    task: str
    class_axis: int
    num_classes: int | None = None
    confusion: np.ndarray | None = None
    sq_error: float = 0.0
    count: int = 0

    def update(self, out: np.ndarray, labels: np.ndarray) -> None:
        if self.task == "regression":
            if out.shape != labels.shape and out.size == labels.size:
                out = out.reshape(labels.shape)
            if out.shape != labels.shape:
                raise DataError(
                    f"labels of shape {list(labels.shape[1:])} per sample do not match the "
                    f"model's output {list(out.shape[1:])}",
                    hint="labels must have one entry per sample, shaped like the model's output "
                    "without its batch axis",
                )
            self.sq_error += float(np.sum((out.astype(np.float64) - labels) ** 2))
            self.count += out.size
            return
        axis = self.class_axis % out.ndim
        classes = out.shape[axis]
        predicted = np.argmax(out, axis=axis)
        if labels.ndim == out.ndim and labels.shape == out.shape:
            labels = np.argmax(labels, axis=axis)  # one-hot labels
        if labels.shape != predicted.shape:
            raise DataError(
                f"labels have shape {list(labels.shape)} for this batch, the model predicts "
                f"{list(predicted.shape)} (argmax over axis {axis} of {list(out.shape)})",
                hint="give one class index per sample (per position for dense outputs)",
            )
        labels = labels.astype(np.int64)
        if labels.size and (labels.min() < 0 or labels.max() >= classes):
            raise DataError(
                f"labels range over {int(labels.min())}..{int(labels.max())} but the model's "
                f"output has {classes} classes",
                hint="labels must be class indices 0..classes-1 of the model's output",
            )
        if self.confusion is None:
            self.num_classes = classes
            self.confusion = np.zeros((classes, classes), dtype=np.int64)
        flat = labels.ravel() * classes + predicted.ravel()
        self.confusion += np.bincount(flat, minlength=classes * classes).reshape(
            classes, classes
        )

    def result(self) -> dict[str, float]:
        if self.task == "regression":
            return {"mse": self.sq_error / self.count if self.count else 0.0}
        if self.confusion is None:
            return {}
        total = self.confusion.sum()
        return {
            "accuracy": float(np.trace(self.confusion) / total) if total else 0.0,
            "macro_f1": macro_f1(self.confusion),
        }


class _OutputStore:
    """Reference outputs batch by batch: in memory up to a budget, then in a temp folder."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self.batches: list[dict[str, np.ndarray] | pathlib.Path] = []
        self._dir: pathlib.Path | None = None

    def append(self, outputs: dict[str, np.ndarray]) -> None:
        size = sum(v.nbytes for v in outputs.values())
        if self.bytes + size <= self.max_bytes:
            self.bytes += size
            self.batches.append(outputs)
            return
        if self._dir is None:
            self._dir = pathlib.Path(tempfile.mkdtemp(prefix="irpass-ref-"))
            logger.debug("reference outputs exceed %d bytes; spilling to %s", self.max_bytes,
                         self._dir)
        path = self._dir / f"{len(self.batches)}.npz"
        arrays: dict[str, Any] = {f"o{i}": v for i, v in enumerate(outputs.values())}
        np.savez(path, **arrays)
        self.batches.append(path)
        self._names = list(outputs)

    def get(self, index: int) -> dict[str, np.ndarray]:
        item = self.batches[index]
        if isinstance(item, dict):
            return item
        with np.load(item) as data:
            return {n: data[f"o{i}"] for i, n in enumerate(self._names)}

    def __len__(self) -> int:
        return len(self.batches)

    def close(self) -> None:
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __del__(self) -> None:
        self.close()


class Evaluator:
    """Evaluates candidate models against a reference on a data set (see the module docstring).

    Args:
        reference: The model whose outputs are the truth for fidelity, or None for task
            metrics only.
        data: The feeds (validated against the reference's inputs by ``open_data``).
        labels: One label per sample (axis 0 over all feeds), or None.
        task: ``"classification"`` or ``"regression"``; inferred from the labels' dtype.
        metric: A user metric (see :data:`Metric`).
        class_axis: The class axis for top-1 agreement and classification; default by rank.
        max_reference_bytes: Reference outputs above this size are kept on disk.
    """

    def __init__(
        self,
        reference: ir.Model | None,
        data: DataSource | Callable[[], Any],
        labels: np.ndarray | None = None,
        task: str | None = None,
        metric: Metric | None = None,
        *,
        class_axis: int | None = None,
        max_reference_bytes: int = 256 * 2**20,
    ) -> None:
        if task is not None and task not in _TASKS:
            raise DataError(
                f"task must be one of {', '.join(_TASKS)}, got {task!r}",
                hint='leave the task out to infer it from the labels',
            )
        if reference is None and labels is None and metric is None:
            raise DataError(
                "nothing to measure: no reference model, no labels and no metric",
                hint="give a reference model (--reference) or labels (--labels)",
            )
        self.reference = reference
        self.data = data
        self.labels = None if labels is None else np.asarray(labels)
        if self.labels is not None and self.labels.ndim == 0:
            raise DataError(
                "labels must hold one entry per sample, got a scalar",
                hint='give one label per sample (a 1-D array)',
            )
        if task is None and self.labels is not None:
            task = "classification" if self.labels.dtype.kind in "iub" else "regression"
        self.task = task
        self.metric = metric
        self.class_axis = class_axis
        known = getattr(data, "num_samples", None)
        if self.labels is not None and known is not None and known != len(self.labels):
            raise DataError(
                f"{len(self.labels)} labels for {known} samples in {_describe(data)}",
                hint="give exactly one label per sample, in the data's order",
            )
        self._store = _OutputStore(max_reference_bytes)
        self._reference_complete = False
        self._reference_metrics: dict[str, float] | None = None
        # The session is the reference's snapshot: in-place passes may later mutate the
        # very model object that was given as reference.
        self._ref_session: Any = (
            make_session(reference, optimize=True) if reference is not None else None
        )

    # -------------------------------------------------------------------------- internals
    def _fidelity_for(self, name: str, ref: np.ndarray) -> FidelityAccumulator:
        is_float = ref.dtype.kind == "f"
        axis = None
        if is_float and ref.ndim >= 2:
            axis = self.class_axis if self.class_axis is not None else default_class_axis(
                ref.ndim
            )
            if ref.shape[axis] <= 1:
                axis = None
        return FidelityAccumulator(axis, is_float)

    def _task_acc(self) -> _Task | None:
        if self.labels is None or self.task is None:
            return None
        return _Task(self.task, self.class_axis if self.class_axis is not None else 1)

    def _ensure_reference(self) -> None:
        """Run the reference once over the data; keep its outputs and its task metrics."""
        if self._reference_complete or self._ref_session is None:
            return
        # Start over: an earlier call may have stopped half-way through the data.
        self._store.close()
        self._store = _OutputStore(self._store.max_bytes)
        task = self._task_acc()
        offset = 0
        for feed in self.data():
            ref = run_model(self._ref_session, feed)
            self._store.append(ref)
            n = _batch_len(feed, ref)
            if task is not None and self.labels is not None:
                self._check_labels(offset, n)
                task.update(next(iter(ref.values())), self.labels[offset : offset + n])
            offset += n
        if len(self._store) == 0:
            raise DataError(
                f"data {_describe(self.data)} are empty",
                hint='an empty data set cannot calibrate or evaluate anything',
            )
        self._check_label_count(offset)
        self._reference_metrics = task.result() if task is not None else {}
        self._reference_complete = True
        self._ref_session = None

    def _check_labels(self, offset: int, n: int) -> None:
        assert self.labels is not None
        if offset + n > len(self.labels):
            raise DataError(
                f"{len(self.labels)} labels but {_describe(self.data)} have more samples "
                f"(at least {offset + n})",
                hint="give exactly one label per sample, in the data's order",
            )

    def _check_label_count(self, samples: int) -> None:
        if self.labels is not None and samples != len(self.labels):
            raise DataError(
                f"{len(self.labels)} labels for {samples} samples in {_describe(self.data)}",
                hint="give exactly one label per sample, in the data's order",
            )

    def _run(self, model: ir.Model) -> dict[str, float]:
        self._ensure_reference()
        session = make_session(model, optimize=True)
        fidelity: dict[str, FidelityAccumulator] = {}
        task = self._task_acc()
        collected: dict[str, list[np.ndarray]] = {}
        offset = 0
        batches = 0
        for batches, feed in enumerate(self.data(), start=1):
            out = run_model(session, feed)
            n = _batch_len(feed, out)
            batch_labels = None
            if self.labels is not None:
                self._check_labels(offset, n)
                batch_labels = self.labels[offset : offset + n]
            offset += n
            if self.reference is not None:
                if batches > len(self._store):
                    raise DataError(
                        f"{_describe(self.data)} yielded more feeds than on the first pass",
                        hint="the data source must give the same feeds every time",
                    )
                ref = self._store.get(batches - 1)
                if len(out) != len(ref):
                    raise DataError(
                        f"the model has {len(out)} outputs, the reference {len(ref)}",
                        hint="a pass added or removed a graph output",
                    )
                for position, (name, ref_value) in enumerate(ref.items()):
                    value = out.get(name)
                    if value is None:
                        value = list(out.values())[position]
                    if name not in fidelity:
                        fidelity[name] = self._fidelity_for(name, ref_value)
                    try:
                        fidelity[name].update(ref_value, value)
                    except ValueError as exc:
                        raise DataError(
                            f"output {name!r} {exc}",
                            hint="a pass changed the model's output shape",
                        ) from exc
            if task is not None and batch_labels is not None:
                task.update(next(iter(out.values())), batch_labels)
            if self.metric is not None:
                for name, value in out.items():
                    collected.setdefault(name, []).append(value)
        if batches == 0:
            raise DataError(
                f"data {_describe(self.data)} are empty",
                hint='an empty data set cannot calibrate or evaluate anything',
            )
        self._check_label_count(offset)
        if self.reference is not None and batches != len(self._store):
            raise DataError(
                f"{_describe(self.data)} yielded {batches} feeds, {len(self._store)} on the "
                "first pass",
                hint="the data source must give the same feeds every time",
            )
        # Task metrics first: they are what a user reads first in a summary.
        metrics = task.result() if task is not None else {}
        metrics.update(_combine(fidelity))
        if self.metric is not None:
            metrics.update(self._user_metric(collected))
        return metrics

    def _user_metric(self, collected: dict[str, list[np.ndarray]]) -> dict[str, float]:
        outputs = {n: np.concatenate(v) if v[0].ndim else np.stack(v)
                   for n, v in collected.items()}
        assert self.metric is not None
        value = self.metric(outputs, self.labels)
        if isinstance(value, Mapping):
            return {str(k): float(v) for k, v in value.items()}
        return {getattr(self.metric, "__name__", "metric"): float(value)}

    # ----------------------------------------------------------------------------- public
    def __call__(self, model: ir.Model) -> dict[str, float]:
        """Run ``model`` over the data and return its metrics (see the module docstring)."""
        return self._run(model)

    def reference_metrics(self) -> dict[str, float]:
        """The reference model's own task metrics (empty without labels or reference)."""
        if self.reference is None:
            return {}
        self._ensure_reference()
        return dict(self._reference_metrics or {})

    def close(self) -> None:
        """Delete spilled reference outputs (also done when the evaluator is collected)."""
        self._store.close()


def _describe(data: Any) -> str:
    return str(getattr(data, "description", None) or "the data")


def _batch_len(feed: Mapping[str, np.ndarray], out: Mapping[str, np.ndarray]) -> int:
    for value in feed.values():
        if np.ndim(value):
            return int(np.shape(value)[0])
    for value in out.values():
        if np.ndim(value):
            return int(np.shape(value)[0])
    return 1


def _combine(fidelity: Mapping[str, FidelityAccumulator]) -> dict[str, float]:
    results = {name: acc.result() for name, acc in fidelity.items()}
    if len(results) == 1:
        return dict(next(iter(results.values())))
    metrics: dict[str, float] = {}
    for key, worst in _WORST.items():
        values = [r[key] for r in results.values() if key in r]
        if values:
            metrics[key] = worst(values)
    for name, result in results.items():
        for key, value in result.items():
            metrics[f"{name}:{key}"] = value
    return metrics


def evaluate(
    model: ir.Model,
    data: DataSource,
    *,
    reference: ir.Model | None = None,
    labels: np.ndarray | None = None,
    task: str | None = None,
    metric: Metric | None = None,
) -> dict[str, float]:
    """One-shot evaluation of ``model`` (see :class:`Evaluator`)."""
    evaluator = Evaluator(reference, data, labels, task, metric)
    try:
        return evaluator(model)
    finally:
        evaluator.close()
