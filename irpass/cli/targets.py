"""``irpass targets [NAME] [--json]``: the deployment targets, their runtimes and pipelines."""

from __future__ import annotations

import argparse
import json

from rich.markup import escape
from rich.table import Table

from irpass.cli import console
from irpass.targets import list_targets, load_target

COMMAND = "targets"
HELP = "list the deployment targets (backend, runtime release, precisions, pipeline)"

__all__ = ["COMMAND", "HELP", "add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``irpass targets``."""
    parser.add_argument(
        "name", nargs="?", help="show one target (a name, an alias or a profile .json) in full"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")


def _table() -> Table:
    table = Table(title="targets (irpass optimize MODEL --target NAME)")
    for column in ("target", "backend", "runtime assumed", "precisions", "shapes", "operators"):
        table.add_column(column, overflow="fold")
    for target in list_targets():
        name = target.name + (f" ({', '.join(target.aliases)})" if target.aliases else "")
        precisions = ", ".join(
            f"[bold]{p}[/]" if p == target.default_precision else p for p in target.precisions
        )
        ops = target.op_support
        table.add_row(
            escape(name),
            target.backend,
            escape(f"{target.runtime.name} {target.runtime.version}\n{target.runtime.platform}"),
            precisions,
            target.shape_policy,
            escape(f"{len(ops.ops)} from {ops.source}"),
        )
    return table


def _detail(name: str) -> Table:
    target = load_target(name)
    table = Table(title=escape(f"{target.name}: {target.description}"), show_header=False)
    table.add_column("key", style="bold")
    table.add_column("value", overflow="fold")
    rows = [
        ("device", target.device),
        ("backend", target.backend),
        ("runtime", f"{target.runtime} [source: {target.runtime.source}]"),
        ("precisions", ", ".join(target.precisions)),
        ("default", target.default_precision),
        ("without calibration data", target.fallback_precision),
        *((f"{p} stage", stage or "(none)") for p, stage in target.precision_pipelines.items()),
        ("operators", f"{len(target.supported_ops)} from {target.op_support.source}"),
        ("opset", f"{target.opset[0]}..{target.opset[1]}"),
        ("quantization rules", target.quantization_rules or "-"),
        ("shapes", target.shape_policy),
        ("channel multiple", f"{target.channel_alignment.multiple} "
                             f"({target.channel_alignment.why})"),
        ("pipeline", target.pipeline),
        ("legalize", target.legalize or "(none)"),
        ("profile file", target.path),
        *(("note", note) for note in target.notes),
    ]
    for key, value in rows:
        table.add_row(key, escape(str(value)))
    return table


def run(args: argparse.Namespace) -> int:
    """Print every target, or one in full."""
    if args.json:
        data = (
            load_target(args.name).to_dict()
            if args.name
            else [t.to_dict() for t in list_targets()]
        )
        console.print_json(json.dumps(data))
        return 0
    console.print(_detail(args.name) if args.name else _table())
    return 0
