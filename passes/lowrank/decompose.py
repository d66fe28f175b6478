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
"""

from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["Decomposition", "Whitening", "decompose"]


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

    @classmethod
    def from_moment(cls, moment: np.ndarray, damp: float = 0.01) -> Whitening:
        """Whitening for the second-moment matrix ``moment`` (n x n, symmetric PSD)."""
        moment = np.asarray(moment, dtype=np.float64)
        eigenvalues, q = np.linalg.eigh((moment + moment.T) / 2)
        eigenvalues = _damped(eigenvalues, damp)
        root = np.sqrt(eigenvalues)
        return cls(s=q * root, s_inv=(q / root).T, kind="full")

    @classmethod
    def diagonal(cls, mean_square: np.ndarray, damp: float = 0.01) -> Whitening:
        """Per-feature scaling by the root mean square of each input feature."""
        root = np.sqrt(_damped(np.asarray(mean_square, dtype=np.float64), damp))
        return cls(s=np.diag(root), s_inv=np.diag(1.0 / root), kind="diagonal")


def _damped(eigenvalues: np.ndarray, damp: float) -> np.ndarray:
    """Clip negative round-off and add ``damp`` times the mean eigenvalue (never zero)."""
    clipped = np.clip(eigenvalues, 0.0, None)
    mean = float(clipped.mean()) if clipped.size else 0.0
    # A layer whose input is identically zero still gets an invertible S.
    return clipped + max(damp * mean, np.finfo(np.float64).tiny ** 0.5)


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


def decompose(matrix: np.ndarray, whitening: Whitening | None = None) -> Decomposition:
    """SVD of ``matrix @ whitening.s`` (or of ``matrix``), computed in float64."""
    w = np.asarray(matrix, dtype=np.float64)
    if w.ndim != 2:
        raise ValueError(f"expected a 2-D weight matrix, got shape {w.shape}")
    if whitening is not None:
        if whitening.s.shape != (w.shape[1], w.shape[1]):
            raise ValueError(
                f"whitening of shape {whitening.s.shape} does not match a weight with "
                f"{w.shape[1]} input features"
            )
        w = w @ whitening.s
    u, singular_values, vt = np.linalg.svd(w, full_matrices=False)
    return Decomposition(u=u, singular_values=singular_values, vt=vt, whitening=whitening)
