"""Peak memory of ``irpass optimize`` on a synthetic transformer whose weights exceed 2 GB.

Generates an MLP-block transformer (per layer: MatMul+Add, Relu, MatMul+Add, residual Add) with
its weights written straight to an external data file (never held in memory, never in the
repo: under ``--workdir``, default the system temp folder), runs ``irpass optimize`` on it as a
child process from a *different* working folder, and records the child's peak RSS against the
weight size (goal: <= 1.5x), the run time, and whether ONNX Runtime loads and runs the output
with the same results as the input. The same command on a tiny model of the same shape family
gives the fixed cost (interpreter, numpy, onnx, ONNX Runtime: about 0.1-0.2 GB), recorded as
``baseline_peak_rss_bytes``; ``rss_over_weights_above_baseline`` is what grows with the weights.
Weights read from the external file are memory-mapped, so their pages count in the RSS once
touched (file-backed, shared with the page cache): about 1x the weights is the floor.

    python benchmarks/large_model.py                 # ~3.2 GB of weights (d_model 2048, 24 layers)
    python benchmarks/large_model.py --d-model 1024 --layers 8 --keep   # ~270 MB

With ``--quantize`` the same model also goes through ``canonicalize,fuse`` followed by
weight-only INT8 quantization (``quantize(mode=int8w)``: MatMulNBits, no calibration data),
measured the same way; the output's deviation from the input is recorded (lossy).
"""

from __future__ import annotations

import argparse
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnx
import onnx.helper as oh
from onnx import TensorProto

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from _results import write_results


def build(folder: pathlib.Path, d_model: int, layers: int, seq: int = 8, seed: int = 0) -> int:
    """Write model.onnx + model.data into ``folder``; returns the weight bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    data_path = folder / "model.data"
    nodes, initializers = [], []
    offset = 0
    with open(data_path, "wb") as data:

        def weight(name: str, shape: tuple[int, ...]) -> str:
            nonlocal offset
            scale = 1.0 / np.sqrt(shape[0])
            for _row in range(shape[0]):  # one row at a time: bounded memory
                chunk = (rng.standard_normal(shape[1:]) * scale).astype(np.float32)
                data.write(chunk.tobytes())
            length = int(np.prod(shape)) * 4
            tensor = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=list(shape))
            tensor.data_location = TensorProto.EXTERNAL
            for key, value in (("location", "model.data"), ("offset", str(offset)),
                               ("length", str(length))):
                tensor.external_data.add(key=key, value=value)
            offset += length
            initializers.append(tensor)
            return name

        x = "x"
        for i in range(layers):
            w1 = weight(f"l{i}.w1", (d_model, 4 * d_model))
            b1 = weight(f"l{i}.b1", (1, 4 * d_model))
            w2 = weight(f"l{i}.w2", (4 * d_model, d_model))
            b2 = weight(f"l{i}.b2", (1, d_model))
            nodes += [
                oh.make_node("MatMul", [x, w1], [f"l{i}.a"]),
                oh.make_node("Add", [f"l{i}.a", b1], [f"l{i}.b"]),
                oh.make_node("Relu", [f"l{i}.b"], [f"l{i}.r"]),
                oh.make_node("MatMul", [f"l{i}.r", w2], [f"l{i}.c"]),
                oh.make_node("Add", [f"l{i}.c", b2], [f"l{i}.d"]),
                oh.make_node("Add", [x, f"l{i}.d"], [f"l{i}.out"]),
            ]
            x = f"l{i}.out"
        nodes.append(oh.make_node("Identity", [x], ["y"]))
    graph = oh.make_graph(
        nodes, "synthetic_transformer",
        [oh.make_tensor_value_info("x", TensorProto.FLOAT, [seq, d_model])],
        [oh.make_tensor_value_info("y", TensorProto.FLOAT, [seq, d_model])],
        initializers,
    )
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", 17)])
    onnx.save(model, folder / "model.onnx")  # the tensors already point at model.data
    return offset


#: Runs ``irpass`` and writes the process's own peak RSS (VmHWM: since exec, so not the
#: parent's memory a forked child starts with, which ``ru_maxrss`` of a child includes).
_CHILD = """
import pathlib, sys
from irpass.cli import main
code = main(sys.argv[2:])
status = pathlib.Path("/proc/self/status").read_text()
kib = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:"))
pathlib.Path(sys.argv[1]).write_text(str(kib * 1024))
sys.exit(code)
"""


def run_optimize(model: pathlib.Path, out: pathlib.Path, workdir: pathlib.Path,
                 passes: str) -> dict:
    """Run irpass as a child from ``workdir``; returns peak RSS (bytes), seconds, exit code."""
    args = ["optimize", str(model), "-o", str(out), "--passes", passes]
    with tempfile.TemporaryDirectory() as tmp:
        peak_file = pathlib.Path(tmp) / "peak"
        started = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", _CHILD, str(peak_file), *args], cwd=workdir,
                              capture_output=True, text=True)
        seconds = time.perf_counter() - started
        peak = int(peak_file.read_text()) if peak_file.exists() else None
    return {
        "command": "python -m irpass " + " ".join(args),
        "exit_code": proc.returncode,
        "peak_rss_bytes": peak,
        "seconds": seconds,
        "stderr_tail": proc.stderr[-2000:],
    }


def check_output(source: pathlib.Path, output: pathlib.Path) -> dict:
    """ONNX Runtime loads the output and reproduces the input's outputs."""
    import onnxruntime as ort

    results = {}
    for name, path in (("input", source), ("output", output)):
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        shape = session.get_inputs()[0].shape
        feeds = {"x": np.random.default_rng(1).standard_normal(shape).astype(np.float32)}
        results[name] = session.run(None, feeds)[0]
        del session
    diff = float(np.max(np.abs(results["input"] - results["output"])))
    return {"ort_loads_output": True, "max_abs_diff_vs_input": diff}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--d-model", type=int, default=2048)
    parser.add_argument("--layers", type=int, default=24)
    parser.add_argument("--workdir", type=pathlib.Path, default=None)
    parser.add_argument("--passes", default="canonicalize,fuse")
    parser.add_argument("--quantize", action="store_true",
                        help="also run weight-only quantization when that pass exists")
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    parser.add_argument("--no-results", action="store_true", help="do not write results JSON")
    args = parser.parse_args(argv)
    root = pathlib.Path(tempfile.mkdtemp(prefix="irpass-large-", dir=args.workdir))
    try:
        weight_bytes = build(root / "model", args.d_model, args.layers)
        (root / "elsewhere").mkdir()
        build(root / "tiny", 64, 1)
        baseline = run_optimize(root / "tiny" / "model.onnx", root / "out_tiny", root / "elsewhere",
                                args.passes)["peak_rss_bytes"]
        runs = {}
        pipelines = {"canonicalize_fuse": args.passes}
        from irpass import registry

        registry.load_builtin_passes()
        names = {p.name for p in registry.list_passes()}
        quant_note = None
        if args.quantize:
            if "quantize" in names:
                pipelines["int8_weight_only"] = f"{args.passes},quantize(mode=int8w)"
            else:
                quant_note = "no quantize pass registered on this checkout; not measured"
        for label, pipeline in pipelines.items():
            out = root / f"out_{label}"
            run = run_optimize(root / "model" / "model.onnx", out, root / "elsewhere", pipeline)
            peak = run["peak_rss_bytes"] or 0  # None: the child died before reporting it
            run["rss_over_weights"] = peak / weight_bytes
            run["rss_over_weights_above_baseline"] = (peak - (baseline or 0)) / weight_bytes
            if run["exit_code"] == 0:
                run.update(check_output(root / "model" / "model.onnx", out / "model.onnx"))
            runs[label] = run
            print(f"{label}: exit {run['exit_code']}, {run['seconds']:.1f} s, peak RSS "
                  f"{run['rss_over_weights']:.2f}x the weights", flush=True)
        data = {
            "weight_bytes": weight_bytes,
            "d_model": args.d_model,
            "layers": args.layers,
            "goal_rss_over_weights": 1.5,
            "baseline_peak_rss_bytes": baseline,
            "runs": runs,
            "weight_only_quantization": quant_note or ("measured" if args.quantize else
                                                       "not requested"),
            "rss_over_weights": {k: round(v["rss_over_weights"], 3) for k, v in runs.items()},
            "rss_over_weights_above_baseline": {
                k: round(v["rss_over_weights_above_baseline"], 3) for k, v in runs.items()},
        }
        if not args.no_results:
            print(write_results("large_model", data, sys.argv))
    finally:
        if not args.keep:
            import shutil

            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"kept {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
