"""Fusion: ONNX Runtime CPU latency of original vs ``canonicalize`` vs ``canonicalize,fuse``.

For every model (light model-zoo graphs, models/zoo, magika) this measures batch-1 latency on
the CPU execution provider in four settings: 1 thread / default threads, each with ORT's own
graph optimizations disabled (``ORT_DISABLE_ALL``: what the graph itself costs) and enabled
(``ORT_ENABLE_ALL``: what a user gets, ORT fusing Conv+BN itself). The three variants are

- ``orig``   the model file as shipped;
- ``canon``  after irpass ``canonicalize`` (isolates what fusion adds on top of clean-up);
- ``fused``  after irpass ``canonicalize,fuse``;
- ``orig2``  a second session of the original: an A/A control whose ratio to ``orig`` is the
             measurement noise of the run (shared machines are noisy; a fused/orig ratio above
             1 is only a slowdown when it exceeds that noise).

Runs of the variants are interleaved (orig, canon, fused, orig, ...) so that machine drift hits
all of them alike. The table reports the fastest run per variant (other processes on a shared
machine only ever add time, so the minimum is the stablest estimate of what the graph costs)
with the ratio fused/orig; the JSON also holds the medians. Node counts
are compared with onnxslim's (``onnxslim.slim`` on the original). Fused outputs are checked
against the original with ``irpass.testing.assert_equivalent``. Usage::

    python benchmarks/fusion.py [--models resnet50,zoo/mobilenet_v2] [--repeats 15]
                                [--json fusion.json]
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import logging
import pathlib
import platform
import statistics
import sys
import time
from typing import Any

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort
from rich.console import Console
from rich.table import Table

from irpass.ir import load_model
from irpass.manager import PipelineRunner, RunOptions
from irpass.testing import assert_equivalent
from irpass.verify import make_session, random_feeds

REPO = pathlib.Path(__file__).resolve().parents[1]
LIGHT_DIR = pathlib.Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
SETTINGS = [(1, False), (1, True), (0, False), (0, True)]  # (threads, ORT optimizations)
DIMS = {"N": 1, "T": 16, "batch": 1, "batch_size": 1}


def model_paths() -> dict[str, pathlib.Path]:
    paths = {p.stem.removeprefix("light_"): p for p in sorted(LIGHT_DIR.glob("light_*.onnx"))}
    for p in sorted((REPO / "models" / "zoo").glob("*.onnx")):
        paths[f"zoo/{p.stem}"] = p
    spec = importlib.util.find_spec("magika")
    if spec is not None and spec.origin is not None:
        found = sorted(pathlib.Path(spec.origin).parent.glob("models/*/model.onnx"))
        if found:
            paths["magika"] = found[-1]
    return paths


def optimize(path: pathlib.Path, pipeline: str) -> tuple[onnx.ModelProto, float, int]:
    model = load_model(path)
    start = time.perf_counter()
    PipelineRunner(pipeline, options=RunOptions(verify="none")).run(model)
    seconds = time.perf_counter() - start
    return ir.to_proto(model), seconds, len(model.graph)


def slim_nodes(path: pathlib.Path) -> int | None:
    try:
        import onnxslim
    except ImportError:
        return None
    try:
        slimmed = onnxslim.slim(onnx.load(str(path)))
    except Exception as exc:  # onnxslim failing is a result too
        logging.warning("onnxslim failed on %s: %s", path.name, exc)
        return None
    return len(slimmed.graph.node) if slimmed is not None else None


def latencies(
    protos: dict[str, onnx.ModelProto], threads: int, optimized: bool, repeats: int,
    budget: float,
) -> dict[str, dict[str, float]]:
    """Min and median seconds per run of each variant, runs interleaved across variants."""
    sessions = {k: make_session(p, optimize=optimized, threads=threads) for k, p in protos.items()}
    feeds = random_feeds(next(iter(sessions.values())), seed=0, dim_values=DIMS)
    times: dict[str, list[float]] = {k: [] for k in sessions}
    for session in sessions.values():  # warm-up
        wanted = {i.name for i in session.get_inputs()}
        session.run(None, {k: v for k, v in feeds.items() if k in wanted})
    start = time.perf_counter()
    for i in range(repeats):
        for key, session in sessions.items():
            wanted = {inp.name for inp in session.get_inputs()}
            feed = {k: v for k, v in feeds.items() if k in wanted}
            t0 = time.perf_counter()
            session.run(None, feed)
            times[key].append(time.perf_counter() - t0)
        if i >= 4 and time.perf_counter() - start > budget:
            break
    del sessions
    gc.collect()
    return {k: {"min": min(v), "median": statistics.median(v), "runs": len(v)}
            for k, v in times.items()}


def bench_model(name: str, path: pathlib.Path, repeats: int, budget: float) -> dict[str, Any]:
    original = onnx.load(str(path))
    canon, canon_s, canon_nodes = optimize(path, "canonicalize")
    fused, fuse_s, fused_nodes = optimize(path, "canonicalize,fuse")
    assert_equivalent(original, fused, dim_values=DIMS)
    protos = {"orig": original, "canon": canon, "fused": fused, "orig2": original}
    row: dict[str, Any] = {
        "model": name,
        "nodes": {
            "orig": len(original.graph.node),
            "canon": canon_nodes,
            "fused": fused_nodes,
            "onnxslim": slim_nodes(path),
        },
        "optimize_seconds": {"canonicalize": canon_s, "canonicalize,fuse": fuse_s},
        "latency_ms": {},
    }
    for threads, optimized in SETTINGS:
        key = f"{'1t' if threads == 1 else 'default_t'}/{'ort_opt' if optimized else 'no_opt'}"
        stats = latencies(protos, threads, optimized, repeats, budget)
        row["latency_ms"][key] = {
            k: {"min": v["min"] * 1e3, "median": v["median"] * 1e3, "runs": v["runs"]}
            for k, v in stats.items()
        }
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", help="comma-separated names (default: all)")
    parser.add_argument("--repeats", type=int, default=15, help="max timed runs per variant")
    parser.add_argument("--budget", type=float, default=6.0,
                        help="seconds of timed runs per setting before stopping early (>=5 runs)")
    parser.add_argument("--json", type=pathlib.Path, help="write results here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    ort.set_default_logger_severity(3)
    paths = model_paths()
    names = args.models.split(",") if args.models else list(paths)
    unknown = [n for n in names if n not in paths]
    if unknown:
        parser.error(f"unknown models {unknown}; known: {', '.join(paths)}")

    rows = []
    for name in names:
        print(f"{name} ...", file=sys.stderr, flush=True)
        rows.append(bench_model(name, paths[name], args.repeats, args.budget))

    console = Console(width=160)
    nodes = Table(title="Node counts (main graph)")
    for col in ("model", "orig", "canonicalize", "canonicalize,fuse", "onnxslim", "fuse/slim"):
        nodes.add_column(col, justify="right" if col != "model" else "left")
    for r in rows:
        n = r["nodes"]
        ratio = f"{n['fused'] / n['onnxslim']:.2f}" if n["onnxslim"] else "-"
        nodes.add_row(r["model"], str(n["orig"]), str(n["canon"]), str(n["fused"]),
                      str(n["onnxslim"] if n["onnxslim"] is not None else "failed"), ratio)
    console.print(nodes)

    lat = Table(
        title="ORT CPU latency, batch 1, fastest run in ms (fused/orig ratio; orig2/orig noise)"
    )
    lat.add_column("model")
    for threads, optimized in SETTINGS:
        label = "1 thread" if threads == 1 else "default threads"
        label += f", ORT opt {'on' if optimized else 'off'}"
        lat.add_column(label + "\norig / canon / fused", justify="right")
    ratios: dict[str, list[float]] = {}
    slower = []
    for r in rows:
        cells = []
        for key, v in r["latency_ms"].items():
            o, c, f = v["orig"]["min"], v["canon"]["min"], v["fused"]["min"]
            ratio, noise = f / o, v["orig2"]["min"] / o
            ratios.setdefault(key, []).append(ratio)
            if key.endswith("/ort_opt") and ratio > max(1.0, noise, 1 / noise) * 1.02:
                slower.append(f"{r['model']} {key}: {ratio:.2f} (noise {noise:.2f})")
            cells.append(f"{o:.2f} / {c:.2f} / {f:.2f} ({ratio:.2f}; {noise:.2f})")
        lat.add_row(r["model"], *cells)
    console.print(lat)
    for key, values in ratios.items():
        geo = float(np.exp(np.mean(np.log(values))))
        console.print(f"{key}: geometric mean fused/orig {geo:.3f}, worst {max(values):.3f}")
    console.print(
        "fused slower than original beyond the A/A noise with ORT optimizations on: "
        + ("; ".join(slower) if slower else "none")
    )

    if args.json:
        meta = {
            "python": platform.python_version(),
            "onnxruntime": ort.__version__,
            "machine": platform.machine(),
            "cpu_count": __import__("os").cpu_count(),
            "numpy": np.__version__,
        }
        args.json.write_text(json.dumps({"meta": meta, "results": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
