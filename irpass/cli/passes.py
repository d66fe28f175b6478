"""``irpass passes``: every pass with its options, defaults and lossless flag; presets."""

from __future__ import annotations

import argparse
import dataclasses
import json
import typing

from rich.table import Table

from irpass import registry
from irpass.cli import console
from irpass.cli._markup import esc
from irpass.pipeline import describe_type, format_value

COMMAND = "passes"
HELP = "list every pass (options, defaults, lossless flag) and pipeline presets"

__all__ = ["COMMAND", "HELP", "add_arguments", "describe_passes", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``irpass passes``."""
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")


def describe_passes() -> dict[str, typing.Any]:
    """Passes and presets as JSON-ready data."""
    passes = []
    for cls in registry.list_passes():
        hints = typing.get_type_hints(cls.Options)
        options = []
        for field in dataclasses.fields(cls.Options):
            default = (
                field.default
                if field.default is not dataclasses.MISSING
                else field.default_factory()  # type: ignore[misc,operator]
            )
            options.append(
                {
                    "name": field.name,
                    "type": describe_type(hints[field.name]),
                    "default": default
                    if isinstance(default, (int, float, str, bool, type(None)))
                    else repr(default),
                    "doc": field.metadata.get("doc", ""),
                    "text": format_value(tuple(default) if isinstance(default, list) else default)
                    if default is not None
                    else "none",
                }
            )
        passes.append(
            {
                "name": cls.name,
                "lossless": cls.lossless,
                "summary": cls.summary(),
                "recurses_into_subgraphs": cls.recurses_into_subgraphs,
                "options": options,
            }
        )
    presets = [
        {"name": p.name, "pipeline": p.pipeline, "doc": p.doc} for p in registry.list_presets()
    ]
    return {"passes": passes, "presets": presets}


def run(args: argparse.Namespace) -> int:
    """Print the pass catalogue."""
    info = describe_passes()
    if args.json:
        console.print_json(json.dumps(info))
        return 0
    table = Table(title="passes")
    table.add_column("pass", no_wrap=True)
    table.add_column("lossless", no_wrap=True)
    table.add_column("subgraphs", no_wrap=True)
    table.add_column("options (default)", overflow="fold")
    table.add_column("what it does", ratio=1)
    for item in info["passes"]:
        options = "\n".join(f"{o['name']}={o['text']}" for o in item["options"]) or "-"
        table.add_row(
            item["name"],
            "yes" if item["lossless"] else "[yellow]no[/]",
            "yes" if item["recurses_into_subgraphs"] else "no",
            esc(options),
            esc(item["summary"]),
        )
    console.print(table)
    presets = Table(title="presets")
    for col in ("preset", "pipeline", "what it is for"):
        presets.add_column(col)
    for item in info["presets"]:
        presets.add_row(item["name"], esc(item["pipeline"]), esc(item["doc"]))
    console.print(presets)
    return 0
