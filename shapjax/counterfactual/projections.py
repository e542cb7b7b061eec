r"""The geometry of sparse counterfactuals: the FW-L1-q oracle and exact Euclidean projections.

Every function works on one flattened perturbation ``[d]`` (``vmap`` it over a
batch) and on the *feasible set of the perturbation* of an image
:math:`x \in [0, 1]^d`: with :math:`\ell = 0 - x \le 0 \le u = 1 - x`,

.. math::

    C = \{\delta : \|\delta\|_p \le \epsilon,\ \ell \le \delta \le u\},

so that :math:`x + \delta` stays a valid image. :math:`C` is convex and holds
:math:`\delta = 0`.

* :func:`lmo_l1q` -- the linear maximisation oracle of FW-L1-q (Roberts &
  Tsiligkaridis 2021) restricted to the box: the top-:math:`k` coordinates of
  :math:`|g|` set to :math:`\mathrm{sign}(g)\,\epsilon/k`. Without the box it is
  the exact oracle of the polytope :math:`B_1(\epsilon) \cap
  B_\infty(\epsilon/k)`; with it, of :math:`B_1(\epsilon) \cap
  B_\infty(\epsilon/k) \cap [\ell, u]` (a fractional knapsack, solved greedily).
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
    r"""Coordinates kept by the FW-L1-q oracle for sparsity ``q``: :math:`k = \mathrm{clip}(\lfloor (1-q)\,d \rfloor, 1, d)`.

    ``q`` may be traced (an array of any shape); returns int32 of the same shape.
    ``q = 1`` keeps one coordinate (the classic L1 Frank-Wolfe vertex).

    Example:
      >>> int(sparsity_k(0.975, 784))
      19
    """
    q = jnp.asarray(q, jnp.float32)
    return jnp.clip(jnp.floor((1.0 - q) * d + 1e-4), 1, d).astype(jnp.int32)


def lmo_l1q(g, k, eps, lower, upper):
    r"""FW-L1-q linear oracle over the box: the best :math:`s` with at most :math:`\epsilon/k` per coordinate.

    Solves

    .. math::

        s^\star = \arg\max_{s} \langle g, s \rangle \quad \text{s.t.}\quad
        \|s\|_1 \le \epsilon,\ \|s\|_\infty \le \epsilon / k,\ \ell \le s \le u,

    a fractional knapsack: coordinates sorted by :math:`|g_i|` (descending) are
    filled in the direction :math:`\mathrm{sign}(g_i)` up to their capacity
    :math:`\min(\epsilon/k,\ u_i \text{ or } -\ell_i)` until :math:`\epsilon` is
    spent. Where the box is not active this is the oracle of the paper: the top
    :math:`k = \lfloor (1 - q) d \rfloor` coordinates of :math:`|g|`, set to
    :math:`\mathrm{sign}(g)`, normalised to unit L1 norm and scaled by
    :math:`\epsilon` -- a vertex of :math:`B_1(\epsilon) \cap
    B_\infty(\epsilon / k)` with exactly :math:`k` non-zeros (for :math:`k=1`, a
    vertex :math:`\pm\epsilon e_i` of the L1 ball). Where a pixel is already at
    the bound the gradient pushes it to, that coordinate is infeasible and the
    budget goes to the next one, so every oracle point, hence every Frank-Wolfe
    iterate (a convex combination of them and 0), keeps :math:`x + \delta` in
    :math:`[0, 1]`.

    Args:
      g: ``[d]`` gradient of the objective being *maximised*.
      k: int (may be traced), ``1 <= k <= d``.
      eps: L1 radius (may be traced).
      lower, upper: ``[d]`` box of the perturbation, ``lower <= 0 <= upper``.

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
      >>> lmo_l1q(g, 2, 1.0, -jnp.ones(4), jnp.ones(4)).tolist()
      [0.0, -0.5, 0.5, 0.0]
    """
    g = jnp.asarray(g)
    eps = jnp.asarray(eps, g.dtype)
    cap = jnp.where(g > 0, upper, jnp.where(g < 0, -lower, 0.0))
    cap = jnp.clip(cap, 0.0, eps / jnp.asarray(k, g.dtype))
    order = jnp.argsort(-jnp.abs(g))  # stable: ties keep the lower index first
    cap_s = cap[order]
    before = jnp.cumsum(cap_s) - cap_s
    amount_s = jnp.clip(eps - before, 0.0, cap_s)
    # float rounding of the cumulative sum can leave ~1e-7 * eps on the (k+1)-th coordinate: drop it
    amount_s = jnp.where(amount_s > 1e-5 * eps / jnp.asarray(k, g.dtype), amount_s, 0.0)
    amount = jnp.zeros_like(g).at[order].set(amount_s)
    return jnp.sign(g) * amount


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
