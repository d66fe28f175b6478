"""Truncated SVD of a weight matrix, plain or whitened by the statistics of its input.

A linear layer maps input vectors ``x`` (n) to ``y = W x`` (m). A rank-``r`` replacement
``W ~ A B`` with ``A`` (m x r) and ``B`` (r x n) stores ``r (m + n)`` numbers instead of ``m n``.

Plain SVD minimizes the weight error ``||W - A B||_F``: with ``W = U diag(s) V^T``,
``A = U_r diag(s_r)^1/2`` and ``B = diag(s_r)^1/2 V_r^T`` (Eckart-Young).

Data-aware (whitened) SVD minimizes the *output* error on the inputs the layer actually sees,
``E ||(W - A B) x||^2 = ||(W - A B) S||_F^2`` where ``S S^T = C = E[x x^T]``. Truncating the SVD
of ``W S`` and undoing ``S`` is optimal for that objective (the SVD-LLM construction):

    W S = U diag(s) V^T,   A = U_r diag(s_r)^1/2,   B = diag(s_r)^1/2 V_r^T S^-1

``S`` comes from the eigendecomposition ``C = Q diag(l) Q^T`` (``S = Q diag(l)^1/2``): unlike a
Cholesky factor it exists for singular ``C`` (dead ReLU channels, fewer samples than features),
and any ``S`` with ``S S^T = C`` gives the same truncation. Eigenvalues are damped by a fraction
of their mean (as GPTQ damps its Hessian) so that directions the calibration data never excited
are still kept in proportion to the weight instead of being dropped blindly. At full rank
``A B = W S S^-1 = W`` whatever ``S`` is, so the factorization is exact there.

When only per-feature second moments are affordable (very wide inputs), ``S`` is diagonal
(ASVD-style activation scaling): still exact at full rank, weaker than full whitening.

Sequential (error-compensating) mode: once layers upstream are factorized, this layer sees
``x~`` instead of ``x``. Minimizing ``E ||W x - W' x~||^2 + d ||W' - W||^2`` over rank-r ``W'``
(a reduced-rank regression, ridge towards ``W`` with the same damping ``d``) splits into the
unconstrained optimum and a whitened truncation::

    W* = W (K + d I) (C~ + d I)^-1       K = E[x x~^T],  C~ = E[x~ x~^T] = S S^T - d I
    W' = truncation of W* S, then undo S   (the same construction with W* for W)

With no upstream change (``x~ = x``) ``W* = W`` exactly, so this generalizes the above.
"""

from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["Decomposition", "Whitening", "decompose", "regression_target", "singular_values"]


@dataclasses.dataclass(frozen=True)
class Whitening:
    """A square root ``S`` of an input second-moment matrix and its inverse.

    Attributes:
        s: ``S`` (n x n) with ``S S^T`` = the damped second moment.
        s_inv: ``S^-1``.
        kind: ``full`` (eigendecomposition) or ``diagonal`` (per-feature scaling).
    """

    s: np.ndarray
    s_inv: np.ndarray
    kind: str
    damping: float = 0.0

    @classmethod
    def from_moment(cls, moment: np.ndarray, damp: float = 0.01) -> Whitening:
        """Whitening for the second-moment matrix ``moment`` (n x n, symmetric PSD)."""
        moment = np.asarray(moment, dtype=np.float64)
        eigenvalues, q = np.linalg.eigh((moment + moment.T) / 2)
        clipped = np.clip(eigenvalues, 0.0, None)
        delta = _damping(clipped, damp)
        root = np.sqrt(clipped + delta)
        return cls(s=q * root, s_inv=(q / root).T, kind="full", damping=delta)

    @classmethod
    def diagonal(cls, mean_square: np.ndarray, damp: float = 0.01) -> Whitening:
        """Per-feature scaling by the root mean square of each input feature."""
        clipped = np.clip(np.asarray(mean_square, dtype=np.float64), 0.0, None)
        delta = _damping(clipped, damp)
        root = np.sqrt(clipped + delta)
        return cls(s=np.diag(root), s_inv=np.diag(1.0 / root), kind="diagonal", damping=delta)


def _damping(eigenvalues: np.ndarray, damp: float) -> float:
    """``damp`` times the mean eigenvalue, floored so that ``S^-1`` stays well conditioned.

    Without the floor a feature that never varies (a border pixel, a dead ReLU) would get an
    ``S^-1`` entry of 1/sqrt(round-off) and the factors would overflow float32.
    """
    mean = float(eigenvalues.mean()) if eigenvalues.size else 0.0
    largest = float(eigenvalues.max()) if eigenvalues.size else 0.0
    return max(damp * mean, 1e-9 * largest, 1e-30)


def regression_target(w: np.ndarray, cross: np.ndarray, whitening: Whitening) -> np.ndarray:
    """``W* = W (K + d I) (C~ + d I)^-1``: what a layer fed ``x~`` should become (sequential).

    ``cross`` is ``K = E[x x~^T]`` (reference inputs by the inputs the layer now receives) and
    ``whitening`` is built from ``C~ = E[x~ x~^T]``.
    """
    k = np.asarray(cross, dtype=np.float64) + whitening.damping * np.eye(cross.shape[0])
    return np.asarray(w, dtype=np.float64) @ k @ whitening.s_inv.T @ whitening.s_inv


@dataclasses.dataclass(frozen=True)
class Decomposition:
    """The SVD of ``W S`` (``S = I`` for plain SVD) of one weight matrix ``W`` (m x n).

    ``energy`` holds the squared singular values, largest first: ``energy[r:].sum()`` is the
    squared error of the rank-``r`` truncation, measured in weight space (plain) or as output
    error energy under the whitening's second moment (data-aware).
    """

    u: np.ndarray
    singular_values: np.ndarray
    vt: np.ndarray
    whitening: Whitening | None

    @property
    def energy(self) -> np.ndarray:
        """Squared singular values, descending."""
        return self.singular_values**2

    @property
    def full_rank(self) -> int:
        """``min(m, n)``: the rank at which the factorization is exact."""
        return int(self.singular_values.size)

    def tail_energy(self, rank: int) -> float:
        """Squared (whitened) error of keeping ``rank`` singular values."""
        return float(self.energy[rank:].sum())

    def factors(self, rank: int) -> tuple[np.ndarray, np.ndarray]:
        """``(A, B)`` with ``A`` (m x rank), ``B`` (rank x n) and ``A @ B ~ W``."""
        if not 1 <= rank <= self.full_rank:
            raise ValueError(f"rank must be in [1, {self.full_rank}], got {rank}")
        root = np.sqrt(self.singular_values[:rank])
        a = self.u[:, :rank] * root
        b = root[:, None] * self.vt[:rank]
        if self.whitening is not None:
            b = b @ self.whitening.s_inv
        return a, b


def _whitened(matrix: np.ndarray, whitening: Whitening | None) -> np.ndarray:
    w = np.asarray(matrix, dtype=np.float64)
    if w.ndim != 2:
        raise ValueError(f"expected a 2-D weight matrix, got shape {w.shape}")
    if whitening is None:
        return w
    if whitening.s.shape != (w.shape[1], w.shape[1]):
        raise ValueError(
            f"whitening of shape {whitening.s.shape} does not match a weight with "
            f"{w.shape[1]} input features"
        )
    return w @ whitening.s


def decompose(matrix: np.ndarray, whitening: Whitening | None = None) -> Decomposition:
    """SVD of ``matrix @ whitening.s`` (or of ``matrix``), computed in float64."""
    u, values, vt = np.linalg.svd(_whitened(matrix, whitening), full_matrices=False)
    return Decomposition(u=u, singular_values=values, vt=vt, whitening=whitening)


def singular_values(matrix: np.ndarray, whitening: Whitening | None = None) -> np.ndarray:
    """Just the singular values of ``matrix @ whitening.s`` (cheaper than :func:`decompose`)."""
    return np.linalg.svd(_whitened(matrix, whitening), compute_uv=False)
