"""irpass: a compiler-style graph optimizer for ONNX models headed to edge devices.

``irpass.optimize(model, target=...)`` is the Python entry point (see :mod:`irpass.api`).
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["OptimizeResult", "__version__", "optimize"]


def __getattr__(name: str) -> Any:
    # imported on first use: `import irpass` (and `irpass --version`) stays light
    if name in ("optimize", "OptimizeResult"):
        from irpass import api

        return getattr(api, name)
    raise AttributeError(f"module 'irpass' has no attribute {name!r}")
