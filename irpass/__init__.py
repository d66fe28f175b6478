"""irpass: a compiler-style graph optimizer for ONNX models headed to edge devices.

``irpass.build_pipeline("canonicalize,fuse")`` gives the pipeline as one ``onnx_ir.passes``
pass for another compiler's pass manager (see :mod:`irpass.compose`).
"""

from __future__ import annotations

from irpass.compose import build_pipeline

__version__ = "0.1.0"

__all__ = ["__version__", "build_pipeline"]
