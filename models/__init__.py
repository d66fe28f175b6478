"""The irpass model zoo: committed ONNX files, and (with torch) the builders that made them.

- :func:`zoo_paths`: the zoo architectures, untrained with seeded weights
  (``models/zoo/<name>.onnx``), for pass tests that need real graph shapes but no accuracy;
- :func:`trained_paths`: models trained on real data (``models/trained/<name>.onnx``);
  :func:`trained_eval_data` gives the committed test split of each and
  :func:`trained_metrics` the accuracies recorded when they were trained.

This package imports no torch; ``models.zoo`` (the builders) and ``models.train`` do.
See models/README.md for provenance, sizes and how to rebuild.
"""

from __future__ import annotations

import json
import pathlib

__all__ = [
    "MODELS_DIR",
    "ZOO_NAMES",
    "trained_eval_data",
    "trained_metrics",
    "trained_paths",
    "zoo_paths",
]

MODELS_DIR = pathlib.Path(__file__).resolve().parent
ZOO_NAMES = (
    "resnet_cnn", "mobilenet_v2", "power_cnn1d", "mlp", "transformer", "unet",
    "patch_transformer", "mobilenet_v3",
)


def zoo_paths() -> dict[str, pathlib.Path]:
    """Name -> path of each committed zoo architecture (untrained, deterministic weights)."""
    return {name: MODELS_DIR / "zoo" / f"{name}.onnx" for name in ZOO_NAMES}


def trained_metrics() -> dict[str, dict[str, object]]:
    """What ``models/trained/metrics.json`` records for each trained model."""
    return json.loads((MODELS_DIR / "trained" / "metrics.json").read_text())


def trained_paths() -> dict[str, pathlib.Path]:
    """Name -> path of each committed trained model."""
    return {name: MODELS_DIR / "trained" / f"{name}.onnx" for name in trained_metrics()}


def trained_eval_data() -> dict[str, pathlib.Path]:
    """Name -> the .npz test split of each trained model (inputs and a ``labels`` array)."""
    return {
        name: MODELS_DIR / "trained" / str(info["eval_data"])
        for name, info in trained_metrics().items()
    }
