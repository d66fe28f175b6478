"""Input shapes for a target: resolve the shape profile, fix dims, re-batch data to match.

Runtimes differ in what they do with a dynamic dim: ONNX Runtime's CPU EP takes any value,
TensorRT needs an optimization profile (min/opt/max) when the engine is built, NNAPI takes none.
:func:`resolve_profile` decides every input's (min, opt, max) shape from, in order:

1. the user's shapes (``--input-shapes``, the *opt* shape; ``--max-shapes`` widens the range);
2. the first batch of the calibration or evaluation data (batch dim taken as 1: one sample is
   what a device runs; the other dims, e.g. a sequence length, as the data has them);
3. 1 for a leading (batch) dim;

and says which input and dim is still unknown otherwise. :func:`rebatch` splits data batches to
the fixed batch size once the model only accepts that.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import onnx_ir as ir

from irpass.context import Feed, FeedSource
from irpass.errors import TargetError

__all__ = ["Profile", "dynamic_input_names", "opt_shapes", "rebatch", "resolve_profile"]

#: Per input: (min, opt, max) shapes.
Profile = dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]


def _inputs(model: ir.Model) -> list[ir.Value]:
    initializers = set(model.graph.initializers)
    return [v for v in model.graph.inputs if v.name not in initializers]


def dynamic_input_names(model: ir.Model) -> list[str]:
    """Names of graph inputs with at least one dim that is not a number."""
    return [
        str(v.name)
        for v in _inputs(model)
        if v.shape is None or not all(isinstance(d, int) for d in v.shape)
    ]


def _dim_label(dim: object) -> str:
    """A symbolic dim's name, or "unnamed" (onnx-ir prints an unnamed one as None or ?)."""
    value = getattr(dim, "value", dim)
    return str(value) if value not in (None, "", "?") else "unnamed"


def _shape_error(name: str, axis: int, dim: object, hint_shape: str) -> TargetError:
    return TargetError(
        f"input {name!r} dim {axis} ({_dim_label(dim)}) has no value for this target",
        hint=(
            f"give it with --input-shapes {name}:{hint_shape} (the size the device will "
            "run), or pass --calib-data / --eval-data: their first batch gives the sizes"
        ),
    )


def resolve_profile(
    model: ir.Model,
    user: Mapping[str, tuple[int, ...]] | None = None,
    maximum: Mapping[str, tuple[int, ...]] | None = None,
    sample: Feed | None = None,
) -> Profile:
    """(min, opt, max) shape of every input; see the module docstring for the order."""
    user = dict(user or {})
    maximum = dict(maximum or {})
    names = {str(v.name) for v in _inputs(model)}
    unknown = sorted((set(user) | set(maximum)) - names)
    if unknown:
        raise TargetError(
            f"no model input named {', '.join(unknown)}",
            hint="model inputs: " + ", ".join(sorted(names)),
        )
    profile: Profile = {}
    for value in _inputs(model):
        name = str(value.name)
        dims = list(value.shape) if value.shape is not None else None
        if name in user:
            opt = tuple(user[name])
            if dims is not None and len(dims) != len(opt):
                raise TargetError(
                    f"--input-shapes gives {name!r} rank {len(opt)}, the model has {len(dims)}",
                    hint="give one size per axis (irpass inspect shows the inputs)",
                )
            for axis, (dim, given) in enumerate(zip(dims or (), opt, strict=False)):
                if isinstance(dim, int) and dim != given:
                    raise TargetError(
                        f"--input-shapes gives {name!r} dim {axis} = {given}; the model fixes "
                        f"it to {dim}",
                        hint="only symbolic dims can be chosen",
                    )
        else:
            opt = _from_model_or_data(name, dims, sample)
        high = tuple(maximum.get(name, opt))
        if len(high) != len(opt) or any(h < o for h, o in zip(high, opt, strict=True)):
            raise TargetError(
                f"--max-shapes for {name!r} must have its rank and be >= {opt}",
                hint="--max-shapes is the largest shape the engine must accept",
            )
        # a range down to batch 1 when the batch dim is dynamic and a maximum was asked for
        batch_dynamic = dims is not None and bool(dims) and not isinstance(dims[0], int)
        low = (1, *opt[1:]) if high != opt and batch_dynamic and opt else opt
        profile[name] = (low, opt, high)
    return profile


def _from_model_or_data(
    name: str, dims: Sequence[object] | None, sample: Feed | None
) -> tuple[int, ...]:
    data = None if sample is None or name not in sample else np.shape(sample[name])
    if dims is None:
        if data is None:
            raise TargetError(
                f"input {name!r} has no declared shape", hint=f"give --input-shapes {name}:..."
            )
        return (1, *data[1:]) if data else ()
    shape = []
    for axis, dim in enumerate(dims):
        if isinstance(dim, int):
            shape.append(dim)
        elif axis == 0:
            shape.append(1)
        elif data is not None and len(data) == len(dims):
            shape.append(int(data[axis]))
        else:
            placeholders = [
                str(d) if isinstance(d, int) else "1" if i == 0 else f"<{_dim_label(d)}>"
                for i, d in enumerate(dims)
            ]
            example = "x".join(placeholders).replace("<unnamed>", "<size>")
            raise _shape_error(name, axis, dim, example)
    return tuple(shape)


def opt_shapes(profile: Profile) -> dict[str, tuple[int, ...]]:
    """The opt shape of every input (what a fixed-shape target is fixed to)."""
    return {name: shapes[1] for name, shapes in profile.items()}


def rebatch(source: FeedSource, batch: int) -> FeedSource:
    """A FeedSource whose feeds are split along axis 0 into batches of ``batch`` samples.

    Arrays whose first dim is not the feed's batch size (scalars, shared tensors) are passed
    whole with every piece; a last piece smaller than ``batch`` is dropped (the model would
    reject it). Used when a fixed-shape model accepts only ``batch`` samples.
    """
    if batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch}")

    def feeds() -> Iterator[Feed]:
        for feed in source():
            sizes = {int(np.shape(v)[0]) for v in feed.values() if np.ndim(v)}
            size = max(sizes) if sizes else 1
            if size <= batch:
                yield feed
                continue
            for start in range(0, size - batch + 1, batch):
                yield {
                    k: (v[start : start + batch] if np.ndim(v) and np.shape(v)[0] == size else v)
                    for k, v in feed.items()
                }

    return feeds
