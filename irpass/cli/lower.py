"""``irpass lower module:factory -o model.onnx``: lower a PyTorch module to ONNX."""

from __future__ import annotations

import argparse

from irpass.cli import console
from irpass.cli._markup import esc
from irpass.errors import DataError
from irpass.lower import DEFAULT_OPSET, load_factory, lower_to_file

COMMAND = "lower"
HELP = "lower a PyTorch module (module:factory) to ONNX (needs the torch extra)"

__all__ = ["COMMAND", "HELP", "add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``irpass lower``."""
    parser.add_argument(
        "factory",
        help="file.py:function or package.module:function returning (module, example_inputs) "
        "or a module with an example_inputs attribute, e.g. models/zoo.py:resnet_cnn",
    )
    parser.add_argument("-o", "--output", required=True, help="where to write the .onnx file")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help="default-domain opset")
    parser.add_argument(
        "--static-batch", action="store_true", help="keep the example's batch size fixed"
    )
    parser.add_argument(
        "--dynamic",
        action="append",
        default=[],
        metavar="INPUT:AXIS=NAME",
        help="another dynamic axis, e.g. 0:1=sequence (input index 0, axis 1); repeatable",
    )
    parser.add_argument("--input-names", help="comma-separated graph input names")
    parser.add_argument("--output-names", help="comma-separated graph output names")
    parser.add_argument(
        "--optimize",
        choices=["fold", "full", "none"],
        default="fold",
        help="after export: constant folding only (default; BatchNorm kept for irpass to fuse), "
        "torch's full optimizer, or nothing",
    )


def _dynamic_axes(items: list[str]) -> dict[int, dict[int, str]]:
    axes: dict[int, dict[int, str]] = {}
    for item in items:
        try:
            where, name = item.split("=", 1)
            index, axis = (int(v) for v in where.split(":", 1))
        except ValueError:
            raise DataError(
                f"--dynamic {item!r} is not INPUT:AXIS=NAME", hint="e.g. --dynamic 0:1=sequence"
            ) from None
        axes.setdefault(index, {})[axis] = name
    return axes


def run(args: argparse.Namespace) -> int:
    """Lower the factory's module and save it."""
    module, example_inputs = load_factory(args.factory)
    # Builders may carry their preferred names and dynamic axes (the models/ zoo does).
    input_names = getattr(module, "input_names", None)
    output_names = getattr(module, "output_names", None)
    dynamic_axes = dict(getattr(module, "dynamic_axes", None) or {})
    dynamic_axes.update(_dynamic_axes(args.dynamic))
    model = lower_to_file(
        module,
        example_inputs,
        args.output,
        input_names=args.input_names.split(",") if args.input_names else input_names,
        output_names=args.output_names.split(",") if args.output_names else output_names,
        opset=args.opset,
        dynamic_batch=not args.static_batch,
        dynamic_axes=dynamic_axes,
        optimize=args.optimize,
    )
    inputs = ", ".join(
        f"{v.name} {v.dtype.name.lower() if v.dtype else '?'}"
        f"[{', '.join(str(d) for d in (v.shape or []))}]"
        for v in model.graph.inputs
    )
    console.print(
        esc(
            f"wrote {args.output}: {len(model.graph)} nodes, opset "
            f"{model.opset_imports.get('', '?')}, inputs {inputs}"
        ),
        soft_wrap=True,
    )
    return 0
