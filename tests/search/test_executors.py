"""Serial, process and Ray executors give the same search result (Ray: a local instance the
test starts; the ray package is in the test extra)."""

from __future__ import annotations

import operator
import pathlib

import pytest
from test_search import SPACE, _settings

from irpass.errors import PipelineError
from irpass.search.budget import parse_budget
from irpass.search.executors import (
    ProcessExecutor,
    SerialExecutor,
    SharedFile,
    make_executor,
)
from irpass.search.search import SearchOptions, run_search


def _levels_and_choice(executor) -> tuple[list, tuple, list]:
    result = run_search(SPACE, _settings(executor), parse_budget("3%"), executor,
                        options=SearchOptions(objective="size"), has_labels=True)
    accuracies = [round(p.result.metrics["accuracy"], 6) for p in result.points]
    return [p.result.levels for p in result.points], result.chosen.result.levels, accuracies


@pytest.fixture(scope="module")
def serial_result():
    return _levels_and_choice(SerialExecutor())


def test_process_executor_matches_serial(serial_result) -> None:
    with ProcessExecutor(2) as executor:
        assert executor.map(operator.neg, [3, 1, 2]) == [-3, -1, -2]
        assert _levels_and_choice(executor) == serial_result


def test_ray_executor_matches_serial(serial_result) -> None:
    ray = pytest.importorskip("ray", reason="ray is not installed (pip install irpass[ray])")
    with make_executor("ray", 2) as executor:
        assert ray.is_initialized()
        shared = executor.share(pathlib.Path(__file__))
        assert isinstance(shared, SharedFile) and shared.ref is not None
        # workers read the shared file from the object store, not from this path
        assert pathlib.Path(shared.local_path()).read_bytes() == pathlib.Path(
            __file__).read_bytes()
        assert executor.map(operator.neg, [3, 1, 2]) == [-3, -1, -2]
        assert _levels_and_choice(executor) == serial_result
    assert not ray.is_initialized()


def test_unknown_executor_is_an_error() -> None:
    with pytest.raises(PipelineError, match="unknown executor"):
        make_executor("dask", 2)
    assert isinstance(make_executor("process", 1), SerialExecutor)
