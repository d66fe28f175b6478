"""The base class of every irpass pass.

An irpass pass *is* an ``onnx_ir.passes.InPlacePass``: it runs inside onnx-ir's ``PassManager``,
onnxscript's pipelines or any tool built on onnx-ir. On top of that contract it declares typed
metadata as class attributes, checked when the class is defined so that a misspelled attribute
fails at import time rather than silently disabling something:

- ``name``: the pipeline name (snake_case), unique in the registry;
- ``lossless``: True when the rewrite never changes outputs beyond float rounding;
- ``Options``: a dataclass of options with defaults (documented in its docstring / field metadata);
- ``recurses_into_subgraphs``: whether the pass also rewrites If/Loop/Scan bodies.

``self.stats`` is a counter of what the pass did (e.g. rewrites per rule); the manager copies it
into the report. ``self.details`` is an optional JSON-ready section for what does not fit a
counter (e.g. pruning's per-layer reconstruction errors); the manager copies it too.
"""

from __future__ import annotations

import abc
import collections
import dataclasses
import logging
import re
from typing import Any, ClassVar

import onnx_ir as ir

from irpass.context import PassContext

__all__ = ["IrpassPass", "NoOptions", "option"]

logger = logging.getLogger(__name__)

_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclasses.dataclass(frozen=True)
class NoOptions:
    """This pass takes no options."""


def option(default: Any, doc: str) -> Any:
    """Declare an options-dataclass field with a default value and a one-line description."""
    if isinstance(default, (list, dict, set)):
        return dataclasses.field(
            default_factory=lambda: type(default)(default), metadata={"doc": doc}
        )
    return dataclasses.field(default=default, metadata={"doc": doc})


class IrpassPass(ir.passes.InPlacePass, abc.ABC):
    """Base class of irpass passes: an in-place onnx-ir pass with typed metadata.

    Subclasses implement :meth:`call` and return ``ir.passes.PassResult(model, modified)``.
    A pass must leave the model unchanged when it raises: check first, then rewrite.
    """

    name: ClassVar[str]
    lossless: ClassVar[bool]
    Options: ClassVar[type] = NoOptions
    recurses_into_subgraphs: ClassVar[bool] = True

    #: Set ``_abstract = True`` in the body of an intermediate base class to skip validation.
    _abstract: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("_abstract", False):
            return
        name = cls.__dict__.get("name", getattr(cls, "name", None))
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise TypeError(f"{cls.__qualname__}.name must be a snake_case string, got {name!r}")
        if not isinstance(getattr(cls, "lossless", None), bool):
            raise TypeError(f"{cls.__qualname__}.lossless must be declared as a bool")
        if not dataclasses.is_dataclass(cls.Options):
            raise TypeError(f"{cls.__qualname__}.Options must be a dataclass")
        for field in dataclasses.fields(cls.Options):
            if (
                field.default is dataclasses.MISSING
                and field.default_factory is dataclasses.MISSING
            ):
                raise TypeError(f"{cls.__qualname__}.Options.{field.name} needs a default value")
        if not (cls.__doc__ or "").strip():
            raise TypeError(f"{cls.__qualname__} needs a docstring (it is the pass's help text)")

    def __init__(self, options: Any = None, context: PassContext | None = None) -> None:
        if options is None:
            options = self.Options()
        elif not isinstance(options, self.Options):
            raise TypeError(
                f"{type(self).__name__} takes options of type {self.Options.__name__}, "
                f"got {type(options).__name__}"
            )
        self.options = options
        self.context = context if context is not None else PassContext()
        self.stats: collections.Counter[str] = collections.Counter()
        self.details: dict[str, Any] = {}
        #: Why this run of the pass grew the model's weights, when it did (e.g. "materialized
        #: ConstantOfShape weights"); a lossless pipeline that grows weights names every pass
        #: that did so without a reason (irpass.verify.hygiene).
        self.growth_reasons: list[str] = []

    @classmethod
    def summary(cls) -> str:
        """The first line of the pass's docstring."""
        return (cls.__doc__ or "").strip().splitlines()[0]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.options!r})"
