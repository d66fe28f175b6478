"""ONNX Runtime's own deployment tools, wrapped: ORT-format conversion and offline optimization.

- :func:`convert_to_ort` runs ``onnxruntime.tools.convert_onnx_models_to_ort`` (what
  ``python -m onnxruntime.tools.convert_onnx_models_to_ort`` does) on one model and returns the
  ``.ort`` file and the ``required_operators`` config a minimal ORT build needs. ``runtime``
  style keeps the optimizations that depend on the execution provider for load time (what NNAPI
  and Core ML need); ``fixed`` bakes the CPU optimizations in.
- :func:`offline_optimize` saves the graph ONNX Runtime would run after its ``basic``
  optimizations (constant folding, redundant-node elimination): portable across execution
  providers and hardware, unlike the ``extended``/``all`` levels, but tied to the ORT release
  that wrote it.

The converter prints progress on stdout and logs through its own handler; both are kept out of
the user's terminal (debug log) so library and ``--json`` users get clean output.
"""

from __future__ import annotations

import contextlib
import io
import logging
import pathlib
import shutil
import tempfile
from typing import Literal

import onnxruntime as ort

from irpass.errors import OutputError

__all__ = ["OrtStyle", "convert_to_ort", "offline_optimize"]

logger = logging.getLogger(__name__)

OrtStyle = Literal["fixed", "runtime"]


def convert_to_ort(
    model_path: pathlib.Path,
    out_dir: pathlib.Path,
    style: OrtStyle,
    platform: Literal["arm", "amd64"] | None,
) -> list[pathlib.Path]:
    """Convert ``model_path`` to ORT format into ``out_dir``; return the files written.

    Raises OutputError with the converter's message when ONNX Runtime cannot convert it.
    """
    from onnxruntime.tools.convert_onnx_models_to_ort import (
        OptimizationStyle,
        convert_onnx_models_to_ort,
    )

    chosen = OptimizationStyle.Runtime if style == "runtime" else OptimizationStyle.Fixed
    with tempfile.TemporaryDirectory(prefix="irpass-ort-") as tmp:
        work = pathlib.Path(tmp)
        source = work / "in" / model_path.name
        source.parent.mkdir()
        shutil.copy2(model_path, source)
        for extra in model_path.parent.glob(model_path.name + ".data"):
            shutil.copy2(extra, source.parent / extra.name)
        produced = work / "out"
        printed = io.StringIO()
        # the converter's helpers log INFO lines through their own stderr handler
        helper_log = logging.getLogger("ort_format_model.utils")
        level = helper_log.level
        helper_log.setLevel(logging.WARNING)
        # the sessions the converter creates log warnings (ORT's default severity) on stderr
        ort.set_default_logger_severity(3)
        try:
            with contextlib.redirect_stdout(printed):
                convert_onnx_models_to_ort(
                    source,
                    output_dir=produced,
                    optimization_styles=[chosen],
                    target_platform=platform,
                )
        except Exception as exc:
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise OutputError(
                f"ONNX Runtime's ORT-format converter failed: {message}",
                hint="the .onnx model is still written; check the ops with `irpass inspect`",
            ) from exc
        finally:
            ort.set_default_logger_severity(2)  # ONNX Runtime's default: warnings
            helper_log.setLevel(level)
            logger.debug("convert_onnx_models_to_ort: %s", printed.getvalue().strip())
        written = []
        for item in sorted(produced.iterdir()):
            if item.suffix in (".ort", ".config"):
                target = out_dir / item.name
                shutil.move(str(item), target)
                written.append(target)
    return written


def offline_optimize(model_path: pathlib.Path, out_path: pathlib.Path) -> pathlib.Path:
    """Write the model as ONNX Runtime runs it after ``basic`` graph optimizations."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(out_path)
    options.log_severity_level = 3
    try:
        ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise OutputError(
            f"ONNX Runtime could not write the optimized model: {exc}",
            hint="the .onnx model is still written; set offline_optimized to false",
        ) from exc
    return out_path
