"""End-to-end compression: the FP32 model vs ``irpass optimize --target T --max-drop 1%``.

For every trained model in ``models/trained/`` (the 1D-CNN on power traces, the digits ResNet,
MobileNetV2 and MLP, and the digits transformer when it is there) and every target, in one run:

- ``fp32``: the committed model as trained;
- ``<target>``: :func:`irpass.optimize` with the target, the model's calibration split
  (``*_calib.npz``, from the training data) and an accuracy budget of 1 point: the search
  (:mod:`irpass.search`) picks the pruning ratio, per-layer ratios, low-rank ratio and
  quantization setting that is cheapest for the target (its cost model) while losing at most
  1 point on the *search half* of the test split (even-indexed samples);
- ``x86-size``: the x86 target searched for the smallest file, with INT8 kept even where it is
  not faster on this machine (``quantize(never_slower=false)``): the size-first trade-off.

Every variant is then measured the same way: file size, accuracy and macro-F1 on the *report
half* of the test split (odd-indexed samples, never seen by the search, so the budget cannot be
met by selecting on the numbers reported), and ONNX Runtime CPU latency at batch 1 with one
thread (ORT optimizations on; median, p10/p90, interleaved with an A/A control;
:func:`irpass.bench.measure_latency`). The 1D-CNN's budget is in macro-F1 points (the metric of
the edge case study it comes from); the digits models' in accuracy points.

Goals of issue 15, per model and target, written with the numbers: ``smaller_90``
(size ratio <= 0.10), ``faster_3x`` (latency ratio <= 1/3, beyond the A/A noise) and
``within_1pt`` (at most 1 point lost on the report half). Latency on this x86 CPU is what the
CPU targets (x86; rpi as a proxy) run; for TensorRT (jetson) and NNAPI (android) graphs it is
recorded but not a goal: those run on accelerators this machine does not have.

Usage::

    pip install -e '.[bench]'
    python benchmarks/compression.py [--models power_cnn1d,digits_resnet] [--targets x86,rpi]
                                     [--budget-time 240] [--repeats 100] [--jobs 2]

Results: ``benchmarks/results/compression.json`` (machine, versions, date and command);
``python benchmarks/render.py`` puts the tables into ``docs/benchmarks.md`` and the README.
"""

from __future__ import annotations

import argparse
import logging
import pathlib
import sys
import tempfile
import time
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(pathlib.Path(__file__).parent))

from _results import write_results

import irpass
from irpass.bench import measure_latency
from irpass.ir import load_model, save_model
from irpass.search import SearchSettings
from irpass.verify import make_session
from models import MODELS_DIR, trained_eval_data, trained_paths

#: Calibration split of each trained model (training data, never test samples).
CALIBRATION = {
    "digits_resnet": "digits16_calib.npz",
    "digits_mobilenet": "digits16_calib.npz",
    "digits_mlp": "digits8_calib.npz",
    "digits_transformer": "digits8_calib.npz",
    "power_cnn1d": "power_calib.npz",
}
#: The budget's metric per model: macro-F1 for the 1D-CNN (its case study's metric).
BUDGET = {"power_cnn1d": "macro_f1:1%"}
#: Variant name -> (target, pipeline replacing the target's or None, search objective).
#: ``x86-size`` is the size-first setting: the search minimizes file size and INT8 stays even
#: where it is not faster on this machine (``never_slower=false``); the plain targets keep
#: their defaults (cost objective; CPU targets keep layers float where INT8 is not faster).
VARIANTS: dict[str, tuple[str, str | None, str]] = {
    "x86": ("x86", None, "cost"),
    "x86-size": ("x86", "canonicalize,fuse,quantize(mode=int8,rules=ort_u8s8,never_slower=false)",
                 "size"),
    "rpi": ("rpi", None, "cost"),
    "jetson": ("jetson", None, "cost"),
    "android": ("android", None, "cost"),
}
DEFAULT_TARGETS = tuple(VARIANTS)
#: Variants whose models run on this machine's kind of hardware (a CPU through ONNX Runtime).
CPU_TARGETS = frozenset({"x86", "x86-size", "rpi"})

logger = logging.getLogger("compression")


def _split(test_file: pathlib.Path, folder: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    """The search half (even samples) and the report half (odd samples) of a test split."""
    with np.load(test_file) as data:
        arrays = {k: data[k] for k in data.files}
    halves = []
    for name, start in (("search", 0), ("report", 1)):
        path = folder / f"{test_file.stem}_{name}.npz"
        np.savez(path, **{k: v[start::2] for k, v in arrays.items()})
        halves.append(path)
    return halves[0], halves[1]


def _scores(model_path: pathlib.Path, data_file: pathlib.Path) -> dict[str, float]:
    """Accuracy and macro-F1 (both in points) of a classifier on a labelled .npz split."""
    from sklearn.metrics import f1_score

    session = make_session(load_model(model_path))
    with np.load(data_file) as data:
        arrays = {k: data[k] for k in data.files}
    labels = arrays.pop("labels")
    names = [i.name for i in session.get_inputs()]
    # a target that fixes shapes (NNAPI, Core ML) leaves an integer batch: one sample a run
    step = 1 if isinstance(session.get_inputs()[0].shape[0], int) else 64
    predictions = [
        session.run(None, {n: arrays[n][start:start + step] for n in names})[0].argmax(-1)
        for start in range(0, len(labels), step)
    ]
    predicted = np.concatenate(predictions).reshape(-1)
    return {
        "accuracy": float(100.0 * (predicted == labels).mean()),
        "macro_f1": float(100.0 * f1_score(labels, predicted, average="macro")),
    }


def _batch1(data_file: pathlib.Path, names: list[str]) -> dict[str, np.ndarray]:
    with np.load(data_file) as data:
        return {n: data[n][:1] for n in names}


def _optimize(
    name: str, model_path: pathlib.Path, variant: str, search_file: pathlib.Path,
    out: pathlib.Path, args: argparse.Namespace,
) -> dict[str, Any]:
    """irpass with the variant's target and the 1-point budget; the model goes to ``out``."""
    target, passes, objective = VARIANTS[variant]
    started = time.perf_counter()
    result = irpass.optimize(
        model_path,
        target,
        passes=passes,
        calib_data=str(MODELS_DIR / "trained" / CALIBRATION[name]),
        eval_data=str(search_file),
        labels="data",
        max_drop=BUDGET.get(name, "1%"),
        search=SearchSettings(objective=objective, budget_seconds=args.budget_time,
                              jobs=args.jobs),
        build_engine="never",
    )
    seconds = time.perf_counter() - started
    save_model(result.model, out)
    search = result.report.search or {}
    chosen = search.get("chosen") or {}
    return {
        "seconds": seconds,
        "pipeline": result.report.pipeline,
        "chosen": chosen.get("description"),
        "settings_tried": len(search.get("points") or []),
        "precision": result.precision.to_dict() if result.precision is not None else None,
        "warnings": list(result.report.warnings),
    }


def run_model(name: str, targets: list[str], args: argparse.Namespace, folder: pathlib.Path,
              console: Console) -> dict[str, Any]:
    """Every variant of one model, measured in one interleaved latency run."""
    model_path = trained_paths()[name]
    search_file, report_file = _split(trained_eval_data()[name], folder)
    variants: dict[str, dict[str, Any]] = {"fp32": {}}
    paths = {"fp32": model_path}
    for target in targets:
        console.log(f"{name}: optimizing for {target}")
        out = folder / f"{name}_{target}.onnx"
        try:
            variants[target] = _optimize(name, model_path, target, search_file, out, args)
            paths[target] = out
        except irpass.errors.IrpassError as error:
            variants[target] = {"error": str(error)}
    for variant, path in paths.items():
        variants[variant]["file_bytes"] = sum(
            p.stat().st_size for p in path.parent.glob(path.name + "*"))
        variants[variant].update(_scores(path, report_file))
    input_names = [i.name for i in make_session(load_model(model_path)).get_inputs()]
    latency = measure_latency(paths, _batch1(report_file, input_names), threads=1,
                              repeats=args.repeats)
    base = variants["fp32"]
    metric = "macro_f1" if name in BUDGET else "accuracy"
    for variant in paths:
        row = variants[variant]
        row["latency"] = latency.stats[variant].__dict__
        if variant == "fp32":
            continue
        row["size_ratio"] = row["file_bytes"] / base["file_bytes"]
        row["latency_ratio"] = latency.ratio("fp32", variant)
        row["latency_real"] = latency.is_real("fp32", variant)
        row["points_lost"] = base[metric] - row[metric]
        row["goals"] = {
            "smaller_90": row["size_ratio"] <= 0.10,
            "within_1pt": row["points_lost"] <= 1.0,
            "faster_3x": (row["latency_ratio"] <= 1 / 3 and row["latency_real"])
            if variant in CPU_TARGETS else None,
        }
    return {"metric": metric, "noise": latency.noise, "variants": variants}


def _table(results: dict[str, Any]) -> Table:
    table = Table(title="compression: FP32 vs irpass --target T --max-drop 1 point")
    for column in ("model", "variant", "metric", "size", "size ratio", "latency ratio",
                   "points lost", "chosen"):
        table.add_column(column)
    for name, model in results["models"].items():
        metric = model["metric"]
        for variant, row in model["variants"].items():
            if "error" in row:
                table.add_row(name, variant, "-", "-", "-", "-", "-", row["error"][:60])
                continue
            table.add_row(
                name, variant, f"{row[metric]:.2f} {metric}", f"{row['file_bytes'] / 1024:.0f} KB",
                f"{row.get('size_ratio', 1.0):.3f}", f"{row.get('latency_ratio', 1.0):.2f}",
                f"{row.get('points_lost', 0.0):+.2f}", str(row.get("chosen") or ""),
            )
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    available = [n for n in CALIBRATION if n in trained_paths()]
    parser.add_argument("--models", default=",".join(available))
    parser.add_argument("--targets", default=",".join(DEFAULT_TARGETS),
                        help=f"variants: {', '.join(VARIANTS)}")
    parser.add_argument("--budget-time", type=float, default=240.0,
                        help="seconds each search may spend trying settings")
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--jobs", type=int, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    console = Console()
    targets = [t for t in args.targets.split(",") if t]
    results: dict[str, Any] = {"targets": targets, "budget_seconds": args.budget_time,
                               "models": {}}
    with tempfile.TemporaryDirectory(prefix="irpass-compression-") as tmp:
        for name in [n for n in args.models.split(",") if n]:
            results["models"][name] = run_model(name, targets, args, pathlib.Path(tmp), console)
    path = write_results("compression", results, sys.argv)
    console.print(_table(results))
    console.print(f"wrote {path}")


if __name__ == "__main__":
    main()
