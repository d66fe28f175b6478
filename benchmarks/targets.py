"""Targets benchmark: what ``irpass optimize --target`` delivers against the usual tools.

Two parts, one run, written to ``benchmarks/results/targets.json``:

``cpu``  For each trained model (calibration split from the training data, test split for
         accuracy): the input model (FP32), irpass ``--target generic`` (FP32, fused), irpass
         ``--target x86`` and ``--target rpi`` with ``--calib-data`` (INT8 where it is not
         slower), and ONNX Runtime's ``quantize_static`` (QDQ, per-channel, its default MinMax
         calibration on the same samples), the tool a user would otherwise pick. Latency is
         ``irpass.bench.measure_latency`` (interleaved, A/A control, 1 thread, batch 1), peak
         memory ``measure_peak_memory`` (fresh process), accuracy on the test split, file size.
         Every latency is reported as a ratio to the input model, with ``real`` saying whether
         it exceeds the run's noise.

``mobile`` For the zoo, the trained models and the light model zoo: the partitions and node
         coverage ONNX Runtime's mobile usability checker reports for NNAPI and Core ML (ML
         Program), on the model as ONNX Runtime's own tools prepare it (batch fixed to 1 with
         ``make_input_shape_fixed``) and on irpass's ``--target android`` / ``--target ios``
         output.

    python benchmarks/targets.py                 # everything (about 20 minutes)
    python benchmarks/targets.py --part cpu --repeats 200
    python benchmarks/render.py                  # the tables of benchmarks/README.md
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).parent))

import numpy as np
import onnx
import onnxruntime as ort
from _results import write_results

import irpass
from irpass.backends.mobile import check_partitions
from irpass.bench import measure_latency, measure_peak_memory
from irpass.ir import save_model
from models import MODELS_DIR, trained_eval_data, trained_paths, zoo_paths

CALIB = {
    "digits_mlp": "digits8_calib.npz",
    "digits_resnet": "digits16_calib.npz",
    "digits_mobilenet": "digits16_calib.npz",
    "power_cnn1d": "power_calib.npz",
    "digits_transformer": "digits8_calib.npz",
}
LIGHT_DIR = pathlib.Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"


def _accuracy(path: pathlib.Path, data: pathlib.Path) -> float:
    arrays = np.load(data)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    inputs, labels = arrays[name], arrays["labels"]
    fixed = session.get_inputs()[0].shape[0] == 1
    if fixed:
        rows = [session.run(None, {name: inputs[i : i + 1]})[0] for i in range(len(inputs))]
        outputs = np.concatenate(rows)
    else:
        outputs = session.run(None, {name: inputs})[0]
    return float((outputs.argmax(axis=-1) == labels).mean())


class _Reader:
    """ONNX Runtime's CalibrationDataReader over the calibration split."""

    def __init__(self, data: pathlib.Path, name: str, count: int) -> None:
        self.items = iter(np.load(data)[name][:count])
        self.name = name

    def get_next(self) -> dict[str, np.ndarray] | None:
        item = next(self.items, None)
        return None if item is None else {self.name: item[None]}


def _ort_quantize(model: pathlib.Path, calib: pathlib.Path, out: pathlib.Path) -> dict[str, Any]:
    from onnxruntime.quantization import QuantFormat, quantize_static

    name = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).get_inputs()[0].name
    started = time.perf_counter()
    try:
        quantize_static(str(model), str(out), _Reader(calib, name, 256),
                        quant_format=QuantFormat.QDQ, per_channel=True)
    except Exception as exc:  # the peer failing is a result too
        return {"error": f"{type(exc).__name__}: {exc}"[:300]}
    return {"seconds": time.perf_counter() - started}


def cpu_part(repeats: int, work: pathlib.Path) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name, calib_name in CALIB.items():
        source = trained_paths()[name]
        calib = MODELS_DIR / "trained" / calib_name
        test = trained_eval_data()[name]
        paths = {"input fp32": source}
        info: dict[str, Any] = {}
        for label, target, data in (
            ("irpass generic fp32", "generic", None),
            ("irpass x86", "x86", calib),
            ("irpass rpi", "rpi", calib),
        ):
            started = time.perf_counter()
            result = irpass.optimize(source, target, calib_data=data, verify="final")
            path = work / f"{name}.{target}.onnx"
            save_model(result.model, path)
            paths[label] = path
            quantize = [r for r in result.report.passes if r.name == "quantize"]
            info[label] = {
                "seconds": time.perf_counter() - started,
                "precision": result.precision.effective if result.precision else None,
                "precision_reasons": result.precision.reasons if result.precision else [],
                "quantize_stats": quantize[0].stats if quantize else {},
                "failed_checks": [c.name for c in result.failed_checks],
            }
        peer = work / f"{name}.ort_quantize_static.onnx"
        info["ORT quantize_static"] = _ort_quantize(source, calib, peer)
        if "error" not in info["ORT quantize_static"]:
            paths["ORT quantize_static"] = peer
        feeds = {k: v[:1] for k, v in np.load(test).items() if k != "labels"}
        latency = measure_latency(paths, feeds, threads=1, warmup=10, repeats=repeats)
        for label, path in paths.items():
            entry = info.setdefault(label, {})
            entry["accuracy"] = _accuracy(path, test)
            entry["bytes"] = path.stat().st_size
            entry["latency"] = latency.stats[label].to_dict()
            entry["peak_memory"] = measure_peak_memory(path, feeds).to_dict()
            if label != "input fp32":
                entry["latency_ratio_vs_input"] = latency.ratio("input fp32", label)
                entry["latency_difference_real"] = latency.is_real("input fp32", label)
        info["noise"] = latency.noise
        results[name] = info
        print(name, {k: round(v.get("latency_ratio_vs_input", 1.0), 3)
                     for k, v in info.items() if isinstance(v, dict)}, flush=True)
    return results


def _fixed_like_ort(path: pathlib.Path, out: pathlib.Path) -> pathlib.Path:
    """The model as ONNX Runtime's tools prepare it for mobile: every dynamic dim set to 1."""
    from onnxruntime.tools.onnx_model_utils import fix_output_shapes, make_input_shape_fixed

    model = onnx.load(path)
    for value in model.graph.input:
        dims = value.type.tensor_type.shape.dim
        if any(not d.HasField("dim_value") for d in dims):
            shape = [d.dim_value if d.HasField("dim_value") else 1 for d in dims]
            if "tokens" in value.name:
                shape = [1, 16]
            make_input_shape_fixed(model.graph, value.name, shape)
    fix_output_shapes(model)
    onnx.save(model, out)
    return out


def mobile_part(work: pathlib.Path) -> dict[str, Any]:
    models = {f"zoo/{k}": v for k, v in zoo_paths().items()}
    models.update({f"trained/{k}": v for k, v in trained_paths().items()})
    models.update({f"light/{p.stem[6:]}": p for p in sorted(LIGHT_DIR.glob("light_*.onnx"))})
    results: dict[str, Any] = {}
    for name, path in models.items():
        shapes = {"tokens": (1, 16)} if name == "zoo/transformer" else None
        baseline = _fixed_like_ort(path, work / "fixed.onnx")
        entry: dict[str, Any] = {}
        for target, ep in (("android", "nnapi"), ("ios", "coreml")):
            ours = irpass.optimize(path, target, input_shapes=shapes, verify="none")
            out = work / f"{target}.onnx"
            save_model(ours.model, out)
            before, after = check_partitions(baseline, ep), check_partitions(out, ep)  # type: ignore[arg-type]
            entry[target] = {
                "ort_tools": {"partitions": before.partitions, "coverage": before.coverage,
                              "unsupported": before.unsupported_ops},
                "irpass": {"partitions": after.partitions, "coverage": after.coverage,
                           "unsupported": after.unsupported_ops},
            }
        results[name] = entry
        print(name, {t: (e["ort_tools"]["partitions"], e["irpass"]["partitions"])
                     for t, e in entry.items()}, flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["cpu", "mobile", "all"], default="all")
    parser.add_argument("--repeats", type=int, default=1000)
    args = parser.parse_args()
    data: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="irpass-bench-targets-") as tmp:
        work = pathlib.Path(tmp)
        if args.part in ("cpu", "all"):
            data["cpu"] = cpu_part(args.repeats, work)
        if args.part in ("mobile", "all"):
            data["mobile"] = mobile_part(work)
    print(write_results("targets", data))


if __name__ == "__main__":
    main()
