"""Region checks vs whole-model checks: what ``--verify each`` costs per pass with and without.

For each model, ``irpass optimize``'s default pipeline (``canonicalize,fuse``) runs in-process
with region checks (``--verify-region 0.25``) and without (``--verify-region 0``, the default,
every lossless pass checked on the whole model), alternating, ``--repeat`` times each. Measured
per pass that changed the model: what its verification did (status, and why it was checked
whole) and the median wall seconds of that verification (``Verifier.check``); per run: the
total verification seconds, their CPU seconds (all threads; less sensitive to other load on the
machine than wall time) and the run's seconds. The light model-zoo graphs get seeded random
weights first (theirs are one constant). Results: ``benchmarks/results/region_verify.json``.

    python benchmarks/region_verify.py --models rapidocr_onnxruntime.ch_PP-OCRv4_rec_infer,resnet50

Models are looked up in the onnx wheel's light zoo and in ``--cache``/models (what
``benchmarks/canonicalize.py --fetch`` downloads).
"""

from __future__ import annotations

import argparse
import functools
import logging
import pathlib
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import onnx
import onnx_ir as ir

sys.path.insert(0, str(pathlib.Path(__file__).parent))

from _results import write_results

from irpass.manager import PipelineRunner, RunOptions
from irpass.testing import randomize_weights
from irpass.verify.region import RegionOptions
from irpass.verify.verifier import Verifier

LIGHT_DIR = pathlib.Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
DEFAULT_CACHE = pathlib.Path.home() / ".cache" / "irpass-bench"
PIPELINE = "canonicalize,fuse"
MODES = {"region": RegionOptions(), "whole": None}

logger = logging.getLogger("region_verify")


def _load(name: str, cache: pathlib.Path) -> ir.Model:
    light = LIGHT_DIR / f"light_{name}.onnx"
    if light.exists():
        return randomize_weights(ir.load(light), seed=0)
    return ir.load(cache / "models" / f"{name}.onnx")


def _timed_checks() -> tuple[list[tuple[float, float]], Callable[[], None]]:
    """Record (wall, CPU) seconds of every Verifier.check call until the returned undo runs."""
    calls: list[tuple[float, float]] = []
    original = Verifier.check

    @functools.wraps(original)
    def check(self: Verifier, *args: Any, **kwargs: Any) -> Any:
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            return original(self, *args, **kwargs)
        finally:
            calls.append((time.perf_counter() - wall, time.process_time() - cpu))

    Verifier.check = check  # type: ignore[method-assign]

    def undo() -> None:
        Verifier.check = original  # type: ignore[method-assign]

    return calls, undo


def _why_whole(detail: str) -> str:
    """The reason a whole-model check gives for not checking a region ('' if none)."""
    return detail.partition(" (whole model: ")[2].removesuffix(")")


def run_once(name: str, cache: pathlib.Path, region: RegionOptions | None) -> dict[str, Any]:
    model = _load(name, cache)
    nodes = len(model.graph)  # before the pipeline rewrites the model in place
    calls, undo = _timed_checks()
    try:
        started = time.perf_counter()
        result = PipelineRunner(PIPELINE, options=RunOptions(region=region)).run(model)
        seconds = time.perf_counter() - started
    finally:
        undo()
    checked = [p for p in result.report.passes if p.modified or p.rolled_back]
    return {
        "nodes": nodes,
        "run_s": seconds,
        "verify_s": sum(wall for wall, _ in calls),
        "verify_cpu_s": sum(cpu for _, cpu in calls),
        "passes": [
            {
                "step": p.step,
                "status": p.verification.status,
                "why_whole": _why_whole(p.verification.detail),
                "verify_s": wall,
            }
            for p, (wall, _) in zip(checked, calls, strict=True)
        ],
    }


def measure(name: str, cache: pathlib.Path, repeat: int) -> tuple[dict[str, Any], dict[str, Any]]:
    runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
    for _ in range(repeat):
        for mode, options in MODES.items():  # alternating: load drifts hit both alike
            runs[mode].append(run_once(name, cache, options))
            logger.info("%s %s: %.2f s", name, mode, runs[mode][-1]["run_s"])
    summary: dict[str, Any] = {"nodes": runs["region"][0]["nodes"]}
    for mode in MODES:
        for key in ("verify_s", "verify_cpu_s", "run_s"):
            summary[f"{key} {mode}"] = round(statistics.median(r[key] for r in runs[mode]), 3)
    summary["verify ratio region/whole"] = round(
        summary["verify_s region"] / summary["verify_s whole"], 2
    )
    summary["verify cpu ratio region/whole"] = round(
        summary["verify_cpu_s region"] / summary["verify_cpu_s whole"], 2
    )
    region_passes = runs["region"][0]["passes"]
    summary["region checks"] = sum(p["status"].startswith("equal (region") for p in region_passes)
    passes: dict[str, Any] = {}
    for index, first in enumerate(region_passes):
        passes[f"{name} / {first['step']}"] = {
            "status with regions": first["status"],
            "checked whole because": first["why_whole"] or "-",
            "verify_s region": round(
                statistics.median(r["passes"][index]["verify_s"] for r in runs["region"]), 3
            ),
            "verify_s whole": round(
                statistics.median(r["passes"][index]["verify_s"] for r in runs["whole"]), 3
            ),
        }
    return summary, passes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", required=True, help="comma-separated model names")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cache", type=pathlib.Path, default=DEFAULT_CACHE)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logger.setLevel(logging.INFO)
    models: dict[str, Any] = {}
    passes: dict[str, Any] = {}
    for name in args.models.split(","):
        models[name], found = measure(name, args.cache, args.repeat)
        passes.update(found)
    data = {"models": models, "passes": passes, "pipeline": PIPELINE}
    path = write_results("region_verify", data)
    logger.info("wrote %s", path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
