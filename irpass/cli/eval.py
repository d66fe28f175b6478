"""``irpass eval MODEL --data D [--labels L] [--reference REF]``: fidelity and task metrics."""

from __future__ import annotations

import argparse
import json
import math
import pathlib
from typing import Any

from rich.table import Table

from irpass.cli import console
from irpass.cli._markup import esc
from irpass.data import import_callable, load_labels, open_data
from irpass.errors import DataError
from irpass.evaluate import Evaluator, Metric
from irpass.ir import load_model

COMMAND = "eval"
HELP = "measure a model on data: task metrics with labels, fidelity against a reference model"

__all__ = ["COMMAND", "HELP", "add_arguments", "format_metric", "run"]

_ORDER = ("accuracy", "macro_f1", "mse", "top1_agreement", "cosine", "sqnr_db",
          "max_abs_error", "exact_match")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``irpass eval``."""
    parser.add_argument("model", help="path to the .onnx model to measure")
    parser.add_argument(
        "--data",
        required=True,
        help="evaluation data: .npy/.npz file, folder of arrays or images (?size=HxW&mean=..), "
        "py:module:function, or random[:N]",
    )
    parser.add_argument(
        "--labels",
        help="labels, one per sample: .npy, .npz (key 'labels' or FILE.npz:KEY), .txt, .csv; "
        "'data' takes the 'labels' array of the --data .npz",
    )
    parser.add_argument("--reference", help="reference .onnx model for fidelity metrics")
    parser.add_argument(
        "--task", choices=["classification", "regression"], help="default: from the labels' dtype"
    )
    parser.add_argument("--metric", help="user metric module:function(outputs, labels)")
    parser.add_argument("--batch", type=int, help="samples per feed (default: model or 32)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def format_metric(name: str, value: float) -> str:
    """Human formatting of one metric value."""
    if math.isnan(value):
        return "nan"
    if name.endswith("sqnr_db"):
        return f"{value:.1f} dB"
    if name.endswith(("accuracy", "macro_f1", "top1_agreement", "exact_match")):
        return f"{100 * value:.2f}%"
    return f"{value:.6g}"


def _sort_key(name: str) -> tuple[int, str]:
    base = name.rsplit(":", 1)[-1]
    return (_ORDER.index(base) if base in _ORDER else len(_ORDER), name)


def _labels_path(args: argparse.Namespace) -> str | None:
    if args.labels == "data":
        return str(args.data).partition("?")[0]
    return args.labels


def run(args: argparse.Namespace) -> int:
    """Evaluate one model and print its metrics."""
    model = load_model(args.model)
    reference = load_model(args.reference) if args.reference else None
    labels_path = _labels_path(args)
    labels = load_labels(labels_path) if labels_path else None
    metric: Metric | None = None
    if args.metric:
        metric = import_callable(args.metric)
    if reference is None and labels is None and metric is None:
        raise DataError(
            "nothing to measure: no --labels, no --reference and no --metric",
            hint="add --labels for task metrics or --reference for fidelity",
        )
    data = open_data(args.data, reference or model, batch_size=args.batch)
    evaluator = Evaluator(reference, data, labels, task=args.task, metric=metric)
    try:
        metrics = evaluator(model)
        reference_metrics = evaluator.reference_metrics() if reference and labels is not None \
            else {}
    finally:
        evaluator.close()
    result: dict[str, Any] = {
        "model": str(pathlib.Path(args.model)),
        "data": data.description,
        "indicative": data.indicative,
        "metrics": metrics,
    }
    if reference is not None:
        result["reference"] = str(pathlib.Path(args.reference))
        result["reference_metrics"] = reference_metrics
    if args.json:
        console.print_json(json.dumps(result))
        return 0
    console.print(f"model: {esc(args.model)}", soft_wrap=True)
    if reference is not None:
        console.print(f"reference: {esc(args.reference)}", soft_wrap=True)
    console.print(f"data: {esc(data.description)}", soft_wrap=True)
    table = Table()
    table.add_column("metric")
    table.add_column("value", justify="right")
    if reference_metrics:
        table.add_column("reference", justify="right")
    for name in sorted(metrics, key=_sort_key):
        row = [esc(name), format_metric(name, metrics[name])]
        if reference_metrics:
            ref = reference_metrics.get(name)
            row.append(format_metric(name, ref) if ref is not None else "")
        table.add_row(*row)
    console.print(table)
    if data.indicative:
        console.print("[yellow]random inputs: these numbers are only indicative[/]")
    return 0
