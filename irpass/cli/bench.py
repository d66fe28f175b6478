"""``irpass bench MODEL [MODEL ...]``: ONNX Runtime CPU latency percentiles and peak memory.

Models are timed interleaved (A, B, A, B, ...) on the same inputs after a warm-up, next to a
second session of the first model (the A/A control, whose gap is the run's noise); a ratio
against the first model is called real only beyond that noise and the spreads. Peak memory is
measured per model in a fresh process. This is the measurement every benchmark script uses
(:mod:`irpass.bench`).
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from rich.table import Table

from irpass.bench import (
    AA_CONTROL,
    LatencyReport,
    MemoryStats,
    machine_info,
    measure_latency,
    measure_peak_memory,
)
from irpass.cli import console
from irpass.cli._format import fmt_bytes
from irpass.cli._markup import esc
from irpass.data import open_data
from irpass.errors import DataError
from irpass.ir import load_model
from irpass.verify import make_session, random_feeds
from irpass.verify.feeds import parse_input_shapes

COMMAND = "bench"
HELP = "measure ONNX Runtime CPU latency (percentiles, A/A noise) and peak memory of models"

__all__ = ["COMMAND", "HELP", "add_arguments", "bench_feeds", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``irpass bench``."""
    parser.add_argument("models", nargs="+", help="one or more .onnx files (the first is the base)")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads (default 1)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed runs first (default 5)")
    parser.add_argument("--repeats", type=int, default=50, help="timed runs per model")
    parser.add_argument(
        "--data", help="take the inputs from the first batch of these data (any data spec)"
    )
    parser.add_argument(
        "--input-shapes", help="shapes of dynamic inputs for random data, name:1x3x224x224,..."
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of random inputs")
    parser.add_argument(
        "--no-ort-optimizations",
        action="store_true",
        help="time with ONNX Runtime's graph optimizations off (default: on, what users get)",
    )
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory runs")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def bench_feeds(args: argparse.Namespace) -> dict[str, np.ndarray]:
    """The inputs every model gets: a data batch, or seeded random data of the given shapes."""
    model = load_model(args.models[0])
    if args.data:
        return dict(next(iter(open_data(args.data, model, seed=args.seed)())))
    shapes = parse_input_shapes(args.input_shapes, model) if args.input_shapes else {}
    session = make_session(model)
    dims: dict[str, int] = {}
    for arg in session.get_inputs():
        for dim, size in zip(arg.shape, shapes.get(arg.name, ()), strict=False):
            if isinstance(dim, str):
                dims[dim] = size
    feeds = random_feeds(session, seed=args.seed, dim_values=dims)
    for name, shape in shapes.items():
        if tuple(feeds[name].shape) != shape:  # unnamed dynamic dims: draw at the given shape
            rng = np.random.default_rng(args.seed)
            feeds[name] = rng.standard_normal(shape).astype(feeds[name].dtype)
    return feeds


def _table(report: LatencyReport, memory: dict[str, MemoryStats], names: list[str]) -> Table:
    title = f"ONNX Runtime CPU, {report.threads} thread(s), optimizations " + (
        "on" if report.optimize else "off"
    )
    table = Table(title=title)
    for column in ("model", "median ms", "p10", "p90", "min", "runs", "vs first", "peak memory"):
        table.add_column(column, justify="left" if column == "model" else "right")
    base = names[0]
    for name in [*names, AA_CONTROL]:
        stats = report.stats.get(name)
        if stats is None:
            continue
        ratio = ""
        if name not in (base, AA_CONTROL):
            ratio = f"x{report.ratio(base, name):.3f}" + (
                "" if report.is_real(base, name) else " (noise)"
            )
        mem = memory.get(name)
        table.add_row(
            esc(name),
            f"{stats.median_ms:.3f}",
            f"{stats.p10_ms:.3f}",
            f"{stats.p90_ms:.3f}",
            f"{stats.min_ms:.3f}",
            str(stats.runs),
            ratio,
            fmt_bytes(mem.session_bytes) if mem is not None else "",
        )
    return table


def run(args: argparse.Namespace) -> int:
    """Time every model, measure its peak memory, print a table (or JSON)."""
    if args.threads < 1 or args.repeats < 1 or args.warmup < 0:
        raise DataError(
            "--threads and --repeats must be at least 1, --warmup at least 0",
            hint="e.g. --threads 1 --warmup 5 --repeats 50",
        )
    names = list(dict.fromkeys(args.models))
    feeds = bench_feeds(args)
    optimize = not args.no_ort_optimizations
    report = measure_latency(
        {name: name for name in names},
        feeds,
        threads=args.threads,
        warmup=args.warmup,
        repeats=args.repeats,
        optimize=optimize,
    )
    memory = {} if args.no_memory else {
        name: measure_peak_memory(name, feeds, threads=args.threads, optimize=optimize)
        for name in names
    }
    if args.json:
        data = {
            "latency": report.to_dict(),
            "memory": {name: m.to_dict() for name, m in memory.items()},
            "machine": machine_info(),
        }
        console.print_json(json.dumps(data))
        return 0
    console.print(_table(report, memory, names))
    if report.noise is not None:
        console.print(f"A/A noise of this run: {100 * report.noise:.1f}% (differences below it "
                      "and the spreads are marked noise)")
    return 0
