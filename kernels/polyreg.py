r"""Efficiency-constrained ridge regression on interaction features (PolySHAP / k-additive SHAP).

The game is approximated by a polynomial in the unanimity basis,

.. math::

    v(z) - v(0) \approx \sum_i \beta_i z_i + \sum_{t \in \text{orders}} \sum_{|T| = t}
    \gamma_T \prod_{j \in T} z_j ,

fitted by weighted least squares with the Shapley-kernel weights of the design,
a ridge penalty :math:`\alpha \sum_T \gamma_T^2 / \lambda_{|T|}` on the
interaction coefficients only (the singletons are not penalised), and the exact
efficiency constraint :math:`\sum_i \beta_i + \sum_T \gamma_T = v(1) - v(0)`.
The Shapley values of the fitted polynomial are closed form: a unanimity
feature :math:`\prod_{j\in T} z_j` gives :math:`1/|T|` to each member, so

.. math::

    \hat\phi_i = \beta_i + \sum_{T \ni i} \gamma_T / |T| .

Two equivalent solvers, picked statically by size:

* **primal** (features ``F = M + sum_t C(M, t)`` no more than the rows ``N``):
  the ``F x F`` normal equations, one Cholesky factor shared by all outputs;
* **dual** (``F > N``, e.g. order 3 at M = 64: 43,744 features): kernel ridge
  regression with the interaction kernel
  :math:`k(S, S') = \sum_t \lambda_t \binom{|S \cap S'|}{t}` (the number of
  common interaction sets, weighted), an ``N x N`` Cholesky factor, and the
  unpenalised singletons and the constraint eliminated in closed form
  (Woodbury / push-through). The Shapley map of the interaction part is then
  :math:`\sum_{T \ni i} \gamma_T/|T| = \sum_n c_n z_{ni} \sum_t \lambda_t \binom{|S_n|-1}{t-1}/t`,
  so no feature is ever materialised.

Both run in float32 with two steps of iterative refinement on the factorised
system (the ridge keeps the condition number bounded by the kernel's scale
over :math:`\alpha`).

References:
  Pelegrina, G. D., Duarte, L. T. & Grabisch, M. (2023). A k-additive Choquet
  integral-based approach to approximate the SHAP values for local
  interpretability in machine learning. Artificial Intelligence 325.
  Fumagalli, F., Witter, R. T. & Musco, C. (2026). PolySHAP: Extending
  KernelSHAP with Interaction-Informed Polynomial Regression. ICLR.
"""
from __future__ import annotations

import itertools
import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np


def n_features(n_players: int, orders: Sequence[int]) -> int:
    """Singletons plus every interaction set of the given orders."""
    M = int(n_players)
    return M + sum(math.comb(M, int(t)) for t in orders)


def _combos(M: int, t: int) -> np.ndarray:
    return np.asarray(list(itertools.combinations(range(M), t)), np.int32).reshape(-1, t)


def _binom(x, t: int):
    """``C(x, t)`` elementwise for a float array ``x >= 0`` (0 when ``x < t``)."""
    out = jnp.ones_like(x)
    for j in range(t):
        out = out * (x - j) / (j + 1)
    return jnp.where(x >= t, out, 0.0)


def _refined_solve(cho, mat, b, steps: int = 2):
    x = jax.scipy.linalg.cho_solve(cho, b)
    for _ in range(steps):
        x = x + jax.scipy.linalg.cho_solve(cho, b - mat @ x)
    return x


class PolyFit:
    """A fitted polynomial: its Shapley values and a ``predict(Z) -> [n, K]`` of ``v(z) - v(0)``."""

    def __init__(self, phi, predict):
        self.phi = phi
        self.predict = predict


def _prep(Z, active):
    Zf = jnp.asarray(Z, jnp.float32)
    M = Zf.shape[1]
    act = jnp.ones((M,), jnp.float32) if active is None else jnp.asarray(active, jnp.float32)
    return Zf * act[None, :], act


def primal(n_players: int, n_rows: int, orders: Sequence[int]) -> bool:
    """The ``solver="auto"`` rule: the primal form when the features fit in the rows, else the dual."""
    return n_features(n_players, orders) <= int(n_rows)


def fit_bytes(n_players: int, n_rows: int, orders: Sequence[int] = (2, 3), n_outputs: int = 1) -> int:
    """Rough peak memory of :func:`poly_fit` in bytes (float32), for refusing a budget before compiling it:
    the primal form holds the ``N x F`` features and a few ``F x F`` matrices, the dual a few ``N x N``."""
    M, N, K = int(n_players), int(n_rows), max(int(n_outputs), 1)
    F = n_features(M, orders)
    if primal(M, N, orders):
        return 4 * (2 * N * F + 3 * F * F + 2 * N * K)
    return 4 * (5 * N * N + 3 * N * (M + K))


def poly_fit(Z, w, y, total, *, orders=(2, 3), lam=None, alpha: float = 1e-4, active=None,
             solver: str = "auto") -> PolyFit:
    """Fit the constrained ridge polynomial; see the module docstring.

    Args:
      Z: ``[N, M]`` coalitions; w: ``[N]`` weights; y: ``[N, K]`` targets ``v(z) - v(0)``;
      total: ``[K]`` ``v(1) - v(0)``.
      orders: interaction orders (each >= 2) on top of the singletons.
      lam: per-order prior scales ``lambda_t`` (default 1 for each order).
      alpha: ridge strength relative to ``sum(w)``.
      active: optional ``[M]`` bool; inactive players get 0 and no interactions.
      solver: ``"primal"``, ``"dual"`` or ``"auto"`` (primal when the features fit in the rows).

    Returns:
      :class:`PolyFit`.
    """
    orders = tuple(int(t) for t in orders)
    lam = tuple(1.0 for _ in orders) if lam is None else tuple(float(v) for v in lam)
    N, M = Z.shape
    if solver == "auto":
        solver = "primal" if primal(M, N, orders) else "dual"
    # A fully enumerated design is a compile-time constant: keep XLA from constant-folding the features.
    Z, w = jax.lax.optimization_barrier((jnp.asarray(Z), jnp.asarray(w, jnp.float32)))
    Zf, act = _prep(Z, active)
    y = jnp.asarray(y, jnp.float32)
    a_ridge = alpha * jnp.sum(w)
    if solver == "primal":
        return _primal(Zf, act, w, y, total, orders, lam, a_ridge)
    return _dual(Zf, act, w, y, total, orders, lam, a_ridge)


def _interactions(Zf, M, orders, lam):
    cols, shares = [], []
    for t, lt in zip(orders, lam):
        idx = jnp.asarray(_combos(M, t))
        cols.append(jnp.prod(Zf[:, idx], axis=-1) * math.sqrt(lt))  # [N, C(M, t)]
        shares.append((idx, math.sqrt(lt) / t))
    return jnp.concatenate(cols, axis=1), shares


def _primal(Zf, act, w, y, total, orders, lam, a_ridge):
    N, M = Zf.shape
    U, shares = _interactions(Zf, M, orders, lam)
    X = jnp.concatenate([Zf, U], axis=1)  # [N, F]
    F = X.shape[1]
    # constraint vector: 1 on active singletons, sqrt(lambda_t) on interactions of active players
    a = jnp.concatenate([act] + [jnp.prod(act[idx], -1) * (s * t) for (idx, s), t in zip(shares, orders)])
    pen = jnp.concatenate([1.0 - act, jnp.full((F - M,), 1.0)]) * jnp.concatenate(
        [jnp.ones((M,)), jnp.full((F - M,), a_ridge)])
    A = jnp.einsum("nf,n,ng->fg", X, w, X) + jnp.diag(pen)
    A = A + 1e-7 * jnp.trace(A) / F * jnp.eye(F, dtype=A.dtype)
    b = jnp.einsum("nf,n,nk->fk", X, w, y)
    cho = jax.scipy.linalg.cho_factor(A)
    Ab = _refined_solve(cho, A, b)
    Aa = _refined_solve(cho, A, a)
    lam_ = (a @ Ab - total) / (a @ Aa)
    theta = Ab - Aa[:, None] * lam_[None, :]  # [F, K]
    phi = theta[:M]
    off = M
    for idx, s in shares:
        g = theta[off:off + idx.shape[0]] * s  # [C, K] share of each member
        phi = phi + jnp.zeros_like(phi).at[idx.reshape(-1)].add(jnp.repeat(g, idx.shape[1], axis=0))
        off += idx.shape[0]
    phi = phi * act[:, None]

    def predict(Znew):
        Zn, _ = _prep(Znew, act)
        Un, _ = _interactions(Zn, M, orders, lam)
        return jnp.concatenate([Zn, Un], axis=1) @ theta

    return PolyFit(phi, predict)


def _kernel(Za, Zb, orders, lam):
    inter = Za @ Zb.T
    return sum(lt * _binom(inter, t) for t, lt in zip(orders, lam))


def _dual(Zf, act, w, y, total, orders, lam, a_ridge):
    N, M = Zf.shape
    m_act = jnp.sum(act)
    K = _kernel(Zf, Zf, orders, lam)  # [N, N]
    sw = jnp.sqrt(w)
    Q = sw[:, None] * K * sw[None, :] + a_ridge * jnp.eye(N, dtype=K.dtype)
    cho = jax.scipy.linalg.cho_factor(Q)

    def Rmul(v):  # R v with R = W^1/2 Q^-1 W^1/2
        sv = sw.reshape((N,) + (1,) * (v.ndim - 1))
        return sv * _refined_solve(cho, Q, sv * v)

    size = Zf.sum(1)
    kappa = sum(lt * _binom(size, t) for t, lt in zip(orders, lam))  # U a: weighted count of sets in each row
    aa = sum(lt * _binom(m_act, t) for t, lt in zip(orders, lam))  # a.a
    RX, Ry, Rk = Rmul(Zf), Rmul(y), Rmul(kappa)
    inact = 1.0 - act
    A1 = Zf.T @ RX + jnp.diag(inact)
    A1 = A1 + 1e-7 * jnp.trace(A1) / M * jnp.eye(M, dtype=A1.dtype)
    g = Zf.T @ Rk - act
    c1 = jax.scipy.linalg.cho_factor(A1)
    beta_a = _refined_solve(c1, A1, Zf.T @ Ry)
    beta_b = _refined_solve(c1, A1, g)
    mu = (kappa @ Ry - g @ beta_a - total) / (g @ beta_b + aa - kappa @ Rk)  # [K]
    beta1 = beta_a + beta_b[:, None] * mu[None, :]
    coef = Ry - RX @ beta1 + Rk[:, None] * mu[None, :]  # [N, K]: gamma = U^T coef - mu a
    h = sum(lt * _binom(size - 1.0, t - 1) / t for t, lt in zip(orders, lam))  # [N]
    p = sum(lt * _binom(m_act - 1.0, t - 1) / t for t, lt in zip(orders, lam))
    phi = beta1 + (Zf * h[:, None]).T @ coef - p * mu[None, :]
    # float32 round-off in mu leaves efficiency off by ~1e-4 relative: restore it exactly
    phi = phi + act[:, None] * ((total - (phi * act[:, None]).sum(0)) / jnp.maximum(m_act, 1.0))[None, :]
    phi = phi * act[:, None]

    def predict(Znew):
        Zn, _ = _prep(Znew, act)
        kap_n = sum(lt * _binom(Zn.sum(1), t) for t, lt in zip(orders, lam))
        return Zn @ beta1 + _kernel(Zn, Zf, orders, lam) @ coef - kap_n[:, None] * mu[None, :]

    return PolyFit(phi, predict)
