"""One candidate evaluation: run the knobs' pipeline on the prepared model, measure it.

This is the function executors run, in this process, in worker processes or on Ray nodes. A
job carries references, not data: the prepared model and data files are :class:`SharedFile`
references, data that are not files (folders, ``py:`` callables) are specs every worker opens
itself. Each worker process builds the evaluator (which runs the reference model over the
evaluation data once) on its first job and reuses it for the rest.

Candidates run without per-pass numeric verification: the search only ranks them. The one it
chooses is run again by the caller through the verifying runner.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import time
from typing import Any

import onnx_ir as ir

from irpass.analysis.cost import model_cost
from irpass.context import PassContext, limit_samples
from irpass.data import load_labels, open_data
from irpass.errors import IrpassError
from irpass.evaluate import Evaluator
from irpass.ir import load_model
from irpass.manager import PipelineRunner, RunOptions
from irpass.search.executors import SharedFile
from irpass.search.objective import PrecisionCosts, estimated_cost

__all__ = ["CandidateJob", "CandidateResult", "DataRef", "EvalSettings", "evaluate_candidate"]

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class DataRef:
    """A data spec whose file part may be shared by reference (``file?query`` kept)."""

    spec: str
    file: SharedFile | None = None

    def local_spec(self) -> str:
        """The spec with the shared file's local path in this process."""
        if self.file is None:
            return self.spec
        _, sep, query = self.spec.partition("?")
        return self.file.local_path() + sep + query


@dataclasses.dataclass(frozen=True)
class EvalSettings:
    """What every candidate of one search shares.

    ``plugins`` are modules each worker imports before its first job, so that passes
    registered outside irpass (``irpass.registry.register``) exist in the workers too.
    """

    model: SharedFile
    reference: SharedFile
    eval_data: DataRef
    labels: DataRef | None = None
    calib_data: DataRef | None = None
    calib_samples: int = 512
    calib_is_random: bool = False
    seed: int = 0
    precision_costs: PrecisionCosts = dataclasses.field(default_factory=PrecisionCosts)
    return_model: bool = False
    plugins: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class CandidateJob:
    """Evaluate the knob levels ``levels`` (pipeline text ``pipeline``)."""

    levels: tuple[int, ...]
    pipeline: str
    settings: EvalSettings


@dataclasses.dataclass
class CandidateResult:
    """What one candidate cost and kept."""

    levels: tuple[int, ...]
    pipeline: str
    metrics: dict[str, float] = dataclasses.field(default_factory=dict)
    params: int | None = None
    macs: int | None = None
    weight_bytes: int | None = None
    file_bytes: int | None = None
    cost: float | None = None
    model_bytes: bytes | None = None
    seconds: float = 0.0
    error: str | None = None
    stats: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Whether the candidate ran and was measured."""
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        data = dataclasses.asdict(self)
        data["levels"] = list(self.levels)
        data.pop("model_bytes")
        return data


_EVALUATORS: dict[tuple[Any, ...], Evaluator] = {}


def _evaluator(settings: EvalSettings) -> Evaluator:
    key = (settings.reference.digest, settings.eval_data, settings.labels, settings.seed)
    evaluator = _EVALUATORS.get(key)
    if evaluator is None:
        reference = load_model(settings.reference.local_path())
        data = open_data(settings.eval_data.local_spec(), reference, seed=settings.seed)
        labels = None
        if settings.labels is not None:
            labels = load_labels(settings.labels.local_spec())
        evaluator = Evaluator(reference, data, labels)
        _EVALUATORS.clear()  # one search at a time per worker: keep one reference in memory
        _EVALUATORS[key] = evaluator
    return evaluator


def evaluate_candidate(job: CandidateJob) -> CandidateResult:
    """Run ``job.pipeline`` on a fresh copy of the prepared model and measure the result."""
    started = time.perf_counter()
    result = CandidateResult(job.levels, job.pipeline)
    settings = job.settings
    try:
        for module in settings.plugins:  # modules that register passes of their own
            importlib.import_module(module)
        model = load_model(settings.model.local_path())
        context = PassContext(seed=settings.seed)
        if settings.calib_data is not None:
            source = open_data(settings.calib_data.local_spec(), model, seed=settings.seed)
            context.calibration_data = limit_samples(source, settings.calib_samples)
            context.calibration_is_random = settings.calib_is_random
        if job.pipeline:
            runner = PipelineRunner(job.pipeline, context, RunOptions(verify="none"))
            report = runner.run(model).report
            result.stats = {r.step: dict(r.stats) for r in report.passes if r.stats}
        result.metrics = dict(_evaluator(settings)(model))
        cost = model_cost(model)
        result.params, result.macs = cost.params, cost.macs
        result.weight_bytes = cost.weight_bytes
        result.cost = estimated_cost(model, settings.precision_costs)
        serialized = ir.to_proto(model).SerializeToString()
        result.file_bytes = len(serialized)
        if settings.return_model:
            result.model_bytes = serialized
    except IrpassError as exc:
        result.error = exc.message
    except Exception as exc:  # a candidate that crashes is a data point, not the end of a search
        logger.debug("candidate %s failed", job.pipeline, exc_info=True)
        result.error = f"{type(exc).__name__}: {exc}"
    result.seconds = time.perf_counter() - started
    return result
