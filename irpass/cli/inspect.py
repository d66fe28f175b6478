"""``irpass inspect MODEL``: signature, opset, op histogram, size, MACs and largest layers.

MACs and peak activation memory are counted at concrete input shapes, named in the output:
``--input-shapes`` where given, the declared static sizes, and 1 for any other symbolic dim
(said so; a detector's symbolic H/W set to 1 says little, so pass its real size).

``--groups`` adds the channel groups structured pruning sees (``irpass.analysis.channels``):
every group with its channel count, its member nodes and, when it is frozen, why.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import onnx_ir as ir
from rich.table import Table

from irpass.analysis.channels import analyze_channels
from irpass.analysis.cost import cost_shapes_note, model_cost, shapes_to_count
from irpass.cli import console
from irpass.cli._format import fmt_bytes, fmt_count
from irpass.cli._markup import esc
from irpass.ir import load_model
from irpass.verify.feeds import parse_input_shapes

COMMAND = "inspect"
HELP = "show a model's I/O signature, opsets, op histogram, params, bytes, MACs, largest layers"

__all__ = ["COMMAND", "HELP", "add_arguments", "inspect_model", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``irpass inspect``."""
    parser.add_argument("model", help="path to an .onnx file")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.add_argument("--top", type=int, default=10, help="how many largest layers to list")
    parser.add_argument(
        "--input-shapes",
        help="count MACs and activations at these input shapes, name:1x3x320x320,... "
        "(default: the declared sizes, symbolic dims set to 1)",
    )
    parser.add_argument(
        "--groups",
        action="store_true",
        help="list the channel groups pruning sees: channels, member nodes, why frozen",
    )
    parser.add_argument(
        "--attention",
        action="store_true",
        help="with --groups: let attention heads form groups (as prune(attention=true))",
    )


def _signature(values: list[ir.Value]) -> list[dict[str, Any]]:
    out = []
    for value in values:
        shape = (
            None
            if value.shape is None
            else [d if isinstance(d, int) else str(d) for d in value.shape]
        )
        out.append(
            {"name": value.name, "dtype": value.dtype.name if value.dtype else None, "shape": shape}
        )
    return out


def inspect_model(
    model: ir.Model,
    top: int = 10,
    groups: bool = False,
    attention: bool = False,
    input_shapes: dict[str, tuple[int, ...]] | None = None,
) -> dict[str, Any]:
    """Everything ``irpass inspect`` shows, as a JSON-ready dict.

    MACs and activation memory are counted at ``input_shapes`` (checked by
    :func:`irpass.verify.feeds.parse_input_shapes`) for the inputs it names, at the declared
    sizes with symbolic dims set to 1 for the others (listed in ``symbolic_set_to_one``).
    """
    shapes, defaulted = shapes_to_count(model, input_shapes)
    cost = model_cost(model, input_shapes=shapes)
    initializer_names = set(model.graph.initializers)
    extra: dict[str, Any] = {}
    if groups:
        analysis = analyze_channels(model, attention=attention)
        extra["channel_groups"] = [group.summary() for group in analysis.groups]
    return {
        "ir_version": model.ir_version,
        "producer": f"{model.producer_name or ''} {model.producer_version or ''}".strip(),
        "opsets": dict(sorted(model.opset_imports.items())),
        "inputs": _signature([v for v in model.graph.inputs if v.name not in initializer_names]),
        "outputs": _signature(list(model.graph.outputs)),
        "subgraphs": sum(1 for _ in model.graphs()) - 1,
        **cost.summary(),
        "cost_shapes": shapes,
        "symbolic_set_to_one": defaulted,
        "largest_layers": [
            {"node": c.node, "op_type": c.op_type, "params": c.params, "macs": c.macs}
            for c in cost.largest_layers(top)
        ],
        **extra,
    }


def _status(group: dict[str, Any]) -> str:
    if not group["prunable"]:
        return "frozen"
    if group["frozen_channels"]:
        return f"prunable ({group['frozen_channels']} frozen)"
    return "prunable"


def _print_groups(groups: list[dict[str, Any]]) -> None:
    prunable = [g for g in groups if g["prunable"]]
    free = sum(g["channels"] - g["frozen_channels"] for g in prunable)
    table = Table(
        title=f"channel groups: {len(prunable)} of {len(groups)} prunable ({free} channels)"
    )
    for column in ("group", "channels", "status", "nodes", "why frozen"):
        table.add_column(column, justify="right" if column in ("group", "channels") else "left")
    for group in groups:
        nodes = group["nodes"]
        shown = ", ".join(nodes[:4]) + (f" (+{len(nodes) - 4} more)" if len(nodes) > 4 else "")
        reasons = group["frozen"]
        why = "; ".join(reasons[:2]) + (f" (+{len(reasons) - 2} more)" if len(reasons) > 2 else "")
        table.add_row(
            str(group["id"]), str(group["channels"]), _status(group), esc(shown), esc(why)
        )
    console.print(table)


def run(args: argparse.Namespace) -> int:
    """Print the inspection of one model."""
    model = load_model(args.model)
    given = parse_input_shapes(args.input_shapes, model) if args.input_shapes else None
    info = inspect_model(
        model, args.top, groups=args.groups, attention=args.attention, input_shapes=given
    )
    if args.json:
        console.print_json(json.dumps(info))
        return 0
    head = Table(title=esc(args.model), show_header=False)
    head.add_row("IR version", str(info["ir_version"]))
    head.add_row("producer", esc(info["producer"] or "-"))
    head.add_row(
        "opsets", esc(", ".join(f"{d or 'ai.onnx'}={v}" for d, v in info["opsets"].items()))
    )
    head.add_row(
        "nodes",
        str(info["nodes"]) + (f" ({info['subgraphs']} subgraphs)" if info["subgraphs"] else ""),
    )
    head.add_row("params", fmt_count(info["params"]))
    head.add_row("weight bytes", fmt_bytes(info["weight_bytes"]))
    head.add_row("MACs", fmt_count(info["macs"]))
    head.add_row("peak activations", fmt_bytes(info["peak_activation_bytes"]))
    note = cost_shapes_note(
        info["cost_shapes"], info["unknown_macs_nodes"], info["unknown_activation_values"]
    )
    if info["symbolic_set_to_one"]:
        note += (
            f" (symbolic dims of {', '.join(info['symbolic_set_to_one'])} set to 1; "
            "choose with --input-shapes)"
        )
    head.add_row("counted at", esc(note))
    console.print(head)
    io = Table(title="signature")
    for col in ("", "name", "dtype", "shape"):
        io.add_column(col)
    for kind in ("inputs", "outputs"):
        for item in info[kind]:
            io.add_row(kind[:-1], esc(item["name"]), str(item["dtype"]), esc(item["shape"]))
    console.print(io)
    ops = Table(title="op histogram")
    ops.add_column("op")
    ops.add_column("count", justify="right")
    for op, count in info["ops"].items():
        ops.add_row(esc(op), str(count))
    console.print(ops)
    if info["largest_layers"]:
        layers = Table(title=f"largest layers (by MACs, top {args.top})")
        for col in ("node", "op", "params", "MACs"):
            layers.add_column(col, justify="right" if col in ("params", "MACs") else "left")
        for layer in info["largest_layers"]:
            layers.add_row(
                esc(layer["node"]),
                esc(layer["op_type"]),
                fmt_count(layer["params"]),
                fmt_count(layer["macs"]),
            )
        console.print(layers)
    if args.groups:
        _print_groups(info["channel_groups"])
    return 0
