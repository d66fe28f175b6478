"""Where candidate evaluations run: in this process, in worker processes, or on a Ray cluster.

Every executor maps a top-level function over a list of jobs and returns the results in the
order of the jobs, whatever order they finish in, so a search gives the same answer on every
executor. Large inputs (the model, data files) are *shared* once and handed to jobs by
reference: a path for local executors, an object-store reference for Ray (workers write it to
a cached local file once per process), never re-pickled per job.

``make_executor("serial" | "process" | "ray" | "ray:ADDRESS", jobs)`` builds one.
"""

from __future__ import annotations

import abc
import concurrent.futures
import dataclasses
import hashlib
import logging
import multiprocessing
import os
import pathlib
import sys
import tempfile
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from irpass.errors import PipelineError

__all__ = [
    "Executor",
    "ProcessExecutor",
    "RayExecutor",
    "SerialExecutor",
    "SharedFile",
    "make_executor",
]

logger = logging.getLogger(__name__)

J = TypeVar("J")
R = TypeVar("R")


@dataclasses.dataclass(frozen=True)
class SharedFile:
    """A file handed to jobs by reference.

    ``path`` is valid on this machine; ``ref`` is a Ray object reference to the file's bytes
    when the executor is Ray (then workers call :meth:`local_path` to get a file of their own).
    """

    name: str
    path: str
    digest: str
    ref: Any = None

    def local_path(self) -> str:
        """A path to the file's content in this process (fetched from Ray once, then cached)."""
        if self.ref is None:
            return self.path
        cache = pathlib.Path(tempfile.gettempdir()) / "irpass-shared"
        cache.mkdir(exist_ok=True)
        target = cache / f"{self.digest}-{self.name}"
        if not target.exists():
            import ray

            data = ray.get(self.ref)
            tmp = target.with_name(target.name + f".{os.getpid()}.tmp")
            tmp.write_bytes(data)
            tmp.replace(target)
        return str(target)


def _digest(path: pathlib.Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()[:16]


class Executor(abc.ABC):
    """Runs jobs; results come back in job order."""

    name: str = ""

    @abc.abstractmethod
    def map(self, fn: Callable[[J], R], jobs: Sequence[J]) -> list[R]:
        """``[fn(job) for job in jobs]``, possibly in parallel."""

    def share(self, path: str | os.PathLike[str]) -> SharedFile:
        """Make a file available to every job by reference."""
        p = pathlib.Path(path)
        return SharedFile(p.name, str(p.resolve()), _digest(p))

    def close(self) -> None:  # noqa: B027 - executors without workers have nothing to release
        """Release workers."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class SerialExecutor(Executor):
    """Runs every job in this process, one after the other."""

    name = "serial"

    def map(self, fn: Callable[[J], R], jobs: Sequence[J]) -> list[R]:  # noqa: D102
        return [fn(job) for job in jobs]


class ProcessExecutor(Executor):
    """Worker processes on this machine (spawned: ONNX Runtime's threads do not survive fork)."""

    name = "process"

    def __init__(self, jobs: int) -> None:
        self.jobs = max(1, jobs)
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None

    def _ensure_pool(self) -> concurrent.futures.ProcessPoolExecutor:
        if self._pool is None:
            self._pool = concurrent.futures.ProcessPoolExecutor(
                max_workers=self.jobs, mp_context=multiprocessing.get_context("spawn")
            )
        return self._pool

    def map(self, fn: Callable[[J], R], jobs: Sequence[J]) -> list[R]:  # noqa: D102
        if not jobs:
            return []
        return list(self._ensure_pool().map(fn, jobs))

    def close(self) -> None:  # noqa: D102
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None


class RayExecutor(Executor):
    """Ray tasks on a local instance (``address=None``) or on the cluster at ``address``."""

    name = "ray"

    def __init__(self, jobs: int, address: str | None = None) -> None:
        try:
            import ray
        except ImportError as exc:
            raise PipelineError(
                "--executor ray needs the ray package, which is not installed",
                hint='pip install "irpass[ray]", or use --executor process',
            ) from exc
        self._ray = ray
        self._started_here = not ray.is_initialized()
        if self._started_here:
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                      "configure_logging": False}
            if address:
                kwargs["address"] = address
            else:
                # a local instance runs this machine's code: give its workers our import path
                kwargs["num_cpus"] = max(1, jobs)
                path = os.pathsep.join(p for p in sys.path if p)
                kwargs["runtime_env"] = {"env_vars": {"PYTHONPATH": path}}
            try:
                ray.init(**kwargs)
            except Exception as exc:  # ray raises many types when it cannot connect
                raise PipelineError(
                    f"cannot start or reach Ray{f' at {address}' if address else ''}: {exc}",
                    hint="check the cluster address (ray status), or use --executor process",
                ) from exc
        self._shared: dict[str, SharedFile] = {}

    def share(self, path: str | os.PathLike[str]) -> SharedFile:  # noqa: D102
        local = super().share(path)
        if local.digest not in self._shared:
            data = pathlib.Path(local.path).read_bytes()
            self._shared[local.digest] = dataclasses.replace(local, ref=self._ray.put(data))
        return self._shared[local.digest]

    def map(self, fn: Callable[[J], R], jobs: Sequence[J]) -> list[R]:  # noqa: D102
        if not jobs:
            return []
        remote: Any = self._ray.remote(_call)
        return list(self._ray.get([remote.remote(fn, job) for job in jobs]))

    def close(self) -> None:  # noqa: D102
        if self._started_here and self._ray.is_initialized():
            self._ray.shutdown()


def _call(fn: Callable[[J], R], job: J) -> R:
    """Ray task body: any callable (builtins included) applied to one job."""
    return fn(job)


def make_executor(spec: str, jobs: int) -> Executor:
    """``serial``, ``process`` or ``ray[:ADDRESS]`` with ``jobs`` parallel workers."""
    kind, _, address = spec.partition(":")
    if kind == "serial" or (kind == "process" and jobs <= 1):
        return SerialExecutor()
    if kind == "process":
        return ProcessExecutor(jobs)
    if kind == "ray":
        return RayExecutor(jobs, address or None)
    raise PipelineError(f"unknown executor {spec!r}",
                        hint="use serial, process, ray or ray:ADDRESS")
