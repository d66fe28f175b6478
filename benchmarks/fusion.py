"""Fusion: what ``fuse`` alone buys in ONNX Runtime CPU latency, measured against its noise.

For every model (the light model-zoo graphs in the onnx wheel, models/zoo, magika) three variants:

- ``orig``   the model file as shipped;
- ``canon``  after irpass ``canonicalize`` (clean-up: constant folding, dead code, ...);
- ``fused``  ``canon`` after irpass ``fuse``: the difference to ``canon`` is fusion alone.

Batch-1 latency on the CPU execution provider in four settings: 1 thread / default threads, each
with ONNX Runtime's graph optimizations on (``ORT_ENABLE_ALL``, what a user gets: ORT fuses
Conv+BatchNorm itself) and off (``ORT_DISABLE_ALL``, what the graph costs as written). Timing
is ``irpass.bench.measure_latency``: the variants run round-robin (canon, fused, orig, A/A,
canon, ...), the A/A control is a second session of ``canon``, and a ratio is called real only
when it exceeds both the A/A gap and the spread (p10..p90) of the two measurements.

Two stories are kept apart: ``fused / canon`` is fusion's gain; ``canon / orig`` is what
canonicalize's clean-up gains (with ORT optimizations off mostly the folding of weights that old
exporters compute at run time, e.g. ConstantOfShape in the light zoo). Node counts are compared
with onnxslim. Every fused model is checked against the original with ONNX Runtime first.
Results: ``benchmarks/results/fusion.json``; tables: ``python benchmarks/render.py``.

    python benchmarks/fusion.py [--models resnet50,zoo/mobilenet_v2] [--repeats 15]
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import math
import pathlib
import sys
import time
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).parent))

import onnx
import onnxruntime as ort
from _results import write_results

import irpass
from irpass.bench import measure_latency
from irpass.ir import load_model, to_proto
from irpass.testing import assert_equivalent

REPO = pathlib.Path(__file__).resolve().parents[1]
LIGHT_DIR = pathlib.Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
#: (threads, ORT graph optimizations); 0 threads = ORT's default (one per core)
SETTINGS = [(1, True), (0, True), (1, False), (0, False)]
DIMS = {"N": 1, "T": 16, "batch": 1, "batch_size": 1}


def setting_key(threads: int, optimize: bool) -> str:
    """``1t/ort_on``-style key of a measurement setting."""
    return f"{'1t' if threads == 1 else 'default_t'}/{'ort_on' if optimize else 'ort_off'}"


def model_paths() -> dict[str, pathlib.Path]:
    """Every model this benchmark knows, by name."""
    paths = {p.stem.removeprefix("light_"): p for p in sorted(LIGHT_DIR.glob("light_*.onnx"))}
    for p in sorted((REPO / "models" / "zoo").glob("*.onnx")):
        paths[f"zoo/{p.stem}"] = p
    spec = importlib.util.find_spec("magika")
    if spec is not None and spec.origin is not None:
        found = sorted(pathlib.Path(spec.origin).parent.glob("models/*/model.onnx"))
        if found:
            paths["magika"] = found[-1]
    return paths


def slim_nodes(path: pathlib.Path) -> int | None:
    """onnxslim's node count for the original, None when it fails or is absent."""
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


def variants(path: pathlib.Path) -> tuple[dict[str, onnx.ModelProto], dict[str, float]]:
    """``orig``, ``canon`` and ``fused`` protos, and the seconds each irpass pipeline took."""
    model = load_model(path)
    started = time.perf_counter()
    irpass.build_pipeline("canonicalize")(model)
    canon_seconds = time.perf_counter() - started
    canon = to_proto(model)
    started = time.perf_counter()
    irpass.build_pipeline("fuse")(model)
    fuse_seconds = time.perf_counter() - started
    protos = {"canon": canon, "fused": to_proto(model), "orig": onnx.load(str(path))}
    return protos, {"canonicalize": canon_seconds, "fuse": fuse_seconds}


def comparison(report: Any, baseline: str, candidate: str) -> dict[str, Any]:
    """Median ratio candidate/baseline, the noise it must beat, and whether it does."""
    threshold = max(report.noise or 0.0, report.stats[baseline].spread / 2,
                    report.stats[candidate].spread / 2, 0.01)
    return {
        "ratio": report.ratio(baseline, candidate),
        "threshold": threshold,
        "real": report.is_real(baseline, candidate),
    }


def bench_model(name: str, path: pathlib.Path, repeats: int, warmup: int,
                budget: float) -> dict[str, Any]:
    """Equivalence, node counts and every setting's latency comparison of one model."""
    protos, seconds = variants(path)
    assert_equivalent(protos["orig"], protos["fused"], dim_values=DIMS)
    row: dict[str, Any] = {
        "source": str(path.relative_to(REPO) if path.is_relative_to(REPO) else path.name),
        "equivalent": True,
        "nodes": {
            "orig": len(protos["orig"].graph.node),
            "canon": len(protos["canon"].graph.node),
            "fused": len(protos["fused"].graph.node),
            "onnxslim": slim_nodes(path),
        },
        "optimize_seconds": seconds,
        "latency": {},
        "fusion": {},
        "canonicalize": {},
    }
    for threads, optimize in SETTINGS:
        key = setting_key(threads, optimize)
        report = measure_latency(protos, threads=threads, optimize=optimize, warmup=warmup,
                                 repeats=repeats, budget_seconds=budget, dim_values=DIMS)
        row["latency"][key] = report.to_dict()
        row["fusion"][key] = comparison(report, "canon", "fused")
        row["canonicalize"][key] = comparison(report, "orig", "canon")
    return row


def summarize(rows: dict[str, dict[str, Any]], story: str) -> dict[str, Any]:
    """Per setting: geometric mean ratio and how many models were faster/slower/within noise."""
    out: dict[str, Any] = {}
    for threads, optimize in SETTINGS:
        key = setting_key(threads, optimize)
        found = [r[story][key] for r in rows.values()]
        out[key] = {
            "geomean_ratio": math.exp(sum(math.log(c["ratio"]) for c in found) / len(found)),
            "faster": sum(1 for c in found if c["real"] and c["ratio"] < 1),
            "slower": sum(1 for c in found if c["real"] and c["ratio"] > 1),
            "within_noise": sum(1 for c in found if not c["real"]),
            "models": len(found),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    """Measure the models, print a summary and write ``results/fusion.json``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", help="comma-separated names (default: all)")
    parser.add_argument("--repeats", type=int, default=15, help="timed rounds per setting")
    parser.add_argument("--warmup", type=int, default=3, help="untimed rounds per setting")
    parser.add_argument("--budget", type=float, default=20.0,
                        help="seconds of timed rounds per setting before stopping early "
                             "(after at least 5 rounds)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    ort.set_default_logger_severity(3)
    paths = model_paths()
    names = args.models.split(",") if args.models else list(paths)
    unknown = [n for n in names if n not in paths]
    if unknown:
        parser.error(f"unknown models {unknown}; known: {', '.join(paths)}")
    rows: dict[str, dict[str, Any]] = {}
    for name in names:
        print(f"{name} ...", file=sys.stderr, flush=True)
        rows[name] = bench_model(name, paths[name], args.repeats, args.warmup, args.budget)
    fusion, canonicalize = summarize(rows, "fusion"), summarize(rows, "canonicalize")
    for key, summary in fusion.items():
        print(f"fuse alone, {key}: geometric mean fused/canon {summary['geomean_ratio']:.3f}; "
              f"faster {summary['faster']}, slower {summary['slower']}, "
              f"within noise {summary['within_noise']} of {summary['models']}")
    path = write_results(
        "fusion",
        {
            "pipelines": {"canon": "canonicalize", "fused": "canonicalize + fuse"},
            "settings": [setting_key(t, o) for t, o in SETTINGS],
            "repeats": args.repeats,
            "warmup": args.warmup,
            "budget_seconds": args.budget,
            "models": rows,
            "summary": {"fusion": fusion, "canonicalize": canonicalize},
        },
        ["benchmarks/fusion.py", *(argv if argv is not None else sys.argv[1:])],
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
