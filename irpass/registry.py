"""Pass registry: pipeline name -> pass class, plus named presets (pipeline macros).

Pass modules register themselves with :func:`register` when imported; :func:`load_builtin_passes`
imports every module under ``irpass.passes`` once so the registry is complete.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import pkgutil
from collections.abc import Iterator
from typing import TypeVar

from irpass.errors import PipelineError
from irpass.pass_base import IrpassPass

__all__ = [
    "Preset",
    "get_pass",
    "get_preset",
    "list_passes",
    "list_presets",
    "load_builtin_passes",
    "register",
    "register_preset",
    "registered",
]

_PASSES: dict[str, type[IrpassPass]] = {}
_PRESETS: dict[str, Preset] = {}
_LOADED = False

P = TypeVar("P", bound=type[IrpassPass])


@dataclasses.dataclass(frozen=True)
class Preset:
    """A named pipeline, e.g. ``canonicalize`` or ``fuse``, usable as a step in pipeline text."""

    name: str
    pipeline: str
    doc: str


def register(cls: P) -> P:
    """Class decorator: add a pass class to the registry under ``cls.name``."""
    existing = _PASSES.get(cls.name)
    if existing is not None and existing is not cls:
        raise ValueError(
            f"pass name {cls.name!r} is taken by {existing.__module__}.{existing.__qualname__}"
        )
    if cls.name in _PRESETS:
        raise ValueError(f"pass name {cls.name!r} is already a preset")
    _PASSES[cls.name] = cls
    return cls


@contextlib.contextmanager
def registered(*classes: type[IrpassPass]) -> Iterator[None]:
    """Register pass classes for the duration of a ``with`` block, then remove them again.

    For passes that exist only in one test or one embedding session: the global registry is
    left as it was found (builtin passes loaded first, so they cannot be shadowed).
    """
    load_builtin_passes()
    added = [cls for cls in classes if _PASSES.get(cls.name) is not cls]
    for cls in added:
        register(cls)
    try:
        yield
    finally:
        for cls in added:
            if _PASSES.get(cls.name) is cls:
                del _PASSES[cls.name]


def register_preset(name: str, pipeline: str, doc: str) -> Preset:
    """Register ``name`` as shorthand for ``pipeline`` (parsed lazily when used)."""
    if name in _PASSES:
        raise ValueError(f"preset name {name!r} is already a pass")
    preset = Preset(name, pipeline, doc)
    _PRESETS[name] = preset
    return preset


def load_builtin_passes() -> None:
    """Import every module below ``irpass.passes`` so their passes register themselves."""
    global _LOADED
    if _LOADED:
        return
    import irpass.passes as package

    for info in pkgutil.walk_packages(package.__path__, prefix=package.__name__ + "."):
        importlib.import_module(info.name)
    _LOADED = True


def get_pass(name: str) -> type[IrpassPass]:
    """Return the pass class registered as ``name`` or raise a PipelineError listing names."""
    load_builtin_passes()
    try:
        return _PASSES[name]
    except KeyError:
        raise PipelineError(
            f"unknown pass {name!r}",
            hint="valid passes: "
            + ", ".join(sorted(_PASSES))
            + "; presets: "
            + ", ".join(sorted(_PRESETS)),
        ) from None


def get_preset(name: str) -> Preset | None:
    """Return the preset named ``name``, or None when there is none."""
    load_builtin_passes()
    return _PRESETS.get(name)


def list_passes() -> list[type[IrpassPass]]:
    """All registered pass classes, sorted by name."""
    load_builtin_passes()
    return [_PASSES[n] for n in sorted(_PASSES)]


def list_presets() -> list[Preset]:
    """All registered presets, sorted by name."""
    load_builtin_passes()
    return [_PRESETS[n] for n in sorted(_PRESETS)]
