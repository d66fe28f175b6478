"""Write a benchmark's results file: the numbers plus where, when and how they were measured.

Every benchmark script ends with ``write_results(name, data, sys.argv)``; tables in
``benchmarks/README.md`` (and ``docs/benchmarks.md``) are generated from these files, never
typed.
"""

from __future__ import annotations

import datetime
import json
import pathlib
import shlex
import sys
from collections.abc import Sequence
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from irpass.bench import machine_info

__all__ = ["RESULTS_DIR", "write_results"]

RESULTS_DIR = pathlib.Path(__file__).resolve().parent / "results"


def _default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, pathlib.Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to a results file")


def write_results(
    benchmark: str,
    data: dict[str, Any],
    argv: Sequence[str] | None = None,
    directory: pathlib.Path | None = None,
) -> pathlib.Path:
    """Write ``<directory>/<benchmark>.json`` (default ``benchmarks/results``) and return it."""
    directory = directory or RESULTS_DIR
    directory.mkdir(parents=True, exist_ok=True)
    argv = list(sys.argv if argv is None else argv)
    payload = {
        "benchmark": benchmark,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": "python " + shlex.join(argv),
        "machine": machine_info(),
        "results": data,
    }
    path = directory / f"{benchmark}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, default=_default) + "\n")
    tmp.replace(path)
    return path
