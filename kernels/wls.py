"""Batched (constrained) weighted least squares with many right-hand sides."""
from __future__ import annotations

import jax
import jax.numpy as jnp


def _masked_gram(Z, w, active):
    Zf = Z.astype(jnp.float32)
    if active is not None:
        Zf = Zf * active.astype(jnp.float32)[None, :]
    A = jnp.einsum("nm,n,nl->ml", Zf, w, Zf)
    M = A.shape[0]
    if active is not None:
        # Inactive players: identity rows/cols so the system stays regular; their
        # right-hand side and constraint entries are zero, so their value is 0.
        inact = 1.0 - active.astype(jnp.float32)
        A = A + jnp.diag(inact)
    jitter = 1e-7 * jnp.trace(A) / M
    return Zf, A + jitter * jnp.eye(M, dtype=A.dtype)


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
    M = A.shape[0]
    ones = jnp.ones((M,), jnp.float32) if active is None else active.astype(jnp.float32)
    b = jnp.einsum("nm,n,nk->mk", Zf, w, y)
    cho = jax.scipy.linalg.cho_factor(A)
    Ainv_b = jax.scipy.linalg.cho_solve(cho, b)
    Ainv_1 = jax.scipy.linalg.cho_solve(cho, ones)
    denom = ones @ Ainv_1
    lam = (ones @ Ainv_b - total) / denom  # [K]
    phi = Ainv_b - Ainv_1[:, None] * lam[None, :]
    Ainv = jax.scipy.linalg.cho_solve(cho, jnp.eye(M, dtype=jnp.float32))
    G = Ainv - jnp.outer(Ainv_1, Ainv_1) / denom
    return phi, G


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
    Xf = X.astype(jnp.float32)
    sw = w / jnp.sum(w)
    xm = sw @ Xf
    ym = sw @ y
    Xc = Xf - xm
    yc = y - ym
    M = Xf.shape[1]
    A = jnp.einsum("nm,n,nl->ml", Xc, w, Xc) + alpha * jnp.eye(M, dtype=jnp.float32)
    b = jnp.einsum("nm,n,nk->mk", Xc, w, yc)
    coef = jnp.linalg.solve(A, b)
    return coef, ym - xm @ coef
