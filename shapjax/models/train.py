"""Training image classifiers with optax (optionally adversarially, with PGD).

Low level, blackjax-style: :func:`init_state` and :func:`make_train_step` give a
pure, jitted ``step(key, state, images, labels) -> (state, metrics)`` that
minimises the softmax cross-entropy

.. math::

    \\mathcal{L}(\\theta) = -\\frac{1}{B} \\sum_{b} \\log \\mathrm{softmax}(f_\\theta(\\tilde x_b))_{y_b},

where :math:`\\tilde x_b` is the (randomly shifted / flipped) image or, with
adversarial training, its PGD adversarial example (Madry et al. 2018):
:math:`\\tilde x_b = \\mathrm{PGD}_{\\epsilon, p}(x_b)`. BatchNorm models use batch
statistics in the step and update their running statistics.

High level: :func:`train` runs epochs over a :class:`shapjax.data.Dataset` with a
tqdm progress bar, reports held-out accuracy after each epoch and writes a
checkpoint (flax msgpack + JSON, see :func:`shapjax.models.save_checkpoint`).
:func:`cli_main` is the ``shapjax train`` command line.

References:
  D. P. Kingma, J. Ba. "Adam: a method for stochastic optimization." ICLR 2015.
  I. Loshchilov, F. Hutter. "Decoupled weight decay regularization." ICLR 2019.
  A. Madry, A. Makelov, L. Schmidt, D. Tsipras, A. Vladu. "Towards deep
  learning models resistant to adversarial attacks." ICLR 2018.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from shapjax._util.api import keyword_key

from .adversarial import PGDConfig, pgd_attack
from .checkpoint import save_checkpoint
from .classifier import Classifier

_LOG = logging.getLogger(__name__)

class TrainState(NamedTuple):
    """State of :func:`make_train_step`: flax variables, optimizer state, step count."""

    params: Any
    opt_state: optax.OptState
    step: jax.Array


class TrainResult(NamedTuple):
    """Output of :func:`train`: the trained classifier and one dict per epoch."""

    classifier: Classifier
    history: list


def default_optimizer(learning_rate: float, total_steps: int, *, weight_decay: float = 1e-4
                      ) -> optax.GradientTransformation:
    """AdamW with linear warm-up and cosine decay over ``total_steps``."""
    warmup = max(1, min(200, total_steps // 10))
    schedule = optax.warmup_cosine_decay_schedule(0.0, learning_rate, warmup, max(total_steps, warmup + 1),
                                                  end_value=learning_rate * 0.01)
    return optax.adamw(schedule, weight_decay=weight_decay)


def init_state(classifier: Classifier, optimizer: optax.GradientTransformation) -> TrainState:
    """Initial :class:`TrainState` from a classifier's variables."""
    return TrainState(classifier.params, optimizer.init(classifier.params["params"]),
                      jnp.zeros((), jnp.int32))


def _augment(key: jax.Array, images: jax.Array, shift: int, flip: bool) -> jax.Array:
    """Random translation by up to ``shift`` pixels (zero padding) and horizontal flips."""
    b, h, w, c = images.shape
    if shift:
        k1, key = jax.random.split(key)
        padded = jnp.pad(images, ((0, 0), (shift, shift), (shift, shift), (0, 0)))
        offs = jax.random.randint(k1, (b, 2), 0, 2 * shift + 1)
        images = jax.vmap(lambda im, o: jax.lax.dynamic_slice(im, (o[0], o[1], 0), (h, w, c)))(padded, offs)
    if flip:
        do = jax.random.bernoulli(key, 0.5, (b, 1, 1, 1))
        images = jnp.where(do, images[:, :, ::-1], images)
    return images


def make_train_step(classifier: Classifier, optimizer: optax.GradientTransformation, *,
                    adversarial: PGDConfig | None = None, shift: int = 0, flip: bool = False
                    ) -> Callable[[jax.Array, TrainState, jax.Array, jax.Array], tuple[TrainState, dict]]:
    """A jitted training step ``step(key, state, images, labels) -> (state, metrics)``.

    Args:
      classifier: gives the architecture (its variables are not used; they
        live in the state).
      optimizer: an optax transformation over ``variables["params"]``.
      adversarial: train on PGD examples instead of clean images (Madry et al.).
      shift: random translation of up to ``shift`` pixels (0 = off).
      flip: random horizontal flips.

    The step takes ``images [B, H, W, C]`` float in [0, 1] and ``labels [B]``
    int and returns metrics ``{"loss", "accuracy"}`` (scalars, on device).
    """
    module = classifier.module
    bn = classifier.has_batch_stats

    def forward(variables, x):
        if bn:
            logits, updates = module.apply(variables, x, train=True, mutable=["batch_stats"])
            return logits, updates["batch_stats"]
        return module.apply(variables, x, train=True), None

    def attack_apply(variables, x):  # batch statistics, no running-stat update
        return forward(variables, x)[0]

    @jax.jit
    def step(key, state: TrainState, images, labels):
        k_aug, k_adv = jax.random.split(key)
        x = _augment(k_aug, images.astype(jnp.float32), shift, flip)
        y = labels.astype(jnp.int32)
        if adversarial is not None:
            x = pgd_attack(attack_apply, state.params, x, y, key=k_adv, eps=adversarial.eps,
                           step_size=adversarial.step_size, n_steps=adversarial.n_steps,
                           norm=adversarial.norm)

        def loss_fn(p):
            variables = dict(state.params, params=p)
            logits, stats = forward(variables, x)
            loss = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, y))
            return loss, (logits, stats)

        (loss, (logits, stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params["params"])
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params["params"])
        new_params = dict(state.params, params=optax.apply_updates(state.params["params"], updates))
        if stats is not None:
            new_params["batch_stats"] = stats
        acc = jnp.mean(jnp.argmax(logits, -1) == y)
        return TrainState(new_params, opt_state, state.step + 1), {"loss": loss, "accuracy": acc}

    return step


def _predict(apply_fn, params, images: Any, batch_size: int) -> np.ndarray:
    n = len(images)
    batch_size = max(1, min(batch_size, n))
    out = []
    for s in range(0, n, batch_size):
        x = np.asarray(images[s:s + batch_size], np.float32)
        k = len(x)
        if k < batch_size:  # pad the last batch: one compiled shape
            x = np.concatenate([x, np.zeros((batch_size - k, *x.shape[1:]), np.float32)])
        out.append(np.asarray(jnp.argmax(apply_fn(params, jnp.asarray(x)), -1))[:k])
    return np.concatenate(out) if out else np.zeros((0,), np.int32)


def predict(classifier: Classifier, images: Any, *, batch_size: int = 500) -> np.ndarray:
    """Predicted class ids ``[N]`` of ``images [N, H, W, C]`` (inference mode, batched)."""
    return _predict(lambda p, x: classifier(x), classifier.params, images, batch_size)


def evaluate(classifier: Classifier, images: Any, labels: Any, *, batch_size: int = 500) -> float:
    """Accuracy in [0, 1] of ``classifier`` on ``images [N, H, W, C]`` with ``labels [N]``."""
    labels = np.asarray(labels)
    if len(images) != len(labels):
        raise ValueError(f"labels: expected {len(images)} labels, got {len(labels)}")
    if len(labels) == 0:
        raise ValueError("images: empty evaluation set")
    return float(np.mean(predict(classifier, images, batch_size=batch_size) == labels))


def _check_data(classifier: Classifier, data: Any, argname: str) -> None:
    images = getattr(data, "images", None)
    labels = getattr(data, "labels", None)
    if images is None or labels is None:
        raise TypeError(f"{argname}: expected a shapjax.data.Dataset (images, labels), got {type(data).__name__}")
    if images.ndim != 4 or tuple(images.shape[1:]) != classifier.input_shape:
        raise ValueError(f"{argname}: images of shape {tuple(images.shape)} do not fit the model's input "
                         f"[N, {', '.join(map(str, classifier.input_shape))}]")
    if len(labels) and (labels.min() < 0 or labels.max() >= classifier.num_classes):
        raise ValueError(f"{argname}: labels must lie in [0, {classifier.num_classes}) for this model, got "
                         f"range [{labels.min()}, {labels.max()}]")


@keyword_key
def train(classifier: Classifier, data: Any, *, key, epochs: int = 5, batch_size: int = 128,
          learning_rate: float = 1e-3, weight_decay: float = 1e-4,
          optimizer: optax.GradientTransformation | None = None, eval_data: Any = None,
          shift: int = 0, flip: bool = False, adversarial: PGDConfig | None = None,
          checkpoint: str | Path | None = None, metadata: dict | None = None,
          progress: bool = True, log: Callable[[str], None] | None = None) -> TrainResult:
    """Train ``classifier`` on ``data`` with minibatch AdamW (deterministic given ``key``).

    Args:
      key: PRNG key for shuffling, augmentation and PGD starts.
      classifier: initial model (e.g. :func:`shapjax.models.small_cnn`).
      data: a :class:`shapjax.data.Dataset` whose images fit the model.
      epochs: passes over ``data``; the last partial batch of an epoch is dropped.
      batch_size: images per step (capped at ``len(data)``).
      learning_rate, weight_decay: of the default optimizer
        (:func:`default_optimizer`); ignored when ``optimizer`` is given.
      optimizer: a custom optax transformation over ``variables["params"]``.
      eval_data: held-out Dataset; its accuracy is reported after each epoch.
      shift, flip: data augmentation (random translations, horizontal flips).
      adversarial: a :class:`shapjax.adversarial.PGDConfig` to train on PGD
        examples (Madry et al. 2018).
      checkpoint: path; the model is saved there after every epoch
        (``.msgpack`` + ``.json`` with the history and ``metadata``).
      metadata: extra entries for the checkpoint's JSON.
      progress: show a tqdm progress bar.
      log: where epoch reports go (default: the ``logging`` logger
        ``shapjax.models.train`` at INFO level; the CLI passes its own).

    Returns:
      :class:`TrainResult` ``(classifier, history)``; ``history[i]`` has
      ``epoch``, ``loss``, ``train_accuracy``, ``eval_accuracy`` (or None) and
      ``seconds``.
    """
    from tqdm.auto import tqdm

    if not isinstance(classifier, Classifier):
        raise TypeError(f"classifier: expected a shapjax.models.Classifier, got {type(classifier).__name__}")
    _check_data(classifier, data, "data")
    if eval_data is not None:
        _check_data(classifier, eval_data, "eval_data")
    if int(epochs) != epochs or epochs < 1:
        raise ValueError(f"epochs: expected a positive int, got {epochs!r}")
    if int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size: expected a positive int, got {batch_size!r}")
    if int(shift) != shift or shift < 0:
        raise ValueError(f"shift: expected a non-negative int, got {shift!r}")
    for name, v in (("learning_rate", learning_rate), ("weight_decay", weight_decay)):
        if isinstance(v, bool) or not isinstance(v, (int, float, np.number)) or not np.isfinite(v) or v < 0 \
                or (name == "learning_rate" and v == 0):
            raise ValueError(f"{name}: expected a finite {'positive' if name == 'learning_rate' else 'non-negative'} "
                             f"number, got {v!r}")
    if adversarial is not None and not isinstance(adversarial, PGDConfig):
        raise TypeError(f"adversarial: expected a PGDConfig or None, got {type(adversarial).__name__}")
    if log is None:
        log = _LOG.info

    n = len(data.labels)
    batch_size = min(int(batch_size), n)
    steps_per_epoch = n // batch_size
    total = steps_per_epoch * int(epochs)
    if optimizer is None:
        optimizer = default_optimizer(learning_rate, total, weight_decay=weight_decay)
    step = make_train_step(classifier, optimizer, adversarial=adversarial, shift=int(shift), flip=bool(flip))
    state = init_state(classifier, optimizer)
    k_shuffle, k_step = jax.random.split(key)
    eval_apply = jax.jit(classifier.apply)  # one compiled evaluation for all epochs
    history: list[dict] = []
    bar = tqdm(total=total, disable=not progress, desc="train", unit="step", dynamic_ncols=True)
    try:
        for epoch in range(int(epochs)):
            t0 = time.perf_counter()
            perm = np.asarray(jax.random.permutation(jax.random.fold_in(k_shuffle, epoch), n))
            sums = {"loss": 0.0, "accuracy": 0.0}
            for s in range(steps_per_epoch):
                idx = np.sort(perm[s * batch_size:(s + 1) * batch_size])
                state, metrics = step(jax.random.fold_in(k_step, epoch * steps_per_epoch + s), state,
                                      jnp.asarray(data.images[idx]), jnp.asarray(data.labels[idx]))
                if s % 10 == 0 or s == steps_per_epoch - 1:
                    bar.set_postfix(epoch=epoch + 1, loss=f"{float(metrics['loss']):.4f}")
                sums = {k: sums[k] + metrics[k] for k in sums}
                bar.update(1)
            params_ok = all(bool(jnp.all(jnp.isfinite(a))) for a in jax.tree_util.tree_leaves(state.params))
            if not (np.isfinite(float(sums["loss"])) and params_ok):
                raise FloatingPointError(
                    f"training diverged in epoch {epoch + 1}: the loss is {float(sums['loss']) / steps_per_epoch} and "
                    f"{'the weights are finite' if params_ok else 'some weights are NaN/inf'}; nothing was written for "
                    "this epoch (lower learning_rate, or check the data)")
            model = classifier.replace(params=state.params)
            record = {"epoch": epoch + 1,
                      "loss": float(sums["loss"]) / steps_per_epoch,
                      "train_accuracy": float(sums["accuracy"]) / steps_per_epoch,
                      "eval_accuracy": None if eval_data is None else float(np.mean(
                          _predict(eval_apply, state.params, eval_data.images, 500) == eval_data.labels))}
            record["seconds"] = time.perf_counter() - t0
            history.append(record)
            msg = (f"epoch {epoch + 1}/{epochs}: loss {record['loss']:.4f}, "
                   f"train acc {100 * record['train_accuracy']:.2f}%")
            if record["eval_accuracy"] is not None:
                msg += f", held-out acc {100 * record['eval_accuracy']:.2f}% ({len(eval_data.labels)} images)"
            log(msg + f" [{record['seconds']:.1f} s]")
            if checkpoint is not None:
                meta = dict(metadata or {})
                meta["history"] = history
                if adversarial is not None:
                    meta["adversarial"] = adversarial._asdict()
                save_checkpoint(checkpoint, model, metadata=meta)
    finally:
        bar.close()
    return TrainResult(classifier.replace(params=state.params), history)
