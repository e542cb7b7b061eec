"""Right for the right reasons: fine-tune a classifier so its input gradients stay inside the marked regions.

The explorer's region marks say where an explanation *should* look. Besides
scoring settings (the bandit), they can constrain the model itself (Ross et al.
2017; the explanatory interactive learning of CAIPI, Teso & Kersting 2019):

.. math::

    L(\\theta) = \\frac1B \\sum_n \\mathrm{CE}(y_n, f_\\theta(x_n))
      + \\lambda \\frac1B \\sum_n \\Big\\| A_n \\odot \\frac{\\partial}{\\partial x_n}
        \\sum_k \\log p_\\theta(k \\mid x_n) \\Big\\|_2^2

with ``A_n = 1 - marks_n`` (the pixels *outside* the marks). :func:`finetune`
minimises it with Adam; :func:`marks_from_feedback` turns the stored marks of
an :class:`~shapjax.explorer.Explorer` into ``(images, labels, masks)``.

References:
  Ross, A. S., Hughes, M. C. & Doshi-Velez, F. (2017). Right for the right reasons: training differentiable
  models by constraining their explanations. IJCAI.
  Teso, S. & Kersting, K. (2019). Explanatory interactive machine learning. AIES.
"""
from __future__ import annotations

import numpy as np


def _loss(params, apply, x, y, outside, lam):
    import jax
    import jax.numpy as jnp
    import optax

    grad_x = jax.grad(lambda xx: jax.nn.log_softmax(apply(params, xx)).sum())(x)
    logits = apply(params, x)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    rr = jnp.sum((outside[..., None] * grad_x) ** 2) / x.shape[0]
    return ce + lam * rr, (ce, rr)


def gradient_share_outside(clf, images, marks) -> np.ndarray:
    """``[N]``: share of the squared input gradient of ``sum_k log p_k`` that lies outside ``marks [N, H, W]``."""
    import jax

    g = jax.grad(lambda x: jax.nn.log_softmax(clf.apply(clf.params, x)).sum())(np.asarray(images, np.float32))
    e = (np.asarray(g) ** 2).sum(-1)
    return (e * ~np.asarray(marks, bool)).sum((1, 2)) / np.maximum(e.sum((1, 2)), 1e-30)


def finetune(clf, images, labels, marks, *, key, lam: float = 1e-3, steps: int = 50, learning_rate: float = 3e-4,
             batch_size: int = 32):
    """Fine-tune ``clf`` on ``images [N, H, W, C]``, ``labels [N]`` with the right-reasons penalty outside ``marks``.

    Args:
      clf: a :class:`shapjax.models.Classifier`.
      images, labels: the examples (labels int in ``0..K-1``).
      marks: ``[N, H, W]`` bool, where each image's explanation should be (an all-False row
        constrains nothing: its penalty covers the whole image, so pass only marked images).
      key: JAX PRNG key (mini-batch order).
      lam: weight of the penalty.
      steps: Adam steps; learning_rate: Adam's step size; batch_size: examples per step.

    Returns:
      ``(classifier, history)``: the fine-tuned classifier and ``{"loss", "ce", "rr"}`` per step.
    """
    import jax
    import jax.numpy as jnp
    import optax

    from shapjax._util.checks import check_int, check_key

    check_key(key)
    steps, batch_size = check_int(steps, "steps", 1), check_int(batch_size, "batch_size", 1)
    x = np.asarray(images, np.float32)
    y = np.asarray(labels, np.int32).reshape(-1)
    m = np.asarray(marks, bool)
    if x.ndim != 4 or y.shape != (len(x),) or m.shape != x.shape[:3]:
        raise ValueError(f"images [N, H, W, C], labels [N] and marks [N, H, W] must agree; got {x.shape}, "
                         f"{y.shape}, {m.shape}")
    K = clf.num_classes
    if len(y) == 0 or y.min() < 0 or y.max() >= K:
        raise ValueError(f"labels: expected ints in 0..{K - 1}, got {np.unique(y)[:10]}")
    if not lam >= 0:
        raise ValueError(f"lam: expected a number >= 0, got {lam!r}")
    apply = clf.apply
    opt = optax.adam(learning_rate)
    outside = jnp.asarray(~m, jnp.float32)

    @jax.jit
    def step(params, state, x, y, outside, idx):
        (loss, (ce, rr)), g = jax.value_and_grad(_loss, has_aux=True)(params, apply, x[idx], y[idx], outside[idx],
                                                                        lam)
        upd, state = opt.update(g, state, params)
        return optax.apply_updates(params, upd), state, jnp.stack([loss, ce, rr])

    x, y = jnp.asarray(x), jnp.asarray(y)
    params = clf.params
    state = opt.init(params)
    bs = min(batch_size, len(x))
    hist = []
    for t in range(steps):
        idx = jax.random.choice(jax.random.fold_in(key, t), len(x), (bs,), replace=False)
        params, state, h = step(params, state, x, y, outside, idx)
        hist.append(np.asarray(h))
    h = np.stack(hist)
    return clf.replace(params=params), {"loss": h[:, 0].tolist(), "ce": h[:, 1].tolist(), "rr": h[:, 2].tolist()}


def marks_from_feedback(explorer):
    """The stored marks of ``explorer``'s model as ``(images, labels, marks)`` for :func:`finetune`.

    Every verdict with regions gives one example: its image, the class it explains (marks on a 👎
    say where that class's evidence should be) and the marked pixels.
    """
    xs, ys, ms = [], [], []
    for r in explorer.store.rows(explorer.model_name):
        if not r["regions"] or r["image_id"] not in explorer.index:
            continue
        i = explorer.index[r["image_id"]]
        s = explorer.by_name.get(r["setting"])
        if s is None:
            continue
        mask = explorer.region_mask(i, r["class"], s, r["regions"])
        if mask is None:
            continue
        xs.append(explorer.images[i])
        ys.append(r["class"])
        ms.append(mask)
    if not xs:
        raise ValueError("no stored feedback of this model has marked regions")
    return np.stack(xs), np.asarray(ys, np.int32), np.stack(ms)
