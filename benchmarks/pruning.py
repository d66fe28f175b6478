"""Structured pruning: Torch-Pruning vs irpass without repair vs irpass with repair.

For every trained model in models/trained/ (digits ResNet, MobileNetV2, MLP; the 1D-CNN on
power traces) and every ratio (0.2, 0.3, 0.5), in one run:

- ``torch_pruning``: the same zoo architecture in PyTorch (``models/zoo.py``) with the trained
  weights loaded from the committed ONNX file (checked: its outputs match the ONNX model's),
  pruned by Torch-Pruning's ``MetaPruner`` (``GroupMagnitudeImportance(p=2)``, local ratio per
  group, the classifier ignored, no fine-tuning) and exported to ONNX with ``irpass.lower``;
- ``irpass``: ``prune(ratio=r, importance=l2, scope=local, round_to=1, repair=false)`` on the
  trained ONNX file (the same ratio semantics: every group loses ``r`` of its channels);
- ``irpass_repair``: the same with ``repair=true`` on the model's calibration split
  (``models/trained/*_calib.npz``, taken from the training data; the test split is never seen);
- ``torch_pruning_aligned`` and ``irpass_repair_aligned``: both again with the kept channel
  counts rounded to ``--round-to`` (default 16: ONNX Runtime's blocked NCHWc convolution
  kernels need multiples of their block, 16 on AVX-512 and 8 on AVX2 CPUs; unaligned counts
  fall back to slower kernels, which shows in the latency of the exact-ratio variants).

Measured per variant: params and MACs (``irpass.analysis.cost``), accuracy on the committed
test split, and ONNX Runtime CPU latency (batch 1, one thread, ORT optimizations on, median
with p10/p90 via ``irpass.bench.measure_latency``, interleaved with an A/A control). Goals of
issue 10, evaluated per model and ratio and written with the numbers:

- ``no_repair_matches_tp``: irpass without repair within 1 point of Torch-Pruning's accuracy;
- ``repair_third_of_tp_loss``: irpass with repair loses at most a third of what Torch-Pruning
  loses (original minus pruned accuracy);
- ``latency_follows_macs``: the latency reduction is at least 0.8x the MAC reduction
  (``1 - latency ratio >= 0.8 * (1 - MAC ratio)``), judged against the A/A noise.

Usage::

    pip install -e '.[bench]'
    python benchmarks/pruning.py [--models digits_resnet,power_cnn1d] [--ratios 0.2,0.3,0.5]
                                 [--repeats 200]

Results: ``benchmarks/results/pruning.json`` (with machine, versions, date and command).
"""

from __future__ import annotations

import argparse
import logging
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
from irpass.passes.pruning.prune import PruneOptions, PrunePass
from irpass.verify import make_session
from models import MODELS_DIR, trained_eval_data, trained_metrics, trained_paths

RATIOS = (0.2, 0.3, 0.5)
CALIBRATION = {
    "digits_resnet": "digits16_calib.npz",
    "digits_mobilenet": "digits16_calib.npz",
    "digits_mlp": "digits8_calib.npz",
    "power_cnn1d": "power_calib.npz",
}
#: The last layer of each architecture (its outputs are the classes: never pruned).
CLASSIFIER = {
    "resnet_cnn": "fc",
    "mobilenet_v2": "classifier.1",
    "mlp": "net.4",
    "power_cnn1d": "fc2",
}

console = Console(width=150)
logger = logging.getLogger("benchmarks.pruning")


def _accuracy(model: Any, inputs: np.ndarray, labels: np.ndarray) -> float:
    session = make_session(model)
    scores = session.run(None, {session.get_inputs()[0].name: inputs})[0]
    return float((scores.argmax(axis=1) == labels).mean())


def _torch_module(name: str, onnx_model: ir.Model, inputs: np.ndarray) -> Any:
    """The zoo architecture in PyTorch with the trained weights of the ONNX file."""
    import torch

    from models import zoo

    arch = str(trained_metrics()[name]["architecture"])
    module = zoo.build(arch)
    state = module.state_dict()
    weights = {
        k: v.const_value.numpy()
        for k, v in onnx_model.graph.initializers.items()
        if v.const_value is not None
    }
    missing = [k for k in state if k not in weights and not k.endswith("num_batches_tracked")]
    if missing:
        raise RuntimeError(f"{name}: no ONNX initializer for {missing[:3]}")
    module.load_state_dict(
        {k: torch.from_numpy(np.array(weights[k])) if k in weights else v for k, v in state.items()}
    )
    module.eval()
    with torch.no_grad():
        ours = module(torch.from_numpy(inputs[:16])).numpy()
    session = make_session(onnx_model)
    theirs = session.run(None, {session.get_inputs()[0].name: inputs[:16]})[0]
    if not np.allclose(ours, theirs, atol=1e-4, rtol=1e-3):
        raise RuntimeError(f"{name}: the PyTorch module does not reproduce the ONNX model")
    return module


def _torch_pruning(
    name: str, onnx_model: ir.Model, inputs: np.ndarray, ratio: float, round_to: int | None
) -> ir.Model:
    import torch
    import torch_pruning as tp

    from irpass.lower import lower
    from models import zoo

    module = _torch_module(name, onnx_model, inputs)
    arch = str(trained_metrics()[name]["architecture"])
    classifier = module.get_submodule(CLASSIFIER[arch])
    example = torch.from_numpy(inputs[:1])
    pruner = tp.pruner.MetaPruner(
        module,
        example,
        importance=tp.importance.GroupMagnitudeImportance(p=2),
        pruning_ratio=ratio,
        global_pruning=False,
        ignored_layers=[classifier],
        round_to=round_to,
    )
    pruner.step()
    module.eval()
    entry = zoo.ZOO[arch]
    return lower(
        module,
        (example,),
        input_names=entry.input_names,
        output_names=entry.output_names,
        dynamic_axes=entry.dynamic_axes,
    )


def _irpass(
    name: str, ratio: float, repair: bool, calib: dict[str, np.ndarray], round_to: int
) -> tuple[ir.Model, dict[str, Any]]:
    model = load_model(trained_paths()[name])
    context = PassContext(calibration_data=ArraySource(calib) if repair else None)
    options = PruneOptions(
        ratio=ratio,
        importance="l2",
        scope="local",
        round_to=round_to,
        repair=repair,
        calib_samples=1024,
    )
    pass_ = PrunePass(options, context)
    started = time.perf_counter()
    pass_(model)
    info = {"seconds": round(time.perf_counter() - started, 2), "stats": dict(pass_.stats)}
    if repair:
        info["repair"] = pass_.details.get("repair", [])
    return model, info


def _goals(rows: dict[str, dict[str, Any]], noise: float) -> dict[str, Any]:
    original = rows["original"]["accuracy"]
    tp_loss = original - rows["torch_pruning"]["accuracy"]
    repair_loss = original - rows["irpass_repair"]["accuracy"]
    goals: dict[str, Any] = {
        "no_repair_matches_tp": rows["irpass"]["accuracy"]
        >= rows["torch_pruning"]["accuracy"] - 0.01,
        "repair_third_of_tp_loss": repair_loss <= max(tp_loss, 0.0) / 3 + 1e-9,
        "tp_loss_points": round(100 * tp_loss, 2),
        "repair_loss_points": round(100 * repair_loss, 2),
    }
    for variant in [v for v in rows if v != "original"]:
        macs = rows[variant]["macs_ratio"]
        latency = rows[variant]["latency_ratio"]
        goals[f"latency_follows_macs_{variant}"] = (1 - latency) >= 0.8 * (1 - macs) - noise
    return goals


def run(names: list[str], ratios: list[float], repeats: int, round_to: int) -> dict[str, Any]:
    results: dict[str, Any] = {"ratios": ratios, "round_to_aligned": round_to, "models": {}}
    for name in names:
        test = np.load(trained_eval_data()[name])
        input_name = next(k for k in test.files if k != "labels")
        inputs, labels = test[input_name], test["labels"]
        calib_file = np.load(MODELS_DIR / "trained" / CALIBRATION[name])
        calib = {input_name: calib_file[input_name]}
        original = load_model(trained_paths()[name])
        base_cost = model_cost(original)
        per_ratio: dict[str, Any] = {}
        for ratio in ratios:
            console.print(f"[bold]{name}[/] ratio {ratio}")
            variants: dict[str, ir.Model] = {"original": load_model(trained_paths()[name])}
            extra: dict[str, Any] = {}
            for key, align in (("torch_pruning", None), ("torch_pruning_aligned", round_to)):
                started = time.perf_counter()
                variants[key] = _torch_pruning(name, original, inputs, ratio, align)
                extra[key] = {"seconds": round(time.perf_counter() - started, 2)}
            for key, repair, align in (
                ("irpass", False, 1),
                ("irpass_repair", True, 1),
                ("irpass_repair_aligned", True, round_to),
            ):
                variants[key], extra[key] = _irpass(name, ratio, repair, calib, align)
            latency = measure_latency(
                variants, {input_name: inputs[:1]}, threads=1, repeats=repeats, warmup=5
            )
            rows: dict[str, dict[str, Any]] = {}
            for key, model in variants.items():
                cost = model_cost(model)
                stats = latency.stats[key]
                rows[key] = {
                    "params": cost.params,
                    "macs": cost.macs,
                    "params_ratio": round(cost.params / base_cost.params, 4),
                    "macs_ratio": round(cost.macs / base_cost.macs, 4),
                    "accuracy": round(_accuracy(model, inputs, labels), 4),
                    "latency_ms": stats.to_dict(),
                    "latency_ratio": round(latency.ratio("original", key), 4),
                    **extra.get(key, {}),
                }
            noise = latency.noise or 0.0
            per_ratio[str(ratio)] = {"variants": rows, "noise": noise, "goals": _goals(rows, noise)}
        results["models"][name] = per_ratio
    return results


def _table(results: dict[str, Any]) -> Table:
    table = Table(title="structured pruning (ratios vs. the original model)")
    for column in ("model", "ratio", "variant", "params", "MACs", "latency", "accuracy", "goals"):
        table.add_column(
            column, justify="left" if column in ("model", "variant", "goals") else "right"
        )
    for name, per_ratio in results["models"].items():
        for ratio, entry in per_ratio.items():
            goals = entry["goals"]
            for variant, row in entry["variants"].items():
                if variant == "original":
                    continue
                marks = []
                if variant == "irpass":
                    marks.append("matches TP" if goals["no_repair_matches_tp"] else "below TP")
                elif variant == "irpass_repair":
                    marks.append(
                        "<= 1/3 TP loss" if goals["repair_third_of_tp_loss"] else "> 1/3 TP loss"
                    )
                follows = goals[f"latency_follows_macs_{variant}"]
                marks.append("latency follows MACs" if follows else "latency lags MACs")
                mark = ", ".join(marks)
                table.add_row(
                    name,
                    ratio,
                    variant,
                    f"x{row['params_ratio']:.2f}",
                    f"x{row['macs_ratio']:.2f}",
                    f"x{row['latency_ratio']:.2f}",
                    f"{row['accuracy']:.4f}",
                    mark,
                )
    return table


def main() -> None:
    """Command line of this benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(CALIBRATION))
    parser.add_argument("--ratios", default=",".join(str(r) for r in RATIOS))
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument(
        "--round-to", type=int, default=16, help="channel alignment of the *_aligned variants"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    names = [n for n in args.models.split(",") if n]
    ratios = [float(r) for r in args.ratios.split(",") if r]
    results = run(names, ratios, args.repeats, args.round_to)
    console.print(_table(results))
    path = write_results("pruning", results, sys.argv)
    console.print(f"wrote {path}")


if __name__ == "__main__":
    main()
