"""What one ``optimize`` run did: per-pass records and the run as a whole (report.json).

Plain data with ``to_dict()``; rendering lives in :mod:`irpass.report` (HTML) and the CLI.
"""

from __future__ import annotations

import dataclasses
from typing import Any

__all__ = ["PassRecord", "RunReport", "Verification"]


@dataclasses.dataclass
class Verification:
    """How the model was checked after a pass."""

    #: equal | drift <metric> | structural only | skipped | failed (never "ok": a status says
    #: which check ran)
    status: str = "skipped"
    checker: bool | None = None
    ort_load: bool | None = None
    max_abs_error: float | None = None
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return dataclasses.asdict(self)


@dataclasses.dataclass
class PassRecord:
    """One execution of one pass."""

    step: str
    name: str
    options: str
    lossless: bool
    modified: bool = False
    seconds: float = 0.0
    before: dict[str, Any] = dataclasses.field(default_factory=dict)
    after: dict[str, Any] = dataclasses.field(default_factory=dict)
    stats: dict[str, int] = dataclasses.field(default_factory=dict)
    details: dict[str, Any] = dataclasses.field(default_factory=dict)
    verification: Verification = dataclasses.field(default_factory=Verification)
    metrics: dict[str, float] | None = None
    error: str | None = None
    rolled_back: bool = False
    dump: str | None = None
    #: the pass changed the model but returned ``modified=False``
    underreported: bool = False
    #: hygiene items this pass introduced, by invariant (see irpass.verify.hygiene)
    hygiene: dict[str, list[str]] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        data = dataclasses.asdict(self)
        data["verification"] = self.verification.to_dict()
        return data


@dataclasses.dataclass
class RunReport:
    """The whole run: pipeline, totals and every pass record."""

    irpass_version: str
    input: str | None
    pipeline: str
    expanded_pipeline: str
    output: str | None = None
    target: str | None = None
    seconds: float = 0.0
    before: dict[str, Any] = dataclasses.field(default_factory=dict)
    after: dict[str, Any] = dataclasses.field(default_factory=dict)
    metrics_before: dict[str, float] | None = None
    metrics_after: dict[str, float] | None = None
    passes: list[PassRecord] = dataclasses.field(default_factory=list)
    warnings: list[str] = dataclasses.field(default_factory=list)
    diff: dict[str, Any] | None = None
    target_checks: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    #: how verification ran: mode, feeds, their input shapes, notes, the final check
    verification: dict[str, Any] = dataclasses.field(default_factory=dict)
    final_verification: Verification | None = None
    #: the input shapes every MACs / peak activation number (before, after, per pass) is
    #: counted at: the first verification feed's or --input-shapes; None when neither exists
    #: and symbolic dims count as 1
    cost_shapes: dict[str, list[int]] | None = None
    #: where ``cost_shapes`` came from: ``declared``, ``--input-shapes``, ``verification`` (the
    #: first verification feed's) or ``no verification shapes``
    cost_shapes_source: str = ""
    #: hygiene items left at the end, each with the pass that introduced it
    hygiene: list[dict[str, str]] = dataclasses.field(default_factory=list)
    sweeps: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    search: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (what report.json holds)."""
        data = dataclasses.asdict(self)
        data["passes"] = [record.to_dict() for record in self.passes]
        if self.final_verification is not None:
            data["final_verification"] = self.final_verification.to_dict()
        return data

    def modified_passes(self) -> list[PassRecord]:
        """Records of passes that changed the model."""
        return [record for record in self.passes if record.modified]
