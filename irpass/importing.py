"""Import a callable a user named on purpose: ``package.module:name`` or ``path/file.py:name``.

Nothing is imported from the current folder unless the user names a file there: the folder is
never put on ``sys.path``, so a stray ``data.py`` next to the model cannot run by accident.
``package.module`` must be importable as installed (``sys.path`` as Python set it up);
``path/file.py`` loads exactly that file.
"""

from __future__ import annotations

import importlib
import importlib.util
import pathlib
import sys
from types import ModuleType
from typing import Any

from irpass.errors import IrpassError

__all__ = ["import_callable"]


def _load_file(path: pathlib.Path, spec: str, error: type[IrpassError], hint: str) -> ModuleType:
    if not path.is_file():
        raise error(f"{spec!r}: no such file {str(path)!r}", hint=hint)
    name = f"_irpass_user_{path.stem}_{abs(hash(path.resolve()))}"
    if name in sys.modules:
        return sys.modules[name]
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise error(f"{spec!r}: cannot import {str(path)!r}", hint=hint)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    try:
        module_spec.loader.exec_module(module)
    except ImportError as exc:
        del sys.modules[name]
        raise error(f"{spec!r}: importing {str(path)!r} failed ({exc})", hint=hint) from exc
    except Exception as exc:
        del sys.modules[name]
        raise error(
            f"{spec!r}: {str(path)!r} raised {type(exc).__name__}: {exc}", hint=hint
        ) from exc
    return module


def import_callable(
    spec: str, error: type[IrpassError], hint: str, what: str = "function"
) -> Any:
    """Import the callable ``spec`` names (``package.module:name`` or ``file.py:name``).

    Every failure is raised as ``error`` (an IrpassError subclass) with ``hint``; an
    ImportError stays reachable as ``__cause__`` (lowering checks it for a missing torch).
    """
    module_name, sep, attr = spec.rpartition(":")
    if not sep or not module_name or not attr:
        raise error(
            f"{spec!r} is not of the form 'package.module:{what}' or 'file.py:{what}'",
            hint=hint,
        )
    module: ModuleType
    if module_name.endswith(".py"):
        module = _load_file(pathlib.Path(module_name), spec, error, hint)
    else:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise error(f"{spec!r}: cannot import {module_name!r} ({exc})", hint=hint) from exc
    target: Any = module
    for part in attr.split("."):
        target = getattr(target, part, None)
        if target is None:
            raise error(f"{spec!r}: {module_name!r} has no attribute {attr!r}", hint=hint)
    if not callable(target):
        raise error(f"{spec!r} is not callable", hint=hint)
    return target
