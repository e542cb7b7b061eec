"""Projected gradient descent (PGD) adversarial examples and adversarial training config.

PGD maximises the cross-entropy loss :math:`\\ell` inside an
:math:`\\epsilon`-ball around the clean image :math:`x_0`, intersected with the
valid pixel range :math:`[0, 1]`:

.. math::

    x_{t+1} = \\Pi_{B_p(x_0, \\epsilon) \\cap [0,1]^d}
              \\big(x_t + \\alpha\\, s_p(\\nabla_x \\ell(f(x_t), y))\\big),

with :math:`s_\\infty(g) = \\mathrm{sign}(g)` and :math:`s_2(g) = g / \\|g\\|_2`
(per image). The projection onto the :math:`L_\\infty` ball clips each pixel to
:math:`[x_0 - \\epsilon, x_0 + \\epsilon]`; onto the :math:`L_2` ball it
rescales :math:`\\delta = x - x_0` by :math:`\\min(1, \\epsilon / \\|\\delta\\|_2)`.
Clipping to :math:`[0, 1]` afterwards only moves pixels towards :math:`x_0`
(which lies in :math:`[0,1]`), so the result stays in the ball. The start point
is a uniform random point of the ball (Madry et al.'s random restart).

Adversarial training (Madry et al.) minimises the loss on these worst-case
inputs instead of the clean ones: :math:`\\min_\\theta \\mathbb{E}\\,
\\max_{\\|\\delta\\|_p \\le \\epsilon} \\ell(f_\\theta(x + \\delta), y)`; see
:class:`PGDConfig` and :func:`shapjax.train.train`.

References:
  A. Madry, A. Makelov, L. Schmidt, D. Tsipras, A. Vladu. "Towards deep
  learning models resistant to adversarial attacks." ICLR 2018.
  arXiv:1706.06083.
"""
from __future__ import annotations

from functools import partial
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from shapjax._util.api import keyword_key

_NORMS = ("linf", "l2")


class PGDConfig(NamedTuple):
    """Settings of a PGD attack (also the adversarial-training option of `train`).

    Attributes:
      eps: radius of the norm ball (pixel units, images in [0, 1]).
      step_size: step length alpha per iteration.
      n_steps: number of PGD iterations.
      norm: ``"linf"`` or ``"l2"``.
    """

    eps: float
    step_size: float
    n_steps: int
    norm: str = "linf"


def _check(eps, step_size, n_steps, norm, images, labels):
    if norm not in _NORMS:
        raise ValueError(f"norm: expected one of {_NORMS}, got {norm!r}")
    if not (float(eps) >= 0):
        raise ValueError(f"eps: expected a non-negative float, got {eps!r}")
    if not (float(step_size) > 0):
        raise ValueError(f"step_size: expected a positive float, got {step_size!r}")
    if int(n_steps) != n_steps or n_steps < 1:
        raise ValueError(f"n_steps: expected a positive int, got {n_steps!r}")
    if getattr(images, "ndim", None) != 4:
        raise ValueError(f"images: expected [B, H, W, C], got shape {getattr(images, 'shape', None)}")
    if getattr(labels, "shape", None) != images.shape[:1]:
        raise ValueError(f"labels: expected shape [{images.shape[0]}] (one int label per image), "
                         f"got {getattr(labels, 'shape', None)}")


def _per_image_norm(x: jax.Array) -> jax.Array:
    return jnp.sqrt(jnp.sum(jnp.square(x), axis=(1, 2, 3), keepdims=True))


def _project(delta: jax.Array, eps: jax.Array, norm: str) -> jax.Array:
    if norm == "linf":
        return jnp.clip(delta, -eps, eps)
    n = _per_image_norm(delta)
    return delta * jnp.minimum(1.0, eps / jnp.maximum(n, 1e-12))


def _random_start(key: jax.Array, shape, eps, norm: str) -> jax.Array:
    if norm == "linf":
        return jax.random.uniform(key, shape, minval=-1.0, maxval=1.0) * eps
    k1, k2 = jax.random.split(key)
    d = jax.random.normal(k1, shape)
    d = d / jnp.maximum(_per_image_norm(d), 1e-12)
    dim = shape[1] * shape[2] * shape[3]
    r = jax.random.uniform(k2, (shape[0], 1, 1, 1)) ** (1.0 / dim)  # uniform in the ball
    return d * r * eps


@partial(jax.jit, static_argnames=("apply_fn", "n_steps", "norm", "random_start"))
def _pgd(key, apply_fn, params, images, labels, eps, step_size, *, n_steps, norm, random_start):
    x0 = images.astype(jnp.float32)
    eps = jnp.asarray(eps, x0.dtype)
    step_size = jnp.asarray(step_size, x0.dtype)

    def loss(x):
        logits = apply_fn(params, x)
        return jnp.sum(optax.softmax_cross_entropy_with_integer_labels(logits, labels))

    grad = jax.grad(loss)
    if random_start:
        x = jnp.clip(x0 + _random_start(key, x0.shape, eps, norm), 0.0, 1.0)
    else:
        x = x0

    def body(_, x):
        g = grad(x)
        if norm == "linf":
            step = jnp.sign(g)
        else:
            step = g / jnp.maximum(_per_image_norm(g), 1e-12)
        x = x + step_size * step
        x = x0 + _project(x - x0, eps, norm)
        return jnp.clip(x, 0.0, 1.0)

    x = jax.lax.fori_loop(0, n_steps, body, x)
    return jax.lax.stop_gradient(x)


@keyword_key
def pgd_attack(apply_fn: Callable[[Any, jax.Array], jax.Array], params: Any,
               images: jax.Array, labels: jax.Array, *, key, eps: float, step_size: float, n_steps: int,
               norm: str = "linf", random_start: bool = True) -> jax.Array:
    """Untargeted PGD adversarial examples (Madry et al. 2018).

    Args:
      key: PRNG key for the random start.
      apply_fn: ``apply_fn(params, images [B, H, W, C]) -> logits [B, K]``;
        hashable (it is a static argument of the jitted attack), e.g.
        ``classifier.apply``.
      params: the model variables passed to ``apply_fn``.
      images: ``[B, H, W, C]`` clean images in [0, 1].
      labels: ``[B]`` int true labels (the loss that is increased).
      eps: radius of the ``norm`` ball.
      step_size: step length per iteration (e.g. ``2.5 * eps / n_steps``).
      n_steps: number of iterations.
      norm: ``"linf"`` (sign steps, box projection) or ``"l2"``
        (normalised-gradient steps, ball projection).
      random_start: start from a uniform random point of the ball.

    Returns:
      ``[B, H, W, C]`` adversarial images in [0, 1] with
      ``||x_adv - images||_p <= eps`` per image.
    """
    _check(eps, step_size, n_steps, norm, images, labels)
    labels = jnp.asarray(labels).astype(jnp.int32)
    return _pgd(key, apply_fn, params, jnp.asarray(images), labels, eps, step_size,
                n_steps=int(n_steps), norm=norm, random_start=bool(random_start))


@keyword_key
def adversarial_accuracy(classifier, images: jax.Array, labels: jax.Array, *, key,
                         eps: float, step_size: float, n_steps: int, norm: str = "linf",
                         batch_size: int = 256) -> float:
    """Accuracy of ``classifier`` on PGD examples of ``images`` (robust accuracy).

    Args:
      key: PRNG key (one fold per batch).
      classifier: a :class:`shapjax.models.Classifier`.
      images: ``[N, H, W, C]`` in [0, 1]; labels ``[N]`` int.
      eps, step_size, n_steps, norm: see :func:`pgd_attack`.
    """
    n = images.shape[0]
    correct = 0
    for i, s in enumerate(range(0, n, batch_size)):
        x = jnp.asarray(images[s:s + batch_size])
        y = jnp.asarray(labels[s:s + batch_size]).astype(jnp.int32)
        adv = pgd_attack(classifier.apply, classifier.params, x, y,
                         key=jax.random.fold_in(key, i), eps=eps, step_size=step_size, n_steps=n_steps, norm=norm)
        correct += int(jnp.sum(jnp.argmax(classifier(adv), -1) == y))
    return correct / max(n, 1)
