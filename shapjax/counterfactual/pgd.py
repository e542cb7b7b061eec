r"""Projected-gradient counterfactual baselines: PGD onto the L1 ball (Duchi et al. 2008) and dense L2 PGD."""
from __future__ import annotations

import math

from shapjax.counterfactual import _core
from shapjax.counterfactual._core import Counterfactual

__all__ = ["pgd_l1", "pgd_l2"]

_COMMON_ARGS = """
    Args:
      model: ``images [N, H, W, C] -> logits [N, K]``.
      images: ``[B, H, W, C]`` floats in [0, 1].
      target, labels, loss, stop_on_success, l0_tol, batch_size: as
        :func:`fw_l1q`.
      steps: iterations.
      step_size: Euclidean length of each step (the gradient is normalised to
        unit L2 norm per image); default ``2.5 * eps / steps`` for L2 and
        ``2.5 * eps / sqrt(steps)`` for L1, see the note above.

    Returns:
      :class:`Counterfactual` (method ``"pgd_l1"`` / ``"pgd_l2"``), the
      per-step :class:`Trace` included.
"""


def _run(method, model, images, target, labels, eps, steps, step_size, loss, stop_on_success, l0_tol, batch_size,
         default_eps, default_step):
    fs, fd, images, targeted, mode, classes, bs = _core.prepare(model, images, target, labels, loss, batch_size)
    eps = default_eps(images) if eps is None else _core._float(eps, "eps")
    steps = _core.check_steps(steps)
    step_size = default_step(eps, steps) if step_size is None else _core._float(step_size, "step_size")
    l0_tol = _core._float(l0_tol, "l0_tol", positive=False, lo=0.0, hi=1.0)
    hyper = _core.hyper_arrays(eps=eps, step_size=step_size, l0_tol=l0_tol, stop_on_success=stop_on_success)
    return _core.run(fs, fd, images, classes, None, hyper, method=method, steps=steps, targeted=targeted,
                     mode=mode, loss=loss, bs=bs)


def pgd_l1(model, images, *, target=None, labels=None, eps: float | None = None, steps: int = 45,
           step_size: float | None = None, loss: str = "ce", stop_on_success: bool = False,
           l0_tol: float = _core.DEFAULT_L0_TOL, batch_size: int | None = None) -> Counterfactual:
    r"""L1 counterfactual baseline: projected gradient descent with the exact projection onto the L1 ball.

    Same problem, start and feasible set as :func:`fw_l1q`,

    .. math::

        \delta_{k+1} = \Pi_{C}\Big(\delta_k - \alpha
            \frac{\nabla \mathcal{L}(x + \delta_k)}{\|\nabla \mathcal{L}(x + \delta_k)\|_2}\Big),\qquad
        C = \{\|\delta\|_1 \le \epsilon,\ 0 \le x + \delta \le 1\},

    where :math:`\Pi_C` is the exact Euclidean projection onto the L1 ball
    intersected with the box (:func:`project_l1_box`, the sort-based algorithm
    of Duchi et al. generalised to a box). Sparsity comes only from the
    projection's soft threshold, so it is not controlled directly. The default
    step ``2.5 * eps / sqrt(steps)`` reflects the geometry: a sparse point of
    the L1 ball with :math:`n` equal non-zeros has L2 norm
    :math:`\epsilon/\sqrt{n}`, far less than :math:`\epsilon`.
    ``eps`` defaults to ``0.05 * H * W * C`` as in :func:`fw_l1q`.
    {args}
    References:
      Duchi, J., Shalev-Shwartz, S., Singer, Y. & Chandra, T. (2008). Efficient
      Projections onto the l1-Ball for Learning in High Dimensions. ICML.
      Madry, A., Makelov, A., Schmidt, L., Tsipras, D. & Vladu, A. (2018).
      Towards Deep Learning Models Resistant to Adversarial Attacks. ICLR.

    Example:
      >>> import jax.numpy as jnp
      >>> w = jnp.zeros((16, 2)).at[:, 0].set(0.25).at[3, 1].set(3.0)
      >>> model = lambda x: x.reshape(len(x), -1) @ w
      >>> cf = pgd_l1(model, jnp.full((1, 4, 4, 1), 0.5), target=1, eps=0.4, steps=20)
      >>> round(float(cf.delta.reshape(-1)[3]), 3), bool(cf.success[0])
      (0.4, True)
    """
    return _run("pgd_l1", model, images, target, labels, eps, steps, step_size, loss, stop_on_success, l0_tol,
                batch_size, _core.default_eps_l1, lambda e, s: 2.5 * e / math.sqrt(s))


def default_eps_l2(images) -> float:
    """``0.15 * sqrt(H * W * C)`` (4.2 on 28x28 MNIST, 58 at 224x224x3)."""
    import numpy as np

    return 0.15 * math.sqrt(float(np.prod(images.shape[1:])))


def pgd_l2(model, images, *, target=None, labels=None, eps: float | None = None, steps: int = 45,
           step_size: float | None = None, loss: str = "ce", stop_on_success: bool = False,
           l0_tol: float = _core.DEFAULT_L0_TOL, batch_size: int | None = None) -> Counterfactual:
    r"""Dense L2 counterfactual baseline: projected gradient descent onto the L2 ball (and the box).

    .. math::

        \delta_{k+1} = \Pi_{C}\Big(\delta_k - \alpha
            \frac{\nabla \mathcal{L}(x + \delta_k)}{\|\nabla \mathcal{L}(x + \delta_k)\|_2}\Big),\qquad
        C = \{\|\delta\|_2 \le \epsilon,\ 0 \le x + \delta \le 1\},

    with :math:`\Pi_C` the exact projection onto the ball intersected with the
    box (:func:`project_l2_box`). This is the targeted version of the attack
    robust models are trained against; on a robust model its perturbations are
    the "perceptually aligned" dense counterfactuals of Tsipras et al., against
    which the sparse ones are compared. ``eps`` defaults to
    ``0.15 * sqrt(H * W * C)``.
    {args}
    References:
      Madry, A., Makelov, A., Schmidt, L., Tsipras, D. & Vladu, A. (2018).
      Towards Deep Learning Models Resistant to Adversarial Attacks. ICLR.
      Tsipras, D., Santurkar, S., Engstrom, L., Turner, A. & Madry, A. (2019).
      Robustness May Be at Odds with Accuracy. ICLR.

    Example:
      >>> import jax.numpy as jnp
      >>> w = jnp.zeros((16, 2)).at[:, 0].set(0.25).at[3, 1].set(3.0)
      >>> model = lambda x: x.reshape(len(x), -1) @ w
      >>> cf = pgd_l2(model, jnp.full((1, 4, 4, 1), 0.5), target=1, eps=1.0, steps=20)
      >>> bool(cf.success[0]), float(cf.trace.l2[0, -1]) <= 1.0 + 1e-5
      (True, True)
    """
    return _run("pgd_l2", model, images, target, labels, eps, steps, step_size, loss, stop_on_success, l0_tol,
                batch_size, default_eps_l2, lambda e, s: 2.5 * e / s)


pgd_l1.__doc__ = pgd_l1.__doc__.replace("{args}", _COMMON_ARGS)
pgd_l2.__doc__ = pgd_l2.__doc__.replace("{args}", _COMMON_ARGS)
