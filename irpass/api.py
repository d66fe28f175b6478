"""``irpass.optimize``: the one entry point behind ``irpass optimize`` (and notebooks, other tools).

::

    import irpass

    result = irpass.optimize(
        "model.onnx",
        target="jetson",                          # or android, ios, rpi, x86, generic, a .json
        calib_data="models/trained/digits16_calib.npz",
        eval_data="models/trained/digits16_test.npz",
        labels="data",
        out_dir="out/",
    )
    result.model                 # the optimized onnx_ir.Model
    result.report.to_dict()      # per-pass records, before/after, target checks
    result.manifest              # what was written, the pipeline, how to run it on the device
    [c.name for c in result.failed_checks]

What a run with a target does, in order:

1. load the model (never modifies the file or the object given);
2. resolve every input's shape profile (``input_shapes``, else the data's shapes, else batch 1)
   and, for fixed-shape targets (NNAPI, Core ML), fix the dims before anything else, so the
   verifier derives its inputs from what the device will run; data are re-batched to match;
3. decide the precision (:mod:`irpass.targets.precision`): INT8 needs calibration data, a
   missing quantization package falls back, each time with the reason in the warnings;
4. run ``passes`` (default: the target's pipeline), the target's legalization and the
   precision stage through :class:`~irpass.manager.PipelineRunner`, verified after every pass;
5. hand the model to the target's backend: artifacts in ``out_dir`` (model, ``.ort``, build
   script, engine where possible) and the target checks;
6. write ``report.json``, ``report.html`` (with its target-checks section) and
   ``manifest.json``.

Without a target it runs ``passes`` (default ``canonicalize,fuse``) and writes the model and the
reports, as ``irpass optimize`` always did.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import itertools
import json
import logging
import os
import pathlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import onnx
import onnx_ir as ir

from irpass import __version__
from irpass.context import FeedSource, PassContext, limit_samples
from irpass.data import load_labels, open_data
from irpass.errors import DataError, OutputError, PassFailedError
from irpass.evaluate import Evaluator
from irpass.ir import external_data_paths, load_model, save_model
from irpass.manager import PipelineRunner, RunOptions, report_json
from irpass.outputs import OutputPlan
from irpass.pipeline import format_pipeline, parse_pipeline
from irpass.report import write_report_html
from irpass.run_report import RunReport
from irpass.search.search import SearchResult
from irpass.search.settings import SearchSettings
from irpass.targets.loader import load_target
from irpass.targets.precision import PrecisionPlan, plan_precision, step_down
from irpass.targets.profile import Target
from irpass.targets.shapes import Profile, opt_shapes, rebatch, resolve_profile

__all__ = [
    "DEFAULT_PIPELINE",
    "FREEZE_STEP",
    "DataLike",
    "OptimizeResult",
    "SearchSettings",
    "compose_pipeline",
    "optimize",
]

logger = logging.getLogger(__name__)

#: The pipeline of a run without a target.
DEFAULT_PIPELINE = "canonicalize,fuse"

#: Data given to :func:`optimize`: a data spec (path, ``random``, ``module:function``), a
#: FeedSource (callable returning fresh feeds), or a list of feeds.
DataLike = str | os.PathLike[str] | FeedSource | Sequence[Mapping[str, np.ndarray]]
ModelLike = ir.Model | onnx.ModelProto | str | os.PathLike[str]
ProgressCallback = Callable[[str, int], None]


@dataclasses.dataclass
class OptimizeResult:
    """What :func:`optimize` returns.

    Attributes:
        model: The optimized model.
        report: The run's report (per-pass records, totals, warnings, target checks).
        manifest: What ``manifest.json`` holds (also without ``out_dir``).
        target: The target profile, or None for a target-neutral run.
        precision: The precision decision, or None without a target.
        backend: What the backend wrote and checked (None without a target).
        out_dir: Where the files went, or None when nothing was written.
    """

    model: ir.Model
    report: RunReport
    manifest: dict[str, Any]
    target: Target | None = None
    precision: PrecisionPlan | None = None
    backend: Any = None
    out_dir: pathlib.Path | None = None

    @property
    def checks(self) -> list[Any]:
        """Every target check (empty without a target)."""
        return list(self.backend.checks) if self.backend is not None else []

    @property
    def failed_checks(self) -> list[Any]:
        """Target checks that ran and failed."""
        return [c for c in self.checks if c.status == "fail"]


def _open(data: DataLike, model: ir.Model, seed: int) -> tuple[FeedSource, str | None]:
    """A FeedSource for ``data`` (validated against ``model`` when it is a spec)."""
    if isinstance(data, (str, os.PathLike)):
        return open_data(data, model, seed=seed), os.fspath(data)
    if callable(data):
        return data, None
    feeds = [dict(f) for f in data]
    if not feeds:
        raise DataError("the data list is empty", hint="give at least one feed")
    return (lambda: iter(feeds)), None


def compose_pipeline(passes: str | None, target: Target | None, stage: str = "") -> str:
    """``passes`` (or the target's pipeline), then its legalization, then ``stage``.

    A ``passes`` pipeline that already quantizes keeps its own precision stage.
    """
    base = passes or (target.pipeline if target is not None else DEFAULT_PIPELINE)
    parts = [base]
    if target is not None and target.legalize:
        parts.append(target.legalize)
    if stage and _stage_needed(base, stage):
        parts.append(stage)
    return format_pipeline(parse_pipeline(",".join(parts)))


def _load(model: ModelLike) -> tuple[ir.Model, str | None]:
    if isinstance(model, ir.Model):
        return model.clone(), None  # the caller's object stays as it was
    if isinstance(model, onnx.ModelProto):
        return ir.from_proto(model), None
    return load_model(model), os.fspath(model)


#: Written next to the model in every output folder.
_REPORT_FILES = ("report.json", "report.html", "manifest.json")
#: The step ``freeze_inputs`` puts in front of the pipeline.
FREEZE_STEP = "inputs_to_initializers(freeze_overridable=true)"


def _sha256(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def optimize(
    model: ModelLike,
    target: str | Target | None = None,
    *,
    calib_data: DataLike | None = None,
    calib_samples: int = 512,
    eval_data: DataLike | None = None,
    labels: str | os.PathLike[str] | np.ndarray | None = None,
    passes: str | None = None,
    precision: str | None = None,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    max_shapes: Mapping[str, Sequence[int]] | None = None,
    verify_shapes: Sequence[Mapping[str, Sequence[int]]] | None = None,
    verify_data: DataLike | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    report_path: str | os.PathLike[str] | None = None,
    verify: Literal["each", "final", "none"] = "each",
    on_failure: Literal["error", "rollback"] = "rollback",
    seed: int = 0,
    freeze_inputs: bool = False,
    allow_custom_ops: bool = False,
    dump_dir: str | os.PathLike[str] | None = None,
    build_engine: Literal["auto", "never"] = "auto",
    progress: ProgressCallback | None = None,
    max_drop: str | None = None,
    search: SearchSettings | None = None,
) -> OptimizeResult:
    """Optimize ``model`` for ``target`` and (with ``out_dir``) write what the target runs.

    Args:
        model: A path, an ``onnx.ModelProto`` or an ``onnx_ir.Model`` (copied, not changed).
        target: A target name or alias (``irpass targets``), a profile ``.json``, a loaded
            :class:`~irpass.targets.Target`, or None for a target-neutral run.
        calib_data: Calibration data for lossy passes (training data, never the test split).
        calib_samples: Use at most this many calibration samples.
        eval_data: Evaluation data: fidelity (and task metrics with ``labels``) after every
            lossy pass; its first batch also drives verification.
        labels: Labels for ``eval_data`` (a file, ``"data"`` for the data file's ``labels``
            member, or an array).
        passes: Pipeline text replacing the target's base pipeline (legalization and the
            precision stage are still added; a pipeline with its own ``quantize`` keeps it).
        precision: ``int8``, ``fp16`` or ``fp32`` instead of the target's default.
        input_shapes: Shapes of dynamic inputs (the opt shape of TensorRT's profile; the
            shape a fixed-shape target is fixed to).
        max_shapes: Upper end of TensorRT's optimization profile for dynamic inputs.
        verify_shapes: Input shape configurations verification uses (default: derived from
            the graph; the fixed shapes on fixed-shape targets).
        verify_data: Inputs verification uses instead of generated ones.
        out_dir: Folder receiving the artifacts, ``report.json``, ``report.html`` and
            ``manifest.json``; None writes nothing.
        report_path: Also write ``report.json`` here.
        verify: ``each`` pass, ``final`` once, or ``none`` (structure only).
        on_failure: ``rollback`` (default) undoes a failing pass, warns and goes on;
            ``error`` stops with the failing pass named.
        seed: Seed of verification inputs and random choices.
        freeze_inputs: Freeze graph inputs that have default values into constants.
        allow_custom_ops: Accept custom-domain ops (they pass through, checks are structural).
        dump_dir: Save the model before and after every modifying pass here.
        build_engine: ``auto`` builds device binaries (TensorRT engines) where possible.
        progress: Called with (step label, index) as passes start.
        max_drop: An accuracy budget (``"1%"``, ``"macro_f1:1%"``, ``"cosine>=0.99"``; see
            :func:`irpass.search.parse_budget`): search the lossy passes' settings (pruning
            ratio and per-layer ratios rounded to the target's channel alignment, low-rank
            ratio, the target's quantization) for the setting the target runs cheapest that
            stays within the budget on ``eval_data`` (given as a file or data spec), then run
            it like any pipeline. Without a target it searches ``passes``.
        search: How the search runs (objective, workers, time bound); defaults when None.

    Every file is declared before the run (none may be the input or its weights), written
    into staging folders and moved into place only when everything succeeded.

    Raises:
        IrpassError: With a message and a hint for every user error (unknown target,
            precision the target lacks, data that do not fit, a failing pass, ...).
    """
    ir_model, input_path = _load(model)
    input_bytes = (
        sum(p.stat().st_size for p in [pathlib.Path(input_path), *external_data_paths(ir_model)])
        if input_path is not None
        else None
    )
    chosen = load_target(target) if isinstance(target, (str, os.PathLike)) else target
    if calib_samples < 1:
        raise DataError(
            f"calib_samples must be at least 1, got {calib_samples}", hint="e.g. 256"
        )
    if chosen is None and (precision is not None or input_shapes or max_shapes):
        raise DataError(
            "precision and input shapes belong to a target",
            hint="add --target (see irpass targets)",
        )
    outputs = _plan_outputs(ir_model, input_path, chosen, out_dir, report_path, dump_dir)
    with outputs.plan if outputs is not None else contextlib.nullcontext():
        result = _run(
            ir_model, input_path, chosen, outputs,
            calib_data=calib_data, calib_samples=calib_samples, eval_data=eval_data,
            labels=labels, passes=passes, precision=precision, input_shapes=input_shapes,
            max_shapes=max_shapes, verify_shapes=verify_shapes, verify_data=verify_data,
            verify=verify, on_failure=on_failure, seed=seed,
            freeze_inputs=freeze_inputs, allow_custom_ops=allow_custom_ops,
            build_engine=build_engine, progress=progress, max_drop=max_drop,
            search=search or SearchSettings(),
        )  # fmt: skip
        if input_bytes is not None:
            result.report.before["file_bytes"] = input_bytes
        if outputs is not None:
            _write(result, outputs)
            outputs.plan.commit()
    return result


@dataclasses.dataclass
class _Outputs:
    plan: OutputPlan
    out_dir: pathlib.Path | None
    files: list[str]
    report: pathlib.Path | None
    dump_dir: pathlib.Path | None
    reproducer: pathlib.Path | None

    def staged_dir(self) -> pathlib.Path:
        assert self.out_dir is not None
        return self.plan.staged(self.out_dir / self.files[0]).parent


def _plan_outputs(
    model: ir.Model,
    input_path: str | None,
    target: Target | None,
    out_dir: str | os.PathLike[str] | None,
    report_path: str | os.PathLike[str] | None,
    dump_dir: str | os.PathLike[str] | None,
) -> _Outputs | None:
    if out_dir is None and report_path is None and dump_dir is None:
        return None
    plan = OutputPlan([(pathlib.Path(input_path), "the input model")] if input_path else [])
    if input_path is not None:
        for data_file in external_data_paths(model):
            plan.protect(data_file, "an external-data file of the input")
    files: list[str] = []
    out = reproducer = None
    if out_dir is not None:
        out = pathlib.Path(out_dir)
        if out.suffix == ".onnx":
            raise OutputError(
                f"{out} names a model file; a target run writes a folder of files",
                hint="give a folder, e.g. -o out/",
            )
        if target is not None:
            from irpass.backends.registry import get_backend

            files = get_backend(target.backend).planned_files(target, "model.onnx")
        else:
            files = ["model.onnx", "model.onnx.data"]
        for name in [*files, *_REPORT_FILES]:
            plan.add_file(out / name, f"the output {name}")
        reproducer = plan.add_folder(out / "reproducer", "the reproducer folder", staged=False)
    report = plan.add_file(report_path, "--report") if report_path is not None else None
    dumps = plan.add_folder(dump_dir, "--dump-dir") if dump_dir is not None else None
    return _Outputs(plan, out, files, report, dumps, reproducer)


def _run(
    ir_model: ir.Model,
    input_path: str | None,
    target: Target | None,
    outputs: _Outputs | None,
    *,
    calib_data: DataLike | None,
    calib_samples: int,
    eval_data: DataLike | None,
    labels: str | os.PathLike[str] | np.ndarray | None,
    passes: str | None,
    precision: str | None,
    input_shapes: Mapping[str, Sequence[int]] | None,
    max_shapes: Mapping[str, Sequence[int]] | None,
    verify_shapes: Sequence[Mapping[str, Sequence[int]]] | None,
    verify_data: DataLike | None,
    verify: Literal["each", "final", "none"],
    on_failure: Literal["error", "rollback"],
    seed: int,
    freeze_inputs: bool,
    allow_custom_ops: bool,
    build_engine: Literal["auto", "never"],
    progress: ProgressCallback | None,
    max_drop: str | None,
    search: SearchSettings,
) -> OptimizeResult:
    calibration = _open(calib_data, ir_model, seed) if calib_data is not None else None
    evaluation = _open(eval_data, ir_model, seed) if eval_data is not None else None
    notes: list[str] = []
    profile: Profile = {}
    plan: PrecisionPlan | None = None
    if target is not None:
        if target.shape_policy != "dynamic" or input_shapes or max_shapes:
            sample = None
            for opened in (evaluation, calibration):
                if opened is not None and sample is None:
                    sample = next(iter(opened[0]()), None)
            profile = resolve_profile(
                ir_model,
                {k: tuple(v) for k, v in (input_shapes or {}).items()},
                {k: tuple(v) for k, v in (max_shapes or {}).items()},
                sample,
            )
        fixed = dict(profile)
        if target.shape_policy == "profiles":
            # a profile of one shape is a static shape: fixing it lets shape computations
            # fold away and the engine be built for exactly that shape
            fixed = {name: shapes for name, shapes in profile.items() if shapes[0] == shapes[2]}
        if target.shape_policy != "dynamic" and fixed:
            notes += _fix_shapes(ir_model, fixed)
            batch = min((shape[0] for shape in opt_shapes(fixed).values() if shape), default=1)
            if calibration is not None:
                calibration = (rebatch(calibration[0], batch), calibration[1])
            if evaluation is not None:
                evaluation = (rebatch(evaluation[0], batch), evaluation[1])
        from irpass.backends.registry import get_backend

        backend = get_backend(target.backend)
        plan = plan_precision(
            target, precision, calibration is not None, backend.build_time_precisions
        )
        notes += plan.reasons
    searched = None
    if max_drop is not None:
        fixed_batch = _fixed_batch(ir_model) if profile and target is not None and (
            target.shape_policy != "dynamic") else None
        pipeline, searched, plan = _search(
            ir_model, target, plan, passes, max_drop, search,
            evaluation=evaluation, calibration=calibration, labels=labels,
            calib_samples=calib_samples, seed=seed, batch=fixed_batch,
            progress=progress,
        )  # fmt: skip
    else:
        pipeline = compose_pipeline(passes, target, "")
    if freeze_inputs:
        pipeline = f"{FREEZE_STEP},{pipeline}"
    own_precision = plan is not None and plan.stage and not _stage_needed(pipeline, plan.stage)
    context = PassContext(target=target, seed=seed)
    verification_feeds = None
    if evaluation is not None:
        source, spec = evaluation
        label_array = _labels(labels, spec)
        context.evaluation_data = source
        context.labels = label_array
        context.evaluator = Evaluator(ir_model, source, label_array)
        verification_feeds = _first_batches(source)
    elif labels is not None:
        raise DataError("labels need evaluation data", hint="give eval_data (--eval-data)")
    if verify_data is not None:
        verified, _ = _open(verify_data, ir_model, seed)
        verification_feeds = _first_batches(verified)
    shape_configs = [{k: tuple(v) for k, v in c.items()} for c in verify_shapes or ()]
    if target is not None and target.shape_policy != "dynamic" and profile:
        shape_configs = [opt_shapes(profile)]  # what the target runs, and all it accepts
    if calibration is not None:
        context.calibration_data = limit_samples(calibration[0], calib_samples)
        spec = calibration[1] or ""
        context.calibration_is_random = spec.partition("?")[0].startswith("random")
    staged_dumps = None
    if outputs is not None and outputs.dump_dir is not None:
        staged_dumps = outputs.plan.staged(outputs.dump_dir)
    options = RunOptions(
        verify=verify,
        seeds=(seed, seed + 1),
        feeds=verification_feeds,
        input_shapes=shape_configs or None,
        dump_dir=staged_dumps,
        reproducer_dir=outputs.reproducer if outputs is not None else None,
        on_failure=on_failure,
        allow_custom_ops=allow_custom_ops,
    )
    runner = PipelineRunner(pipeline, context, options, progress=progress)
    original = ir_model.clone()
    try:
        run = runner.run(ir_model, input_path=input_path)
        report = run.report
        if target is not None and plan is not None:
            if own_precision:  # the given passes realize the precision: check what they did
                plan = _check_own_precision(run.model, target, plan, pipeline, report)
            model, plan = _run_precision(
                run.model, target, plan, context, options, progress, report
            )
            run = dataclasses.replace(run, model=model)
    except PassFailedError:
        if outputs is not None and outputs.dump_dir is not None:
            outputs.plan.commit(only=[outputs.dump_dir])  # the dumps help debug the failure
        raise
    if plan is not None:
        notes += [r for r in plan.reasons if r not in notes]
    report.warnings[:0] = notes
    if searched is not None:
        report.search = searched.to_dict()
    if outputs is not None and (outputs.out_dir is not None or outputs.report is not None):
        from irpass.diff import attach_diff

        attach_diff(original, run.model, report)
    backend_result = None
    if target is not None:
        assert plan is not None
        staged = outputs.staged_dir() if outputs is not None and outputs.out_dir else None
        backend_result = _emit(run.model, target, plan, profile, staged, build_engine)
        report.target_checks = [c.to_dict() for c in backend_result.checks]
        report.warnings += backend_result.gaps
    manifest = _manifest(report, target, plan, profile, backend_result, input_path)
    return OptimizeResult(
        model=run.model,
        report=report,
        manifest=manifest,
        target=target,
        precision=plan,
        backend=backend_result,
        out_dir=outputs.out_dir if outputs is not None else None,
    )


def _write(result: OptimizeResult, outputs: _Outputs) -> None:
    """Write the model (target-neutral runs), reports and manifest into the staging folders."""
    report = result.report
    if outputs.out_dir is not None:
        staged = outputs.staged_dir()
        if result.backend is None:
            save_model(result.model, staged / "model.onnx")
            result.manifest["artifacts"] = [
                {"path": "model.onnx", "kind": "model", "description": "optimized ONNX model"}
            ]
        else:
            unplanned = [
                a.path for a in result.backend.artifacts if a.path not in outputs.files
            ]
            if unplanned:
                raise OutputError(
                    f"the backend wrote undeclared files: {', '.join(unplanned)}",
                    hint="this is a bug in the backend's planned_files; please report it",
                )
        _finish_artifacts(result.manifest, staged)
        written = [staged / n for n in ("model.onnx", "model.onnx.data") if (staged / n).is_file()]
        report.after["file_bytes"] = sum(p.stat().st_size for p in written)
        report.output = str(outputs.out_dir / "model.onnx")
        (staged / "report.json").write_text(report_json(report))
        write_report_html(report.to_dict(), staged / "report.html")
        text = json.dumps(result.manifest, indent=2, sort_keys=True) + "\n"
        (staged / "manifest.json").write_text(text)
    if outputs.report is not None:
        outputs.plan.staged(outputs.report).write_text(report_json(report))


def _spec_of(opened: tuple[FeedSource, str | None] | None, what: str) -> str | None:
    """The data spec behind ``opened`` (the search's workers open data themselves)."""
    if opened is None:
        return None
    if opened[1] is None:
        raise DataError(
            f"max_drop needs {what} given as a file or data spec, not as Python objects",
            hint="save the arrays with numpy.savez and pass the .npz path",
        )
    return opened[1]


def _with_batch(spec: str, batch: int | None) -> str:
    """``spec`` served in batches of ``batch`` (a target that fixed the batch dimension)."""
    if batch is None or "batch=" in spec.partition("?")[2]:
        return spec
    return f"{spec}{'&' if '?' in spec else '?'}batch={batch}"


def _fixed_batch(model: ir.Model) -> int | None:
    dims = [v.shape[0] for v in model.graph.inputs if v.shape is not None and len(v.shape)]
    fixed = [d for d in dims if isinstance(d, int)]
    return min(fixed) if fixed else None


def _search(
    model: ir.Model,
    target: Target | None,
    plan: PrecisionPlan | None,
    passes: str | None,
    max_drop: str,
    settings: SearchSettings,
    *,
    evaluation: tuple[FeedSource, str | None] | None,
    calibration: tuple[FeedSource, str | None] | None,
    labels: str | os.PathLike[str] | np.ndarray | None,
    calib_samples: int,
    seed: int,
    batch: int | None,
    progress: ProgressCallback | None,
) -> tuple[str, SearchResult, PrecisionPlan | None]:
    """The pipeline the accuracy-budgeted search chooses, the search, and the precision plan.

    The searched pipeline is the run's whole pipeline: the base pipeline, the target's
    legalization and its precision stage (a lossy step the search may grade or leave out).
    When the chosen setting leaves the precision stage out, the plan steps down with the
    reason, as when the stage fails.
    """
    from irpass.search import search_pipeline

    eval_spec = _spec_of(evaluation, "eval_data")
    if eval_spec is None:
        raise DataError(
            "max_drop needs evaluation data: the budget is measured on it",
            hint="give eval_data (--eval-data val.npz --labels data)",
        )
    if isinstance(labels, np.ndarray):
        raise DataError("max_drop needs labels as a file or 'data', not an array",
                        hint="save them with numpy.save and pass the .npy path")
    calib_spec = _spec_of(calibration, "calib_data")
    stage = plan.stage if plan is not None else ""
    if stage and settings.only is not None and not (
        {step.name for step in parse_pipeline(stage)} & set(settings.only)
    ):
        stage = ""  # not searched: the precision stage runs after the chosen pipeline as usual
    text = compose_pipeline(passes, target, stage)
    outcome = search_pipeline(
        model,
        text,
        budget=max_drop,
        eval_data=_with_batch(eval_spec, batch),
        labels=os.fspath(labels) if labels is not None else None,
        calib_data=_with_batch(calib_spec, batch) if calib_spec is not None else None,
        calib_samples=calib_samples,
        seed=seed,
        objective=settings.objective,
        jobs=settings.jobs,
        executor=settings.executor,
        budget_seconds=settings.budget_seconds,
        max_candidates=settings.max_candidates,
        only=list(settings.only) if settings.only else None,
        backend=target.backend if target is not None else None,
        round_to=target.channel_alignment.multiple if target is not None else None,
        progress=(lambda message: progress(f"search: {message}", 0)) if progress else None,
    )
    chosen = outcome.pipeline
    if target is not None and plan is not None and stage and not _has_lossy_steps_of(
        chosen, stage
    ):
        from irpass.backends.registry import get_backend

        why = (f"the accuracy-budgeted search ({outcome.search.budget.describe()}) found no "
               f"setting with it that fits and costs less")
        # a lower precision with a stage of its own (e.g. fp16) runs after, as after a failure
        plan = step_down(target, plan, why, get_backend(target.backend).build_time_precisions)
    return chosen, outcome.search, plan


def _has_lossy_steps_of(pipeline: str, stage: str) -> bool:
    """Whether ``pipeline`` runs the lossy passes of ``stage`` (what realizes a precision).

    A lossless helper of the stage, such as ``explicit_zero_points``, alone does not count.
    """
    from irpass import registry

    lossy = {s.name for s in parse_pipeline(stage) if not registry.get_pass(s.name).lossless}
    return bool(lossy & {s.name for s in parse_pipeline(pipeline)})


def _first_batches(source: FeedSource, count: int = 2) -> list[dict[str, np.ndarray]]:
    """The first ``count`` feeds of a data source (verification inputs)."""
    return [dict(feed) for feed in itertools.islice(iter(source()), count)]


def _stage_needed(pipeline: str, stage: str) -> bool:
    """Whether ``stage`` must run after ``pipeline`` (not when the pipeline already has it)."""
    own = {step.name for step in parse_pipeline(pipeline)}
    return not own & {step.name for step in parse_pipeline(stage)}


def _run_precision(
    model: ir.Model,
    target: Target,
    plan: PrecisionPlan,
    context: PassContext,
    options: RunOptions,
    progress: ProgressCallback | None,
    report: RunReport,
) -> tuple[ir.Model, PrecisionPlan]:
    """Run the precision stage; if it fails it is rolled back and the next precision runs.

    A quantizing target never ends with an error because its precision could not be reached
    (no fp16 conversion in this installation, a model the rules cannot quantize): the failing
    pass is undone and named, and the plan steps down as :func:`step_down` says. On a target
    marked ``never_slower`` the result is timed against the model before the stage (interleaved
    with an A/A control, :func:`irpass.bench.measure_latency`) and dropped when it is slower
    beyond the run's noise. Returns the model (the input object, or the kept snapshot) and plan.
    """
    from irpass.backends.registry import get_backend

    build_time = get_backend(target.backend).build_time_precisions
    stage_options = dataclasses.replace(options, on_failure="rollback")
    while plan.stage:
        before = model.clone() if target.never_slower else None
        kept_after, kept_metrics = dict(report.after), report.metrics_after
        run = PipelineRunner(plan.stage, context, stage_options, progress=progress).run(model)
        _append(report, run.report)
        failed = [r for r in run.report.passes if r.rolled_back or r.error]
        if failed:
            plan = step_down(target, plan, failed[0].error or "rolled back", build_time)
            continue
        missing = _unrealized(model, plan.effective, run.report)
        if missing is None and before is not None:
            missing = _slower(before, model, plan)
            if missing is not None:
                for record in run.report.passes:
                    record.rolled_back, record.error = True, missing
                report.after, report.metrics_after = kept_after, kept_metrics
                model = before
        if missing is None:
            return model, plan
        plan = step_down(target, plan, missing, build_time)
    return model, plan


def _slower(before: ir.Model, after: ir.Model, plan: PrecisionPlan) -> str | None:
    """Why ``after`` is not kept: slower than ``before`` beyond noise (None: keep it)."""
    from irpass.bench import measure_latency

    try:
        timing = measure_latency(
            {"before": before, "after": after}, warmup=5, repeats=40, budget_seconds=20.0
        )
    except Exception as exc:  # e.g. dynamic dims random inputs cannot fill: keep, say so
        plan.measured = {"error": f"{type(exc).__name__}: {exc}"}
        return None
    ratio = timing.ratio("before", "after")
    real = timing.is_real("before", "after")
    plan.measured = {"latency_ratio": ratio, "real": real, "noise": timing.noise}
    if ratio > 1.0 and real:
        return f"it ran x{ratio:.2f} as long as the model before it on this machine"
    return None


def _check_own_precision(
    model: ir.Model, target: Target, plan: PrecisionPlan, pipeline: str, report: RunReport
) -> PrecisionPlan:
    """The plan after a pipeline that holds the precision stage's passes itself."""
    from irpass.backends.registry import get_backend

    names = {step.name for step in parse_pipeline(plan.stage)}
    own = [step for step in parse_pipeline(pipeline) if step.name in names]
    done = dataclasses.replace(plan, stage=format_pipeline(own))
    missing = _unrealized(model, plan.effective, report)
    if missing is None:
        done.stage = ""  # nothing left to run
        return done
    build_time = get_backend(target.backend).build_time_precisions
    return step_down(target, done, missing, build_time)


def _unrealized(model: ir.Model, precision: str, report: RunReport) -> str | None:
    """Why the model does not hold ``precision`` after its stage ran (None when it does)."""
    nodes = [n for g in model.graphs() for n in g]
    if precision == "int8" and not any(n.op_type == "QuantizeLinear" for n in nodes):
        stats: dict[str, int] = {}
        for record in report.passes:
            stats.update(record.stats)
        kept = ", ".join(f"{k}={stats[k]}" for k in ("kept_float_speed", "fallback_layers")
                         if stats.get(k))
        return f"it left every layer float ({kept or 'nothing to quantize'})"
    if precision == "fp16" and not any(
        v.dtype == ir.DataType.FLOAT16 for n in nodes for v in n.outputs
    ):
        return "it left every tensor float32"
    return None


def _append(report: RunReport, later: RunReport) -> None:
    """Fold the report of a run that continued ``report``'s model into ``report``."""
    report.pipeline = format_pipeline(parse_pipeline(f"{report.pipeline},{later.pipeline}"))
    report.expanded_pipeline = f"{report.expanded_pipeline},{later.expanded_pipeline}"
    report.passes += later.passes
    report.after = later.after
    if later.metrics_after is not None:
        report.metrics_after = later.metrics_after
    report.warnings += later.warnings
    report.seconds += later.seconds


def _labels(
    labels: str | os.PathLike[str] | np.ndarray | None, spec: str | None
) -> np.ndarray | None:
    if labels is None or isinstance(labels, np.ndarray):
        return labels
    if os.fspath(labels) == "data":
        if spec is None:
            raise DataError(
                'labels="data" needs eval data given as a file',
                hint="give eval_data as a .npz path, or labels as an array or a file",
            )
        return load_labels(spec.partition("?")[0])
    return load_labels(labels)


def _fix_shapes(model: ir.Model, profile: Profile) -> list[str]:
    """Fix every dynamic input to its opt shape; returns what changed, for the warnings."""
    from irpass.passes.legalize.fix_input_shapes import FixInputShapesPass, format_shape_spec

    before = {str(v.name): v.shape for v in model.graph.inputs}
    specs = tuple(format_shape_spec(n, s) for n, s in opt_shapes(profile).items())
    try:
        FixInputShapesPass(FixInputShapesPass.Options(shapes=specs))(model)
    except ValueError as exc:
        raise DataError(str(exc), hint="check --input-shapes against `irpass inspect`") from exc
    changed = []
    for name, shape in opt_shapes(profile).items():
        old = before.get(name)
        if old is None or tuple(old) != shape:
            changed.append(f"{name}: {list(old) if old is not None else '?'} -> {list(shape)}")
    return ["input shapes fixed for this target: " + "; ".join(changed)] if changed else []


def _emit(
    model: ir.Model,
    target: Target,
    plan: PrecisionPlan,
    profile: Profile,
    out: pathlib.Path | None,
    build_engine: Literal["auto", "never"],
) -> Any:
    from irpass.backends.base import BackendResult, EmitRequest
    from irpass.backends.registry import get_backend

    backend = get_backend(target.backend)
    if out is None:
        return BackendResult(backend.name, checks=backend.check(model, target))
    out.mkdir(parents=True, exist_ok=True)
    request = EmitRequest(
        out_dir=out, precision=plan.effective, shape_profile=profile, build_engine=build_engine
    )
    return backend.emit(model, target, request)


def _manifest(
    report: RunReport,
    target: Target | None,
    plan: PrecisionPlan | None,
    profile: Profile,
    backend: Any,
    input_path: str | None,
) -> dict[str, Any]:
    checks = [c.to_dict() for c in backend.checks] if backend is not None else []
    counts: dict[str, int] = {}
    for check in checks:
        counts[check["status"]] = counts.get(check["status"], 0) + 1
    return {
        "irpass_version": __version__,
        "input": input_path,
        "target": target.to_dict() if target is not None else None,
        "precision": plan.to_dict() if plan is not None else None,
        "pipeline": report.pipeline,
        "expanded_pipeline": report.expanded_pipeline,
        "input_shapes": {
            name: {"min": list(s[0]), "opt": list(s[1]), "max": list(s[2])}
            for name, s in profile.items()
        },
        "artifacts": [a.to_dict() for a in backend.artifacts] if backend is not None else [],
        "checks": counts,
        "failed_checks": [c["name"] for c in checks if c["status"] == "fail"],
        "gaps": list(backend.gaps) if backend is not None else [],
        "device_steps": list(backend.device_steps) if backend is not None else [],
        "report": "report.json",
    }


def _finish_artifacts(manifest: dict[str, Any], out: pathlib.Path) -> None:
    """Add size and SHA-256 of every written artifact (what to copy to the device)."""
    for artifact in manifest["artifacts"]:
        path = out / artifact["path"]
        artifact["bytes"] = path.stat().st_size
        artifact["sha256"] = _sha256(path)
