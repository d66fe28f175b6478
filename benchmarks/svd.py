"""Low-rank factorization: plain vs data-aware SVD at several ratios, on the trained models.

No ONNX tool offers SVD factorization, so each setting is compared with the unfactorized model
and with plain SVD. For every trained model (the digits transformer, MLP, ResNet, MobileNetV2
and the power-trace 1D-CNN) the reference is the model after ``canonicalize,fuse`` (lossless:
BatchNorm folded, what ``svd`` would run after), and for every ratio (fraction of the
factorizable layers' parameters removed) the script measures

- ``plain``       ``svd(ratio=r, data_aware=false)``: ranks allocated on the weight spectra;
- ``aware``       ``svd(ratio=r)`` with the model's calibration split: whitened, bias-corrected,
                  sequentially refit, ranks allocated on the whitened spectra weighted by each
                  layer's measured sensitivity (its effect on the model's outputs);
- ``aware-nosens`` the same with ``sensitivity=false`` (every layer's error weighs the same):
                  what the sensitivity probes buy;
- ``plain@aware`` plain SVD at exactly the ranks ``aware`` chose (``svd(ranks=[...])``): the
                  equal-rank comparison of the output error;

and records parameters, MACs, weight bytes (irpass cost analysis), accuracy on the test split
(never the calibration split), the output's relative RMS error and cosine against the
reference, and ONNX Runtime CPU latency (``irpass.bench.measure_latency``: one thread,
ORT optimizations on, batch 1 and batch 32, all variants interleaved with an A/A control). A
factorization whose latency change is within the run's noise is reported as "no measurable
change", a slower one as "slower". Goals of issue 11, evaluated per model at ``ratio=0.3``
(30 % fewer parameters in the factorizable layers) and written with the numbers:

- ``drop_at_most_1pt``: data-aware SVD loses at most one accuracy point;
- ``half_error_of_plain``: its output error is at most half that of plain SVD at equal ranks.

Results: ``benchmarks/results/svd.json``. Usage::

    python benchmarks/svd.py [--models digits_transformer,digits_mlp] [--ratios 0.2,0.3,0.5]
                             [--repeats 30]
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time
from typing import Any

import numpy as np
import onnx_ir as ir
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(pathlib.Path(__file__).parent))

from _results import write_results

from irpass.analysis.cost import model_cost
from irpass.bench import measure_latency
from irpass.context import PassContext
from irpass.data import ArraySource
from irpass.ir import load_model
from irpass.manager import PipelineRunner, RunOptions
from irpass.metrics import cosine
from irpass.passes.lowrank.plan import LowRankOptions
from irpass.passes.lowrank.svd import SvdPass
from irpass.testing import run_ir

TRAINED = pathlib.Path(__file__).resolve().parents[1] / "models" / "trained"
#: Model -> prefix of its committed test / calibration splits.
MODELS = {
    "digits_transformer": "digits8",
    "digits_mlp": "digits8",
    "digits_resnet": "digits16",
    "digits_mobilenet": "digits16",
    "power_cnn1d": "power",
}
BATCHES = (1, 32)


def load_split(prefix: str, kind: str) -> tuple[dict[str, np.ndarray], np.ndarray]:
    data = dict(np.load(TRAINED / f"{prefix}_{kind}.npz"))
    labels = data.pop("labels")
    return data, labels


def measure(model: ir.Model, test: dict[str, np.ndarray], labels: np.ndarray,
            reference: np.ndarray | None) -> tuple[dict[str, Any], np.ndarray]:
    cost = model_cost(model)
    out = next(iter(run_ir(model, test).values())).astype(np.float64)
    row: dict[str, Any] = {
        "params": cost.params,
        "macs": cost.macs,
        "weight_bytes": cost.weight_bytes,
        "accuracy": float(np.mean(out.argmax(axis=1) == labels)),
    }
    if reference is not None:
        row["relative_error"] = float(np.sqrt(np.mean((out - reference) ** 2)
                                              / np.mean(reference**2)))
        row["cosine"] = float(cosine(reference, out))
    return row, out


def factorize(base: ir.Model, calib: dict[str, np.ndarray] | None,
              **options: Any) -> tuple[ir.Model, dict[str, Any], float]:
    model = base.clone()
    context = PassContext(calibration_data=ArraySource(calib) if calib else None)
    svd = SvdPass(LowRankOptions(**options), context)
    start = time.perf_counter()
    svd(model)
    return model, svd.details, time.perf_counter() - start


def verdict(report: Any, base: str, name: str) -> str:
    ratio = report.ratio(base, name)
    if not report.is_real(base, name):
        return "no measurable change"
    return "faster" if ratio < 1 else "slower"


def bench_model(name: str, ratios: list[float], repeats: int) -> dict[str, Any]:
    prefix = MODELS[name]
    test, labels = load_split(prefix, "test")
    calib, _ = load_split(prefix, "calib")
    base = load_model(TRAINED / f"{name}.onnx")
    PipelineRunner("canonicalize,fuse", options=RunOptions(verify="final")).run(base)
    base_row, reference = measure(base, test, labels, None)
    variants: dict[str, ir.Model] = {"base": base}
    settings: list[dict[str, Any]] = []
    for ratio in ratios:
        aware_ranks: list[str] = []
        for mode in ("plain", "aware", "aware-nosens", "plain@aware"):
            if mode == "plain":
                model, details, seconds = factorize(base, None, ratio=ratio)
            elif mode == "aware":
                model, details, seconds = factorize(base, calib, ratio=ratio)
                aware_ranks = [f"{x['name']}:{x['rank']}" for x in details["layers"]]
            elif mode == "aware-nosens":
                model, details, seconds = factorize(base, calib, ratio=ratio, sensitivity=False)
            else:
                if not aware_ranks:
                    continue
                model, details, seconds = factorize(base, None, ranks=aware_ranks)
            key = f"{mode}@{ratio}"
            row, _ = measure(model, test, labels, reference)
            before = details["factorized_params_before"]
            row.update({
                "setting": key, "mode": mode, "ratio": ratio, "pass_seconds": seconds,
                "factorized_layers": len(details["layers"]),
                "ranks": {x["name"]: x["rank"] for x in details["layers"]},
                "factorized_params_kept": (details["factorized_params_after"] / before
                                           if before else 1.0),
                "eligible_params_kept": details["eligible_kept"],
                "accuracy_drop_points": 100 * (base_row["accuracy"] - row["accuracy"]),
                "params_ratio": row["params"] / base_row["params"],
                "macs_ratio": row["macs"] / base_row["macs"],
            })
            settings.append(row)
            if details["layers"]:
                variants[key] = model
    latency: dict[str, Any] = {}
    input_name = next(iter(test))
    for batch in BATCHES:
        feeds = {input_name: test[input_name][:batch]}
        report = measure_latency(variants, feeds, threads=1, repeats=repeats, optimize=True)
        latency[f"batch{batch}"] = report.to_dict()
        for row in settings:
            if row["setting"] in variants:
                row[f"latency_ratio_batch{batch}"] = report.ratio("base", row["setting"])
                row[f"latency_batch{batch}"] = verdict(report, "base", row["setting"])
    for row in settings:
        if row["mode"] == "aware":
            equal = next((r for r in settings if r["setting"] == f"plain@aware@{row['ratio']}"),
                         None)
            if equal is not None and equal["relative_error"] > 0:
                row["error_vs_plain_equal_rank"] = row["relative_error"] / equal["relative_error"]
    return {"model": name, "base": base_row, "settings": settings, "latency": latency,
            "goals": goals(settings)}


def goals(settings: list[dict[str, Any]]) -> dict[str, Any]:
    """Issue 11's goals at ratio 0.3 (None when that ratio was not run)."""
    aware = next((r for r in settings if r["setting"] == "aware@0.3"), None)
    if aware is None:
        return {}
    ratio = aware.get("error_vs_plain_equal_rank")
    return {
        "drop_at_most_1pt": aware["accuracy_drop_points"] <= 1.0,
        "half_error_of_plain": None if ratio is None else ratio <= 0.5,
    }


def print_table(results: list[dict[str, Any]]) -> None:
    table = Table(title="svd: plain vs data-aware (reference: canonicalize,fuse)")
    for col in ("model", "setting", "layers", "params", "MACs", "acc drop (pt)", "rel err",
                "err / plain@rank", "latency b1", "latency b32"):
        table.add_column(col, justify="left" if col in ("model", "setting") else "right")
    for res in results:
        for row in res["settings"]:
            ratio = row.get("error_vs_plain_equal_rank")
            table.add_row(
                res["model"], row["setting"], str(row["factorized_layers"]),
                f"x{row['params_ratio']:.3f}", f"x{row['macs_ratio']:.3f}",
                f"{row['accuracy_drop_points']:+.2f}", f"{row['relative_error']:.4f}",
                "" if ratio is None else f"{ratio:.3f}",
                _latency_cell(row, 1), _latency_cell(row, 32),
            )
    Console(width=200).print(table)
    for res in results:
        if res["goals"]:
            met = ", ".join(f"{k}: {'met' if v else 'NOT met'}" for k, v in res["goals"].items()
                            if v is not None)
            Console().print(f"{res['model']} at ratio 0.3: {met}")


def _latency_cell(row: dict[str, Any], batch: int) -> str:
    ratio = row.get(f"latency_ratio_batch{batch}")
    if ratio is None:
        return "-"
    return f"x{ratio:.3f} ({row[f'latency_batch{batch}']})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--ratios", default="0.2,0.3,0.5")
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    names = [m for m in args.models.split(",") if m]
    unknown = [m for m in names if m not in MODELS]
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(MODELS)}")
    ratios = [float(r) for r in args.ratios.split(",")]
    results = [bench_model(name, ratios, args.repeats) for name in names]
    print_table(results)
    path = write_results("svd", {"ratios": ratios, "models": results}, sys.argv)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
