"""Every path irpass writes, checked before the run and committed all at once at the end.

A command declares its destinations (the model file, reports, HTML pages, dump and reproducer
folders) and what it reads (the input models and their external-data files) in an
:class:`OutputPlan`. :meth:`OutputPlan.check` then refuses, before any work is done:

- a destination that resolves to an input or one of its external-data files (symlinks and
  hard links included), or a folder destination that holds one of them;
- two destinations that are the same path or nest inside each other;
- a file destination that is an existing directory, or that sits below an existing file;
- a destination whose folder cannot be written.

Files are written into staging folders named ``.irpass-tmp-<pid>-<random>`` (one per existing
destination folder: a rename cannot cross file systems) and renamed into place by
:meth:`OutputPlan.commit`; an error or an interruption before that leaves nothing behind.
Staging folders of runs that died without cleaning up (SIGKILL, power loss) are removed by the
next run that writes into the same folder; :func:`handle_sigterm` turns SIGTERM (what
``timeout`` and CI cancellation send) into a normal exit that removes them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import pathlib
import shutil
import signal
import tempfile
import time
from collections.abc import Iterable, Iterator
from types import FrameType

from irpass.errors import OutputError

__all__ = [
    "STAGING_PREFIX",
    "OutputPlan",
    "handle_sigterm",
    "make_staging_dir",
    "remove_stale_staging",
]

logger = logging.getLogger(__name__)

#: Name prefix of every staging folder irpass creates.
STAGING_PREFIX = ".irpass-tmp-"
#: A staging folder without a parsable owner is only removed when older than this (seconds).
_UNOWNED_STALE_AFTER = 3600.0


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _owner_pid(name: str) -> int | None:
    pid, sep, _ = name[len(STAGING_PREFIX) :].partition("-")
    return int(pid) if sep and pid.isdigit() else None


def remove_stale_staging(folder: pathlib.Path) -> list[pathlib.Path]:
    """Remove staging folders in ``folder`` whose run is gone; returns what was removed.

    A folder belongs to a dead run when the process id in its name no longer exists (or, for
    a name without one, when it has not been touched for an hour).
    """
    removed: list[pathlib.Path] = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return removed
    for entry in entries:
        if not entry.name.startswith(STAGING_PREFIX) or not entry.is_dir():
            continue
        pid = _owner_pid(entry.name)
        if pid is not None:
            stale = pid != os.getpid() and not _pid_alive(pid)
        else:
            try:
                stale = time.time() - entry.stat().st_mtime > _UNOWNED_STALE_AFTER
            except OSError:
                continue
        if stale:
            shutil.rmtree(entry, ignore_errors=True)
            logger.info("removed %s left behind by an interrupted run", entry)
            removed.append(entry)
    return removed


def make_staging_dir(folder: pathlib.Path) -> pathlib.Path:
    """Create a staging folder in the existing ``folder`` (after removing stale ones there)."""
    remove_stale_staging(folder)
    try:
        return pathlib.Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{os.getpid()}-", dir=folder))
    except OSError as exc:
        raise OutputError(
            f"cannot write to {folder}: {exc.strerror or exc}",
            hint="choose an output location you can write to",
        ) from exc


class _Terminated(SystemExit):
    """Raised by the SIGTERM handler so that ``finally`` blocks remove temporary files."""


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise _Terminated(128 + signum)


@contextlib.contextmanager
def handle_sigterm() -> Iterator[None]:
    """While active, SIGTERM unwinds the stack (exit code 143) instead of killing outright.

    Only the main thread can install signal handlers; elsewhere this does nothing.
    """
    try:
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _identity(path: pathlib.Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


def _nearest_existing(path: pathlib.Path) -> pathlib.Path:
    current = path
    while not current.exists() and current != current.parent:
        current = current.parent
    return current


def _within(path: pathlib.Path, folder: pathlib.Path) -> bool:
    return path == folder or folder in path.parents


@dataclasses.dataclass
class _Destination:
    path: pathlib.Path  # as the user typed it (for messages)
    resolved: pathlib.Path
    what: str  # e.g. "the output model", "--report"
    folder: bool  # a folder irpass fills (dumps, reproducer) rather than one file
    staged: bool = True  # False: written in place by its writer (a reproducer after a failure)


class OutputPlan:
    """The destinations of one command, checked up front and written through staging.

    Usage::

        plan = OutputPlan(protected=[input_path, *external_data_files])
        model_path = plan.add_file(out / "model.onnx", "the output model")
        dump_dir = plan.add_folder(args.dump_dir, "--dump-dir")
        with plan:                        # checks, creates staging folders
            save_model(model, plan.staged(model_path))
            plan.commit()                 # renames everything into place
    """

    def __init__(self, protected: Iterable[tuple[pathlib.Path, str]] = ()) -> None:
        self._protected = [(pathlib.Path(p), what) for p, what in protected]
        self._destinations: list[_Destination] = []
        self._staging: dict[pathlib.Path, pathlib.Path] = {}  # existing folder -> staging folder
        self._anchors: dict[pathlib.Path, pathlib.Path] = {}  # destination -> its anchor

    # -- declaring -----------------------------------------------------------------------
    def _add(
        self, path: str | os.PathLike[str], what: str, folder: bool, staged: bool = True
    ) -> pathlib.Path:
        text = os.fspath(path)
        if not text.strip():
            raise OutputError(
                f"{what} is an empty path", hint=f"give {what} a file or folder name"
            )
        typed = pathlib.Path(text)
        self._destinations.append(
            _Destination(typed, pathlib.Path(os.path.realpath(typed)), what, folder, staged)
        )
        return typed

    def add_file(self, path: str | os.PathLike[str], what: str) -> pathlib.Path:
        """Declare one file this command writes; returns its path."""
        return self._add(path, what, folder=False)

    def add_folder(
        self, path: str | os.PathLike[str], what: str, *, staged: bool = True
    ) -> pathlib.Path:
        """Declare a folder this command fills with files; returns its path.

        ``staged=False`` declares a folder its writer fills in place (still checked for
        clashes and writability), such as the reproducer saved when a pass fails.
        """
        return self._add(path, what, folder=True, staged=staged)

    def protect(self, path: str | os.PathLike[str], what: str) -> None:
        """Declare a file this command reads and must never overwrite."""
        self._protected.append((pathlib.Path(path), what))

    # -- checking ------------------------------------------------------------------------
    def check(self) -> None:
        """Refuse destinations that clash with inputs or each other, or that cannot exist."""
        for dest in self._destinations:
            self._check_against_inputs(dest)
            self._check_shape(dest)
        for i, first in enumerate(self._destinations):
            for second in self._destinations[i + 1 :]:
                self._check_pair(first, second)

    def _check_against_inputs(self, dest: _Destination) -> None:
        dest_id = _identity(dest.resolved)
        for path, what in self._protected:
            resolved = pathlib.Path(os.path.realpath(path))
            same = resolved == dest.resolved or (
                dest_id is not None and dest_id == _identity(resolved)
            )
            if same:
                raise OutputError(
                    f"{dest.what} {dest.path} is {what} ({path}); irpass never overwrites "
                    "its input",
                    hint=f"choose another path for {dest.what}",
                )
            if dest.folder and _within(resolved, dest.resolved):
                raise OutputError(
                    f"{dest.what} {dest.path} holds {what} ({path}); files written there could "
                    "replace it",
                    hint=f"choose a separate (e.g. new) folder for {dest.what}",
                )

    def _check_shape(self, dest: _Destination) -> None:
        if dest.resolved.is_dir() and not dest.folder:
            raise OutputError(
                f"{dest.what} {dest.path} is an existing directory, not a file",
                hint=f"remove it or choose another path for {dest.what}",
            )
        if dest.resolved.exists() and dest.folder and not dest.resolved.is_dir():
            raise OutputError(
                f"{dest.what} {dest.path} exists and is not a directory",
                hint=f"remove it or choose another folder for {dest.what}",
            )
        existing = _nearest_existing(dest.resolved.parent)
        if not existing.is_dir():
            raise OutputError(
                f"{dest.what} {dest.path} cannot be created: {existing} is a file, not a "
                "directory",
                hint=f"choose another path for {dest.what}",
            )

    @staticmethod
    def _check_pair(first: _Destination, second: _Destination) -> None:
        clash = first.resolved == second.resolved
        if not clash and first.folder:
            clash = _within(second.resolved, first.resolved)
        if not clash and second.folder:
            clash = _within(first.resolved, second.resolved)
        if not clash:  # a file path used as the folder of another destination
            clash = (not first.folder and first.resolved in second.resolved.parents) or (
                not second.folder and second.resolved in first.resolved.parents
            )
        if clash:
            raise OutputError(
                f"{first.what} ({first.path}) and {second.what} ({second.path}) overlap; "
                "one would overwrite the other",
                hint="give each output its own path",
            )

    # -- staging and committing ------------------------------------------------------------
    def __enter__(self) -> OutputPlan:
        self.check()
        try:
            for dest in self._destinations:
                anchor = _nearest_existing(dest.resolved.parent)
                # fixed now: a reproducer written during the run may create folders
                self._anchors[dest.resolved] = anchor
                if anchor not in self._staging:
                    self._staging[anchor] = make_staging_dir(anchor)
        except BaseException:
            self.discard()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.discard()

    def _anchor(self, resolved: pathlib.Path) -> pathlib.Path:
        return self._anchors.get(resolved) or _nearest_existing(resolved.parent)

    def staged(self, path: pathlib.Path) -> pathlib.Path:
        """Where to write the declared ``path`` (or a file below a declared folder) for now."""
        resolved = pathlib.Path(os.path.realpath(path))
        for dest in self._destinations:
            if not dest.staged:
                continue
            if resolved == dest.resolved or (dest.folder and _within(resolved, dest.resolved)):
                anchor = self._anchor(dest.resolved)
                staged = self._staging[anchor] / resolved.relative_to(anchor)
                staged.parent.mkdir(parents=True, exist_ok=True)
                return staged
        raise ValueError(f"{path} was not declared as an output")

    def commit(self, only: Iterable[pathlib.Path] | None = None) -> list[pathlib.Path]:
        """Move staged files into place (all of them, or the declared paths in ``only``)."""
        wanted = None if only is None else {pathlib.Path(os.path.realpath(p)) for p in only}
        written: list[pathlib.Path] = []
        for anchor, staging in self._staging.items():
            for item in sorted(staging.rglob("*")):
                if item.is_dir():
                    continue
                target = anchor / item.relative_to(staging)
                if wanted is not None and not any(_within(target, w) for w in wanted):
                    continue
                try:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(item, target)
                except OSError as exc:
                    raise OutputError(
                        f"cannot write {target}: {exc.strerror or exc}",
                        hint="check free space and permissions of the output location",
                    ) from exc
                written.append(target)
        return written

    def discard(self) -> None:
        """Remove every staging folder and what is still in it."""
        for staging in self._staging.values():
            shutil.rmtree(staging, ignore_errors=True)
        self._staging.clear()
