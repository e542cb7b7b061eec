r"""FastSHAP's surrogate model: the classifier fine-tuned to predict from randomly masked images.

With a masker whose masked images lie far from the training data (a constant colour on natural
images), :math:`v_x(S) = f(\text{mask}(x, S))` mostly measures how the model reacts to the masking.
The surrogate :math:`g` is trained so that :math:`g(\text{mask}(x, S)) \approx f(x)` in
distribution, minimising :math:`\mathbb{E}_{x, S}\, \mathrm{KL}\big(\mathrm{softmax} f(x) \,\|\,
\mathrm{softmax}\, g(\text{mask}(x, S))\big)` with the size of :math:`S` uniform on ``0..M`` (Frye et al.
2021; Jethani et al. 2022); then ``train(classifier, images, value_model=surrogate, ...)``.
"""
from __future__ import annotations

import logging

import jax
import jax.numpy as jnp
import numpy as np
import optax

from shapjax._util.api import keyword_key
from shapjax._util.checks import check_images, check_int, check_key
from shapjax.engine.samplers import random_subsets
from shapjax.kernels.masking import compose_rows

_LOG = logging.getLogger(__name__)


@keyword_key
def train_surrogate(classifier, images, *, key, segments, masker, epochs: int = 2, batch_size: int = 64,
                    learning_rate: float = 3e-4, progress: bool = False):
    """Fine-tune a copy of ``classifier`` (a :class:`shapjax.models.Classifier` of a shipped architecture)
    on randomly masked ``images``; returns the surrogate :class:`~shapjax.models.Classifier`."""
    from tqdm.auto import tqdm

    from shapjax.models.classifier import Classifier

    from .train import resolve_segments

    check_key(key)
    if not isinstance(classifier, Classifier) or not classifier.is_architecture:
        raise TypeError("classifier: the surrogate is a fine-tuned copy of a shapjax.models.Classifier of a "
                        f"built-in architecture; got {type(classifier).__name__}")
    x = np.asarray(check_images(np.asarray(getattr(images, "images", images)), "images"))
    seg, M, _ = resolve_segments(segments, x)
    epochs, batch_size = check_int(epochs, "epochs", 1), min(check_int(batch_size, "batch_size", 1), len(x))
    apply = classifier.apply
    seg_j = jnp.asarray(seg)
    opt = optax.adam(float(learning_rate))
    variables = classifier.params
    state = opt.init(variables["params"])

    def loss_fn(p, xb, k):
        B = xb.shape[0]
        segb = jnp.broadcast_to(seg_j, (B,) + seg_j.shape)
        repl = masker.replacement(xb, segb, M)
        k1, k2 = jax.random.split(k)
        Z = random_subsets(jax.random.randint(k1, (B,), 0, M + 1), M, key=k2)
        xm = compose_rows(xb, repl, segb, Z)[:, 0]
        target = jax.nn.softmax(jax.lax.stop_gradient(apply(variables, xb)))
        logp = jax.nn.log_softmax(apply({**variables, "params": p}, xm))
        return -jnp.mean(jnp.sum(target * logp, axis=-1))

    @jax.jit
    def step(p, s, xb, k):
        loss, g = jax.value_and_grad(loss_fn)(p, xb, k)
        u, s = opt.update(g, s, p)
        return optax.apply_updates(p, u), s, loss

    p = variables["params"]
    steps = len(x) // batch_size
    with tqdm(total=epochs * steps, disable=not progress, desc="surrogate", unit="step") as bar:
        for e in range(epochs):
            perm = np.asarray(jax.random.permutation(jax.random.fold_in(key, 2 * e), len(x)))
            for s in range(steps):
                idx = np.sort(perm[s * batch_size:(s + 1) * batch_size])
                p, state, loss = step(p, state, jnp.asarray(x[idx]), jax.random.fold_in(key, 2 * (e * steps + s) + 1))
                bar.update(1)
            _LOG.info("surrogate epoch %d/%d: loss %.4g", e + 1, epochs, float(loss))
    return classifier.replace(params={**variables, "params": p},
                              name=(classifier.name or "classifier") + "-surrogate")
