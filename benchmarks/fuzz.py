"""Nightly-style fuzzing: thousands of random valid models through every built-in pass.

Draws models with :func:`irpass.fuzz.graphs.models` (hypothesis, seeded) and runs every case
of :func:`irpass.fuzz.check.cases` on each (every registered built-in pass with default
options, the option variants, the presets): lossless passes must keep ONNX Runtime's outputs
equal, lossy ones must leave a valid model that runs with the same interface, no pass may
raise, leak a numpy RuntimeWarning or change the model while reporting no change.

Cases run in a worker process, so that a native crash (an ONNX Runtime assertion on a model
a pass wrote) is recorded as a ``crash`` finding of the case that was running, and the run
goes on in a fresh worker. A finding does not stop the run: it is counted per case and kind,
and the first models of each distinct finding are saved (``--save-failures``, outside the
repository by default) as reproducers. The counts go to ``benchmarks/results/fuzz.json``.

    python benchmarks/fuzz.py                      # 1000 examples, seed 0
    python benchmarks/fuzz.py --examples 200 --seed 7 --save-failures /tmp/fuzz-failures
"""

from __future__ import annotations

import argparse
import collections
import multiprocessing
import pathlib
import sys
import tempfile
import time
from collections.abc import Sequence
from multiprocessing.connection import Connection
from typing import Any

import onnx
from hypothesis import HealthCheck, given, seed, settings

from irpass.fuzz.check import VARIANTS, Case, Reference, cases, check_case
from irpass.fuzz.graphs import models

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from _results import write_results

#: Models kept per distinct (case, kind, message) finding.
KEEP_PER_FINDING = 3


def _serve(conn: Connection, all_cases: list[Case]) -> None:
    """Worker: check each model it receives on the cases asked, reporting case by case."""
    while True:
        job = conn.recv()
        if job is None:
            return
        data, indices = job
        model = onnx.ModelProto()
        model.ParseFromString(data)
        try:
            reference = Reference(model)
        except Exception as exc:  # a generator bug: reported, never blamed on a pass
            conn.send(("invalid", str(exc).strip().splitlines()[0][:200] if str(exc) else ""))
            continue
        for index in indices:
            conn.send(("start", index))
            changed, finding = check_case(reference, all_cases[index])
            conn.send(("done", index, changed, finding))
        conn.send(("end",))


class _Worker:
    """A worker process (spawned: no state shared with the generator) and its pipe."""

    def __init__(self, all_cases: list[Case]) -> None:
        context = multiprocessing.get_context("spawn")
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(child, all_cases), daemon=True)
        self.process.start()
        child.close()

    def close(self) -> None:
        try:
            self.conn.send(None)
        except OSError:
            pass
        self.process.join(timeout=10)


def fuzz(
    examples: int, seed_value: int, failures: pathlib.Path, extra: Sequence[str] = ()
) -> dict[str, Any]:
    """Run the fuzzer; return the counts (never raises on a finding)."""
    all_cases = cases(variants=(*VARIANTS, *extra))
    drawn: list[onnx.ModelProto] = []

    @seed(seed_value)
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(models())
    def draw(model: onnx.ModelProto) -> None:
        drawn.append(model)

    draw()
    runs: collections.Counter[str] = collections.Counter()
    modified: collections.Counter[str] = collections.Counter()
    kinds: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    distinct: dict[tuple[str, str, str], dict[str, Any]] = {}
    totals = collections.Counter[str]()
    started = time.perf_counter()
    worker = _Worker(all_cases)
    for number, model in enumerate(drawn, 1):
        totals["examples"] += 1
        pending = list(range(len(all_cases)))
        while pending:
            worker.conn.send((model.SerializeToString(), pending))
            running: int | None = None
            try:
                while True:
                    message = worker.conn.recv()
                    if message[0] == "invalid":
                        totals["generator_invalid"] += 1
                        _keep(distinct, ("<generator>", "invalid", message[1]), model, failures)
                        pending = []
                        break
                    if message[0] == "end":
                        pending = []
                        break
                    if message[0] == "start":
                        running = message[1]
                        continue
                    _, index, changed, finding = message
                    pending.remove(index)
                    text = all_cases[index].text
                    runs[text] += 1
                    modified[text] += changed
                    if finding is not None:
                        totals["findings"] += 1
                        kinds[text][finding.kind] += 1
                        _keep(distinct, (text, finding.kind, finding.message), model, failures)
            except (EOFError, ConnectionResetError):
                worker.process.join()
                code = worker.process.exitcode
                if running is None:
                    raise RuntimeError(f"the fuzz worker died outside a case ({code})") from None
                text = all_cases[running].text
                pending.remove(running)
                runs[text] += 1
                totals["findings"] += 1
                kinds[text]["crash"] += 1
                message = f"the process died (exit code {code}) while running this case"
                _keep(distinct, (text, "crash", message), model, failures)
                worker = _Worker(all_cases)
        if number % 100 == 0:
            print(f"{number} examples, {totals['findings']} findings", flush=True)
    worker.close()
    per_case = {
        case.text: {
            "lossless": case.lossless,
            "pipeline": case.pipeline,
            "runs": runs[case.text],
            "modified": modified[case.text],
            "findings": dict(kinds[case.text]),
        }
        for case in all_cases
    }
    return {
        "examples": totals["examples"],
        "generator_invalid": totals["generator_invalid"],
        "findings": totals["findings"],
        "cases_with_findings": sorted(k for k, v in kinds.items() if v),
        "lossy_cases": sorted(c.text for c in all_cases if not c.lossless),
        "seed": seed_value,
        "seconds": time.perf_counter() - started,
        "failures_folder": str(failures),
        "distinct_findings": sorted(distinct.values(), key=lambda d: -d["count"]),
        "cases": per_case,
    }


def _keep(
    distinct: dict[tuple[str, str, str], dict[str, Any]],
    key: tuple[str, str, str],
    model: onnx.ModelProto,
    folder: pathlib.Path,
) -> None:
    entry = distinct.setdefault(
        key, {"case": key[0], "kind": key[1], "message": key[2], "count": 0, "models": []}
    )
    entry["count"] += 1
    if len(entry["models"]) < KEEP_PER_FINDING:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"finding{len(distinct):03d}_{len(entry['models'])}.onnx"
        onnx.save(model, path)
        entry["models"].append(str(path))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--save-failures",
        type=pathlib.Path,
        default=None,
        help="folder for the models of each finding (default: a temp folder)",
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        help="also run this pass step, e.g. 'quantize(mode=fp16)' (repeatable)",
    )
    parser.add_argument("--no-results", action="store_true", help="do not write results JSON")
    args = parser.parse_args(argv)
    failures = args.save_failures or pathlib.Path(tempfile.mkdtemp(prefix="irpass-fuzz-"))
    data = fuzz(args.examples, args.seed, failures, args.variant)
    print(
        f"{data['examples']} examples, {len(data['cases'])} cases each: "
        f"{data['findings']} findings in {len(data['cases_with_findings'])} cases, "
        f"{data['generator_invalid']} invalid generated models, {data['seconds']:.0f} s"
    )
    for entry in data["distinct_findings"][:20]:
        print(f"  {entry['count']:4d} {entry['case']}: {entry['kind']}: {entry['message']}")
    if not args.no_results:
        print(write_results("fuzz", data, sys.argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
