"""Backends: turn the final IR into what a target runtime runs (installed as ``irpass.backends``).

No backend ships yet: the ONNX Runtime, TensorRT and NNAPI backends belong to the target
issues. ``irpass optimize`` writes the optimized ONNX model and its report without one.
"""
