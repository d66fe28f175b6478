"""The irpass pipeline runner: runs a pipeline, verifying and measuring after every pass.

It wraps onnx-ir's pass contract (every step is an ``onnx_ir.passes`` pass) and adds:

- **verification** after each pass that modified the model: ONNX checker, ONNX Runtime loads
  it, and for a lossless pass numeric equivalence with the previous state on seeded inputs
  (dtype-aware tolerance); for a lossy pass the drift from the original is measured instead;
- **instrumentation**: time, nodes, params, weight bytes, MACs and peak activation memory per
  pass (the cost analysis is cached and invalidated only when a pass modifies the model);
- **evaluation**: ``context.evaluator`` (fidelity / task metrics) after every lossy pass;
- **dumps** of the model before and after every modifying pass (``dump_dir``);
- **failure handling**: a failing pass is named, a reproducer (the input model plus the flat
  pipeline of every pass run up to the failing one) is saved, and the model is either restored
  to its state before the pass (``on_failure="rollback"``) or the run stops with an error
  (``"error"``, the default).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import pathlib
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal

import numpy as np
import onnx_ir as ir

from irpass import __version__
from irpass.analysis.cost import Cost, model_cost
from irpass.compose import build_pass
from irpass.context import PassContext
from irpass.errors import (
    IrpassError,
    PassFailedError,
    UnsupportedModelError,
    VerificationError,
)
from irpass.ir import save_model
from irpass.metrics import compare_outputs, max_abs_error
from irpass.pass_base import all_graphs
from irpass.pipeline import (
    Step,
    expand_presets,
    format_pipeline,
    parse_pipeline,
)
from irpass.run_report import PassRecord, RunReport, Verification
from irpass.verify import (
    check_structure,
    checked_session,
    make_session,
    random_feeds,
    run_model,
)

__all__ = [
    "KNOWN_DOMAINS",
    "PipelineRunner",
    "RunOptions",
    "RunResult",
    "build_pass",
    "custom_ops",
]

logger = logging.getLogger(__name__)

#: Operator domains that ONNX or ONNX Runtime define; anything else is a custom op.
KNOWN_DOMAINS = frozenset(
    {"", "ai.onnx", "ai.onnx.ml", "com.microsoft", "ai.onnx.preview", "ai.onnx.preview.training"}
)

VerifyMode = Literal["each", "final", "none"]
ProgressCallback = Callable[[str, int], None]


@dataclasses.dataclass
class RunOptions:
    """How the manager verifies, dumps and reacts to failures.

    Attributes:
        verify: ``each`` verifies after every modifying pass, ``final`` once at the end,
            ``none`` never (structure only at the end).
        seeds: Seeds of the random verification inputs (ignored when ``feeds`` is given).
        feeds: Explicit verification inputs (e.g. the first batches of evaluation data).
        dim_values: Values for symbolic input dimensions in random inputs.
        dump_dir: Where to save the model before and after every modifying pass.
        reproducer_dir: Where to save the reproducer when a pass fails.
        on_failure: ``error`` stops the run; ``rollback`` restores the model and continues.
        max_fixpoint_iterations: Bound on the repetitions of a ``fixpoint(...)`` group.
        allow_custom_ops: Accept ops from unknown domains (verification is then structural).
        tolerance_scale: Multiplier of the dtype tolerances for equivalence checks.
        feed_overridable: Also feed random values to float graph inputs that have defaults
            (IR >= 4), so a pass that freezes one is caught; not done when the pipeline
            freezes them on purpose (``inputs_to_initializers(freeze_overridable=true)``).
    """

    verify: VerifyMode = "each"
    seeds: tuple[int, ...] = (0,)
    feeds: list[dict[str, np.ndarray]] | None = None
    dim_values: dict[str, int] | None = None
    dump_dir: pathlib.Path | None = None
    reproducer_dir: pathlib.Path | None = None
    on_failure: Literal["error", "rollback"] = "error"
    max_fixpoint_iterations: int = 10
    allow_custom_ops: bool = False
    tolerance_scale: float = 1.0
    feed_overridable: bool = True


@dataclasses.dataclass
class RunResult:
    """The optimized model (the input object, modified in place) and the run's report."""

    model: ir.Model
    report: RunReport


def custom_ops(model: ir.Model) -> list[tuple[str, str]]:
    """(domain, op_type) of nodes whose domain is neither ONNX's, ORT's nor a local function."""
    local = {(f.domain, f.name) for f in model.functions.values()}
    found: set[tuple[str, str]] = set()
    for graph in all_graphs(model):
        for node in graph:
            if node.domain not in KNOWN_DOMAINS and (node.domain, node.op_type) not in local:
                found.add((node.domain, node.op_type))
    return sorted(found)


class _Verifier:
    """Holds verification inputs and the outputs the next lossless pass must reproduce."""

    def __init__(self, model: ir.Model, options: RunOptions, numeric: bool) -> None:
        self.numeric = numeric
        self.tolerance_scale = options.tolerance_scale
        self.feeds: list[dict[str, np.ndarray]] = []
        self.original: list[dict[str, np.ndarray]] = []
        if numeric:
            session = make_session(model)
            if options.feeds:
                self.feeds = [dict(f) for f in options.feeds]
            else:
                overridable = options.feed_overridable and model.ir_version >= 4
                self.feeds = [
                    random_feeds(
                        session, seed=s, dim_values=options.dim_values, overridable=overridable
                    )
                    for s in options.seeds
                ]
            self.original = [run_model(session, f) for f in self.feeds]
        self.previous = self.original

    def verify(self, model: ir.Model, lossless: bool) -> Verification:
        result = Verification(status="failed")
        if not self.numeric:
            check_structure(model)
            result.checker = True
            result.status = "ok"
            result.detail = "structure only (numeric check disabled)"
            return result
        session = checked_session(model)
        result.checker = True
        result.ort_load = True
        outputs = [run_model(session, f) for f in self.feeds]
        worst = _max_abs_error(self.previous, outputs)
        result.max_abs_error = worst
        if lossless:
            for expected, actual in zip(self.previous, outputs, strict=True):
                mismatches = compare_outputs(expected, actual, self.tolerance_scale)
                if mismatches:
                    raise VerificationError(
                        f"a lossless pass changed the outputs: {mismatches[0]}",
                        hint="this is a bug in the pass; the reproducer holds its input",
                    )
            result.detail = "outputs equal within tolerance"
        else:
            drift = _max_abs_error(self.original, outputs)
            result.detail = f"lossy: max abs error vs. original {drift:.4g}"
        self.previous = outputs
        result.status = "ok"
        return result


def _max_abs_error(
    reference: list[dict[str, np.ndarray]], actual: list[dict[str, np.ndarray]]
) -> float:
    """The largest :func:`irpass.metrics.max_abs_error` over every output of every feed."""
    worst = 0.0
    for ref, got in zip(reference, actual, strict=True):
        for name, value in ref.items():
            other = got.get(name)
            worst = max(worst, float("inf") if other is None else max_abs_error(value, other))
    return worst


class PipelineRunner:
    """Run a pipeline over a model with verification, measurement, dumps and reproducers."""

    def __init__(
        self,
        pipeline: str | list[Step],
        context: PassContext | None = None,
        options: RunOptions | None = None,
        progress: ProgressCallback | None = None,
    ) -> None:
        steps = parse_pipeline(pipeline) if isinstance(pipeline, str) else list(pipeline)
        self.pipeline_text = format_pipeline(steps)
        self.steps = expand_presets(steps)
        self.context = context if context is not None else PassContext()
        self.options = options if options is not None else RunOptions()
        self.progress = progress
        self._validate(self.steps)  # option errors surface before any work is done
        self._cost: Cost | None = None
        self._dump_index = 0

    def _validate(self, steps: list[Step] | tuple[Step, ...]) -> None:
        for step in steps:
            if step.is_fixpoint:
                self._validate(step.children)
            else:
                build_pass(step, self.context)

    # -- measurement -------------------------------------------------------------------
    def _current_cost(self, model: ir.Model) -> Cost:
        if self._cost is None:
            self._cost = model_cost(model)
        return self._cost

    def _invalidate(self) -> None:
        self._cost = None

    # -- dumps and reproducers -----------------------------------------------------------
    def _dump(self, model: ir.Model, label: str) -> str | None:
        if self.options.dump_dir is None:
            return None
        directory = pathlib.Path(self.options.dump_dir)
        name = f"{self._dump_index:03d}_{label.replace('/', '.').replace('#', '')}.onnx"
        self._dump_index += 1
        save_model(model, directory / name)
        return str(directory / name)

    def _save_reproducer(self, state: _RunState, step: Step, error: BaseException) -> str | None:
        """Save the model irpass received and the flat list of steps that led to the failure.

        Passes are deterministic, so running ``pipeline.txt`` (every pass executed so far, in
        order, then the failing one) on ``input.onnx`` reproduces the failure; this needs one
        copy of the input per run instead of a snapshot before every pass.
        """
        directory = self.options.reproducer_dir
        if directory is None or state.input_copy is None:
            return None
        directory = pathlib.Path(directory)
        try:
            save_model(state.input_copy, directory / "input.onnx")
            (directory / "pipeline.txt").write_text(format_pipeline(state.executed) + "\n")
            (directory / "full_pipeline.txt").write_text(self.pipeline_text + "\n")
            (directory / "error.txt").write_text(f"{type(error).__name__}: {error}\n")
        except (OSError, IrpassError) as exc:
            logger.warning("could not save the reproducer to %s: %s", directory, exc)
            return None
        return str(directory)

    # -- running -----------------------------------------------------------------------
    def run(self, model: ir.Model, input_path: str | None = None) -> RunResult:
        """Run the pipeline on ``model`` (modified in place) and return it with the report."""
        started = time.perf_counter()
        customs = custom_ops(model)
        if customs and not self.options.allow_custom_ops:
            names = ", ".join(f"{d}::{o}" for d, o in customs)
            raise UnsupportedModelError(
                "the model uses custom-domain ops that neither ONNX nor ONNX Runtime "
                f"define: {names}",
                hint="irpass cannot verify passes numerically on them; pass --allow-custom-ops "
                "to optimize anyway (custom ops pass through untouched, checks are structural)",
            )
        numeric = self.options.verify != "none" and not customs
        try:
            options = self.options
            if _freezes_inputs(self.steps):
                options = dataclasses.replace(options, feed_overridable=False)
            verifier = _Verifier(model, options, numeric=numeric)
        except VerificationError as exc:
            raise UnsupportedModelError(
                f"ONNX Runtime cannot run the input model: {exc.message}",
                hint="irpass verifies every pass with ONNX Runtime; use --verify none to skip",
            ) from exc
        report = RunReport(
            irpass_version=__version__,
            input=input_path,
            pipeline=self.pipeline_text,
            expanded_pipeline=format_pipeline(self.steps),
            target=getattr(self.context.target, "name", self.context.target),
        )
        if customs:
            report.warnings.append(
                "custom-domain ops present; numeric verification disabled: "
                + ", ".join(f"{d}::{o}" for d, o in customs)
            )
        self._invalidate()
        report.before = self._current_cost(model).summary()
        evaluator = getattr(self.context, "evaluator", None)
        if evaluator is not None:
            report.metrics_before = dict(evaluator(model))
        self._dump(model, "input")
        state = _RunState(
            verifier=verifier,
            report=report,
            evaluator=evaluator,
            input_copy=model.clone() if self.options.reproducer_dir is not None else None,
        )
        self._run_steps(model, self.steps, "", state)
        if self.options.verify == "final" or (self.options.verify == "none"):
            final = Verification(status="failed")
            check_structure(model)
            final.checker = True
            if self.options.verify == "final" and numeric:
                final = verifier.verify(model, lossless=all(r.lossless for r in report.passes))
            else:
                final.status = "ok"
            report.warnings.append(
                f"verified once at the end: {final.status} {final.detail}".strip()
            )
        report.after = self._current_cost(model).summary()
        if evaluator is not None:
            report.metrics_after = dict(evaluator(model))
        report.seconds = time.perf_counter() - started
        return RunResult(model, report)

    def _run_steps(
        self, model: ir.Model, steps: list[Step] | tuple[Step, ...], prefix: str, state: _RunState
    ) -> bool:
        modified = False
        for step in steps:
            if step.is_fixpoint:
                state.fixpoints += 1
                label = f"{prefix}fixpoint#{state.fixpoints}"
                for iteration in range(1, self.options.max_fixpoint_iterations + 1):
                    changed = self._run_steps(model, step.children, f"{label}.{iteration}/", state)
                    modified = modified or changed
                    if not changed:
                        break
                else:
                    state.report.warnings.append(
                        f"{label} did not converge in {self.options.max_fixpoint_iterations} "
                        "iterations"
                    )
            else:
                modified = self._run_pass(model, step, prefix, state) or modified
        return modified

    def _run_pass(self, model: ir.Model, step: Step, prefix: str, state: _RunState) -> bool:
        pass_ = build_pass(step, self.context)
        label = f"{prefix}{step.name}"
        record = PassRecord(
            step=label,
            name=step.name,
            options=format_pipeline([step]),
            lossless=pass_.lossless,
        )
        state.report.passes.append(record)
        if self.progress is not None:
            self.progress(label, len(state.report.passes))
        before_cost = self._current_cost(model)
        record.before = before_cost.summary()
        # A snapshot costs a model clone per pass: only taken when failures roll back.
        snapshot = model.clone() if self.options.on_failure == "rollback" else None
        state.executed.append(step)
        started = time.perf_counter()
        try:
            result = pass_(model)
        except Exception as exc:  # a pass that raises must not take the run down silently
            record.seconds = time.perf_counter() - started
            record.error = f"{type(exc).__name__}: {exc}"
            return self._fail(model, snapshot, step, record, exc, state)
        record.seconds = time.perf_counter() - started
        record.modified = bool(result.modified)
        record.stats = {k: int(v) for k, v in sorted(pass_.stats.items())}
        record.details = dict(pass_.details)
        if result.model is not model:
            raise PassFailedError(
                f"pass {step.name!r} returned a different model object although it is in-place",
                pass_name=step.name,
                hint="an in-place pass must return the model it was given; this is a bug in the "
                "pass",
            )
        if not record.modified:
            record.after = record.before
            record.verification = Verification(status="skipped", detail="unchanged")
            return False
        self._invalidate()
        try:
            if self.options.verify == "each":
                record.verification = state.verifier.verify(model, pass_.lossless)
            record.after = self._current_cost(model).summary()
        except VerificationError as exc:
            record.verification = Verification(status="failed", detail=exc.message)
            record.error = exc.message
            return self._fail(model, snapshot, step, record, exc, state)
        if not pass_.lossless and state.evaluator is not None:
            record.metrics = dict(state.evaluator(model))
        record.dump = self._dump(model, label)
        return True

    def _fail(
        self,
        model: ir.Model,
        snapshot: ir.Model | None,
        step: Step,
        record: PassRecord,
        exc: BaseException,
        state: _RunState,
    ) -> bool:
        reproducer = self._save_reproducer(state, step, exc)
        if snapshot is not None:
            _restore(model, snapshot)
            self._invalidate()
            record.rolled_back = True
            record.modified = False
            record.after = record.before
            state.report.warnings.append(
                f"pass {step.name!r} failed and was rolled back: {record.error}"
                + (f" (reproducer: {reproducer})" if reproducer else "")
            )
            logger.warning("pass %s failed and was rolled back: %s", step.name, record.error)
            return False
        message = exc.message if isinstance(exc, IrpassError) else f"{type(exc).__name__}: {exc}"
        hint = (
            f"reproduce with: irpass optimize {reproducer}/input.onnx -o repro-out "
            f'--passes "$(cat {reproducer}/pipeline.txt)"'
            if reproducer
            else "rerun with --on-failure rollback to skip the pass, or --debug for the traceback"
        )
        raise PassFailedError(
            f"pass {step.name!r} failed: {message}",
            hint=hint,
            pass_name=step.name,
            reproducer=reproducer,
        ) from exc


def _freezes_inputs(steps: list[Step] | tuple[Step, ...]) -> bool:
    """Whether a step turns overridable graph inputs into constants on purpose."""
    return any(
        _freezes_inputs(step.children)
        if step.is_fixpoint
        else step.name == "inputs_to_initializers"
        and bool(step.options_dict().get("freeze_overridable"))
        for step in steps
    )


def _restore(model: ir.Model, snapshot: ir.Model) -> None:
    """Make ``model`` (the caller's object) hold the content of ``snapshot``."""
    functions = dict(snapshot.functions)
    opsets = dict(snapshot.opset_imports)
    model.graph = snapshot.graph
    model.functions.clear()
    model.functions.update(functions)
    model.opset_imports.clear()
    model.opset_imports.update(opsets)
    model.ir_version = snapshot.ir_version


@dataclasses.dataclass
class _RunState:
    verifier: _Verifier
    report: RunReport
    evaluator: Callable[[ir.Model], Mapping[str, float]] | None
    input_copy: ir.Model | None = None
    executed: list[Step] = dataclasses.field(default_factory=list)
    fixpoints: int = 0


def report_json(report: RunReport) -> str:
    """Serialize a report deterministically (sorted keys, no NaN surprises)."""
    return json.dumps(report.to_dict(), indent=2, sort_keys=True, default=_json_default)


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, pathlib.Path):
        return str(value)
    raise TypeError(f"cannot serialize {type(value).__name__}")


__all__ += ["report_json"]
