"""Feeds checked against the model's inputs as they stream (:class:`ValidatedSource`)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import numpy as np

from irpass.data.inputs import InputSpec
from irpass.data.sources import DataSource
from irpass.errors import DataError

__all__ = ["ValidatedSource"]


def _convert(value: np.ndarray, spec: InputSpec, where: str) -> np.ndarray:
    expected = spec.dtype
    if expected is None or value.dtype == expected:
        return value
    got = value.dtype
    mismatch = DataError(
        f"{where}: input {spec.name!r} expects {spec.describe()}, the data give {got.name} "
        f"with shape {list(value.shape)}",
        hint=f"store {spec.name!r} as {expected.name}",
    )
    if got.kind == "f" and expected.kind == "f":
        return value.astype(expected)
    if got.kind in "iu" and expected.kind in "iu":
        info = np.iinfo(expected)
        if value.size and (value.min() < info.min or value.max() > info.max):
            raise mismatch
        return value.astype(expected)
    raise mismatch


class ValidatedSource(DataSource):
    """Wraps a source and checks (and, where lossless, adapts) every feed against the model.

    - every model input must be present (extra arrays are ignored);
    - dtypes must be of the same kind; other float / integer widths are cast;
    - ranks must match; data with one axis less get a batch axis in front;
    - fixed dimensions must match.
    """

    def __init__(self, source: DataSource, specs: Sequence[InputSpec]) -> None:
        self.source = source
        self.specs = list(specs)
        self.description = source.description
        self.indicative = source.indicative

    @property
    def num_samples(self) -> int | None:  # noqa: D102
        return self.source.num_samples

    def check(self, feed: Mapping[str, np.ndarray], index: int) -> dict[str, np.ndarray]:
        """Validate feed number ``index``; returns the adapted feed or raises DataError."""
        where = f"{self.description}, feed {index}"
        out: dict[str, np.ndarray] = {}
        missing = [s.name for s in self.specs if s.name not in feed]
        if missing:
            spec = next(s for s in self.specs if s.name == missing[0])
            raise DataError(
                f"{where}: no data for input {spec.name!r} (expects {spec.describe()}); "
                f"the data have {sorted(feed) or 'nothing'}",
                hint="name the arrays after the model's inputs: "
                + ", ".join(s.name for s in self.specs),
            )
        for spec in self.specs:
            value = np.asarray(feed[spec.name])
            if spec.rank is not None:
                if value.ndim == spec.rank - 1:
                    value = value[None]
                elif value.ndim != spec.rank:
                    raise DataError(
                        f"{where}: input {spec.name!r} expects rank {spec.rank} "
                        f"({spec.describe()}), the data have rank {value.ndim} with shape "
                        f"{list(value.shape)}",
                        hint="samples go along axis 0; the other axes must match the model",
                    )
                assert spec.shape is not None
                for axis, (dim, got) in enumerate(zip(spec.shape, value.shape, strict=True)):
                    if isinstance(dim, int) and dim != got:
                        raise DataError(
                            f"{where}: input {spec.name!r} expects {spec.describe()}, the "
                            f"data have shape {list(value.shape)} (axis {axis}: {got} != {dim})",
                            hint="the model's fixed dimensions must match; samples go along axis 0",
                        )
            out[spec.name] = _convert(value, spec, where)
        return out

    def feeds(self) -> Iterator[dict[str, np.ndarray]]:  # noqa: D102
        for index, feed in enumerate(self.source()):
            yield self.check(feed, index)
