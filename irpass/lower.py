"""Lowering PyTorch modules to ONNX: ``torch.nn.Module`` + example inputs -> ``ir.Model``.

A thin, opinionated wrapper over ``torch.onnx.export`` (the dynamo exporter, which already
produces an onnx-ir model):

- a modern opset (:data:`DEFAULT_OPSET`, the one torch's exporter targets by default);
- by default only constant folding and dead-code removal run after export (``optimize="fold"``),
  so BatchNormalization and the other patterns irpass's own passes fuse stay in the graph and
  those fusions show in irpass's report; ``"full"`` runs torch's whole optimizer (which folds
  BatchNorm into Conv), ``"none"`` keeps the raw export;
- the first axis of every input is a dynamic ``batch`` dimension unless told otherwise, and
  further dynamic axes can be named per input;
- the result is self-contained: weights are copied out of torch tensors into numpy-backed
  onnx-ir tensors, so the model outlives the module and needs no torch to be saved or optimized.

torch is an optional dependency (``pip install irpass[torch]``); it is imported only when a
function of this module runs, never when irpass is imported.

:func:`load_factory` resolves ``"package.module:factory"`` for ``irpass lower``: the factory is
called without arguments and returns either ``(module, example_inputs)`` or a module carrying
an ``example_inputs`` attribute (a tuple of tensors), which is what the builders in ``models/``
return.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import pathlib
import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import onnx_ir as ir

from irpass.errors import LoweringError, UnsupportedModelError
from irpass.importing import import_callable
from irpass.ir import save_model

__all__ = [
    "DEFAULT_OPSET",
    "LoweringError",
    "Optimize",
    "load_factory",
    "lower",
    "lower_to_file",
    "require_torch",
]

logger = logging.getLogger(__name__)

#: The default-domain opset lowered models use (torch.onnx's own default for the dynamo exporter).
DEFAULT_OPSET = 20

_ANSI = re.compile(r"\x1b\[[0-9;]*m")

#: What runs after export: torch's whole optimizer, constant folding only, or nothing.
Optimize = Literal["full", "fold", "none"]


def require_torch() -> Any:
    """Import and return torch, or raise a LoweringError telling how to install it."""
    try:
        import torch
    except ImportError as exc:
        raise LoweringError(
            "lowering PyTorch modules needs torch, which is not installed",
            hint="pip install 'irpass[torch]'",
        ) from exc
    return torch


def _as_tuple(example_inputs: Any) -> tuple[Any, ...]:
    if isinstance(example_inputs, tuple):
        return example_inputs
    if isinstance(example_inputs, list):
        return tuple(example_inputs)
    return (example_inputs,)


def _dynamic_shapes(
    torch: Any,
    inputs: tuple[Any, ...],
    dynamic_batch: bool,
    dynamic_axes: Mapping[int, Mapping[int, str]] | None,
) -> tuple[dict[int, Any], ...] | None:
    if not dynamic_batch and not dynamic_axes:
        return None
    dims: dict[str, Any] = {}

    def dim(name: str) -> Any:
        if name not in dims:
            dims[name] = torch.export.Dim(name)
        return dims[name]

    shapes: list[dict[int, Any]] = []
    for index, value in enumerate(inputs):
        spec: dict[int, Any] = {}
        rank = value.dim() if hasattr(value, "dim") else 0
        if dynamic_batch and rank >= 1:
            spec[0] = dim("batch")
        for axis, name in (dynamic_axes or {}).get(index, {}).items():
            spec[axis] = dim(name)
        shapes.append(spec)
    return tuple(shapes)


def _detach_weights(model: ir.Model) -> None:
    """Replace torch-backed initializer tensors by numpy-backed ones (the model outlives torch)."""
    for graph in model.graphs():
        for value in graph.initializers.values():
            tensor = value.const_value
            if tensor is None or (isinstance(tensor, ir.Tensor) and isinstance(
                tensor.raw, np.ndarray
            )):
                continue
            value.const_value = ir.Tensor(tensor.numpy(), name=tensor.name)


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence the exporter's own chatter (missing torchvision ops, deprecations in torch).

    Export failures still raise; what is silenced says nothing about the user's module.
    """
    exporter_logger = logging.getLogger("torch.onnx")
    level = exporter_logger.level
    exporter_logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            yield
    finally:
        exporter_logger.setLevel(level)


def _fold(model: ir.Model) -> None:
    """Constant folding and cleanup, but none of the fusions (BatchNorm stays)."""
    from onnx_ir.passes import common
    from onnxscript import optimizer

    common.InlinePass()(model)
    for _ in range(2):
        optimizer.fold_constants(model)
        common.RemoveUnusedNodesPass()(model)
    ir.passes.Sequential(
        common.LiftConstantsToInitializersPass(lift_all_constants=True, size_limit=0),
        common.CommonSubexpressionEliminationPass(),
        common.RemoveUnusedNodesPass(),
    )(model)


def lower(
    module: Any,
    example_inputs: Any,
    *,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
    opset: int = DEFAULT_OPSET,
    dynamic_batch: bool = True,
    dynamic_axes: Mapping[int, Mapping[int, str]] | None = None,
    optimize: Optimize = "fold",
) -> ir.Model:
    """Lower a ``torch.nn.Module`` to an onnx-ir model.

    Args:
        module: The module; it is put in eval mode (BatchNorm/Dropout exported for inference).
        example_inputs: A tensor or a tuple of tensors the module accepts.
        input_names: Names for the graph inputs (default: torch's argument names).
        output_names: Names for the graph outputs.
        opset: Default-domain opset of the result.
        dynamic_batch: Make axis 0 of every input (and so of the outputs) a ``batch`` dimension.
        dynamic_axes: More dynamic axes, ``{input_index: {axis: dim_name}}``; the same name on
            two inputs means the same size.
        optimize: ``"fold"`` (constant folding, BatchNorm kept), ``"full"`` (torch's optimizer,
            fusions included) or ``"none"``.

    Returns:
        The model, with weights held in numpy arrays.

    Raises:
        LoweringError: torch is missing, or the exporter failed (its message is kept).
    """
    torch = require_torch()
    if not isinstance(module, torch.nn.Module):
        raise LoweringError(
            f"expected a torch.nn.Module, got {type(module).__name__}",
            hint="the factory must return a module or (module, example_inputs)",
        )
    if optimize not in ("full", "fold", "none"):
        raise LoweringError(
            f"optimize must be 'full', 'fold' or 'none', got {optimize!r}",
            hint="full runs torch's optimizer, fold only folds constants, none keeps the export",
        )
    inputs = _as_tuple(example_inputs)
    module.eval()
    shapes = _dynamic_shapes(torch, inputs, dynamic_batch, dynamic_axes)
    # The exporter reports progress on stdout; a library must not print.
    sink = io.StringIO()
    try:
        with torch.no_grad(), contextlib.redirect_stdout(sink), _quiet_exporter():
            program = torch.onnx.export(
                module,
                inputs,
                dynamo=True,
                input_names=list(input_names) if input_names else None,
                output_names=list(output_names) if output_names else None,
                opset_version=opset,
                dynamic_shapes=shapes,
                optimize=optimize == "full",
                verbose=False,
            )
    except Exception as exc:
        text = _ANSI.sub("", str(exc)).strip()
        first = text.splitlines()[0] if text else type(exc).__name__
        raise LoweringError(
            f"torch.onnx.export failed for {type(module).__name__}: {first}",
            hint="run with --debug for the exporter's full message",
        ) from exc
    finally:
        if sink.getvalue().strip():
            logger.debug("%s", sink.getvalue().strip())
    if program is None:
        raise LoweringError(
            f"torch.onnx.export returned no program for {type(module).__name__}",
            hint="run with --debug for the exporter's messages",
        )
    model: ir.Model = program.model
    if optimize == "fold":
        _fold(model)
    _detach_weights(model)
    model.producer_name = "irpass.lower"
    model.producer_version = f"torch {torch.__version__}"
    return model


def lower_to_file(
    module: Any, example_inputs: Any, path: str | os.PathLike[str], **kwargs: Any
) -> ir.Model:
    """:func:`lower` and save the result atomically to ``path``; returns the model."""
    model = lower(module, example_inputs, **kwargs)
    save_model(model, pathlib.Path(path))
    return model


def load_factory(spec: str) -> tuple[Any, tuple[Any, ...]]:
    """Resolve ``"package.module:factory"`` or ``"file.py:factory"`` and call it.

    Returns ``(module, example_inputs)``. The current folder is not on the import path: name
    a file there (``models/zoo.py:resnet_cnn``) to import from it.
    """
    try:
        factory = import_callable(
            spec,
            LoweringError,
            hint="name a file or an installed module, e.g. "
            "irpass lower models/zoo.py:resnet_cnn -o resnet.onnx",
            what="factory",
        )
    except LoweringError as exc:
        cause = exc.__cause__
        if isinstance(cause, ImportError) and cause.name == "torch":
            require_torch()
        raise
    result = factory()
    if isinstance(result, tuple) and len(result) == 2:
        return result[0], _as_tuple(result[1])
    example = getattr(result, "example_inputs", None)
    if example is None:
        raise UnsupportedModelError(
            f"{spec} returned a {type(result).__name__} without example inputs",
            hint="return (module, example_inputs) or set module.example_inputs = (tensor, ...)",
        )
    return result, _as_tuple(example)
