"""irpass: a compiler-style graph optimizer for ONNX models headed to edge devices.

``irpass.optimize(model, target=...)`` is the Python entry point of ``irpass optimize`` (see
:mod:`irpass.api`). ``irpass.build_pipeline("canonicalize,fuse")`` gives a pipeline as one
``onnx_ir.passes`` pass for another compiler's pass manager (see :mod:`irpass.compose`).
"""

from __future__ import annotations

from typing import Any

from irpass.compose import build_pipeline

__version__ = "0.1.0"

__all__ = ["OptimizeResult", "__version__", "build_pipeline", "optimize"]


def __getattr__(name: str) -> Any:
    # imported on first use: `import irpass` (and `irpass --version`) stays light
    if name in ("optimize", "OptimizeResult"):
        from irpass import api

        return getattr(api, name)
    raise AttributeError(f"module 'irpass' has no attribute {name!r}")
