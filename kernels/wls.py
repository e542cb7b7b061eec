"""Batched (constrained) weighted least squares with many right-hand sides."""
from __future__ import annotations

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

    solved in closed form (Covert & Lee 2021):
    :math:`\hat\phi = A^{-1}b - A^{-1}\mathbf{1}\,\frac{\mathbf{1}^\top A^{-1} b - t}{\mathbf{1}^\top A^{-1}\mathbf{1}}`
    with :math:`A = Z^\top W Z`, :math:`b = Z^\top W y`.

    Args:
      Z: ``[N, M]`` bool/0-1 coalitions.
      w: ``[N]`` non-negative weights.
      y: ``[N, K]`` targets ``v(z) - v(empty)``.
      total: ``[K]`` the constraint ``v(all) - v(empty)``.
      active: optional ``[M]`` bool; inactive players are fixed to 0 and left
        out of the constraint.

    Returns:
      ``(phi [M, K], G [M, M])`` where ``G`` is the linear map taking ``b`` to
      the unconstrained-direction part of ``phi`` (used for standard errors):
      ``phi = G b + h``.

    References:
      Covert, I. & Lee, S.-I. (2021). Improving KernelSHAP: Practical Shapley
      Value Estimation via Linear Regression. AISTATS.
    """
    Zf, A = _masked_gram(Z, w, active)
    b = jnp.einsum("nm,n,nk->mk", Zf, w, y.astype(A.dtype))
    return solve_normal_equations(A, b, total, active=active)


def solve_normal_equations(A, b, total, *, active=None):
    r"""The constrained solution from the normal equations ``A = Z^T W Z`` (regularised), ``b = Z^T W y``.

    Sums (or averages) of the normal equations of independent designs give the solution of the pooled
    design: how the to-tolerance rounds of :mod:`shapjax.engine.rounds` combine regression rounds.
    Returns ``(phi [M, K], G [M, M])`` as :func:`constrained_wls`.
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
    G = Ainv - jnp.outer(Ainv_1, Ainv_1) / denom
    return phi, G


def normal_equations(Z, w, y, *, active=None):
    """``(A, b)``: the regularised Gram matrix ``Z^T W Z`` ``[M, M]`` and ``Z^T W y`` ``[M, K]``."""
    Zf, A = _masked_gram(Z, w, active)
    return A, jnp.einsum("nm,n,nk->mk", Zf, w, y.astype(A.dtype))


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
