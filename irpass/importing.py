"""Import a ``package.module:name`` spec typed by a user (data callables, lowering factories)."""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

from irpass.errors import IrpassError

__all__ = ["import_callable"]


def import_callable(
    spec: str, error: type[IrpassError], hint: str, what: str = "function"
) -> Any:
    """Import the callable ``spec`` names; the current folder is importable.

    Every failure is raised as ``error`` (an IrpassError subclass) with ``hint``; an
    ImportError stays reachable as ``__cause__`` (lowering checks it for a missing torch).
    """
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise error(f"{spec!r} is not of the form 'package.module:{what}'", hint=hint)
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
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
