"""irpass ``canonicalize`` vs onnx-simplifier vs onnxslim on the light zoo and magika, one run.

For every model each tool starts from the same in-memory ``ModelProto`` and must hand back a
``ModelProto`` (irpass: ``ir.from_proto`` -> passes -> ``ir.to_proto``; conversions are timed).
Reported per model: wall time, node count (main graph) and MACs (irpass.analysis.cost, untimed) of

- ``irpass``        the ``canonicalize`` preset, its passes run by onnx-ir's PipelineRunner
                    (``fixpoint(...)`` = nested early-stopping manager): irpass as a library;
- ``irpass(manager)`` (``--manager``) the same through irpass's PipelineRunner with verify=none:
                    adds per-pass cost analysis and the run report;
- ``irpass+fuse``   ``canonicalize,fuse`` as a library (onnxsim folds BatchNorm into Conv and
                    onnxslim fuses too; canonicalize alone does not fuse), when ``fuse`` exists;
- ``onnxsim``       ``onnxsim.simplify(model)`` (defaults: its fusions included, no ORT check);
- ``onnxslim``      ``onnxslim.slim(model)``;

and the totals, with ratios irpass/tool. Outputs of the irpass results are checked against the
original with ONNX Runtime unless ``--no-verify``. Usage::

    python benchmarks/canonicalize.py --out canonicalize.json [--models squeezenet,magika]
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import logging
import pathlib
import platform
import sys
import time
from collections.abc import Callable
from typing import Any

import onnx
import onnx_ir as ir
from rich.console import Console
from rich.table import Table

from irpass.analysis.cost import model_cost
from irpass.context import PassContext
from irpass.manager import PipelineRunner, RunOptions, build_pass
from irpass.pipeline import Step, expand_presets, parse_pipeline
from irpass.registry import get_preset
from irpass.testing import assert_equivalent

LIGHT_DIR = pathlib.Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"


def model_paths() -> dict[str, pathlib.Path]:
    paths = {p.stem.removeprefix("light_"): p for p in sorted(LIGHT_DIR.glob("light_*.onnx"))}
    spec = importlib.util.find_spec("magika")
    if spec is not None and spec.origin is not None:
        found = sorted(pathlib.Path(spec.origin).parent.glob("models/*/model.onnx"))
        if found:
            paths["magika"] = found[-1]
    return paths


def onnx_ir_passes(pipeline: str, max_iterations: int = 10) -> ir.passes.PassBase:
    """The pipeline as plain onnx-ir passes: fixpoint(...) is a nested early-stopping manager."""

    def build(steps: list[Step] | tuple[Step, ...]) -> list[ir.passes.PassBase]:
        built: list[ir.passes.PassBase] = []
        for step in steps:
            if step.is_fixpoint:
                built.append(ir.passes.PassManager(build(step.children), steps=max_iterations))
            else:
                built.append(build_pass(step, PassContext()))
        return built

    return ir.passes.PassManager(build(expand_presets(parse_pipeline(pipeline))))


def run_irpass(pipeline: str) -> Callable[[onnx.ModelProto], onnx.ModelProto]:
    """irpass as a library: its passes inside onnx-ir's own PipelineRunner."""

    def run(proto: onnx.ModelProto) -> onnx.ModelProto:
        model = ir.from_proto(proto)
        onnx_ir_passes(pipeline)(model)
        return ir.to_proto(model)

    return run


def run_irpass_manager(pipeline: str) -> Callable[[onnx.ModelProto], onnx.ModelProto]:
    """irpass's own PipelineRunner (what `irpass optimize` runs), verification off."""

    def run(proto: onnx.ModelProto) -> onnx.ModelProto:
        model = ir.from_proto(proto)
        PipelineRunner(pipeline, options=RunOptions(verify="none")).run(model)
        return ir.to_proto(model)

    return run


def run_onnxsim(proto: onnx.ModelProto) -> onnx.ModelProto:
    import onnxsim

    simplified, ok = onnxsim.simplify(proto)
    if not ok:
        raise RuntimeError("onnxsim's check failed")
    return simplified


def run_onnxslim(proto: onnx.ModelProto) -> onnx.ModelProto:
    import onnxslim

    return onnxslim.slim(proto)


def measure(
    tool: Callable[[onnx.ModelProto], onnx.ModelProto], path: pathlib.Path, repeat: int
) -> dict[str, Any]:
    """Best wall time of ``repeat`` runs, each on a freshly loaded proto."""
    best = float("inf")
    result: onnx.ModelProto | None = None
    for _ in range(repeat):
        proto = onnx.load(str(path))
        result = None
        gc.collect()
        started = time.perf_counter()
        try:
            result = tool(proto)
        except Exception as exc:  # a tool failing on a model is a result, not a crash
            message = str(exc).splitlines()[0] if str(exc) else ""
            return {"error": f"{type(exc).__name__}: {message}"}
        best = min(best, time.perf_counter() - started)
    assert result is not None
    return {"seconds": best, "nodes": len(result.graph.node), "model": result}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("canonicalize.json"))
    parser.add_argument("--models", help="comma-separated subset, e.g. squeezenet,magika")
    parser.add_argument("--no-verify", action="store_true", help="skip the ORT output check")
    parser.add_argument("--repeat", type=int, default=1, help="best of N timed runs per tool")
    parser.add_argument(
        "--manager",
        action="store_true",
        help="also time irpass's PipelineRunner (cost analysis and snapshots per pass)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)

    paths = model_paths()
    if args.models:
        wanted = args.models.split(",")
        unknown = [m for m in wanted if m not in paths]
        if unknown:
            parser.error(f"unknown models {unknown}; known: {sorted(paths)}")
        paths = {m: paths[m] for m in wanted}

    tools: dict[str, Callable[[onnx.ModelProto], onnx.ModelProto]] = {
        "irpass": run_irpass("canonicalize")
    }
    if args.manager:
        tools["irpass(manager)"] = run_irpass_manager("canonicalize")
    if get_preset("fuse") is not None:
        tools["irpass+fuse"] = run_irpass("canonicalize,fuse")
    tools["onnxsim"] = run_onnxsim
    tools["onnxslim"] = run_onnxslim

    console = Console(stderr=True)
    rows: dict[str, dict[str, Any]] = {}
    for name, path in paths.items():
        original = onnx.load(str(path))
        row: dict[str, Any] = {"original_nodes": len(original.graph.node)}
        for tool_name, tool in tools.items():
            console.log(f"{name}: {tool_name}")
            result = measure(tool, path, args.repeat)
            model = result.pop("model", None)
            if model is not None:
                try:
                    cost = model_cost(ir.from_proto(model))
                    result["macs"] = cost.macs
                    result["weight_bytes"] = cost.weight_bytes
                except Exception as exc:  # cost analysis is informative only
                    result["cost_error"] = f"{type(exc).__name__}: {exc}"
            if model is not None and tool_name.startswith("irpass") and not args.no_verify:
                try:
                    assert_equivalent(original, model, seeds=(0,))
                    result["equivalent"] = True
                except AssertionError as exc:
                    result["equivalent"] = False
                    result["error"] = str(exc)
            row[tool_name] = result
            del model
        rows[name] = row

    totals: dict[str, dict[str, float]] = {}
    for tool_name in tools:
        ok = [r[tool_name] for r in rows.values() if "seconds" in r[tool_name]]
        totals[tool_name] = {
            "seconds": sum(r["seconds"] for r in ok),
            "nodes": sum(r["nodes"] for r in ok),
            "macs": sum(r.get("macs", 0) for r in ok),
            "models": len(ok),
        }
    ratios = {
        f"irpass/{other}": {
            "seconds": totals["irpass"]["seconds"] / totals[other]["seconds"],
            "nodes": totals["irpass"]["nodes"] / totals[other]["nodes"],
        }
        for other in tools
        if other != "irpass" and totals[other]["seconds"] > 0
    }
    if "irpass+fuse" in tools:
        for other in ("onnxsim", "onnxslim"):
            if totals[other]["nodes"]:
                ratios[f"irpass+fuse/{other}"] = {
                    "seconds": totals["irpass+fuse"]["seconds"] / totals[other]["seconds"],
                    "nodes": totals["irpass+fuse"]["nodes"] / totals[other]["nodes"],
                }

    table = Table(title="canonicalize: nodes (seconds)")
    table.add_column("model")
    table.add_column("original", justify="right")
    for tool_name in tools:
        table.add_column(tool_name, justify="right")
    for name, row in rows.items():
        cells = [name, str(row["original_nodes"])]
        for tool_name in tools:
            r = row[tool_name]
            if "seconds" in r:
                mark = "" if r.get("equivalent", True) else " [red]NOT EQUAL[/red]"
                cells.append(f"{r['nodes']} ({r['seconds']:.2f}s){mark}")
            else:
                cells.append(f"[red]failed[/red] {r['error'][:40]}")
        table.add_row(*cells)
    table.add_row(
        "total",
        str(sum(r["original_nodes"] for r in rows.values())),
        *[f"{t['nodes']} ({t['seconds']:.2f}s)" for t in totals.values()],
        style="bold",
    )
    out = Console()
    out.print(table)
    for key, ratio in ratios.items():
        out.print(f"{key}: time x{ratio['seconds']:.2f}, nodes x{ratio['nodes']:.3f}")
    for tool_name, total in totals.items():
        out.print(f"{tool_name}: total MACs {total['macs'] / 1e9:.2f} G")

    report = {
        "benchmark": "canonicalize",
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "versions": {
            pkg: _version(pkg) for pkg in ("onnx", "onnx-ir", "onnxscript", "onnxsim", "onnxslim")
        },
        "models": rows,
        "totals": totals,
        "ratios": ratios,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    out.print(f"wrote {args.out}")
    return 0


def _version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


if __name__ == "__main__":
    raise SystemExit(main())
