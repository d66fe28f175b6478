"""irpass optimize (verify each/final/none) vs onnx-simplifier vs onnxslim, file to file.

Models: the light model-zoo graphs in the onnx wheel, magika's model, and real third-party models
shipped inside PyPI packages (OCR: rapidocr-onnxruntime, ddddocr; voice activity: silero-vad;
detection: nudenet). ``--fetch`` downloads those wheels once with ``pip download --no-deps`` into
``--cache`` and extracts their ``.onnx`` files (nothing is installed).

Per model and tool, each reading the model file and writing its output file (wall time includes
both, as a user sees it):

- ``irpass each`` / ``irpass final`` / ``irpass none``: ``irpass optimize IN -o OUT.onnx``
  in-process with ``--verify each|final|none`` (the default pipeline ``canonicalize,fuse``);
- ``irpass lib``: the same pipeline as plain onnx-ir passes (no verification, no report): the
  like-for-like comparison with onnx-simplifier's default (which also folds BatchNorm);
- ``onnxsim``: ``onnxsim.simplify`` with its defaults, then ``onnx.save``;
- ``onnxslim``: ``onnxslim.slim(IN, OUT)``.

Reported: wall seconds, nodes (all graphs), output file bytes, and whether the output equals the
input on feeds the input accepts (irpass's graph-derived feeds; untimed). Totals over the models
every tool processed, and ratios (irpass each / onnxslim, each / none, lib / onnxsim, ...).
Results: ``benchmarks/results/canonicalize.json`` (``_results.write_results``).

    python benchmarks/canonicalize.py --fetch [--models squeezenet,magika] [--repeat 1]
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib.util
import io
import logging
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).parent))

import onnx
import onnx_ir as ir
from _results import write_results
from rich.console import Console
from rich.table import Table

from irpass.cli import main as irpass_main
from irpass.context import PassContext
from irpass.manager import build_pass
from irpass.metrics import compare_outputs
from irpass.pipeline import Step, expand_presets, parse_pipeline
from irpass.verify import make_session, run_model
from irpass.verify.feeds import find_feeds

LIGHT_DIR = pathlib.Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
DEFAULT_CACHE = pathlib.Path.home() / ".cache" / "irpass-bench"
#: Wheels on PyPI that ship trained ONNX models (pinned: the numbers name what they measured).
REAL_PACKAGES = (
    "rapidocr-onnxruntime==1.4.4",
    "silero-vad==6.2.3",
    "nudenet==3.4.2",
    "ddddocr==1.6.1",
)
PIPELINE = "canonicalize,fuse"
Tool = Callable[[pathlib.Path, pathlib.Path], None]


def fetch(cache: pathlib.Path) -> None:
    """Download the wheels (no dependencies, nothing installed) and extract their models."""
    wheels, models = cache / "wheels", cache / "models"
    wheels.mkdir(parents=True, exist_ok=True)
    models.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(wheels)]
    subprocess.run([*command, *REAL_PACKAGES], check=True)
    for wheel in sorted(wheels.glob("*.whl")):
        with zipfile.ZipFile(wheel) as archive:
            for name in archive.namelist():
                if name.endswith(".onnx"):
                    target = models / f"{wheel.name.split('-')[0]}.{pathlib.Path(name).name}"
                    target.write_bytes(archive.read(name))


def model_paths(cache: pathlib.Path) -> dict[str, pathlib.Path]:
    paths = {p.stem.removeprefix("light_"): p for p in sorted(LIGHT_DIR.glob("light_*.onnx"))}
    spec = importlib.util.find_spec("magika")
    if spec is not None and spec.origin is not None:
        found = sorted(pathlib.Path(spec.origin).parent.glob("models/*/model.onnx"))
        if found:
            paths["magika"] = found[-1]
    for path in sorted((cache / "models").glob("*.onnx")):
        paths[path.stem] = path
    return paths


def irpass_cli(verify: str) -> Tool:
    def run(source: pathlib.Path, target: pathlib.Path) -> None:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            code = irpass_main(["optimize", str(source), "-o", str(target), "--verify", verify])
        if code != 0:
            raise RuntimeError(f"irpass optimize exited with {code}")

    return run


def irpass_library(source: pathlib.Path, target: pathlib.Path) -> None:
    """The default pipeline as plain onnx-ir passes (fixpoint = nested early-stopping manager)."""

    def build(steps: list[Step] | tuple[Step, ...]) -> list[ir.passes.PassBase]:
        built: list[ir.passes.PassBase] = []
        for step in steps:
            if step.is_fixpoint:
                built.append(ir.passes.PassManager(build(step.children), steps=10))
            else:
                built.append(build_pass(step, PassContext()))
        return built

    model = ir.load(source)
    ir.passes.PassManager(build(expand_presets(parse_pipeline(PIPELINE))))(model)
    ir.save(model, target)


def onnxsim_tool(source: pathlib.Path, target: pathlib.Path) -> None:
    import onnxsim

    simplified, ok = onnxsim.simplify(onnx.load(str(source)))
    if not ok:
        raise RuntimeError("onnxsim's own check failed")
    onnx.save(simplified, str(target))


def onnxslim_tool(source: pathlib.Path, target: pathlib.Path) -> None:
    import onnxslim

    onnxslim.slim(str(source), str(target))


TOOLS: dict[str, Tool] = {
    "irpass each": irpass_cli("each"),
    "irpass final": irpass_cli("final"),
    "irpass none": irpass_cli("none"),
    "irpass lib": irpass_library,
    "onnxsim": onnxsim_tool,
    "onnxslim": onnxslim_tool,
}


def count_nodes(path: pathlib.Path) -> int:
    model = ir.load(path)
    return sum(len(graph) for graph in model.graphs())


def output_bytes(path: pathlib.Path) -> int:
    data = path.with_name(path.name + ".data")
    return path.stat().st_size + (data.stat().st_size if data.is_file() else 0)


def equal_to(source: pathlib.Path, target: pathlib.Path) -> bool | str:
    """Whether ``target`` matches ``source`` on feeds ``source`` accepts (graph-derived)."""
    try:
        model = ir.load(source)
        reference = make_session(model)
        plan = find_feeds(model, lambda feed: run_model(reference, feed))
        candidate = make_session(ir.load(target))
        for feed, expected in zip(plan.feeds, plan.outputs, strict=True):
            if compare_outputs(expected, run_model(candidate, feed)):
                return False
        return True
    except Exception as exc:  # a check that cannot run is recorded, not fatal
        return f"not checked: {type(exc).__name__}: {str(exc)[:120]}"


def measure(tool: Tool, source: pathlib.Path, workdir: pathlib.Path, repeat: int) -> dict[str, Any]:
    best = float("inf")
    target = workdir / "out.onnx"
    for _ in range(repeat):
        _clear(workdir)
        gc.collect()
        started = time.perf_counter()
        try:
            tool(source, target)
        except Exception as exc:  # a tool failing on a model is a result
            return {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"}
        best = min(best, time.perf_counter() - started)
    return {
        "seconds": best,
        # irpass rolled a failing pass back (its reproducer folder is next to the output)
        "rolled_back": (workdir / "reproducer").is_dir(),
        "nodes": count_nodes(target),
        "file_bytes": output_bytes(target),
        "equal": equal_to(source, target),
    }


def _clear(folder: pathlib.Path) -> None:
    for item in folder.iterdir():
        if item.is_dir():
            shutil.rmtree(item)
        else:
            item.unlink()


def _ratio(totals: dict[str, dict[str, float]], a: str, b: str, key: str) -> float | None:
    if a not in totals or b not in totals or not totals[b][key]:
        return None
    return totals[a][key] / totals[b][key]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--models", help="comma-separated subset, e.g. squeezenet,magika")
    parser.add_argument("--cache", type=pathlib.Path, default=DEFAULT_CACHE)
    parser.add_argument("--fetch", action="store_true", help="download the real models first")
    parser.add_argument("--repeat", type=int, default=1, help="best of N timed runs per tool")
    parser.add_argument("--tools", help="comma-separated subset of: " + ", ".join(TOOLS))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    if args.fetch:
        fetch(args.cache)
    paths = model_paths(args.cache)
    if args.models:
        wanted = args.models.split(",")
        unknown = [m for m in wanted if m not in paths]
        if unknown:
            parser.error(f"unknown models {unknown}; known: {sorted(paths)}")
        paths = {m: paths[m] for m in wanted}
    tools = {k: v for k, v in TOOLS.items() if not args.tools or k in args.tools.split(",")}
    console = Console(stderr=True)
    rows: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        # one untimed run of every tool first: lazy imports must not count against whichever
        # tool happens to run first
        smallest = min(paths.values(), key=lambda p: p.stat().st_size)
        for tool_name, tool in tools.items():
            warm = pathlib.Path(tmp) / f"warmup-{tool_name.replace(' ', '_')}"
            warm.mkdir()
            measure(tool, smallest, warm, 1)
        for name, path in paths.items():
            row: dict[str, Any] = {
                "source": str(path.relative_to(path.parents[1])),
                "nodes": count_nodes(path),
                "file_bytes": output_bytes(path),
            }
            for tool_name, tool in tools.items():
                console.log(f"{name}: {tool_name}")
                workdir = pathlib.Path(tmp) / f"{name}-{tool_name.replace(' ', '_')}"
                workdir.mkdir()
                row[tool_name] = measure(tool, path, workdir, args.repeat)
                _clear(workdir)
            rows[name] = row

    complete = [r for r in rows.values() if all("seconds" in r[t] for t in tools)]
    totals = {
        t: {
            key: float(sum(r[t][key] for r in complete))
            for key in ("seconds", "nodes", "file_bytes")
        }
        for t in tools
    }
    totals["input"] = {
        "seconds": 0.0,
        "nodes": float(sum(r["nodes"] for r in complete)),
        "file_bytes": float(sum(r["file_bytes"] for r in complete)),
    }
    pairs = [
        ("irpass each", "onnxslim"),
        ("irpass each", "onnxsim"),
        ("irpass each", "irpass none"),
        ("irpass final", "irpass none"),
        ("irpass none", "onnxslim"),
        ("irpass lib", "onnxsim"),
        ("irpass lib", "onnxslim"),
        ("irpass each", "input"),
    ]
    ratios = {
        f"{a} / {b}": {
            key: _ratio(totals, a, b, key)
            for key in ("seconds", "nodes", "file_bytes")
            if not (b == "input" and key == "seconds")
        }
        for a, b in pairs
        if a in totals and b in totals
    }
    failures = {
        name: {t: r[t]["error"] for t in tools if "error" in r[t]}
        for name, r in rows.items()
        if any("error" in r[t] for t in tools)
    }
    not_equal = {
        name: [t for t in tools if r[t].get("equal") is False]
        for name, r in rows.items()
        if any(r[t].get("equal") is False for t in tools)
    }

    table = Table(title=f"{PIPELINE}: seconds / nodes / MB out")
    table.add_column("model")
    table.add_column("input", justify="right")
    for tool_name in tools:
        table.add_column(tool_name, justify="right")
    for name, row in rows.items():
        cells = [name, f"{row['nodes']} / {row['file_bytes'] / 1e6:.1f}"]
        for tool_name in tools:
            r = row[tool_name]
            if "seconds" in r:
                mark = "" if r["equal"] is not False else " [red]≠[/red]"
                cells.append(
                    f"{r['seconds']:.2f} / {r['nodes']} / {r['file_bytes'] / 1e6:.1f}{mark}"
                )
            else:
                cells.append(f"[red]failed[/red] {r['error'][:30]}")
        table.add_row(*cells)
    out = Console()
    out.print(table)
    for key, ratio in ratios.items():
        parts = ", ".join(f"{k} x{v:.3f}" for k, v in ratio.items() if v is not None)
        out.print(f"{key}: {parts}")
    path = write_results(
        "canonicalize",
        {
            "pipeline": PIPELINE,
            "real_packages": list(REAL_PACKAGES),
            "models": rows,
            "complete_models": len(complete),
            "totals": totals,
            "ratios": ratios,
            "failures": failures,
            "not_equal": not_equal,
        },
        ["benchmarks/canonicalize.py", *(argv if argv is not None else sys.argv[1:])],
    )
    out.print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
