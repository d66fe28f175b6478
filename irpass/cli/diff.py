"""``irpass diff A.onnx B.onnx``: what changed between two models, structurally and numerically.

Prints rich tables (summary, size/compute delta, op histogram delta, signature changes, changed /
added / removed nodes); ``--json`` writes the diff as JSON (to stdout when no path is given,
then no tables are printed), ``--html`` a self-contained page with drawings of the changed
regions. ``--numeric`` (seeded random inputs) or ``--data`` runs both models with ONNX Runtime
and reports per-output and per-matched-layer errors and the first diverging layer.
"""

from __future__ import annotations

import argparse
import json
import pathlib
from collections.abc import Mapping
from typing import Any

import numpy as np
import onnx_ir as ir
from rich.table import Table

from irpass.analysis.cost import cost_shapes_note
from irpass.cli import console
from irpass.cli._format import fmt_bytes, fmt_count, fmt_delta
from irpass.cli._markup import esc
from irpass.diff import GraphDiff, diff_models
from irpass.errors import DataError
from irpass.ir import external_data_paths, load_model
from irpass.numeric_diff import NumericDiff, feeds_from_file, numeric_diff
from irpass.outputs import OutputPlan
from irpass.report import write_diff_html
from irpass.verify.feeds import parse_input_shapes

COMMAND = "diff"
HELP = "compare two models: nodes added/removed/changed, op and size deltas, numeric error"

__all__ = ["COMMAND", "HELP", "add_arguments", "load_feeds", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``irpass diff``."""
    parser.add_argument("a", metavar="A.onnx", help="the reference model")
    parser.add_argument("b", metavar="B.onnx", help="the model to compare with it")
    parser.add_argument(
        "--json", nargs="?", const="-", default=None, metavar="PATH",
        help="write the diff as JSON to PATH, or to stdout (no tables) when PATH is omitted",
    )
    parser.add_argument("--html", type=pathlib.Path, metavar="PATH",
                        help="write a self-contained HTML page with the changed graph regions")
    parser.add_argument("--numeric", action="store_true",
                        help="also run both models on seeded random inputs and compare tensors")
    parser.add_argument("--data", metavar="D",
                        help="inputs for the numeric diff (.npz keyed by input name, .npy for a "
                             "single input, or any spec irpass.data accepts); implies --numeric")
    parser.add_argument("--samples", type=int, default=1,
                        help="random input sets (or data batches) to compare (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    parser.add_argument("--no-intermediates", action="store_true",
                        help="compare only the outputs, not every matched layer")
    parser.add_argument("--order-fallback", action="store_true",
                        help="also pair leftover nodes of equal op and output types by "
                             "topological order (low confidence; off by default)")
    parser.add_argument("--input-shapes", metavar="SHAPES",
                        help="count MACs and activations at these input shapes, "
                             "name:1x3x320x320,... (default: the declared sizes, symbolic dims "
                             "set to 1)")
    parser.add_argument("--limit", type=int, default=40,
                        help="rows per node table in the terminal (default 40; JSON/HTML hold all)")


def load_feeds(spec: str, model: ir.Model, samples: int) -> list[dict[str, np.ndarray]]:
    """Read up to ``samples`` feeds for ``model`` from ``spec``.

    Uses :func:`irpass.data.open_data` (every data format irpass reads, validated against the
    model); falls back to .npz/.npy reading when that module is unavailable.
    """
    try:
        from irpass.data import open_data
    except ImportError:
        open_data = None  # type: ignore[assignment]
    if open_data is None:
        inputs = {
            v.name: None if v.shape is None else [d if isinstance(d, int) else None
                                                  for d in v.shape]
            for v in model.graph.inputs if not v.is_initializer()
        }
        return feeds_from_file(spec, inputs, max_samples=samples)
    source = open_data(spec, model)
    feeds = []
    iterator = iter(source())
    try:
        for feed in iterator:
            feeds.append(feed)
            if len(feeds) >= samples:
                break
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()
    if not feeds:
        raise DataError(f"data {spec!r} hold no samples", hint="give at least one sample")
    return feeds


def _summary_table(diff: GraphDiff) -> Table:
    summary = diff.summary()
    table = Table(title="diff", show_header=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    table.add_row("A", esc(diff.a_label))
    table.add_row("B", esc(diff.b_label))
    table.add_row("nodes", f"{summary['nodes_a']} -> {summary['nodes_b']}")
    table.add_row("matched", str(summary["matched"]))
    methods = ", ".join(f"{k[len('matched_by_'):]}: {v}" for k, v in summary.items()
                        if k.startswith("matched_by_"))
    if methods:
        table.add_row("  matched by", methods)
    table.add_row("changed", f"[yellow]{summary['changed']}[/]")
    table.add_row("added", f"[green]{summary['added']}[/]")
    table.add_row("removed", f"[red]{summary['removed']}[/]")
    return table


def _cost_table(cost_a: Mapping[str, Any], cost_b: Mapping[str, Any]) -> Table | None:
    rows = []
    for key, label, fmt in (("nodes", "nodes", fmt_count), ("params", "params", fmt_count),
                            ("weight_bytes", "weight bytes", fmt_bytes),
                            ("macs", "MACs", fmt_count),
                            ("peak_activation_bytes", "peak activations", fmt_bytes)):
        if cost_a.get(key) is None and cost_b.get(key) is None:
            continue
        rows.append((label, fmt(cost_a.get(key)), fmt(cost_b.get(key)),
                     fmt_delta(cost_a.get(key), cost_b.get(key), fmt)))
    if not rows:
        return None
    table = Table(title="size and compute", caption=esc(_counted_at(cost_a, cost_b)))
    for name in ("", "A", "B", "delta"):
        table.add_column(name, justify="left" if not name else "right")
    for row in rows:
        table.add_row(*row)
    return table


def _counted_at(cost_a: Mapping[str, Any], cost_b: Mapping[str, Any]) -> str:
    """Which shapes the MACs are for (A's; B's too when they differ) and what was set to 1."""
    notes = []
    for label, cost in (("A", cost_a), ("B", cost_b)):
        note = cost_shapes_note(cost.get("cost_shapes"), cost.get("unknown_macs_nodes") or 0,
                                cost.get("unknown_activation_values") or 0)
        defaulted = cost.get("symbolic_set_to_one") or []
        if defaulted:
            note += (f" (symbolic dims of {', '.join(defaulted)} set to 1; "
                     "choose with --input-shapes)")
        notes.append((label, note))
    if notes[0][1] == notes[1][1]:
        return notes[0][1]
    return "; ".join(f"{label}: {note}" for label, note in notes)


def _op_table(diff: GraphDiff) -> Table | None:
    delta = diff.op_delta()
    if not delta:
        return None
    table = Table(title="op histogram delta")
    for name in ("op", "A", "B", "delta"):
        table.add_column(name, justify="left" if name == "op" else "right")
    for op, (a, b) in delta.items():
        color = "green" if b > a else "red"
        table.add_row(esc(op), str(a), str(b), f"[{color}]{b - a:+d}[/]")
    return table


def _io_table(diff: GraphDiff) -> Table | None:
    if not diff.io_changes and not diff.opset_changes:
        return None
    table = Table(title="signature and opset changes")
    for name in ("", "change", "name", "A", "B"):
        table.add_column(name)
    for c in diff.io_changes:
        table.add_row(c.kind, c.change, esc(c.name), esc(c.before or "-"),
                      esc(c.after or "-"))
    for domain, (a, b) in diff.opset_changes.items():
        table.add_row("opset", "changed", esc(domain), str(a), str(b))
    return table


def _node_tables(diff: GraphDiff, limit: int) -> list[Table | str]:
    tables: list[Table | str] = []
    changed = diff.changed
    if changed:
        table = Table(title=f"changed nodes ({len(changed)})")
        table.add_column("node (A -> B)", overflow="fold")
        table.add_column("op")
        table.add_column("matched by")
        table.add_column("changes", overflow="fold")
        for m in changed[:limit]:
            name = m.a.label if m.a.label == m.b.label else f"{m.a.label} -> {m.b.label}"
            table.add_row(esc(name), esc(m.b.op_type), m.method,
                          esc("\n".join(c.text for c in m.changes)))
        if len(changed) > limit:
            table.caption = f"{len(changed) - limit} more (use --json / --html or --limit)"
        tables.append(table)
    for all_nodes, title, color in ((diff.removed, "removed nodes", "red"),
                                    (diff.added, "added nodes", "green")):
        nodes = [n for n in all_nodes if not n.is_constant]
        constants = len(all_nodes) - len(nodes)
        if constants:
            tables.append(f"{title}: {constants} constant producers (Constant/ConstantOfShape), "
                          "listed in --json / --html")
        if not nodes:
            continue
        table = Table(title=f"{title} ({len(nodes)})")
        table.add_column("node", overflow="fold", style=color)
        table.add_column("op")
        table.add_column("outputs", overflow="fold")
        table.add_column("weights", overflow="fold")
        for n in nodes[:limit]:
            table.add_row(esc(n.label), esc(n.op_type),
                          esc(", ".join(t.type_text() for t in n.outputs)),
                          esc(", ".join(w.type_text() for w in n.weights.values())))
        if len(nodes) > limit:
            table.caption = f"{len(nodes) - limit} more (use --json / --html or --limit)"
        tables.append(table)
    return tables


def _numeric_tables(result: NumericDiff, limit: int) -> list[Table]:
    def fmt(value: float) -> str:
        return f"{value:.6g}" if np.isfinite(value) else str(value)

    table = Table(title=f"numeric diff on {result.inputs}")
    for name in ("output", "shape", "cosine", "max abs", "mean abs", "within tolerance"):
        table.add_column(name, justify="right" if name in ("cosine", "max abs", "mean abs")
                         else "left")
    for t in result.outputs:
        table.add_row(esc(t.a_name), esc(str(t.shape)), fmt(t.cosine), fmt(t.max_abs),
                      fmt(t.mean_abs),
                      "[red]no[/]" if t.diverged else "[green]yes[/]")
    first = result.first_divergence
    if first is not None:
        table.caption = (f"first diverging layer: {esc(first.node)} ({esc(first.op_type)}), "
                         f"cosine {fmt(first.cosine)}, max abs {fmt(first.max_abs)}")
    elif result.intermediates:
        table.caption = f"all {len(result.intermediates)} matched layers within tolerance"
    tables = [table]
    diverged = [t for t in result.intermediates if t.diverged]
    if diverged:
        layers = Table(title=f"diverging layers ({len(diverged)} of {len(result.intermediates)})")
        for name in ("layer", "op", "cosine", "max abs"):
            layers.add_column(name, justify="right" if name in ("cosine", "max abs") else "left")
        for t in diverged[:limit]:
            layers.add_row(esc(t.node), esc(t.op_type), fmt(t.cosine), fmt(t.max_abs))
        tables.append(layers)
    return tables


def _plan_outputs(args: argparse.Namespace, models: dict[str, ir.Model]) -> OutputPlan:
    plan = OutputPlan()
    for label, model in models.items():
        plan.protect(getattr(args, label), f"model {label.upper()}")
        for data_file in external_data_paths(model):
            plan.protect(data_file, f"an external-data file of model {label.upper()}")
    if args.json not in (None, "-"):
        plan.add_file(args.json, "--json")
    if args.html:
        plan.add_file(args.html, "--html")
    return plan


def run(args: argparse.Namespace) -> int:
    """Diff two models and print / write the result."""
    model_a = load_model(args.a)
    model_b = load_model(args.b)
    if args.samples < 1:
        raise DataError(
            f"--samples must be at least 1, not {args.samples}", hint="e.g. --samples 4"
        )
    with _plan_outputs(args, {"a": model_a, "b": model_b}) as plan:
        return _diff(args, model_a, model_b, plan)


def _diff(
    args: argparse.Namespace, model_a: ir.Model, model_b: ir.Model, plan: OutputPlan
) -> int:
    shapes = parse_input_shapes(args.input_shapes, model_a) if args.input_shapes else None
    diff = diff_models(model_a, model_b, a_label=str(args.a), b_label=str(args.b),
                       order_fallback=args.order_fallback, input_shapes=shapes)
    numeric: NumericDiff | None = None
    if args.numeric or args.data:
        feeds = load_feeds(args.data, model_a, args.samples) if args.data else None
        numeric = numeric_diff(
            model_a, model_b, diff=diff, feeds=feeds, seed=args.seed, samples=args.samples,
            intermediates=not args.no_intermediates,
            inputs_label=f"{args.data} ({len(feeds)} feed(s))" if feeds else None,
        )
    data = diff.to_dict()
    data["numeric"] = numeric.to_dict() if numeric is not None else None
    if args.html:
        write_diff_html(data, plan.staged(args.html), data["numeric"])
    if args.json not in (None, "-"):
        plan.staged(pathlib.Path(args.json)).write_text(
            json.dumps(data, indent=1) + "\n", encoding="utf-8"
        )
    plan.commit()
    if args.json == "-":
        console.print_json(json.dumps(data))
        return 0

    console.print(_summary_table(diff))
    if diff.is_identical:
        console.print("[green]the graphs are structurally identical[/]")
    for table in (_cost_table(diff.cost_a, diff.cost_b), _op_table(diff), _io_table(diff),
                  *_node_tables(diff, args.limit)):
        if isinstance(table, str):
            console.print(esc(table), soft_wrap=True)
        elif table is not None:
            console.print(table)
    if numeric is not None:
        for table in _numeric_tables(numeric, args.limit):
            console.print(table)
    for label, path in (("JSON", args.json), ("HTML", args.html)):
        if path:
            console.print(esc(f"{label} written to {path}"), soft_wrap=True)
    return 0
