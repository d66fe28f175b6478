"""``irpass optimize IN -o OUT``: run a pipeline with verification and write model + report."""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import logging
import pathlib

import numpy as np
import onnx_ir as ir
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from irpass.analysis.cost import cost_shapes_note
from irpass.api import OptimizeResult, optimize
from irpass.cli import console, err_console
from irpass.cli._format import fmt_bytes, fmt_count, fmt_delta, fmt_ratio
from irpass.cli._markup import esc
from irpass.cli._search import (
    add_search_arguments,
    require_eval_data,
    search_for,
    search_settings,
    search_table,
)
from irpass.context import FeedSource, PassContext, limit_samples
from irpass.data import load_labels, open_data
from irpass.diff import attach_diff
from irpass.errors import DataError, OutputError, PassFailedError, UsageError
from irpass.evaluate import Evaluator
from irpass.ir import external_data_paths, load_model, save_model
from irpass.manager import PipelineRunner, RunOptions, report_json
from irpass.outputs import OutputPlan
from irpass.report import write_report_html
from irpass.run_report import RunReport
from irpass.verify.feeds import parse_input_shapes
from irpass.verify.region import RegionOptions

logger = logging.getLogger(__name__)

COMMAND = "optimize"
HELP = "optimize a model with a pass pipeline, verifying every pass; writes model and report"

__all__ = [
    "COMMAND",
    "DEFAULT_PIPELINE",
    "HELP",
    "Outputs",
    "add_arguments",
    "plan_outputs",
    "resolve_outputs",
    "run",
    "target_table",
]


DEFAULT_PIPELINE = "canonicalize,fuse"
#: The step ``--freeze-inputs`` puts in front of the pipeline.
FREEZE_STEP = "inputs_to_initializers(freeze_overridable=true)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``irpass optimize``."""
    parser.add_argument("model", help="input .onnx file (never modified)")
    parser.add_argument(
        "-o",
        "--output",
        required=True,
        help="an OUT ending in .onnx is the model file; any other OUT is a directory that "
        "receives model.onnx, report.json and report.html",
    )
    parser.add_argument(
        "--passes",
        default=None,
        help=f"pipeline text, e.g. 'canonicalize,fixpoint(fold_constants,eliminate_dead)' "
        f"(default: {DEFAULT_PIPELINE}); see `irpass passes`",
    )
    parser.add_argument(
        "--dump-dir", type=pathlib.Path, help="save the model before/after every pass here"
    )
    parser.add_argument(
        "--verify",
        choices=["each", "final", "none"],
        default="each",
        help="numeric verification after each pass (default), at the end of each run of "
        "lossless passes, or never (structural checks only)",
    )
    parser.add_argument(
        "--verify-region",
        type=float,
        default=0.0,
        metavar="FRACTION",
        help="--verify each: check a lossless pass that rewrote at most this fraction of the "
        f"nodes and weights on the rewritten region only, with recorded boundary values (e.g. "
        f"{RegionOptions.max_fraction}; default 0: every pass is checked on the whole model, "
        "which measured faster on the default pipeline); the end-to-end check at the end "
        "always runs the whole model",
    )
    parser.add_argument(
        "--on-failure",
        choices=["error", "rollback"],
        default="rollback",
        help="roll a failing pass back, warn and continue (default), or stop with an error",
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="stop at the first failing pass or hygiene violation (= --on-failure error; for CI)",
    )
    parser.add_argument(
        "--input-shapes",
        action="append",
        metavar="NAME:DIMS,...",
        help="verify with these input shapes instead of searching for sizes the model accepts, "
        "e.g. images:1x3x640x640 (repeat the flag for more configurations)",
    )
    parser.add_argument(
        "--verify-data",
        help="verify with these inputs instead of generated ones (any data spec as for "
        "--eval-data; the first two batches are used)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed for verification inputs (seed and seed + 1)"
    )
    parser.add_argument(
        "--freeze-inputs",
        action="store_true",
        help="freeze graph inputs that have default values (overridable initializers) into "
        "constants; by default they stay inputs and verification feeds them",
    )
    parser.add_argument(
        "--allow-custom-ops",
        action="store_true",
        help="accept ops from unknown domains (they pass through; checks become structural)",
    )
    parser.add_argument(
        "--eval-data",
        help="evaluate after every lossy pass on these data (.npy/.npz, folder of arrays or "
        "images, py:module:function, or 'random'); the first batch also drives verification",
    )
    parser.add_argument(
        "--labels",
        help="labels for --eval-data (.npy, .npz[:key], .txt; 'data' = the data file's "
        "'labels' member) for task metrics",
    )
    parser.add_argument(
        "--calib-data",
        help="calibration data for lossy passes (quantization ranges, pruning scores and "
        "repair, low-rank whitening): any data spec as for --eval-data; take it from the "
        "training split, not the evaluation data ('random' only when asked, with a warning)",
    )
    parser.add_argument(
        "--calib-samples",
        type=int,
        default=512,
        help="use at most this many calibration samples (default 512)",
    )
    parser.add_argument("--report", type=pathlib.Path, help="also write report.json here")
    parser.add_argument("--json", action="store_true", help="print the report as JSON at the end")
    target = parser.add_argument_group("deployment target (see `irpass targets`)")
    target.add_argument(
        "--target",
        help="optimize for a target (jetson, jetson-nano, android, ios, rpi, x86, generic or a "
        "profile .json): its pipeline, legalization, precision and backend artifacts; -o is "
        "then a folder that also receives manifest.json",
    )
    target.add_argument(
        "--precision",
        choices=["int8", "fp16", "fp32"],
        help="instead of the target's default precision (int8 needs --calib-data)",
    )
    target.add_argument(
        "--max-shapes",
        help="largest shapes of dynamic inputs for TensorRT's optimization profile",
    )
    target.add_argument(
        "--no-engine",
        action="store_true",
        help="write the engine build script only, even where TensorRT and a GPU are present",
    )
    add_search_arguments(parser)


@dataclasses.dataclass
class Outputs:
    """Where one ``optimize`` run writes, declared in an :class:`OutputPlan` before the run."""

    plan: OutputPlan
    model: pathlib.Path
    directory: pathlib.Path | None
    report: pathlib.Path | None
    dump_dir: pathlib.Path | None
    reproducer_dir: pathlib.Path


def resolve_outputs(
    output: str, input_path: pathlib.Path
) -> tuple[pathlib.Path, pathlib.Path | None]:
    """Return (model path, output directory or None) for ``-o OUTPUT``."""
    if not output.strip():
        raise OutputError(
            "-o is an empty path", hint="name a .onnx file or a directory, e.g. -o out/"
        )
    out = pathlib.Path(output)
    if out.suffix == ".onnx":
        return out, None
    if out.exists() and not out.is_dir():
        raise OutputError(
            f"{out} exists and is not a directory", hint="name a directory or a .onnx file"
        )
    return out / "model.onnx", out


def plan_outputs(args: argparse.Namespace, input_path: pathlib.Path, model: ir.Model) -> Outputs:
    """Declare every destination of the run; checked against the input and each other."""
    model_path, directory = resolve_outputs(args.output, input_path)
    plan = OutputPlan([(input_path, "the input model")])
    for data_file in external_data_paths(model):
        plan.protect(data_file, "an external-data file of the input")
    plan.add_file(model_path, "the output model")
    plan.add_file(model_path.with_name(model_path.name + ".data"), "the output's weight file")
    if directory is not None:
        plan.add_file(directory / "report.json", "the JSON report")
        plan.add_file(directory / "report.html", "the HTML report")
    report = plan.add_file(args.report, "--report") if args.report is not None else None
    dump_dir = plan.add_folder(args.dump_dir, "--dump-dir") if args.dump_dir is not None else None
    reproducer = plan.add_folder(
        (directory or model_path.parent) / "reproducer", "the reproducer folder", staged=False
    )
    return Outputs(plan, model_path, directory, report, dump_dir, reproducer)


def _step_label(step: str) -> str:
    """'fixpoint#1.2/fold_constants' -> 'fold_constants r2' (round 2 of its fixpoint)."""
    where, _, name = step.rpartition("/")
    if not where:
        return step
    return f"{name} r{where.rpartition('.')[2]}"


def _summary_tables(report: RunReport) -> list[Table]:
    changed = report.modified_passes()
    passes = Table(title=f"passes ({len(changed)} of {len(report.passes)} changed the model)")
    shown = changed or report.passes
    show_macs = any(r.before.get("macs") != r.after.get("macs") for r in shown)
    columns = (
        ["step", "time", "nodes", "params"]
        + (["MACs"] if show_macs else [])
        + [
            "verified",
            "what changed",
        ]
    )
    for col in columns:
        if col in ("time", "nodes", "params", "MACs"):
            passes.add_column(col, justify="right", no_wrap=True)
        elif col == "verified":
            passes.add_column(col, overflow="fold", max_width=24)
        elif col == "step":
            passes.add_column(col, min_width=22, overflow="fold")
        else:
            passes.add_column(col, overflow="fold", min_width=16, ratio=1)
    for record in shown:
        stats = ", ".join(f"{k}={v}" for k, v in record.stats.items() if v)
        verified = record.verification.status
        if record.metrics:
            verified += " " + ", ".join(f"{k}={v:.4g}" for k, v in list(record.metrics.items())[:3])
        row = [
            esc(_step_label(record.step)),
            f"{record.seconds:.2f}s",
            fmt_delta(record.before.get("nodes"), record.after.get("nodes"), percent=False),
            fmt_delta(record.before.get("params"), record.after.get("params"), percent=False),
        ]
        if show_macs:
            macs = (record.before.get("macs"), record.after.get("macs"))
            row.append(fmt_delta(*macs, percent=False))
        row += [("[red]" if record.error else "") + esc(verified), esc(stats[:120])]
        passes.add_row(*row)
    if show_macs:
        passes.caption = esc(cost_shapes_note(report.cost_shapes))
    totals = Table(title="before / after")
    for col in ("", "before", "after", "ratio"):
        totals.add_column(col, justify="left" if not col else "right")
    for key, fmt in (
        ("file_bytes", fmt_bytes),
        ("nodes", fmt_count),
        ("params", fmt_count),
        ("weight_bytes", fmt_bytes),
        ("macs", fmt_count),
        ("peak_activation_bytes", fmt_bytes),
    ):
        b, a = report.before.get(key), report.after.get(key)
        label = key.replace("_", " ") + (" *" if key in ("macs", "peak_activation_bytes") else "")
        totals.add_row(label, fmt(b), fmt(a), fmt_ratio(b, a))
    if report.metrics_before and report.metrics_after:
        for key, value in report.metrics_after.items():
            before = report.metrics_before.get(key)
            before_text = f"{before:.4g}" if before is not None else "-"
            totals.add_row(esc(key), before_text, f"{value:.4g}", "")
    totals.add_row("time", "", f"{report.seconds:.2f}s", "")
    unknown = [
        max(int(report.before.get(key, 0)), int(report.after.get(key, 0)))
        for key in ("unknown_macs_nodes", "unknown_activation_values")
    ]
    note = cost_shapes_note(report.cost_shapes, *unknown)
    source = {
        "verification": " (the first verification feed's; set with --input-shapes)",
        "declared": " (declared)",
        "no verification shapes": " (no verification shapes; set real ones with --input-shapes)",
    }
    note += source.get(report.cost_shapes_source, "")
    totals.caption = "* " + esc(note)
    return [passes, totals]


def run(args: argparse.Namespace) -> int:
    """Load, optimize with verification, write outputs atomically, print the summary."""
    if args.target is not None:
        return _run_target(args)
    if args.precision or args.max_shapes or args.no_engine:
        raise UsageError(
            "--precision, --max-shapes and --no-engine need --target",
            hint="see `irpass targets`",
        )
    input_path = pathlib.Path(args.model)
    resolve_outputs(args.output, input_path)  # a malformed -o is reported before loading
    model = load_model(input_path)
    outputs = plan_outputs(args, input_path, model)
    with outputs.plan:  # destinations checked and staging folders created before the run
        report = _optimize(args, input_path, model, outputs)
        text = report_json(report)
        plan = outputs.plan
        if outputs.directory is not None:
            plan.staged(outputs.directory / "report.json").write_text(text)
            write_report_html(report.to_dict(), plan.staged(outputs.directory / "report.html"))
        if outputs.report is not None:
            plan.staged(outputs.report).write_text(text)
        plan.commit()
    for warning in report.warnings:
        err_console.print(f"[yellow]warning:[/] {esc(warning)}", soft_wrap=True)
    if args.json:
        console.print_json(text)
    else:
        if report.search is not None:
            console.print(search_table(report.search))
            console.print(esc(report.search["summary"]), soft_wrap=True)
        for table in _summary_tables(report):
            console.print(table)
        written = f" and {outputs.directory}/report.json, report.html" if outputs.directory else ""
        console.print(esc(f"wrote {outputs.model}{written}"), soft_wrap=True)
    return 0


def _shapes(texts: list[str] | str | None, model_path: str) -> list[dict[str, tuple[int, ...]]]:
    if not texts:
        return []
    model = load_model(model_path)
    return [parse_input_shapes(text, model) for text in ([texts] if isinstance(texts, str)
                                                          else texts)]


def _spinner() -> Progress:
    """The transient progress line of a run (off when stderr is not a terminal)."""
    return Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
        disable=not err_console.is_terminal,
    )


def _run_target(args: argparse.Namespace) -> int:
    """``--target``: everything through :func:`irpass.optimize`, then the summary."""
    if args.max_drop is not None:
        require_eval_data(args)
    with _spinner() as progress:
        task = progress.add_task("starting", total=None)

        def on_step(label: str, index: int) -> None:
            progress.update(task, description=esc(f"pass {index}: {label}"))

        # the first --input-shapes configuration is the target's (fixed / opt) shape
        shapes = _shapes(args.input_shapes, args.model)
        result = optimize(
            args.model,
            args.target,
            calib_data=args.calib_data,
            calib_samples=args.calib_samples,
            eval_data=args.eval_data,
            labels=args.labels,
            passes=args.passes,
            precision=args.precision,
            input_shapes=shapes[0] if shapes else None,
            max_shapes=next(iter(_shapes(args.max_shapes, args.model)), None),
            verify_shapes=shapes or None,
            verify_data=args.verify_data,
            out_dir=args.output,
            report_path=args.report,
            verify=args.verify,
            on_failure="error" if args.strict else args.on_failure,
            seed=args.seed,
            freeze_inputs=args.freeze_inputs,
            allow_custom_ops=args.allow_custom_ops,
            dump_dir=args.dump_dir,
            build_engine="never" if args.no_engine else "auto",
            progress=on_step,
            max_drop=args.max_drop,
            search=search_settings(args),
        )
    report = result.report
    for warning in report.warnings:
        err_console.print(f"[yellow]warning:[/] {esc(warning)}", soft_wrap=True)
    if args.json:
        console.print_json(report_json(report))
        return 0
    if report.search is not None:
        console.print(search_table(report.search))
        console.print(esc(report.search["summary"]), soft_wrap=True)
    for table in _summary_tables(report):
        console.print(table)
    console.print(target_table(result))
    files = ", ".join(a["path"] for a in result.manifest["artifacts"])
    console.print(esc(f"wrote {args.output}: {files}, manifest.json, report.json, report.html"),
                  soft_wrap=True)
    for step in result.manifest["device_steps"]:
        console.print(esc(f"  on the device: {step}"), soft_wrap=True)
    return 0


def target_table(result: OptimizeResult) -> Table:
    """The target, the precision it got and why, and every target check."""
    target = result.target
    assert target is not None and result.precision is not None
    plan = result.precision
    title = f"target {target.name}: {target.runtime.name} {target.runtime.version}"
    table = Table(title=esc(title))
    table.add_column("check", overflow="fold")
    table.add_column("status", no_wrap=True)
    table.add_column("detail", overflow="fold", ratio=1)
    how = " (set by the engine builder)" if plan.at_build else ""
    precision = f"{plan.effective}{how}"
    if plan.effective != plan.requested:
        precision += f", not {plan.requested}: " + "; ".join(plan.reasons)
    table.add_row("precision", "pass" if plan.effective == plan.requested else "[yellow]warn",
                  esc(precision))
    colors = {"pass": "green", "fail": "red", "warn": "yellow", "skipped": "yellow"}
    for check in result.checks:
        color = colors.get(check.status, "white")
        table.add_row(esc(check.name), f"[{color}]{check.status}", esc(check.detail))
    return table


def _optimize(
    args: argparse.Namespace, input_path: pathlib.Path, model: ir.Model, outputs: Outputs
) -> RunReport:
    """Run the pipeline; the optimized model is saved into the staging folder."""
    input_data = external_data_paths(model)
    input_bytes = _file_bytes([input_path, *input_data])
    context = PassContext(seed=args.seed)
    verification_feeds = None
    if args.labels and not args.eval_data:
        raise DataError("--labels needs --eval-data", hint="give the data the labels belong to")
    if args.eval_data:
        data = open_data(args.eval_data, model, seed=args.seed)
        labels_path = args.eval_data.partition("?")[0] if args.labels == "data" else args.labels
        labels = load_labels(labels_path) if labels_path else None
        context.evaluation_data = data
        context.labels = labels
        context.evaluator = Evaluator(model, data, labels)
        verification_feeds = _first_batches(data)
    if args.verify_data:
        verification_feeds = _first_batches(open_data(args.verify_data, model, seed=args.seed))
    input_shapes = [parse_input_shapes(text, model) for text in args.input_shapes or ()]
    if args.calib_data:
        if args.calib_samples < 1:
            raise DataError(
                f"--calib-samples must be at least 1, got {args.calib_samples}",
                hint="e.g. --calib-samples 256",
            )
        calibration = open_data(args.calib_data, model, seed=args.seed)
        context.calibration_data = limit_samples(calibration, args.calib_samples)
        context.calibration_is_random = args.calib_data.partition("?")[0].startswith("random")
    plan = outputs.plan
    options = RunOptions(
        verify=args.verify,
        seeds=(args.seed, args.seed + 1),
        feeds=verification_feeds,
        input_shapes=input_shapes or None,
        dump_dir=plan.staged(outputs.dump_dir) if outputs.dump_dir is not None else None,
        reproducer_dir=outputs.reproducer_dir,
        on_failure="error" if args.strict else args.on_failure,
        allow_custom_ops=args.allow_custom_ops,
        region=RegionOptions(max_fraction=args.verify_region) if args.verify_region > 0 else None,
    )
    pipeline = DEFAULT_PIPELINE if args.passes is None else args.passes
    if args.freeze_inputs:  # recorded in the report's pipeline like any other step
        pipeline = f"{FREEZE_STEP},{pipeline}"
    with _spinner() as progress:
        task = progress.add_task("starting", total=None)

        def on_step(label: str, index: int) -> None:
            progress.update(task, description=esc(f"pass {index}: {label}"))
            current[:] = [f"pass {index}: {label}"]

        def on_detail(message: str) -> None:
            # a pass reporting progress inside its step (quantize: calibration batches)
            progress.update(task, description=esc(f"{current[0]}: {message}"))

        current = ["starting"]
        context.extra["progress"] = on_detail

        search = None
        if args.max_drop is not None:

            def on_search(message: str) -> None:
                progress.update(task, description=esc(f"search: {message}"))

            pipeline, search = search_for(args, model, pipeline, None, on_search)
        # a search that kept nothing of an all-lossy pipeline leaves no pass to run
        steps = [] if search is not None and not pipeline else pipeline
        manager = PipelineRunner(steps, context, options, progress=on_step)
        diffed = outputs.directory is not None or bool(args.report)
        # shares weights; the passes rewrite `model` in place (only the diff reads the copy)
        original = model.clone() if diffed else None
        written: list[pathlib.Path] = []

        def write(optimized: ir.Model) -> None:
            # weights read from a data file are written to one (the output's own), even when
            # every weight was rewritten (quantized) and the total is below the protobuf
            # limit: the output keeps the input's layout, and saving never holds a serialized
            # copy of the weights
            written[:] = save_model(
                optimized,
                plan.staged(outputs.model),
                external_data=True if input_data else None,
            )

        try:
            result = manager.run(model, input_path=str(input_path), write=write)
        except PassFailedError:
            if outputs.dump_dir is not None:  # the dumps up to the failure help debug it
                plan.commit(only=[outputs.dump_dir])
            raise
        if original is not None:
            progress.update(task, description="diffing input and output")
            attach_diff(original, result.model, result.report)
    if search is not None:
        result.report.search = search.to_dict()
    result.report.output = str(outputs.model)
    result.report.before["file_bytes"] = input_bytes
    result.report.after["file_bytes"] = _file_bytes(written)
    return result.report


def _first_batches(data: FeedSource, count: int = 2) -> list[dict[str, np.ndarray]]:
    """The first ``count`` feeds of a data source (verification inputs)."""
    return [dict(feed) for feed in itertools.islice(iter(data()), count)]


def _file_bytes(paths: list[pathlib.Path]) -> int:
    return sum(p.stat().st_size for p in paths if p.is_file())
