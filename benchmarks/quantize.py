"""INT8 post-training quantization: irpass vs ONNX Runtime's quantize_static (vs NNCF / INC).

One run, the same models and the same calibration data for every tool:

- the trained models in models/trained/ (digits ResNet, MobileNetV2, MLP; the 1D-CNN on power
  traces; the transformer when it is there) with their calibration splits (taken from the
  training data) and test splits;
- magika's trained model on files of this machine (magika's own feature extraction; every
  fourth file calibrates, the others, at least 1,000, evaluate: label agreement with FP32);
- robustness cases where ORT is known to fail: an opset-9 model-zoo graph (SqueezeNet from the
  onnx wheel, seeded random weights) and the digits ResNet calibrated on inputs of varying size.

Tools:

- ``irpass``: ``canonicalize,fuse,quantize`` with its defaults (``rules=ort``: this machine's
  ONNX Runtime CPU form; bias correction; fallback to a 0.5-point budget on calibration data;
  never slower than float);
- ``ort``: ``quant_pre_process`` (symbolic shape inference skipped when it fails) then
  ``quantize_static`` in QDQ format, per-channel int8 weights, uint8 activations (what ORT's x86
  kernels run), each of MinMax, Entropy and Percentile; the one with the best task metric on the
  evaluation data is reported (the most generous baseline), the others' outcome is recorded;
- ``ort_dynamic``: ``quantize_dynamic`` (int8 weights per channel, activations quantized at
  run time, no calibration): the form irpass's never-slower check also times per MatMul/Gemm
  layer, measured here on whole models;
- ``nncf`` (when it installs): ``nncf.quantize`` on the ONNX model with the same data.

Measured per model and tool: task metric (accuracy, or label agreement with FP32 for magika)
and its drop from FP32; weight bytes and file size as ratios to FP32; ONNX Runtime CPU latency
(batch 1, one thread, ORT optimizations on, all variants of a model interleaved with an A/A
control, ``irpass.bench.measure_latency``); the peak resident memory of the process doing the
quantization (each tool runs in its own child process); whether the model passes the ONNX
checker and loads in ONNX Runtime. Goals of issue 12, written next to the numbers:

- ``accuracy``: where ORT loses accuracy, irpass loses at most a fifth of it;
- ``latency``: irpass within 5 % of ORT's latency or faster;
- ``validity``: a valid model wherever ORT fails.

Usage::

    pip install -e '.[bench]'
    python benchmarks/quantize.py [--models digits_resnet,magika] [--magika-files 1400]
                                  [--repeats 200]

Results: ``benchmarks/results/quantize.json`` (with machine, versions, date and command).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import pathlib
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import onnx

sys.path.insert(0, str(pathlib.Path(__file__).parent))

from _results import write_results

from irpass.bench import measure_latency
from irpass.ir import initializer_bytes, load_model
from irpass.metrics import cosine
from irpass.testing import randomize_weights
from irpass.verify import make_session
from models import MODELS_DIR

LOG = logging.getLogger("benchmarks.quantize")
TRAINED = {
    "digits_resnet": ("digits16", "input"),
    "digits_mobilenet": ("digits16", "input"),
    "digits_mlp": ("digits8", "input"),
    "power_cnn1d": ("power", "trace"),
    "digits_transformer": ("digits8", "input"),
}
ORT_METHODS = ("MinMax", "Entropy", "Percentile")
#: ``irpass_all``: every layer int8 as ORT does (no speed check), the size-first variant.
IRPASS_ALL = "never_slower=false"
BATCH = 32


# ------------------------------------------------------------------------------ the cases
def _trained_case(name: str, work: pathlib.Path) -> dict[str, Any] | None:
    path = MODELS_DIR / "trained" / f"{name}.onnx"
    split, _ = TRAINED[name]
    calib = MODELS_DIR / "trained" / f"{split}_calib.npz"
    test = MODELS_DIR / "trained" / f"{split}_test.npz"
    if not (path.exists() and calib.exists() and test.exists()):
        return None
    return {
        "name": name,
        "model": str(path),
        "calib": str(calib),
        "test": str(test),
        "metric": "accuracy",
        "batch": BATCH,
        "eval_batch": 256,
        "kind": "trained",
        # accuracy points INT8 may cost (issue 12): 0.5, the transformer 1
        "max_drop": 0.01 if name == "digits_transformer" else 0.005,
    }


def _magika_case(work: pathlib.Path, files: int) -> dict[str, Any] | None:
    from models.magika_files import magika_features, magika_model_path, split, system_files

    path = magika_model_path()
    if path is None:
        return None
    started = time.perf_counter()
    calibration, evaluation = split(system_files(files))
    calib_x, _ = magika_features(calibration)
    test_x, kept = magika_features(evaluation)
    np.savez(work / "magika_calib.npz", bytes=calib_x)
    np.savez(work / "magika_test.npz", bytes=test_x)
    LOG.info(
        "magika: %d calibration and %d evaluation files (%.0f s)",
        len(calib_x),
        len(kept),
        time.perf_counter() - started,
    )
    return {
        "name": "magika",
        "model": str(path),
        "calib": str(work / "magika_calib.npz"),
        "test": str(work / "magika_test.npz"),
        "metric": "agreement",
        "batch": BATCH,
        "eval_batch": 256,
        "kind": "magika",
        "files": {"calibration": int(len(calib_x)), "evaluation": int(len(kept))},
    }


def _opset9_case(work: pathlib.Path) -> dict[str, Any]:
    import onnx_ir as ir

    light = pathlib.Path(onnx.__file__).parent / "backend/test/data/light/light_squeezenet.onnx"
    # the wheel ships one constant (ConstantOfShape) for every weight: seeded random ones instead
    model = randomize_weights(ir.from_proto(onnx.load(str(light))), seed=0)
    rng = np.random.default_rng(0)
    path = work / "squeezenet_opset9.onnx"
    onnx.save(ir.to_proto(model), str(path))
    images = rng.standard_normal((96, 3, 224, 224)).astype(np.float32)
    np.savez(work / "squeezenet_calib.npz", data_0=images[:32])
    np.savez(work / "squeezenet_test.npz", data_0=images[32:])
    return {
        "name": "squeezenet_opset9",
        "model": str(path),
        "calib": str(work / "squeezenet_calib.npz"),
        "test": str(work / "squeezenet_test.npz"),
        "metric": "agreement",
        # the graph declares batch 1
        "batch": 1,
        "eval_batch": 1,
        "note": "light model zoo, opset 9, seeded random weights and inputs",
    }


def _varying_case(work: pathlib.Path) -> dict[str, Any]:
    from irpass.data import resize_bilinear

    calib = np.load(MODELS_DIR / "trained" / "digits16_calib.npz")["input"]
    folder = work / "digits_varying"
    folder.mkdir(exist_ok=True)
    sizes = (16, 20, 24, 28)
    for index in range(0, len(calib), BATCH):
        size = sizes[(index // BATCH) % len(sizes)]
        batch = calib[index : index + BATCH]
        # resize_bilinear works on HxWxC: one channel in, (1, size, size) out
        resized = np.stack(
            [resize_bilinear(img[0][:, :, None], (size, size))[:, :, 0][None] for img in batch]
        )
        np.save(folder / f"{index:05d}.npy", resized.astype(np.float32))
    # the ResNet is fully convolutional (global pooling): its height and width made symbolic,
    # as an export with dynamic axes has them
    model = onnx.load(str(MODELS_DIR / "trained" / "digits_resnet.onnx"))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_param, dims[3].dim_param = "height", "width"
    del model.graph.value_info[:]  # shapes inferred for 16 x 16 no longer hold
    path = work / "digits_resnet_dynamic_hw.onnx"
    onnx.save(model, str(path))
    return {
        "name": "digits_resnet_varying_calibration",
        "model": str(path),
        "calib": str(folder),
        "test": str(MODELS_DIR / "trained" / "digits16_test.npz"),
        "metric": "accuracy",
        "batch": BATCH,
        "eval_batch": 256,
        "note": "symbolic height and width; calibration batches of 16, 20, 24 and 28 pixels",
    }


def _feeds(spec: str, inputs: list[str], batch: int = BATCH) -> Iterator[dict[str, np.ndarray]]:
    """Calibration batches from an .npz (arrays named after inputs) or a folder of .npy."""
    path = pathlib.Path(spec)
    if path.is_dir():
        for file in sorted(path.glob("*.npy")):
            yield {inputs[0]: np.load(file)}
        return
    data = np.load(path)
    size = len(data[inputs[0]])
    for start in range(0, size, batch):
        yield {name: data[name][start : start + batch] for name in inputs}


# --------------------------------------------------------------------- quantize (children)
def _model_inputs(path: str) -> list[str]:
    model = onnx.load(path, load_external_data=False)
    initializers = {i.name for i in model.graph.initializer}
    return [i.name for i in model.graph.input if i.name not in initializers]


def _quantize_irpass(case: dict[str, Any], out: str, options: str) -> dict[str, Any]:
    from irpass.context import PassContext
    from irpass.ir import save_model
    from irpass.manager import PipelineRunner, RunOptions

    inputs = _model_inputs(case["model"])
    model = load_model(case["model"])
    context = PassContext(calibration_data=lambda: _feeds(case["calib"], inputs, case["batch"]))
    pipeline = f"canonicalize,fuse,quantize({options})" if options else "canonicalize,fuse,quantize"
    result = PipelineRunner(pipeline, context, RunOptions(verify="none")).run(model)
    save_model(result.model, out)
    record = next(r for r in result.report.passes if r.name == "quantize")
    if record.error:  # rolled back: the output would be the float model
        raise RuntimeError(f"quantize failed and was rolled back: {record.error}")
    return {
        "stats": record.stats,
        "details": {
            k: v
            for k, v in record.details.items()
            if k
            in (
                "plan",
                "fidelity",
                "model_latency_ratio",
                "layer_latency_ratio",
                "layer_form_latency_ratio",
                "depthwise_per_tensor",
            )
        },
    }


def _quantize_ort(case: dict[str, Any], out: str, method: str) -> dict[str, Any]:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    inputs = _model_inputs(case["model"])

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = _feeds(case["calib"], inputs, case["batch"])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.batches, None)

    pre = out + ".pre.onnx"
    notes = {}
    try:
        quant_pre_process(case["model"], pre)
    except Exception as exc:
        notes["pre_process"] = f"failed ({type(exc).__name__}), retried with skip_symbolic_shape"
        quant_pre_process(case["model"], pre, skip_symbolic_shape=True)
    quantize_static(
        pre,
        out,
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=getattr(CalibrationMethod, method),
    )
    return notes


def _quantize_ort_dynamic(case: dict[str, Any], out: str, _method: str) -> dict[str, Any]:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(case["model"], out, per_channel=True, weight_type=QuantType.QInt8)
    return {}


def _quantize_nncf(case: dict[str, Any], out: str, _method: str) -> dict[str, Any]:
    import nncf

    inputs = _model_inputs(case["model"])
    model = onnx.load(case["model"])
    dataset = nncf.Dataset(list(_feeds(case["calib"], inputs, case["batch"])))
    quantized = nncf.quantize(model, dataset, subset_size=10**6)
    onnx.save(quantized, out)
    return {}


QUANTIZERS = {
    "irpass": _quantize_irpass,
    "irpass_all": lambda case, out, _method: _quantize_irpass(case, out, IRPASS_ALL),
    "ort": _quantize_ort,
    "ort_dynamic": _quantize_ort_dynamic,
    "nncf": _quantize_nncf,
}
#: What each tool imports before its peak memory is measured (libraries are not calibration).
IMPORTS = {
    "irpass": ("irpass.manager", "irpass.passes.quantization.int8", "onnxruntime"),
    "irpass_all": ("irpass.manager", "irpass.passes.quantization.int8", "onnxruntime"),
    "ort": ("onnxruntime.quantization", "onnxruntime.quantization.shape_inference"),
    "ort_dynamic": ("onnxruntime.quantization",),
    "nncf": ("nncf",),
}


def _status_mb(field: str) -> float:
    """A memory figure of this process from /proc/self/status (VmRSS, VmHWM), in MB."""
    for line in pathlib.Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _reset_peak() -> None:
    """Restart the peak-RSS counter (VmHWM) at the current RSS (Linux >= 4.0)."""
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")


def _child(args: argparse.Namespace) -> None:
    """Quantize one case with one tool in this (fresh) process; print a JSON line.

    Memory is the process's peak resident set while the tool quantizes (VmHWM, restarted after
    the tool's imports), and its increase over the resident set before the call: what
    calibration and rewriting cost on top of the loaded libraries.
    """
    case = json.loads(pathlib.Path(args.case).read_text())
    tool = args.child
    for module in IMPORTS[tool]:
        __import__(module)
    _reset_peak()
    before = _status_mb("VmRSS")
    started = time.perf_counter()
    record: dict[str, Any] = {}
    try:
        record.update(QUANTIZERS[tool](case, args.out, args.method))
        record["ok"] = True
    except Exception as exc:
        message = str(exc).strip().splitlines()
        record.update(
            ok=False, error=f"{type(exc).__name__}: {message[0] if message else ''}"[:300]
        )
    record["seconds"] = time.perf_counter() - started
    record["peak_rss_mb"] = _status_mb("VmHWM")
    record["peak_increase_mb"] = record["peak_rss_mb"] - before
    print("RESULT " + json.dumps(record, default=str))


def _run_child(tool: str, case_file: pathlib.Path, out: pathlib.Path, method: str = "") -> dict:
    command = [
        sys.executable,
        str(pathlib.Path(__file__).resolve()),
        "--child",
        tool,
        "--case",
        str(case_file),
        "--out",
        str(out),
        "--method",
        method,
    ]
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
        cwd=case_file.parent,  # quant_pre_process leaves temporary files in the working dir
    )
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
    return {"ok": False, "error": f"child exited {done.returncode}: {tail[0][:300]}"}


# -------------------------------------------------------------------------------- measure
def _valid(path: pathlib.Path) -> tuple[bool, str]:
    try:
        onnx.checker.check_model(str(path))
        make_session(str(path), optimize=True)
    except Exception as exc:
        message = str(exc).strip().splitlines()
        return False, (message[0] if message else type(exc).__name__)[:300]
    return True, ""


def _outputs(path: str, test: str, inputs: list[str], batch: int) -> np.ndarray:
    session = make_session(path, optimize=True)
    data = np.load(test)
    size = len(data[inputs[0]])
    chunks = []
    for start in range(0, size, batch):
        feed = {name: data[name][start : start + batch] for name in inputs}
        chunks.append(np.asarray(session.run(None, feed)[0]))
    return np.concatenate(chunks)


def _task(case: dict[str, Any], path: str, reference: np.ndarray) -> tuple[float, float]:
    """The task metric of the model at ``path`` and the cosine of its outputs to FP32's."""
    inputs = _model_inputs(case["model"])
    outputs = _outputs(path, case["test"], inputs, case["eval_batch"])
    similarity = cosine(reference, outputs)
    if case["metric"] == "accuracy":
        labels = np.load(case["test"])["labels"]
        return float(np.mean(outputs.argmax(-1) == labels)), similarity
    return float(np.mean(outputs.argmax(-1) == reference.argmax(-1))), similarity


def _measure_case(
    case: dict[str, Any], work: pathlib.Path, tools: list[str], repeats: int
) -> dict[str, Any]:
    name = case["name"]
    case_file = work / f"{name}.json"
    case_file.write_text(json.dumps(case))
    inputs = _model_inputs(case["model"])
    reference = _outputs(case["model"], case["test"], inputs, case["eval_batch"])
    fp32_task, _ = _task(case, case["model"], reference)
    fp32 = load_model(case["model"])
    result: dict[str, Any] = {
        "metric": case["metric"],
        "fp32": {
            "task": fp32_task,
            "weight_bytes": initializer_bytes(fp32),
            "file_bytes": os.path.getsize(case["model"]),
        },
        "tools": {},
        **{k: v for k, v in case.items() if k in ("note", "files", "kind", "max_drop")},
    }
    candidates: dict[str, pathlib.Path] = {}
    for tool in tools:
        methods = ORT_METHODS if tool == "ort" else ("",)
        runs = {}
        for method in methods:
            out = work / f"{name}.{tool}{'.' + method if method else ''}.onnx"
            LOG.info("%s: %s %s", name, tool, method)
            record = _run_child(tool, case_file, out, method)
            if record.get("ok"):
                record["valid"], record["invalid_reason"] = _valid(out)
                if record["valid"]:
                    record["task"], record["cosine"] = _task(case, str(out), reference)
                    quantized = load_model(out)
                    record["weight_ratio"] = initializer_bytes(quantized) / initializer_bytes(fp32)
                    record["file_ratio"] = os.path.getsize(out) / os.path.getsize(case["model"])
            runs[method or tool] = record
        valid = {k: r for k, r in runs.items() if r.get("valid")}
        best = max(valid, key=lambda k: valid[k]["task"]) if valid else None
        # a tool with no valid model: its first run says why
        entry = dict(valid[best]) if best else {**next(iter(runs.values())), "valid": False}
        entry["chosen"] = best
        if tool == "ort":
            entry["calibrators"] = {
                k: {
                    f: r.get(f)
                    for f in (
                        "ok",
                        "valid",
                        "task",
                        "error",
                        "invalid_reason",
                        "peak_rss_mb",
                        "peak_increase_mb",
                    )
                }
                for k, r in runs.items()
            }
        if best:
            candidates[tool] = work / f"{name}.{tool}{'.' + best if tool == 'ort' else ''}.onnx"
        result["tools"][tool] = entry
    feed = {k: v[:1] for k, v in next(_feeds(case["test"], inputs, 1)).items()}
    if candidates:
        latency = measure_latency(
            {"fp32": case["model"], **{k: str(v) for k, v in candidates.items()}},
            feed,
            threads=1,
            repeats=repeats,
        )
        result["latency"] = latency.to_dict()
        for tool in candidates:
            result["tools"][tool]["latency_ratio_fp32"] = latency.ratio("fp32", tool)
            result["tools"][tool]["slower_than_fp32"] = latency.ratio(
                "fp32", tool
            ) > 1.0 and latency.is_real("fp32", tool)
        if "irpass" in candidates and "ort" in candidates:
            result["irpass_vs_ort_latency"] = latency.ratio("ort", "irpass")
    result["goals"] = _goals(result)
    return result


def _goals(result: dict[str, Any]) -> dict[str, Any]:
    """Issue 12's goals for one case, from the numbers measured above."""
    tools = result["tools"]
    ours, theirs = tools.get("irpass", {}), tools.get("ort", {})
    fp32 = result["fp32"]["task"]
    goals: dict[str, Any] = {
        # a valid model wherever ORT fails (and everywhere else too)
        "validity": {
            "ort_valid": bool(theirs.get("valid")),
            "irpass_valid": bool(ours.get("valid")),
            "met": bool(ours.get("valid")),
        },
    }
    if ours.get("valid") and theirs.get("valid"):
        ort_drop = fp32 - theirs["task"]
        our_drop = fp32 - ours["task"]
        goals["accuracy"] = {
            "ort_drop": ort_drop,
            "irpass_drop": our_drop,
            # only defined where ORT loses accuracy
            "applicable": ort_drop > 0,
            "met": our_drop <= ort_drop / 5 if ort_drop > 0 else None,
        }
    if "irpass_vs_ort_latency" in result:
        goals["latency"] = {
            "irpass_over_ort": result["irpass_vs_ort_latency"],
            "met": result["irpass_vs_ort_latency"] <= 1.05,
        }
    targets = _targets(result)
    if targets:
        goals["targets"] = targets
    return goals


def _targets(result: dict[str, Any]) -> dict[str, Any]:
    """The issue's per-model targets for each irpass variant (trained models and magika)."""
    fp32 = result["fp32"]["task"]
    out: dict[str, Any] = {}
    for tool in ("irpass", "irpass_all"):
        entry = result["tools"].get(tool, {})
        if not entry.get("valid"):
            continue
        if result.get("kind") == "trained":
            drop = fp32 - entry["task"]
            checks = {
                "drop_ok": drop <= result["max_drop"] + 1e-9,
                "weights_ok": entry["weight_ratio"] <= 0.30,
                "not_slower": not entry.get("slower_than_fp32", False),
            }
            out[tool] = {**checks, "met": all(checks.values())}
        elif result.get("kind") == "magika":
            out[tool] = {"agreement": entry["task"], "met": entry["task"] >= 0.99}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="")
    parser.add_argument("--magika-files", type=int, default=1400)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--tools", default="irpass,irpass_all,ort,ort_dynamic,nncf")
    parser.add_argument("--child", default="")
    parser.add_argument("--case", default="")
    parser.add_argument("--out", default="")
    parser.add_argument("--method", default="")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.child:
        _child(args)
        return
    tools = [t for t in args.tools.split(",") if t]
    if "nncf" in tools:
        try:
            import nncf  # noqa: F401
        except ImportError:
            LOG.info("nncf is not installed: left out (pip install -e '.[bench]')")
            tools.remove("nncf")
    wanted = set(filter(None, args.models.split(",")))
    results: dict[str, Any] = {"tools": tools}
    with tempfile.TemporaryDirectory() as tmp:
        work = pathlib.Path(tmp)
        cases = [c for c in (_trained_case(n, work) for n in TRAINED) if c]
        cases.append(_varying_case(work))
        cases.append(_opset9_case(work))
        if not wanted or "magika" in wanted:
            magika = _magika_case(work, args.magika_files)
            if magika:
                cases.append(magika)
        cases = [c for c in cases if not wanted or c["name"] in wanted]
        results["cases"] = {}
        for case in cases:
            try:
                measured = _measure_case(case, work, tools, args.repeats)
            except Exception as exc:  # one broken case must not lose the others' numbers
                LOG.exception("%s failed", case["name"])
                measured = {"error": f"{type(exc).__name__}: {exc}"[:300]}
            results["cases"][case["name"]] = measured
            LOG.info("%s: %s", case["name"], json.dumps(measured.get("goals", measured)))
    path = write_results("quantize", results, sys.argv)
    LOG.info("wrote %s", path)


if __name__ == "__main__":
    main()
