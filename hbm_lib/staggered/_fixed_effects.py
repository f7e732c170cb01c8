"""Least squares for the two-way fixed-effects model without dummy matrices.

The normal equations of ``y_it = alpha_i + lambda_t`` have an arrow structure (a diagonal unit
block, a period block and a sparse unit-by-period count matrix coupling them), so the unit effects
are eliminated exactly and only a dense periods-by-periods system is solved, in ``O(N T + T^3)``
operations for ``N`` units and ``T`` periods.
"""

from __future__ import annotations

import numpy as np
from scipy import linalg, sparse
from scipy.sparse import csgraph

from hbm_lib.staggered._panel import Panel, show


class TwoWayFE:
    """Least squares for ``y_it = alpha_i + lambda_t`` on a set of (unit, period) cells.

    Normal equations ``[[D_a, B], [B', D_l]] [alpha; lambda] = [g_a; g_l]`` with ``D_a`` the unit
    counts, ``D_l`` the period counts and ``B`` the unit-by-period count matrix. Eliminating
    ``alpha = D_a^-1 (g_a - B lambda)`` leaves ``S lambda = g_l - B' D_a^-1 g_a`` with the Schur
    complement ``S = D_l - B' D_a^-1 B`` (a graph Laplacian over periods, singular along the
    constant vector). ``lambda`` of the first active period is fixed at 0 and the rest is solved by
    Cholesky. Units or periods without observations get effect 0 (they are not identified).
    """

    def __init__(self, u: np.ndarray, t: np.ndarray, n_units: int, n_periods: int):
        self.N, self.T = n_units, n_periods
        self.u, self.t = u, t
        self.n_i = np.bincount(u, minlength=n_units).astype(float)
        self.m_t = np.bincount(t, minlength=n_periods).astype(float)
        self.inv_n = np.divide(1.0, self.n_i, out=np.zeros(n_units), where=self.n_i > 0)
        self.B = sparse.csr_matrix((np.ones(len(u)), (u, t)), shape=(n_units, n_periods))
        self.B.sum_duplicates()
        active_units = self.n_i > 0
        active_periods = np.flatnonzero(self.m_t > 0)
        graph = sparse.bmat([[None, self.B], [self.B.T, None]], format="csr")
        n_comp, comp = csgraph.connected_components(graph, directed=False)
        isolated = (~active_units).sum() + (self.m_t == 0).sum()
        self.n_components = int(n_comp - isolated)
        self.unit_component = comp[:n_units]
        self.free = active_periods[1:]  # the first active period is the reference (lambda = 0)
        if self.n_components == 1 and self.free.size:
            s = np.diag(self.m_t) - (self.B.T @ self.B.multiply(self.inv_n[:, None]).tocsr()).toarray()
            s = s[np.ix_(self.free, self.free)]
            self.chol = linalg.cho_factor(s, lower=True)
        else:
            self.chol = None

    def solve(self, g_a: np.ndarray, g_l: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Solve the normal equations for right-hand sides ``g_a`` (N, k) and ``g_l`` (T, k)."""
        rhs = g_l - self.B.T @ (g_a * self.inv_n[:, None])
        x_l = np.zeros_like(rhs)
        if self.chol is not None:
            x_l[self.free] = linalg.cho_solve(self.chol, rhs[self.free])
        x_a = self.inv_n[:, None] * (g_a - self.B @ x_l)
        return x_a, x_l

    def fit(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Fixed effects fitted to ``y`` (one value per cell, in the order given to the constructor)."""
        g_a = np.bincount(self.u, weights=y, minlength=self.N)[:, None]
        g_l = np.bincount(self.t, weights=y, minlength=self.T)[:, None]
        x_a, x_l = self.solve(g_a, g_l)
        return x_a[:, 0], x_l[:, 0]

    def unit_leverage(self) -> np.ndarray:
        """Sum of the leverages of each unit's cells: ``1 + sum_t P_tt - b_i' P b_i / n_i``."""
        p = np.zeros((self.T, self.T))
        if self.chol is not None:
            p[np.ix_(self.free, self.free)] = linalg.cho_solve(self.chol, np.eye(self.free.size))
        quad = np.asarray(self.B.multiply(self.B @ p).sum(axis=1)).ravel()
        return np.where(self.n_i > 0, 1.0 + self.B @ np.diag(p) - quad * self.inv_n, 0.0)


def require_connected(fe: TwoWayFE, d: Panel, what: str) -> None:
    if fe.n_components > 1:
        comp = fe.unit_component
        first = int(np.flatnonzero(fe.n_i > 0)[0])
        other = int(np.flatnonzero((fe.n_i > 0) & (comp != comp[first]))[0]) if (comp != comp[first]).any() else None
        example = f" (e.g. units {show(d.labels[first])} and {show(d.labels[other])})" if other is not None else ""
        raise ValueError(
            f"the {what} do not connect all units and periods: they fall into {fe.n_components} groups that "
            f"share no unit or period{example}, so the unit and period effects cannot be put on one scale"
        )
