"""How an accuracy-budgeted search runs: the knobs of :func:`irpass.optimize`'s ``search``."""

from __future__ import annotations

import dataclasses

__all__ = ["SearchSettings"]


@dataclasses.dataclass(frozen=True)
class SearchSettings:
    """Options of the search behind ``max_drop`` (the CLI's ``--objective``, ``--jobs``, ...).

    Attributes:
        objective: What the search minimizes: ``cost`` (the target's estimated cost,
            deterministic), ``size``, ``macs`` or ``latency`` measured on this machine.
        jobs: Parallel evaluations (None: one per CPU).
        executor: ``process``, ``serial``, ``ray`` or ``ray:ADDRESS``.
        budget_seconds: Stop trying new settings after this long (the best so far is kept).
        max_candidates: Evaluate at most this many settings.
        only: Search only these lossy passes (None: every lossy pass of the pipeline plus
            pruning and low-rank factorization when installed).
    """

    objective: str = "cost"
    jobs: int | None = None
    executor: str = "process"
    budget_seconds: float | None = None
    max_candidates: int = 60
    only: tuple[str, ...] | None = None
