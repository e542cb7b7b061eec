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

import argparse
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from .adversarial import PGDConfig, pgd_attack
from .models.classifier import ARCHITECTURES, Classifier, _paths, create, load_checkpoint, save_checkpoint


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
            x = pgd_attack(k_adv, attack_apply, state.params, x, y, eps=adversarial.eps,
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


def train(key: jax.Array, classifier: Classifier, data: Any, *, epochs: int = 5, batch_size: int = 128,
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
      log: where epoch reports go (default: ``tqdm.write``; ``progress=False``
        and no ``log`` prints nothing).

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
    if adversarial is not None and not isinstance(adversarial, PGDConfig):
        raise TypeError(f"adversarial: expected a PGDConfig or None, got {type(adversarial).__name__}")
    if log is None:
        log = tqdm.write if progress else (lambda _msg: None)

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


# --------------------------------------------------------------------- CLI
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="shapjax train",
        description="Train an image classifier (optionally adversarially) and save a checkpoint.")
    d = p.add_argument_group("data")
    d.add_argument("--data", required=True, help="training source, e.g. tfds:mnist, folder:/path, "
                   "idx:/path/images.gz,/path/labels.gz, digits, planted-patch:SEED")
    d.add_argument("--split", default=None, help="tfds split of --data (default train)")
    d.add_argument("--n", type=int, default=None, help="use the first N examples (planted-patch: generate N)")
    d.add_argument("--size", type=int, nargs="+", default=None, metavar="PX", help="resize to H [W]")
    d.add_argument("--channels", type=int, choices=(1, 3), default=None)
    d.add_argument("--eval-data", default=None, help="held-out source (default: hold out the end of --data)")
    d.add_argument("--eval-split", default=None, help="tfds split of --eval-data, e.g. test")
    d.add_argument("--eval-n", type=int, default=None, help="first N held-out examples (planted-patch: generate N)")
    d.add_argument("--holdout", type=float, default=0.2,
                   help="without --eval-data: hold out the LAST part of --data (a fraction < 1 or a count)")
    m = p.add_argument_group("model")
    m.add_argument("--arch", default="small_cnn", choices=sorted(ARCHITECTURES))
    m.add_argument("--widths", default=None, help="small_cnn conv widths, e.g. 32,64,64")
    m.add_argument("--init", default=None, help="start from this checkpoint instead of random weights")
    t = p.add_argument_group("training")
    t.add_argument("--epochs", type=int, default=5)
    t.add_argument("--batch-size", type=int, default=128)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--weight-decay", type=float, default=1e-4)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--shift", type=int, default=0, help="random shifts of up to PX pixels")
    t.add_argument("--flip", action="store_true", help="random horizontal flips")
    a = p.add_argument_group("adversarial training (PGD, Madry et al. 2018)")
    a.add_argument("--adversarial", choices=("linf", "l2"), default=None, help="PGD norm (off by default)")
    a.add_argument("--eps", type=float, default=0.1)
    a.add_argument("--pgd-steps", type=int, default=7)
    a.add_argument("--pgd-step-size", type=float, default=None, help="default 2.5 * eps / steps")
    p.add_argument("--out", required=True, help="checkpoint path (.msgpack; a .json is written beside it)")
    p.add_argument("--no-progress", action="store_true")
    return p


def _holdout(ds, holdout: float):
    k = int(round(holdout * len(ds))) if holdout < 1 else int(holdout)
    if not 0 < k < len(ds):
        raise ValueError(f"--holdout: holds out {k} of {len(ds)} examples; need 0 < k < {len(ds)}")
    return ds[: len(ds) - k], ds[len(ds) - k:]


def cli_main(argv: list[str]) -> int:
    """``shapjax train ...``: returns 0 on success, 2 on bad arguments or data."""
    from . import data as data_lib

    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help or an argparse error
        return int(e.code or 0)
    k_init, k_train = jax.random.split(jax.random.key(args.seed))
    size = None if args.size is None else (args.size[0] if len(args.size) == 1 else tuple(args.size))
    try:
        def load(source, split, n):
            return data_lib.load(source, split=split, n=n, size=size, channels=args.channels)

        train_ds = load(args.data, args.split, args.n)
        if args.eval_data is not None:
            eval_ds = load(args.eval_data, args.eval_split, args.eval_n)
        else:
            train_ds, eval_ds = _holdout(train_ds, args.holdout)
        if args.init is not None:
            clf = load_checkpoint(args.init)
        else:
            kw = {}
            if args.widths:
                if args.arch != "small_cnn":
                    raise ValueError("--widths applies to --arch small_cnn only")
                kw["widths"] = tuple(int(w) for w in args.widths.split(","))
            clf = create(k_init, args.arch, input_shape=train_ds.input_shape,
                         class_names=train_ds.class_names or None,
                         num_classes=None if train_ds.class_names else int(train_ds.labels.max()) + 1, **kw)
        adv = None
        if args.adversarial:
            adv = PGDConfig(eps=args.eps, n_steps=args.pgd_steps, norm=args.adversarial,
                            step_size=args.pgd_step_size or 2.5 * args.eps / args.pgd_steps)
        meta = {"training_command": "shapjax train " + shlex.join(argv),
                "data": {"train": args.data, "split": args.split, "n_train": len(train_ds),
                         "eval": args.eval_data or f"last {len(eval_ds)} examples of {args.data}",
                         "n_eval": len(eval_ds)},
                "seed": args.seed}
        result = train(k_train, clf, train_ds, epochs=args.epochs, batch_size=args.batch_size,
                       learning_rate=args.lr, weight_decay=args.weight_decay, eval_data=eval_ds,
                       shift=args.shift, flip=args.flip, adversarial=adv, checkpoint=args.out,
                       metadata=meta, progress=not args.no_progress,
                       log=lambda m: print(m, file=sys.stderr))
    except (ValueError, TypeError, FileNotFoundError) as e:
        print(f"shapjax train: error: {e}", file=sys.stderr)
        return 2
    final = result.history[-1]
    print(json.dumps({"checkpoint": str(_paths(args.out)[0]), "eval_accuracy": final["eval_accuracy"],
                      "epochs": len(result.history)}))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(cli_main(sys.argv[1:]))
