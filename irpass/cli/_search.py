"""``optimize --max-drop``: the command-line side of the accuracy-budgeted search."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import Any

import onnx_ir as ir
from rich.table import Table

from irpass.cli._format import fmt_bytes
from irpass.cli._markup import esc
from irpass.errors import DataError, PipelineError
from irpass.search import SearchResult, SearchSettings, search_pipeline
from irpass.search.objective import OBJECTIVES
from irpass.search.pareto import pareto_front

__all__ = [
    "add_search_arguments",
    "require_eval_data",
    "search_for",
    "search_settings",
    "search_table",
]


def add_search_arguments(parser: argparse.ArgumentParser) -> None:
    """The search options of ``irpass optimize``."""
    group = parser.add_argument_group(
        "accuracy-budgeted search",
        "search the lossy passes' settings (pruning ratio, low-rank ratio, quantization) for "
        "the cheapest model within a budget; needs --eval-data",
    )
    group.add_argument(
        "--max-drop",
        metavar="BUDGET",
        help="what may be lost: '1%%' or '0.5pt' (points of the task metric), '2%%rel' "
        "(relative), 'macro_f1:1%%', or a floor/ceiling such as 'cosine>=0.99', 'mse<=0.02'",
    )
    group.add_argument(
        "--objective",
        choices=OBJECTIVES,
        default="cost",
        help="what the search minimizes: the target's estimated cost (default; deterministic), "
        "file size, MACs, or latency measured on this machine",
    )
    group.add_argument(
        "--search",
        metavar="PASSES",
        help="only search these lossy passes, comma-separated (default: every lossy pass of "
        "the pipeline plus prune and svd when installed)",
    )
    group.add_argument(
        "--jobs",
        type=int,
        default=None,
        help=f"parallel evaluations (default: the number of CPUs, {os.cpu_count()})",
    )
    group.add_argument(
        "--executor",
        default="process",
        help="where evaluations run: process (default), serial, ray, or ray:ADDRESS for a "
        "running Ray cluster",
    )
    group.add_argument(
        "--budget-time",
        type=float,
        metavar="SECONDS",
        help="stop trying new settings after this many seconds (the best so far is kept)",
    )
    group.add_argument(
        "--max-candidates",
        type=int,
        default=60,
        help="evaluate at most this many settings (default 60)",
    )


def require_eval_data(args: argparse.Namespace) -> None:
    """``--max-drop`` is measured on ``--eval-data``: refuse it without."""
    if not args.eval_data:
        raise DataError(
            "--max-drop needs --eval-data: the budget is measured on evaluation data",
            hint="e.g. --eval-data val.npz --labels data --max-drop 1%",
        )


def search_settings(args: argparse.Namespace) -> SearchSettings:
    """The search options ``args`` give (checked)."""
    if args.jobs is not None and args.jobs < 1:
        raise PipelineError(f"--jobs must be at least 1, got {args.jobs}", hint="e.g. --jobs 4")
    only = tuple(s.strip() for s in args.search.split(",") if s.strip()) if args.search else None
    return SearchSettings(objective=args.objective, jobs=args.jobs, executor=args.executor,
                          budget_seconds=args.budget_time, max_candidates=args.max_candidates,
                          only=only)


def search_for(
    args: argparse.Namespace,
    model: ir.Model,
    pipeline: str,
    backend: str | None,
    progress: Callable[[str], None] | None,
) -> tuple[str, SearchResult]:
    """Run the search ``args`` ask for; return the pipeline to run and the search."""
    require_eval_data(args)
    settings = search_settings(args)
    outcome = search_pipeline(
        model,
        pipeline,
        budget=args.max_drop,
        eval_data=args.eval_data,
        labels=args.labels,
        calib_data=args.calib_data,
        calib_samples=args.calib_samples,
        seed=args.seed,
        objective=settings.objective,
        jobs=settings.jobs,
        executor=settings.executor,
        budget_seconds=settings.budget_seconds,
        max_candidates=settings.max_candidates,
        only=list(settings.only) if settings.only else None,
        backend=backend,
        progress=progress,
    )
    return outcome.pipeline, outcome.search


def search_table(search: dict[str, Any]) -> Table:
    """The settings on the accuracy/size Pareto front, the baseline and the chosen one."""
    metric = str(search.get("budget_metric") or "")
    points = list(search.get("points") or [])
    usable = [p for p in points if p.get("file_bytes") is not None and metric in p["metrics"]]
    front = {id(usable[i]) for i in pareto_front(
        [(float(p["file_bytes"]), float(p["metrics"][metric])) for p in usable])}
    chosen = search.get("chosen", {}).get("index")
    table = Table(title=esc(f"search ({len(points)} settings tried; "
                            f"{search.get('budget_described', '')})"))
    for column in ("setting", metric, "size", "est. cost", ""):
        table.add_column(esc(column), justify="left" if column in ("setting", "") else "right")
    for p in points:
        is_chosen = p.get("index") == chosen
        if id(p) not in front and not is_chosen and p.get("phase") != "baseline":
            continue
        status = "chosen" if is_chosen else ("fits" if p.get("feasible") else "over budget")
        value = p["metrics"].get(metric)
        table.add_row(
            esc(p.get("description", "")),
            "-" if value is None else f"{value:.4g}",
            fmt_bytes(p.get("file_bytes")),
            "-" if p.get("cost") is None else f"{p['cost']:.4g}",
            ("[bold green]" if is_chosen else "") + status,
        )
    return table
