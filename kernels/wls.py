"""Batched (constrained) weighted least squares with many right-hand sides."""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


def _jitter(dtype) -> float:
    """Relative ridge added to the Gram diagonal: 1e-7 in float32, 1e-14 in float64 (about 50 ulps)."""
    return 1e-7 if jnp.dtype(dtype) == jnp.float32 else 50 * float(jnp.finfo(dtype).eps)


def _masked_gram(Z, w, active):
    dt = w.dtype if jnp.issubdtype(w.dtype, jnp.floating) else jnp.float32
    Zf = Z.astype(dt)
    if active is not None:
        Zf = Zf * active.astype(dt)[None, :]
    A = jnp.einsum("nm,n,nl->ml", Zf, w, Zf)
    return Zf, regularise(A, active)


def regularise(A, active=None):
    """The Gram matrix made safely positive definite: identity rows for inactive players and a tiny ridge."""
    M = A.shape[0]
    if active is not None:
        # Inactive players: identity rows/cols so the system stays regular; their
        # right-hand side and constraint entries are zero, so their value is 0.
        inact = 1.0 - active.astype(A.dtype)
        A = A + jnp.diag(inact)
    jitter = _jitter(A.dtype) * jnp.trace(A) / M
    return A + jitter * jnp.eye(M, dtype=A.dtype)


def constrained_wls(Z, w, y, total, *, active=None):
    r"""Solve the efficiency-constrained weighted least squares of KernelSHAP.

    .. math::

        \hat\phi = \arg\min_{\phi} \sum_n w_n (y_n - z_n^\top \phi)^2
        \quad \text{s.t.} \quad \mathbf{1}^\top \phi = t,

    solved in the constraint's own coordinates (:func:`factor`, :func:`least_squares`): with
    :math:`\phi = \tfrac{t}{m}\mathbf{1} + x`, :math:`\mathbf{1}^\top x = 0`, ``x`` solves the normal
    equations of the centred rows :math:`\tilde z = P z` (:math:`P = I - \mathbf{1}\mathbf{1}^\top/m`)
    on the targets :math:`y - \tfrac{t}{m}|z|`. The Gram matrix :math:`Z^\top W Z` itself is never
    inverted: its :math:`\mathbf{1}\mathbf{1}^\top` part grows like ``M^2`` times the rest (condition
    number about ``M^2 / 2`` for KernelSHAP's designs), which in float32 lost every digit at
    ``M = 4096``. The centred system is as well conditioned as the estimation problem itself.
    Equal in exact arithmetic to Covert & Lee's closed form
    :math:`A^{-1}b - A^{-1}\mathbf{1}\,(\mathbf{1}^\top A^{-1} b - t)/\mathbf{1}^\top A^{-1}\mathbf{1}`.

    Args:
      Z: ``[N, M]`` bool/0-1 coalitions.
      w: ``[N]`` non-negative weights.
      y: ``[N, K]`` targets ``v(z) - v(empty)``.
      total: ``[K]`` the constraint ``v(all) - v(empty)``.
      active: optional ``[M]`` bool; inactive players are fixed to 0 and left
        out of the constraint.

    Returns:
      ``(phi [M, K], G [M, M])`` where ``G`` is the linear map taking a change of ``b = Z^T W y``
      to the change of ``phi`` (used for standard errors).

    References:
      Covert, I. & Lee, S.-I. (2021). Improving KernelSHAP: Practical Shapley
      Value Estimation via Linear Regression. AISTATS.
    """
    dt = w.dtype if jnp.issubdtype(w.dtype, jnp.floating) else jnp.float32
    M = Z.shape[1]
    a, m = active_vector(M, active, dt)
    Zf = Z.astype(dt) * a[None, :]
    Zt = center(Zf, a, m)
    f = factor(jnp.einsum("nm,n,nl->ml", Zt, w, Zt), active=active)
    phi = least_squares(f, Zf, w, offset_targets(y.astype(dt), Zf @ a, total, m), total)
    return phi, apply_g(f, jnp.diag(a) - jnp.outer(a, a) / m)


def active_vector(M: int, active, dt):
    """``(a [M], m [])``: the active players as 0/1 and their number."""
    a = jnp.ones((M,), dt) if active is None else active.astype(dt)
    return a, jnp.maximum(jnp.sum(a), 1.0)


def center(Zf, a, m):
    """Rows projected on the sum-zero subspace of the active players: ``P z`` with
    ``P = diag(a) - a a^T / m`` (``Zf [N, M]`` float)."""
    Zf = Zf * a[None, :]
    return Zf - (Zf @ a / m)[:, None] * a[None, :]


def offset_targets(y, sizes, total, m):
    """``y - (t / m) |z|``: the targets once the constraint's part ``(t / m) 1`` of ``phi`` is taken out
    (``sizes [N]``: active players in each row)."""
    return y - sizes[:, None] * (total / m)[None, :]


class Factored(NamedTuple):
    """The factorisation behind a projected solve: enough to apply ``G`` (see :func:`apply_g`)."""

    cho: tuple  # cho_factor of the centred Gram matrix, completed on the constraint's directions
    a: jax.Array  # [M] active players (0/1)
    m: jax.Array  # [] their number


#: Steps of iterative refinement after the first solve (see :func:`least_squares`).
REFINE = 2


def factor(Abar, *, active=None) -> Factored:
    r"""Factor the centred Gram matrix ``Abar = P A P`` ``[M, M]`` (see :func:`constrained_wls`).

    ``Abar`` is singular on the directions ``P`` removes (``1`` and the inactive players); they are
    filled in with the mean eigenvalue, which leaves solutions on ``range(P)`` unchanged, plus a
    ridge of 1e-7 (float32) / ~1e-14 (float64) of it.
    """
    M = Abar.shape[0]
    dt = Abar.dtype
    a, m = active_vector(M, active, dt)
    gamma = jnp.trace(Abar) / jnp.maximum(m - 1.0, 1.0)
    gamma = jnp.where(gamma > 0, gamma, 1.0)
    fill = jnp.diag(1.0 - a) + jnp.outer(a, a) / m  # I - P
    R = Abar + gamma * fill + _jitter(dt) * gamma * jnp.eye(M, dtype=dt)
    return Factored(jax.scipy.linalg.cho_factor(R), a, m)


def least_squares(f: Factored, Zf, w, yt, total, *, steps: int = REFINE):
    r"""``phi [M, K]``: the constrained solution, from the factor ``f`` of the centred Gram matrix,
    the masked rows ``Zf [N, M]`` (float, inactive players zeroed), the weights ``w [N]`` and the
    offset targets ``yt [N, K]`` (:func:`offset_targets`).

    The first solve is followed by ``steps`` of iterative refinement, each solving for the
    correction from the residual ``yt - Zf x`` of the rows themselves (``O(N M K)``). The normal
    equations square the design's condition number, and the float32 Gram matrix carries rounding
    of its own; refinement recovers the digits both lose (at ``M = 1024`` the error on an additive
    game falls from about 1e-3 to float32 rounding of the game values).
    """
    x = apply_g(f, zt_times(Zf, w[:, None] * yt))
    for _ in range(steps):
        x = x + apply_g(f, zt_times(Zf, w[:, None] * (yt - Zf @ x)))
    return f.a[:, None] * (total / f.m)[None, :] + x


def zt_times(Z, U):
    """``Z^T U`` for ``Z [N, M]``, ``U [N, K]``, written ``(U^T Z)^T``: the same product, but XLA:CPU
    runs ``Z.T @ u`` for one column ``u`` through a transposed copy of ``Z`` (11 ms at N x M = 3072 x
    1024 against 0.5 ms, measured; with K >= 2 both forms cost the same)."""
    return (U.T @ Z).T


def _project(f: Factored, X):
    X = X * f.a[:, None]
    return X - f.a[:, None] * (f.a @ X)[None, :] / f.m


def apply_g(f: Factored, X):
    """``G X`` for ``X [M, n]`` (``G = P (P A P)^+ P``, the constrained solution's sensitivity to ``b``):
    a projection and two triangular solves with ``n`` right-hand sides (``O(M^2 n)``)."""
    return _project(f, jax.scipy.linalg.cho_solve(f.cho, _project(f, X)))


def solve_normal_equations(A, b, total, *, active=None):
    r"""The constrained solution from the normal equations ``A = Z^T W Z`` (regularised), ``b = Z^T W y``.

    Covert & Lee's closed form, kept as the reference the centred solve is tested against (in float64).
    Returns ``(phi [M, K], G [M, M])`` as :func:`constrained_wls`. From ``A`` itself, so as conditioned
    as ``A``: float32 loses digits at large ``M`` (see :func:`constrained_wls`); the to-tolerance rounds
    pool :func:`centred_normal_equations` instead.
    """
    M = A.shape[0]
    dt = A.dtype
    ones = jnp.ones((M,), dt) if active is None else active.astype(dt)
    cho = jax.scipy.linalg.cho_factor(A)
    Ainv_b = jax.scipy.linalg.cho_solve(cho, b)
    Ainv_1 = jax.scipy.linalg.cho_solve(cho, ones)
    denom = ones @ Ainv_1
    lam = (ones @ Ainv_b - total) / denom  # [K]
    phi = Ainv_b - Ainv_1[:, None] * lam[None, :]
    Ainv = jax.scipy.linalg.cho_solve(cho, jnp.eye(M, dtype=dt))
    return phi, Ainv - jnp.outer(Ainv_1, Ainv_1) / denom


def normal_equations(Z, w, y, *, active=None):
    """``(A, b)``: the regularised Gram matrix ``Z^T W Z`` ``[M, M]`` and ``Z^T W y`` ``[M, K]``."""
    Zf, A = _masked_gram(Z, w, active)
    return A, jnp.einsum("nm,n,nk->mk", Zf, w, y.astype(A.dtype))


def centred_normal_equations(Z, w, y, total, *, active=None):
    """``(Abar [M, M], r [M, K])``: the centred normal equations of :func:`constrained_wls`
    (``P Z^T W Z P`` and ``P Z^T W (y - (t/m)|z|)``). Averages over independent designs of one game
    are the pooled design's (the to-tolerance rounds); :func:`solve_centred` solves them."""
    dt = w.dtype if jnp.issubdtype(w.dtype, jnp.floating) else jnp.float32
    a, m = active_vector(Z.shape[1], active, dt)
    Zf = Z.astype(dt) * a[None, :]
    Zt = center(Zf, a, m)
    yt = offset_targets(y.astype(dt), Zf @ a, total, m)
    return jnp.einsum("nm,n,nl->ml", Zt, w, Zt), jnp.einsum("nm,n,nk->mk", Zt, w, yt)


def solve_centred(Abar, r, total, *, active=None):
    """``phi [M, K]`` from centred normal equations (:func:`centred_normal_equations`; no rows, so
    no refinement)."""
    f = factor(Abar, active=active)
    return f.a[:, None] * (total / f.m)[None, :] + apply_g(f, r)


def weighted_ridge(X, w, y, *, alpha: float = 1.0):
    r"""Weighted ridge regression with an (unpenalised) intercept.

    .. math::

        \min_{\beta, c} \sum_n w_n (y_n - x_n^\top\beta - c)^2 + \alpha \|\beta\|^2

    Same objective as scikit-learn's ``Ridge(alpha, fit_intercept=True)``
    with ``sample_weight`` (what LIME uses).

    Args:
      X: ``[N, M]`` features; w: ``[N]`` weights; y: ``[N, K]`` targets.

    Returns:
      ``(coef [M, K], intercept [K])``.
    """
    dt = y.dtype if jnp.issubdtype(y.dtype, jnp.floating) else jnp.float32
    Xf = X.astype(dt)
    sw = w / jnp.sum(w)
    xm = sw @ Xf
    ym = sw @ y
    Xc = Xf - xm
    yc = y - ym
    M = Xf.shape[1]
    A = jnp.einsum("nm,n,nl->ml", Xc, w, Xc) + alpha * jnp.eye(M, dtype=dt)
    b = jnp.einsum("nm,n,nk->mk", Xc, w, yc)
    coef = jnp.linalg.solve(A, b)
    return coef, ym - xm @ coef
