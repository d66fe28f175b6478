"""Latency measurement through ONNX Runtime, with the noise of the run measured alongside.

Shared machines are noisy: a 10 % difference between two models means nothing if two
sessions of the *same* model differ by 12 %. :func:`measure_latency` therefore

- runs the models round-robin (A, B, C, A, B, C, ...) so that drift of the machine hits all of
  them alike;
- times, next to the first model, a second independent session of that same model (the A/A
  control); the relative gap between the two is the run's noise;
- reports per model the median, the 10th/90th percentiles and the minimum;
- calls a difference between two models real only when it exceeds both the A/A gap and the
  spread of the two measurements (:meth:`LatencyReport.is_real`).

Every benchmark in ``benchmarks/`` and ``irpass bench`` use it; :func:`machine_info` records
where the numbers were taken.
"""

from __future__ import annotations

import dataclasses
import gc
import importlib.metadata
import math
import os
import pathlib
import platform
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import onnx
import onnx_ir as ir

from irpass.verify import make_session, random_feeds

__all__ = [
    "AA_CONTROL",
    "LatencyReport",
    "LatencyStats",
    "MemoryStats",
    "machine_info",
    "measure_latency",
    "measure_peak_memory",
]

#: Name under which the A/A control (a second session of the first model) is reported.
AA_CONTROL = "A/A control"

ModelLike = ir.Model | onnx.ModelProto | bytes | str | pathlib.Path


@dataclasses.dataclass(frozen=True)
class LatencyStats:
    """Latency of one model over the timed runs, in milliseconds."""

    median_ms: float
    p10_ms: float
    p90_ms: float
    min_ms: float
    runs: int

    @property
    def spread(self) -> float:
        """``(p90 - p10) / median``: the relative width of the middle 80 % of runs."""
        return (self.p90_ms - self.p10_ms) / self.median_ms if self.median_ms > 0 else 0.0

    @classmethod
    def from_seconds(cls, seconds: list[float]) -> LatencyStats:
        """Statistics of a list of run times in seconds."""
        ms = np.asarray(seconds, dtype=np.float64) * 1e3
        return cls(
            median_ms=float(np.median(ms)),
            p10_ms=float(np.percentile(ms, 10)),
            p90_ms=float(np.percentile(ms, 90)),
            min_ms=float(ms.min()),
            runs=int(ms.size),
        )

    def to_dict(self) -> dict[str, float]:
        """JSON-ready fields, spread included."""
        return {**dataclasses.asdict(self), "spread": self.spread}


@dataclasses.dataclass
class LatencyReport:
    """Per-model latency of one interleaved run, and the noise measured by its A/A control."""

    stats: dict[str, LatencyStats]
    threads: int
    optimize: bool
    input_shapes: dict[str, list[int]]

    @property
    def noise(self) -> float | None:
        """Relative gap between the two sessions of the first model (None without a control)."""
        control = self.stats.get(AA_CONTROL)
        if control is None:
            return None
        first = next(iter(self.stats.values()))
        return abs(control.median_ms / first.median_ms - 1.0) if first.median_ms else 0.0

    def ratio(self, baseline: str, candidate: str) -> float:
        """``median(candidate) / median(baseline)``: below 1 means the candidate is faster."""
        return self.stats[candidate].median_ms / self.stats[baseline].median_ms

    def is_real(self, baseline: str, candidate: str) -> bool:
        """Whether the two medians differ by more than the run's noise and their spreads.

        The threshold is the largest of the A/A gap, half the spread of either measurement,
        and 1 %.
        """
        gap = abs(math.log(self.ratio(baseline, candidate)))
        threshold = max(
            self.noise or 0.0,
            self.stats[baseline].spread / 2,
            self.stats[candidate].spread / 2,
            0.01,
        )
        return gap > math.log1p(threshold)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready report."""
        return {
            "threads": self.threads,
            "ort_optimizations": self.optimize,
            "input_shapes": self.input_shapes,
            "noise": self.noise,
            "stats": {name: s.to_dict() for name, s in self.stats.items()},
        }


#: Above this a serialized model would break the protobuf limit: time it in memory.
_SERIALIZE_LIMIT = 2**31 - 2**24


def _as_loaded(model: ModelLike) -> ModelLike:
    """``model`` as a session opened from its file sees it.

    An ``ir.Model`` reaches ONNX Runtime as shared weight buffers with weight prepacking off
    (cheap for a verification session), which slows integer kernels (QLinearConv, QGemm) far
    more than float ones: an INT8 model timed that way looked 1.6x slower than float when from
    its file it was as fast. Timing therefore serializes it, below the protobuf limit.
    """
    if not isinstance(model, ir.Model):
        return model
    proto = ir.to_proto(model)
    return proto.SerializeToString() if proto.ByteSize() < _SERIALIZE_LIMIT else model


def measure_latency(
    models: Mapping[str, ModelLike],
    feeds: Mapping[str, np.ndarray] | None = None,
    *,
    threads: int = 1,
    warmup: int = 3,
    repeats: int = 20,
    optimize: bool = True,
    aa_control: bool = True,
    budget_seconds: float | None = None,
    seed: int = 0,
    dim_values: Mapping[str, int] | None = None,
) -> LatencyReport:
    """Time every model on the same feeds, interleaved, on the CPU execution provider.

    ``feeds`` default to seeded random inputs of the first model (symbolic dims from
    ``dim_values``, else 1); each model receives the feeds named after its own inputs.
    ``optimize`` enables ONNX Runtime's graph optimizations (what a user gets).
    ``budget_seconds`` stops the timed rounds early once exceeded (after at least 5 rounds).
    """
    if not models:
        raise ValueError("no models to measure")
    if AA_CONTROL in models:
        raise ValueError(f"{AA_CONTROL!r} is reserved for the control session")
    sessions = {name: make_session(_as_loaded(m), optimize=optimize, threads=threads)
                for name, m in models.items()}
    if aa_control:
        first = next(iter(models.values()))
        sessions[AA_CONTROL] = make_session(_as_loaded(first), optimize=optimize,
                                            threads=threads)
    if feeds is None:
        feeds = random_feeds(next(iter(sessions.values())), seed=seed, dim_values=dim_values)
    per_session = {}
    for name, session in sessions.items():
        wanted = [i.name for i in session.get_inputs()]
        missing = [n for n in wanted if n not in feeds]
        if missing:
            raise ValueError(f"no input {missing[0]!r} for model {name!r} in the feeds")
        per_session[name] = {n: feeds[n] for n in wanted}
    for _ in range(max(0, warmup)):
        for name, session in sessions.items():
            session.run(None, per_session[name])
    times: dict[str, list[float]] = {name: [] for name in sessions}
    started = time.perf_counter()
    for round_index in range(max(1, repeats)):
        for name, session in sessions.items():
            t0 = time.perf_counter()
            session.run(None, per_session[name])
            times[name].append(time.perf_counter() - t0)
        if (
            budget_seconds is not None
            and round_index >= 4
            and time.perf_counter() - started > budget_seconds
        ):
            break
    del sessions
    gc.collect()
    return LatencyReport(
        stats={name: LatencyStats.from_seconds(t) for name, t in times.items()},
        threads=threads,
        optimize=optimize,
        input_shapes={k: list(np.asarray(v).shape) for k, v in feeds.items()},
    )


@dataclasses.dataclass(frozen=True)
class MemoryStats:
    """Resident memory of a fresh process that loads a model into ONNX Runtime and runs it.

    ``baseline_bytes`` is the resident memory after importing ONNX Runtime and receiving the
    inputs; ``peak_bytes`` the high-water mark while creating the session and running it (on
    Linux the mark is reset first, so import-time peaks do not count); ``session_bytes`` the
    difference: what the model costs (weights, the arena, kernel scratch).
    """

    baseline_bytes: int
    peak_bytes: int

    @property
    def session_bytes(self) -> int:
        """Peak resident memory the model added."""
        return max(0, self.peak_bytes - self.baseline_bytes)

    def to_dict(self) -> dict[str, int]:
        """JSON-ready fields."""
        return {**dataclasses.asdict(self), "session_bytes": self.session_bytes}


def _status_kib(field: str) -> int | None:
    try:
        for line in pathlib.Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def _reset_peak() -> int:
    """Reset the high-water mark where the OS allows it; return the resident bytes now."""
    try:  # Linux >= 4.0: "5" resets VmHWM to the current VmRSS
        pathlib.Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass
    rss = _status_kib("VmRSS")
    return rss * 1024 if rss is not None else _max_rss_bytes()


def _max_rss_bytes() -> int:
    hwm = _status_kib("VmHWM")
    if hwm is not None:
        return hwm * 1024
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # Linux reports KiB


def _memory_child(
    path: str, feeds: dict[str, np.ndarray], threads: int, optimize: bool, runs: int
) -> tuple[int, int]:
    # runs in a fresh process: the high-water mark before and after the session
    import onnxruntime as ort

    baseline = _reset_peak()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    options.graph_optimization_level = (
        ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if optimize
        else ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    )
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    wanted = {i.name for i in session.get_inputs()}
    for _ in range(max(1, runs)):
        session.run(None, {k: v for k, v in feeds.items() if k in wanted})
    return baseline, _max_rss_bytes()


def measure_peak_memory(
    model: ModelLike,
    feeds: Mapping[str, np.ndarray] | None = None,
    *,
    threads: int = 1,
    optimize: bool = True,
    runs: int = 3,
    seed: int = 0,
    dim_values: Mapping[str, int] | None = None,
) -> MemoryStats:
    """Peak resident memory of loading and running ``model`` in a fresh (spawned) process.

    A separate process keeps the measurement free of what this process already holds (other
    sessions, the IR, caches); Linux and macOS report the high-water mark through ``getrusage``.
    """
    import concurrent.futures
    import multiprocessing
    import tempfile

    from irpass.ir import save_model, to_ir

    with tempfile.TemporaryDirectory(prefix="irpass-bench-") as tmp:
        if isinstance(model, (str, pathlib.Path)):
            path = str(model)
        else:
            path = str(pathlib.Path(tmp) / "model.onnx")
            if isinstance(model, bytes):
                pathlib.Path(path).write_bytes(model)
            else:
                save_model(to_ir(model), path)
        if feeds is None:
            feeds = random_feeds(make_session(path), seed=seed, dim_values=dim_values)
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
            baseline, peak = pool.submit(
                _memory_child, path, dict(feeds), threads, optimize, runs
            ).result()
    return MemoryStats(baseline_bytes=baseline, peak_bytes=peak)


def _cpu_name() -> str:
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


_PACKAGES = ("irpass", "onnx", "onnx-ir", "onnxscript", "onnxruntime", "numpy", "torch",
             "onnxsim", "onnxslim", "torch-pruning", "neural-compressor", "nncf")


def machine_info() -> dict[str, Any]:
    """Where a measurement was taken: CPU, cores, OS, Python and package versions."""
    versions = {}
    for package in _PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            continue
    return {
        "cpu": _cpu_name(),
        "machine": platform.machine(),
        "cores": os.cpu_count(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "packages": versions,
    }
