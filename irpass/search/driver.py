"""From a model, a pipeline and a budget to the pipeline that meets the budget.

:func:`search_pipeline` is what ``irpass optimize --max-drop`` and ``irpass.optimize(...,
max_drop=...)`` call: it runs the pipeline's leading lossless passes once, saves that
prepared model and the input (the reference for fidelity) where every worker can read them,
shares the data files by reference, searches the lossy knobs (:mod:`irpass.search.search`) and
returns the full pipeline text of the chosen setting. The caller then runs that pipeline
through the verifying runner, so the model it ships is verified like any other.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import pathlib
import tempfile
from collections.abc import Callable

import onnx_ir as ir

from irpass.context import PassContext
from irpass.manager import PipelineRunner, RunOptions
from irpass.pipeline import format_pipeline
from irpass.search.budget import Budget, parse_budget
from irpass.search.executors import Executor, make_executor
from irpass.search.layers import prune_layer_probes
from irpass.search.objective import OBJECTIVES, precision_costs_for
from irpass.search.search import SearchOptions, SearchResult, prepared_model_file, run_search
from irpass.search.space import default_knobs, split_lossless_prefix
from irpass.search.worker import DataRef, EvalSettings

__all__ = ["SearchOutcome", "search_pipeline"]

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class SearchOutcome:
    """The pipeline to run and the search that chose it."""

    pipeline: str
    search: SearchResult


def _data_ref(spec: str | None, executor: Executor) -> DataRef | None:
    """Share the file part of a data spec by reference when it is one file."""
    if spec is None:
        return None
    path = pathlib.Path(spec.partition("?")[0])
    if path.is_file():
        return DataRef(spec, executor.share(path))
    return DataRef(spec)


def search_pipeline(
    model: ir.Model,
    pipeline: str,
    *,
    budget: str | Budget,
    eval_data: str,
    labels: str | None = None,
    calib_data: str | None = None,
    calib_samples: int = 512,
    seed: int = 0,
    objective: str = "cost",
    jobs: int | None = None,
    executor: str | Executor = "process",
    budget_seconds: float | None = None,
    max_candidates: int = 60,
    only: list[str] | None = None,
    backend: str | None = None,
    round_to: int | None = None,
    plugins: tuple[str, ...] = (),
    progress: Callable[[str], None] | None = None,
) -> SearchOutcome:
    """Search the lossy knobs of ``pipeline`` on ``model`` (not modified) within ``budget``.

    ``labels == "data"`` takes the ``labels`` member of ``eval_data``. ``backend`` selects the
    per-precision costs of the ``cost`` objective (``tensorrt``, ``nnapi``, ...); ``round_to``
    is the channel multiple pruning keeps (a target's alignment). ``plugins``
    are modules every worker imports first (they register passes of their own).
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, not {objective!r}")
    parsed = parse_budget(budget) if isinstance(budget, str) else budget
    prefix, rest = split_lossless_prefix(pipeline)
    space = default_knobs(rest, only,
                          {"prune": {"round_to": round_to}} if round_to is not None else None)
    if labels == "data":
        labels = eval_data.partition("?")[0]
    jobs = jobs if jobs is not None else max(1, os.cpu_count() or 1)
    runner = make_executor(executor, jobs) if isinstance(executor, str) else executor
    try:
        with tempfile.TemporaryDirectory(prefix="irpass-search-") as tmp:
            folder = pathlib.Path(tmp)
            reference_path = prepared_model_file(model, folder, "reference.onnx")
            prepared = model.clone()
            if prefix:
                if progress is not None:
                    progress("lossless passes before the search")
                PipelineRunner(prefix, PassContext(seed=seed), RunOptions(verify="none")).run(
                    prepared)
            prepared_path = prepared_model_file(prepared, folder, "prepared.onnx")
            settings = EvalSettings(
                model=runner.share(prepared_path),
                reference=runner.share(reference_path),
                eval_data=_data_ref(eval_data, runner) or DataRef(eval_data),
                labels=_data_ref(labels, runner),
                calib_data=_data_ref(calib_data, runner),
                calib_samples=calib_samples,
                calib_is_random=bool(calib_data and calib_data.startswith("random")),
                seed=seed,
                precision_costs=precision_costs_for(backend),
                return_model=objective == "latency",
                plugins=tuple(plugins),
            )
            options = SearchOptions(objective=objective, budget_seconds=budget_seconds,
                                    max_candidates=max_candidates)
            result = run_search(space, settings, parsed, runner, options=options,
                                has_labels=labels is not None, progress=progress,
                                layer_probes=lambda knob: prune_layer_probes(prepared, knob))
    finally:
        if isinstance(executor, str):
            runner.close()
    parts = [format_pipeline(prefix)] if prefix else []
    if result.pipeline:
        parts.append(result.pipeline)
    return SearchOutcome(",".join(parts), result)
