r"""ControlSHAP: control variates from the model's own derivatives (``explain(method="controlshap")``).

The image game is the restriction to the corners of the cube of a smooth function. With one
relaxed mask value :math:`t_j \in [0, 1]` per segment,

.. math:: h(t) = \frac{1}{R}\sum_{r} f\big(x_r + (x - x_r) \odot t_{s(\cdot)}\big)_k,
          \qquad v(z) = h(z) \ \text{for}\ z \in \{0, 1\}^M,

(:math:`x_r` the masker's replacement images, :math:`s(\cdot)` the segment of each pixel). Its
second-order Taylor expansion at the centre of the cube :math:`c = \tfrac12\mathbf 1`,

.. math:: g(z) = h(c) + \nabla h(c)^\top (z - c) + \tfrac12 (z - c)^\top \nabla^2 h(c)\,(z - c),

is a quadratic pseudo-boolean game whose Shapley values are exact in closed form: since
:math:`z_j^2 = z_j` and the Shapley value of :math:`z_j z_k` gives one half to each of
:math:`j, k`, :math:`\phi(g) = \nabla h(c) + \nabla^2 h(c)\,(\tfrac12\mathbf 1 - c) = \nabla h(c)`.
Gradient and Hessian come from JAX autodiff in the same compiled program (``M`` Hessian-vector
products per image and output); ``g`` on the sampled coalitions costs no model call.

The base estimator (a permutation sampler, linear in the game values for a fixed design) runs on
the same coalitions for three games: ``v``, ``g`` and ``v - g``,
giving :math:`\hat\phi_v, \hat\phi_g` and their standard errors :math:`s_v, s_g, s_{v-g}`. Then
:math:`\widehat{\mathrm{Cov}}(\hat\phi_v, \hat\phi_g) = (s_v^2 + s_g^2 - s_{v-g}^2)/2` and, per
image and output, the variance-minimising coefficient (pooled over the players, see below)
:math:`\beta = \sum_i \widehat{\mathrm{Cov}}_i / \sum_i s_{g,i}^2` gives

.. math:: \hat\phi = \hat\phi_v - \beta\,(\hat\phi_g - \phi(g)), \qquad
          \hat s^2 = s_v^2 - 2\beta\,\widehat{\mathrm{Cov}} + \beta^2 s_g^2 .

When the game is (close to) quadratic in the mask the correction removes (nearly) all sampling
error. One coefficient for all players keeps efficiency exact (:math:`\sum_i \hat\phi_{g,i} =
\sum_i \phi_i(g)`) and is estimated from M times more terms: with 7 permutations of 6 players,
per-player coefficients (``combine(..., pooled=False)``, efficiency then restored by spreading the
gap in proportion to :math:`\hat s^2`) were biased by up to 8 standard errors and their intervals
covered 57 %; at 40 permutations both are fine. Without standard errors (a budget that enumerates everything) the base
estimate is returned.

Methods: ``"controlshap"`` (= ``"controlshap-permutation"``) and ``"controlshap-stratified"``.
Why not KernelSHAP, Leverage SHAP or antithetic permutations: their paired designs (a coalition and
its complement, an ordering and its reverse) are *exact* on every game of degree <= 2 (checked:
paired KernelSHAP recovers the Shapley values of the quadratic surrogate to 1e-6 from 200
evaluations), so the estimate of :math:`\phi(g)` has no error to correlate with and the control
variate cannot help them; a useful control for those needs cubic or higher terms (``M^2`` and more
Hessian-vector products). The model must be differentiable by JAX (twice).

References:
  Goldwasser, J. & Hooker, G. (2024). Stabilizing Estimates of Shapley Values with Control
  Variates. xAI 2024 (arXiv:2310.07672). Their control variate is a Taylor approximation of the
  model in feature space; here the expansion is in the relaxed segment mask, at the cube's centre.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from shapjax._util.precision import floatx

PREFIX = "controlshap"
BASES = ("permutation", "stratified")
#: ``explain`` method name -> base estimator
METHODS = {PREFIX: "permutation", **{f"{PREFIX}-{b}": b for b in BASES}}


def base_method(method):
    """``(estimator name, control?)``: ``"controlshap-permutation"`` -> ``("permutation", True)``."""
    if isinstance(method, str) and method in METHODS:
        return METHODS[method], True
    return method, False


def taylor(model_fn, images, repl, seg, out_idx, *, n_segments: int):
    """The expansion at the cube's centre: ``(h(c) [B, K], grad [B, M, K], hess [B, K, M, M])``.

    Images are processed one at a time (``lax.map``); the ``M`` Hessian-vector products of an image
    and output run together (``vmap``).
    """
    M = n_segments
    B = images.shape[0]

    def h(t, b):
        m = t[seg[b]][None, :, :, None].astype(images.dtype)  # [1, H, W, 1]
        r = repl[b] if repl.shape[0] > 1 else repl[0]  # [R, H, W, C]
        x = r + (images[b][None] - r) * m
        out = jnp.asarray(model_fn(x), jnp.float32).mean(0)
        return out[out_idx[b]]  # [K]

    c = jnp.full((M,), 0.5, jnp.float32)

    def one(b):
        f = lambda t: h(t, b)  # noqa: E731
        h0 = f(c)
        J = jax.jacrev(f)(c)  # [K, M]

        def hvp(e):  # d/de of the Jacobian: [K, M]
            return jax.jvp(jax.jacrev(f), (c,), (e,))[1]

        H = jax.vmap(hvp)(jnp.eye(M, dtype=jnp.float32))  # [M(e), K, M]
        return h0, J.T, jnp.moveaxis(H, 1, 0)  # [K], [M, K], [K, M, M]

    h0, G, H = jax.lax.map(one, jnp.arange(B))
    dt = floatx()
    H = 0.5 * (H + jnp.swapaxes(H, -1, -2))
    return h0.astype(dt), G.astype(dt), H.astype(dt)


def surrogate_values(Z, h0, G, H):
    """``g(Z)`` ``[B, N, K]`` for coalitions ``Z [N, M]`` (the quadratic game of the module doc)."""
    d = Z.astype(G.dtype) - 0.5  # [N, M]
    lin = jnp.einsum("nm,bmk->bnk", d, G)
    quad = 0.5 * jnp.einsum("nm,bkml,nl->bnk", d, H, d)
    return h0[:, None, :] + lin + quad


def combine(phi_v, s_v, phi_g, s_g, s_d, exact_g, total, *, pooled: bool = True):
    """The control-variate estimate and its standard error (module doc).

    All ``[B, M, K]`` except ``total [B, K]`` (``v(all) - v(empty)``). ``pooled``: one coefficient
    per image and output (the covariances summed over players), which keeps efficiency exact (the
    correction sums to zero) and is stable at small budgets; else one per player, with the
    efficiency gap spread over the players in proportion to their variance.
    """
    var_g = s_g**2
    cov = 0.5 * (s_v**2 + var_g - s_d**2)
    if pooled:
        num, den = cov.sum(1, keepdims=True), var_g.sum(1, keepdims=True)
    else:
        num, den = cov, var_g
    beta = jnp.where(den > 0, num / jnp.where(den > 0, den, 1.0), 0.0)
    phi = phi_v - beta * (phi_g - exact_g)
    var = jnp.maximum(s_v**2 - 2 * beta * cov + beta**2 * var_g, 0.0)
    if not pooled:
        gap = total - phi.sum(1)  # [B, K]
        vs = var.sum(1, keepdims=True)
        share = jnp.where(vs > 0, var / jnp.where(vs > 0, vs, 1.0), 1.0 / phi.shape[1])
        phi = phi + share * gap[:, None, :]
    return phi, jnp.sqrt(var)


def estimate(est, d, V, h0, G, H, active, solve_games):
    """ControlSHAP on a shared design ``d`` with game values ``V [B, N, K]`` (rows 0, 1: empty, full).

    ``solve_games(est, d, Y, v0, v1, active)`` solves G games at once (:func:`shapjax.engine.rounds.solve_games`).
    Returns ``(values, std)`` ``[B, M, K]``.
    """
    Z = jnp.concatenate([jnp.zeros((1, d.coalitions.shape[1]), bool), jnp.ones((1, d.coalitions.shape[1]), bool),
                         d.coalitions])
    Vg = surrogate_values(Z, h0, G, H)
    V = V.astype(Vg.dtype)
    phi_v, s_v = solve_games(est, d, V[:, 2:], V[:, 0], V[:, 1], active)
    if s_v is None:
        return phi_v, None
    phi_g, s_g = solve_games(est, d, Vg[:, 2:], Vg[:, 0], Vg[:, 1], active)
    Dv = V - Vg
    _, s_d = solve_games(est, d, Dv[:, 2:], Dv[:, 0], Dv[:, 1], active)
    exact_g = G if active is None else G * active[:, :, None]
    return combine(phi_v, s_v, phi_g, s_g, s_d, exact_g, V[:, 1] - V[:, 0])
