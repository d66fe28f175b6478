"""Backend registry: profile ``"backend"`` names and operator-list providers -> backend objects.

Backend modules register an instance with :func:`register_backend` when imported;
:func:`load_builtin_backends` imports the modules that ship with irpass once.
"""

from __future__ import annotations

import importlib

from irpass.backends.base import Backend
from irpass.errors import TargetError
from irpass.targets.profile import OpSupport

__all__ = [
    "BUILTIN_BACKENDS",
    "get_backend",
    "list_backends",
    "load_builtin_backends",
    "op_support",
    "register_backend",
]

#: Modules under ``irpass.backends`` that define a backend.
BUILTIN_BACKENDS = ("onnxruntime", "tensorrt", "nnapi", "coreml")

_BACKENDS: dict[str, Backend] = {}
_LOADED = False


def register_backend(backend: Backend) -> Backend:
    """Add ``backend`` under ``backend.name``; a second backend of the same name is an error."""
    if not isinstance(backend, Backend):
        raise TypeError(f"{backend!r} does not implement the Backend protocol")
    existing = _BACKENDS.get(backend.name)
    if existing is not None and existing is not backend:
        raise ValueError(f"backend name {backend.name!r} is taken by {existing!r}")
    _BACKENDS[backend.name] = backend
    return backend


def load_builtin_backends() -> None:
    """Import the backends shipped with irpass so they register themselves."""
    global _LOADED
    if _LOADED:
        return
    for name in BUILTIN_BACKENDS:
        importlib.import_module(f"irpass.backends.{name}")
    _LOADED = True


def get_backend(name: str) -> Backend:
    """The backend registered as ``name``, or a TargetError listing the known ones."""
    load_builtin_backends()
    try:
        return _BACKENDS[name]
    except KeyError:
        raise TargetError(
            f"unknown backend {name!r}", hint="known backends: " + ", ".join(sorted(_BACKENDS))
        ) from None


def list_backends() -> list[Backend]:
    """Every registered backend, sorted by name."""
    load_builtin_backends()
    return [_BACKENDS[n] for n in sorted(_BACKENDS)]


def op_support(provider: str, release: str) -> OpSupport:
    """Resolve an operator list named in a profile (``"supported_ops"``) through its backend."""
    for backend in list_backends():
        if provider in backend.op_providers():
            return backend.op_support(provider, release)
    known = sorted(p for b in list_backends() for p in b.op_providers())
    raise TargetError(
        f"unknown operator-list provider {provider!r}", hint="known providers: " + ", ".join(known)
    )
