r"""The geometry of sparse counterfactuals: the FW-L1-q oracle and exact Euclidean projections.

Every function works on one flattened perturbation ``[d]`` (``vmap`` it over a
batch) and on the *feasible set of the perturbation* of an image
:math:`x \in [0, 1]^d`: with :math:`\ell = 0 - x \le 0 \le u = 1 - x`,

.. math::

    C = \{\delta : \|\delta\|_p \le \epsilon,\ \ell \le \delta \le u\},

so that :math:`x + \delta` stays a valid image. :math:`C` is convex and holds
:math:`\delta = 0`.

* :func:`lmo_l1q` -- the linear maximisation oracle of FW-L1-q (Roberts &
  Tsiligkaridis 2021): the top-:math:`k` coordinates of :math:`|g|` set to
  :math:`\mathrm{sign}(g)\,\epsilon/k`, optionally among allowed coordinates
  only (:func:`fw_l1q` skips pixels that sit at the bound they are pushed to).
* :func:`project_l1_box` -- the exact Euclidean projection onto
  :math:`B_1(\epsilon) \cap [\ell, u]`, sort-based (Duchi et al. 2008,
  generalised to a box).
* :func:`project_l2_box` -- the exact Euclidean projection onto
  :math:`B_2(\epsilon) \cap [\ell, u]` (bisection on the one multiplier).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["lmo_l1q", "project_l1_box", "project_l2_box", "sparsity_k"]


def sparsity_k(q, d: int):
    r"""Coordinates kept by the FW-L1-q oracle for sparsity ``q``.

    :math:`k = \mathrm{clip}(\lfloor (1-q)\,d \rfloor, 1, d)`.

    ``q`` may be traced (an array of any shape); returns int32 of the same shape.
    ``q = 1`` keeps one coordinate (the classic L1 Frank-Wolfe vertex).

    Example:
      >>> int(sparsity_k(0.975, 784))
      19
    """
    q = jnp.asarray(q, jnp.float32)
    return jnp.clip(jnp.floor((1.0 - q) * d + 1e-4), 1, d).astype(jnp.int32)


def lmo_l1q(g, k, eps, *, allowed=None):
    r"""The FW-L1-q linear oracle: the top-:math:`k` coordinates of :math:`|g|`, signed, of size :math:`\epsilon/k`.

    .. math::

        s^\star = \frac{\epsilon}{k} \sum_{i \in \mathrm{top}_k(|g|)} \mathrm{sign}(g_i)\, e_i
        = \arg\max_{s \in B_1(\epsilon) \cap B_\infty(\epsilon / k)} \langle g, s \rangle,

    i.e. :math:`\mathrm{sign}(g)` on the top :math:`k = \lfloor (1 - q) d \rfloor`
    coordinates, normalised to unit L1 norm and scaled by :math:`\epsilon`
    (Roberts & Tsiligkaridis 2021). It is a vertex of the polytope
    :math:`B_1(\epsilon) \cap B_\infty(\epsilon/k)` on the L1 sphere, with exactly
    :math:`k` non-zeros (for :math:`k = 1` a vertex :math:`\pm\epsilon e_i` of the
    L1 ball itself). ``allowed`` restricts the choice to some coordinates (the
    others count as :math:`g_i = 0`): :func:`fw_l1q` passes the pixels that can
    still move in the direction of :math:`g_i`, so no step is spent on a pixel
    already at the bound it is pushed to. Coordinates with :math:`g_i = 0` are
    never chosen, so fewer than :math:`k` are set when fewer are useful.

    Args:
      g: ``[d]`` gradient of the objective being *maximised*.
      k: int (may be traced), ``1 <= k <= d``.
      eps: L1 radius (may be traced).
      allowed: ``[d]`` bool, or None (every coordinate).

    Returns:
      ``[d]`` the oracle point :math:`s^\star`.

    References:
      Roberts, J. & Tsiligkaridis, T. (2021). Controllably Sparse Perturbations
      of Robust Classifiers for Explaining Predictions and Probing Learned
      Concepts. MLVis workshop at EuroVis (FW-L1-q).
      Jaggi, M. (2013). Revisiting Frank-Wolfe: Projection-Free Sparse Convex
      Optimization. ICML.

    Example:
      >>> import jax.numpy as jnp
      >>> g = jnp.array([0.1, -3.0, 2.0, 0.5])
      >>> lmo_l1q(g, 2, 1.0).tolist()
      [0.0, -0.5, 0.5, 0.0]
      >>> lmo_l1q(g, 2, 1.0, allowed=jnp.array([True, True, False, True])).tolist()  # 2 is blocked
      [0.0, -0.5, 0.0, 0.5]
    """
    g = jnp.asarray(g)
    eps = jnp.asarray(eps, g.dtype)
    if allowed is not None:
        g = jnp.where(allowed, g, 0.0)
    a = jnp.abs(g)
    order = jnp.argsort(-a)  # stable: ties keep the lower index first
    rank = jnp.zeros(g.shape, jnp.int32).at[order].set(jnp.arange(g.shape[0], dtype=jnp.int32))
    keep = (rank < jnp.asarray(k, jnp.int32)) & (a > 0)
    return jnp.where(keep, jnp.sign(g) * (eps / jnp.asarray(k, g.dtype)), 0.0) + 0.0


def _sum_relu(x_sorted, prefix, theta):
    """``sum_i max(x_i - theta, 0)`` for ascending ``x_sorted`` with ``prefix = [0, cumsum]``."""
    d = x_sorted.shape[0]
    idx = jnp.searchsorted(x_sorted, theta, side="right")
    return (prefix[d] - prefix[idx]) - (d - idx) * theta


def project_l1_box(v, eps, lower, upper):
    r"""Exact Euclidean projection onto :math:`\{\|\delta\|_1 \le \epsilon,\ \ell \le \delta \le u\}`.

    The solution has the soft-threshold form

    .. math::

        \delta_i = \mathrm{sign}(v_i)\,\mathrm{clip}(|v_i| - \theta, 0, c_i),\qquad
        c_i = u_i \text{ if } v_i \ge 0 \text{ else } -\ell_i,

    with :math:`\theta = 0` if :math:`\mathrm{clip}(v, \ell, u)` is in the ball,
    else the :math:`\theta > 0` with :math:`f(\theta) = \sum_i \mathrm{clip}(|v_i|
    - \theta, 0, c_i) = \epsilon`. Writing :math:`\mathrm{clip}(a - \theta, 0, c)
    = (a - \theta)_+ - (a - c - \theta)_+`, :math:`f` is piecewise linear and
    non-increasing with breakpoints :math:`\{|v_i|\} \cup \{|v_i| - c_i\}`;
    both sums of ramps are evaluated at every breakpoint from sorted prefix sums
    (:math:`O(d \log d)`, as in Duchi et al.'s sort-based algorithm, which is the
    case :math:`c = \infty`), and :math:`\theta` is interpolated exactly on the
    bracketing segment.

    Args:
      v: ``[d]`` point to project.
      eps: L1 radius ``> 0`` (may be traced).
      lower, upper: ``[d]`` box, ``lower <= 0 <= upper`` (``-inf``/``inf`` allowed
        for no box).

    Returns:
      ``[d]`` the projection.

    References:
      Duchi, J., Shalev-Shwartz, S., Singer, Y. & Chandra, T. (2008). Efficient
      Projections onto the l1-Ball for Learning in High Dimensions. ICML.

    Example:
      >>> import jax.numpy as jnp
      >>> big = jnp.full(3, jnp.inf)
      >>> project_l1_box(jnp.array([3.0, -1.0, 0.2]), 2.0, -big, big).tolist()
      [2.0, 0.0, 0.0]
    """
    v = jnp.asarray(v)
    eps = jnp.asarray(eps, v.dtype)
    a = jnp.abs(v)
    cap = jnp.maximum(jnp.where(v >= 0, upper, -lower), 0.0)
    lo_bp = a - jnp.minimum(cap, a)  # a - c, clamped so that it is >= 0 (an inf cap -> 0)
    a_s, l_s = jnp.sort(a), jnp.sort(lo_bp)
    zero = jnp.zeros((1,), v.dtype)
    pa = jnp.concatenate([zero, jnp.cumsum(a_s)])
    pl = jnp.concatenate([zero, jnp.cumsum(l_s)])

    def f(theta):
        return _sum_relu(a_s, pa, theta) - _sum_relu(l_s, pl, theta)

    cand = jnp.sort(jnp.concatenate([zero, a_s, l_s]))  # all >= 0
    fc = jax.vmap(f)(cand)  # non-increasing; fc[-1] = 0
    j = jnp.argmax(fc <= eps)  # first candidate inside the ball
    t0, t1 = cand[jnp.maximum(j - 1, 0)], cand[j]
    f0, f1 = fc[jnp.maximum(j - 1, 0)], fc[j]
    slope_den = jnp.where(f0 > f1, f0 - f1, 1.0)
    theta_interp = t0 + (f0 - eps) * (t1 - t0) / slope_den
    # On the bracketing segment f is linear: solve it from its active set with direct sums, which is exact
    # where the prefix-sum differences above round (e.g. theta landing on a breakpoint).
    tm = 0.5 * (t0 + t1)
    free = (lo_bp < tm) & (a > tm)
    sat = tm <= lo_bp
    nf = jnp.sum(free)
    theta_set = (jnp.sum(jnp.where(free, a, 0.0)) + jnp.sum(jnp.where(sat, cap, 0.0)) - eps) / jnp.maximum(nf, 1)
    theta = jnp.where(j == 0, 0.0, jnp.where(nf > 0, theta_set, theta_interp))
    return jnp.sign(v) * jnp.clip(a - theta, 0.0, cap) + 0.0  # + 0.0: no negative zeros


def project_l2_box(v, eps, lower, upper, *, iters: int = 40):
    r"""Exact Euclidean projection onto :math:`\{\|\delta\|_2 \le \epsilon,\ \ell \le \delta \le u\}`.

    By the KKT conditions the projection is :math:`\delta(t) = \mathrm{clip}(t v,
    \ell, u)` with :math:`t = 1/(1 + \lambda) \in (0, 1]`; :math:`\|\delta(t)\|_2`
    is non-decreasing in :math:`t`, so the largest feasible :math:`t` is found by
    bisection (``iters`` halvings; the result is feasible, and within
    :math:`2^{-\text{iters}}` of the exact :math:`t`). Unlike rescaling and then
    clipping, this does not leave radius unused when the box is active.

    Args:
      v: ``[d]``; eps: L2 radius; lower, upper: ``[d]`` box (``lower <= 0 <= upper``).

    Returns:
      ``[d]`` the projection.

    References:
      Boyd, S. & Vandenberghe, L. (2004). Convex Optimization, sec. 5.5 (KKT).

    Example:
      >>> import jax.numpy as jnp
      >>> p = project_l2_box(jnp.array([3.0, 4.0]), 1.0, -jnp.ones(2), jnp.ones(2))
      >>> [round(x, 4) for x in p.tolist()]
      [0.6, 0.8]
    """
    v = jnp.asarray(v)
    eps = jnp.asarray(eps, v.dtype)

    def norm(t):
        return jnp.sqrt(jnp.sum(jnp.square(jnp.clip(t * v, lower, upper))))

    def body(_, lohi):
        lo, hi = lohi
        mid = 0.5 * (lo + hi)
        ok = norm(mid) <= eps
        return jnp.where(ok, mid, lo), jnp.where(ok, hi, mid)

    inside = norm(jnp.asarray(1.0, v.dtype)) <= eps
    lo, _ = jax.lax.fori_loop(0, iters, body, (jnp.asarray(0.0, v.dtype), jnp.asarray(1.0, v.dtype)))
    t = jnp.where(inside, 1.0, lo)
    return jnp.clip(t * v, lower, upper)
