from __future__ import annotations

import importlib.util
import json
import pathlib

import numpy as np
import onnx
import onnx.numpy_helper
import pytest

from irpass.bench import AA_CONTROL, LatencyReport, LatencyStats, machine_info, measure_latency
from irpass.testing import model_from_text

MODEL = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[N, 4] x) => (float[N, 4] y) {
    y = Relu(x)
}
"""
REPO = pathlib.Path(__file__).resolve().parents[1]


def test_measure_latency_times_every_model_and_the_control() -> None:
    a, b = model_from_text(MODEL), model_from_text(MODEL.replace("Relu", "Neg"))
    report = measure_latency({"relu": a, "neg": b}, repeats=7, warmup=1,
                             dim_values={"N": 3})
    assert list(report.stats) == ["relu", "neg", AA_CONTROL]
    assert all(s.runs == 7 and 0 < s.min_ms <= s.median_ms for s in report.stats.values())
    assert report.input_shapes == {"x": [3, 4]}
    assert report.noise is not None and report.noise >= 0
    assert json.loads(json.dumps(report.to_dict()))["stats"]["neg"]["runs"] == 7


def test_explicit_feeds_must_cover_every_input() -> None:
    with pytest.raises(ValueError, match="no input 'x'"):
        measure_latency({"m": model_from_text(MODEL)}, feeds={"z": np.ones((1, 4), np.float32)})


def _stats(median: float, spread: float) -> LatencyStats:
    return LatencyStats(median, median * (1 - spread / 2), median * (1 + spread / 2), median, 20)


def test_a_difference_is_real_only_beyond_noise_and_spread() -> None:
    report = LatencyReport(
        stats={"a": _stats(10.0, 0.02), "b": _stats(8.0, 0.02), "c": _stats(9.7, 0.02),
               "d": _stats(8.0, 0.6), AA_CONTROL: _stats(10.5, 0.02)},
        threads=1, optimize=True, input_shapes={},
    )
    assert report.noise == pytest.approx(0.05)
    assert report.ratio("a", "b") == pytest.approx(0.8)
    assert report.is_real("a", "b")        # 20 % beyond a 5 % A/A gap
    assert not report.is_real("a", "c")    # 3 % is inside the A/A gap
    assert not report.is_real("a", "d")    # d's own spread (60 %) swallows the gap


def test_machine_info_names_cpu_and_versions() -> None:
    info = machine_info()
    assert info["cores"] and info["python"]
    assert "onnxruntime" in info["packages"] and "onnx" in info["packages"]


def test_write_results_records_where_and_how(tmp_path: pathlib.Path) -> None:
    spec = importlib.util.spec_from_file_location("_results", REPO / "benchmarks" / "_results.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    path = module.write_results("demo", {"ratio": np.float64(0.5)}, ["bench.py", "--x"],
                                directory=tmp_path)
    payload = json.loads(path.read_text())
    assert payload["results"] == {"ratio": 0.5}
    assert payload["command"] == "python bench.py --x"
    assert payload["machine"]["cores"] and payload["date"].endswith("+00:00")


def test_in_memory_models_are_timed_as_loaded_from_their_file(monkeypatch) -> None:
    # verification sessions of an ir.Model share its weights with prepacking off, which slows
    # integer kernels; timing must see what a session opened from the file sees
    import onnx_ir as ir

    from irpass import bench

    seen: list[object] = []
    real = bench.make_session

    def spy(model, **kwargs):
        seen.append(model)
        return real(model, **kwargs)

    monkeypatch.setattr(bench, "make_session", spy)
    model = model_from_text(MODEL)
    measure_latency({"m": model}, repeats=2, warmup=0, dim_values={"N": 1})
    assert seen and all(isinstance(m, bytes) for m in seen)
    assert seen[0] == ir.to_proto(model).SerializeToString()


def test_peak_memory_grows_with_the_weights_a_session_holds(tmp_path: pathlib.Path) -> None:
    from irpass.bench import measure_peak_memory

    def model(size: int) -> onnx.ModelProto:
        weight = onnx.numpy_helper.from_array(np.ones((size, size), np.float32), "w")
        graph = onnx.helper.make_graph(
            [onnx.helper.make_node("MatMul", ["x", "w"], ["y"])],
            "g",
            [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, size])],
            [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, size])],
            [weight],
        )
        return onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])

    small = measure_peak_memory(model(64), optimize=False)
    large = measure_peak_memory(model(2048), optimize=False)  # 16 MiB of weights
    assert large.session_bytes - small.session_bytes >= 12 * 2**20
    assert large.peak_bytes >= large.baseline_bytes
    assert set(large.to_dict()) == {"baseline_bytes", "peak_bytes", "session_bytes"}
