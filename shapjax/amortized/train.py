"""Training an amortized explainer (FastSHAP) with optax: :func:`train` (the loop) and
:func:`make_train_step` (one jitted step, to run inside your own loop)."""
from __future__ import annotations

import logging
import time
from typing import Callable, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from shapjax._util.api import keyword_key
from shapjax._util.checks import check_images, check_int, check_key
from shapjax._util.modelfn import join_model, split_model
from shapjax.image.maskers import Masker

from .explainer import Explainer, build, fingerprint, model_name, segments_hash
from .network import ExplainerNet, init_params, warm_start
from .objective import fastshap_loss, sample_values, shared_empty, table_loss

_LOG = logging.getLogger(__name__)


class TrainResult(NamedTuple):
    """Output of :func:`train`: the best explainer (lowest held-out loss) and one dict per epoch."""

    explainer: Explainer
    history: list
    metadata: dict


def resolve_segments(segments, images) -> tuple[np.ndarray, int, str]:
    """``(segments [H, W] int32, M, description)``: the one segmentation shared by every image.

    ``segments`` is a segmenter with a fixed number of segments (``segment.grid``) or an int array
    ``[H, W]`` (or ``[B, H, W]`` with equal rows). Superpixels differ per image and are refused.
    """
    from shapjax.image.segment import Segmenter, check_segments

    shape = tuple(np.shape(images))
    if isinstance(segments, Segmenter):
        if segments.fixed_n_segments is None:
            raise ValueError(f"segments: an amortized explainer needs one segmentation shared by every image (a "
                             f"grid, or a fixed [H, W] int array); {segments.describe()} differs from image to image")
        seg = np.asarray(segments(np.zeros((1,) + shape[1:], np.float32)))[0]
        desc = segments.describe()
    elif callable(segments) or segments is None:
        raise TypeError("segments: expected segment.grid(...) or an int array [H, W]; got "
                        f"{type(segments).__name__}")
    else:
        seg = np.asarray(segments)
        if seg.ndim == 3:
            if not (seg == seg[:1]).all():
                raise ValueError("segments: an amortized explainer needs one segmentation shared by every image; "
                                 "the [B, H, W] segments given differ between images")
            seg = seg[0]
        desc = None
    seg3, M = check_segments(seg, np.zeros((1,) + shape[1:3] + (1,), np.float32))
    seg = np.asarray(seg3[0], np.int32)
    if M < 2:
        raise ValueError("segments: a single segment; at least 2 players are needed to explain anything")
    if desc is None:
        desc = f"array[{seg.shape[0]}x{seg.shape[1]}], {M} segments, sha {segments_hash(seg)}"
    return seg, M, desc


def _classes(outputs, n_classes: int) -> tuple[int, ...]:
    if outputs is None:
        return tuple(range(n_classes))
    if isinstance(outputs, bool) or isinstance(outputs, str):
        raise ValueError(f"outputs: an explainer is trained for fixed outputs: None (every output), an int or a "
                         f"list of ints; got {outputs!r} (per-image choices such as 'top-k' are made when explaining)")
    arr = np.atleast_1d(np.asarray(outputs))
    if arr.ndim != 1 or arr.size == 0 or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"outputs: expected None, an int or a 1-D list of ints; got {outputs!r}")
    if arr.min() < 0 or arr.max() >= n_classes or len(set(arr.tolist())) != arr.size:
        raise ValueError(f"outputs: distinct class indexes in 0..{n_classes - 1} expected; got {arr.tolist()}")
    return tuple(int(c) for c in arr)


def _n_classes(model, input_shape) -> int:
    static, dyn = split_model(model, "classifier")
    try:
        out = jax.eval_shape(lambda d, x: join_model(static, d)(x), dyn,
                             jax.ShapeDtypeStruct((2,) + tuple(input_shape), jnp.float32))
    except Exception as e:  # noqa: BLE001
        raise ValueError(f"classifier failed on images of shape {(2,) + tuple(input_shape)}: "
                         f"{type(e).__name__}: {e}") from e
    if len(getattr(out, "shape", ())) != 2:
        raise ValueError(f"classifier must map images [N, H, W, C] to [N, K]; it returned shape {out.shape}")
    return int(out.shape[1])


def make_train_step(net: ExplainerNet, optimizer: optax.GradientTransformation, model_static, *, segments, masker,
                    n_pairs: int, classes: Optional[Sequence[int]] = None) -> Callable:
    """A jitted ``step(params, opt_state, model_dynamic, images, key) -> (params, opt_state, loss)``.

    ``model_static`` / ``model_dynamic`` come from :func:`shapjax._util.modelfn.split_model` (the model is
    data: a new classifier with the same architecture does not recompile the step).
    """
    seg = jnp.asarray(segments, jnp.int32)
    cls = None if classes is None else jnp.asarray(classes, jnp.int32)
    M = int(net.n_players)

    def loss_fn(params, model_dynamic, images, key):
        model_fn = join_model(model_static, model_dynamic)
        loss, _ = fastshap_loss(net.apply, params, model_fn, images, key=key, segments=seg, masker=masker,
                                n_players=M, n_pairs=n_pairs, classes=cls)
        return loss

    @jax.jit
    def step(params, opt_state, model_dynamic, images, key):
        loss, grads = jax.value_and_grad(loss_fn)(params, model_dynamic, images, key)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    step.loss = jax.jit(loss_fn)
    return step


@keyword_key
def train(classifier, images, *, key, segments, masker: Masker, outputs=None, value_model=None, epochs: int = 10,
          batch_size: int = 64, n_pairs: int = 8, learning_rate: float = 1e-3, weight_decay: float = 1e-4,
          heldout: float = 0.1, patience: int = 3, widths: Optional[Sequence[int]] = None, hidden: int = 128,
          reduce: Optional[int] = None, warm: bool = True, resample: bool = True, checkpoint=None, metadata: Optional[dict] = None, progress: bool = False,
          log: Optional[Callable[[str], None]] = None) -> TrainResult:
    """Train an explainer network on the FastSHAP objective (:mod:`shapjax.amortized.objective`).

    The issue's ``train(key, classifier, images, ...)`` follows the project convention here: ``key``
    is keyword-only (a positional key first still works, with a ``DeprecationWarning``).

    Args:
      classifier: the model to explain, ``images [N, H, W, C] -> [N, n_classes]`` (a
        :class:`shapjax.models.Classifier` or any JAX callable; used as data, never recompiled per model).
      images: ``[N, H, W, C]`` training images in [0, 1] (or a :class:`shapjax.data.Dataset`). The last
        ``heldout`` fraction (by position) is held out for early stopping.
      key: PRNG key (initialisation, shuffling, coalitions).
      segments: ``segment.grid(r, c)`` or an int array ``[H, W]``: the players, the same for every image.
      masker: what an absent segment becomes (:mod:`shapjax.maskers`).
      outputs: which model outputs to explain: None (all), an int or a list of ints.
      value_model: the game's model when it is not ``classifier`` itself: e.g. a surrogate trained on
        randomly masked images (FastSHAP's surrogate) for maskers whose masked images are far from the
        training data. The explainer then explains the surrogate (which is bound to it).
      epochs, batch_size, learning_rate, weight_decay: AdamW with cosine decay over all steps.
      n_pairs: coalition pairs ``(S, complement)`` sampled per image per step; one step costs
        ``batch_size * (2 * n_pairs + 2)`` model evaluations.
      heldout: fraction of ``images`` held out (0 < heldout < 1; at least one image).
      patience: stop after this many epochs without a lower held-out loss.
      widths, hidden, reduce: the explainer network (:class:`~shapjax.amortized.network.ExplainerNet`);
        ``widths=None`` takes the classifier's own convolution widths when it is a ``small_cnn``
        (else ``(32, 64, 64)``), ``reduce=None`` a 1x1 convolution to 32 channels after a trunk wider
        than 64.
      warm: start the explainer's trunk from the classifier's convolutions where names and shapes
        match (:func:`~shapjax.amortized.network.warm_start`).
      resample: True (FastSHAP as published): fresh coalitions every step, each step evaluates the
        model. False: one table of ``n_pairs`` coalition pairs per image is drawn and evaluated once
        (``N * (2 * n_pairs + 2)`` model evaluations in all) and every epoch reuses it, so the epochs
        after the first cost only the explainer's own passes: many more steps for the same model
        evaluations when the model is the expensive part.
      checkpoint: path: the best explainer so far is saved there after each improving epoch.
      metadata: extra JSON entries for the checkpoint.
      progress: tqdm progress bar over the steps.
      log: where epoch reports go (default: the ``shapjax.amortized.train`` logger at INFO).

    Returns:
      :class:`TrainResult` ``(explainer, history, metadata)``: the explainer with the lowest held-out
      loss; ``history[i]`` has ``epoch``, ``loss``, ``heldout_loss``, ``seconds``, ``model_evals``.
    """
    from tqdm.auto import tqdm

    check_key(key)
    images = np.asarray(getattr(images, "images", images))
    x = np.asarray(check_images(images, "images"))
    N, H, W, C = x.shape
    if not isinstance(masker, Masker):
        raise TypeError(f"masker: expected a masker from shapjax.maskers, got {type(masker).__name__}")
    masker.check(x[:1])
    seg, M, seg_desc = resolve_segments(segments, x)
    value_model = classifier if value_model is None else value_model
    n_classes = _n_classes(value_model, (H, W, C))
    classes = _classes(outputs, n_classes)
    epochs = check_int(epochs, "epochs", 1)
    batch_size = check_int(batch_size, "batch_size", 1)
    n_pairs = check_int(n_pairs, "n_pairs", 1)
    patience = check_int(patience, "patience", 1)
    if not (isinstance(heldout, float) and 0.0 < heldout < 1.0):
        raise ValueError(f"heldout: expected a fraction 0 < heldout < 1, got {heldout!r}")
    n_held = max(1, int(round(heldout * N)))
    if N - n_held < 1:
        raise ValueError(f"images: {N} images leave none to train on after holding out {n_held}")
    for name, v in (("learning_rate", learning_rate), ("weight_decay", weight_decay)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v) or v < 0 or \
                (name == "learning_rate" and v == 0):
            raise ValueError(f"{name}: expected a finite positive number, got {v!r}")
    log = log or _LOG.info
    x_train, x_held = x[: N - n_held], x[N - n_held:]
    n_train = len(x_train)
    batch_size = min(batch_size, n_train)
    steps_per_epoch = n_train // batch_size
    total = steps_per_epoch * epochs

    if widths is None:
        kw = getattr(classifier, "arch_kwargs", {}) if getattr(classifier, "arch", None) == "small_cnn" else {}
        widths = tuple(kw.get("widths", (32, 64, 64)))
    widths = tuple(int(w) for w in widths)
    if reduce is None:
        reduce = 32 if widths[-1] > 64 else 0
    net = ExplainerNet(n_players=M, n_outputs=len(classes), widths=widths, hidden=int(hidden), reduce=int(reduce))
    k_init, k_shuffle, k_step, k_held = jax.random.split(key, 4)
    params = init_params(net, (H, W, C), key=k_init)
    copied = []
    if warm:
        params, copied = warm_start(params, classifier)
        if copied:
            _LOG.info("explainer trunk starts from the classifier's %s", ", ".join(copied))
    warmup = max(1, min(100, total // 10))
    sched = optax.warmup_cosine_decay_schedule(0.0, float(learning_rate), warmup, max(total, warmup + 1),
                                               end_value=float(learning_rate) * 0.05)
    optimizer = optax.adamw(sched, weight_decay=float(weight_decay))
    opt_state = optimizer.init(params)
    static, dynamic = split_model(value_model, "value_model" if value_model is not classifier else "classifier")
    step = make_train_step(net, optimizer, static, segments=seg, masker=masker, n_pairs=n_pairs,
                           classes=None if classes == tuple(range(n_classes)) else classes)

    held_bs = min(256, n_held)
    cls_arg = None if classes == tuple(range(n_classes)) else jnp.asarray(classes, jnp.int32)
    t_start = time.perf_counter()
    tables = None
    if not resample:
        tab = jax.jit(lambda d, xb, k: sample_values(join_model(static, d), xb, key=k, segments=jnp.asarray(seg),
                                                     masker=masker, n_players=M, n_pairs=n_pairs, classes=cls_arg))
        t_tab = time.perf_counter()
        tables = {}
        for part, xs, kk in (("train", x_train, k_step), ("held", x_held, k_held)):
            rows = [tab(dynamic, jnp.asarray(xs[i: i + held_bs]), jax.random.fold_in(kk, i))
                    for i in range(0, len(xs), held_bs)]
            tables[part] = tuple(np.concatenate([np.asarray(r[j]) for r in rows]) for j in range(4))
        log(f"coalition table: {n_pairs} pairs for each of {N} images, {N * (2 * n_pairs + 2):,} model evaluations at most "
            f"[{time.perf_counter() - t_tab:.1f} s]")

        @jax.jit
        def table_step(params, opt_state, xb, Z, vz, v0, v1):
            loss, grads = jax.value_and_grad(lambda p: table_loss(net.apply, p, xb, Z, vz, v0, v1))(params)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, loss

        held_loss_fn = jax.jit(lambda p, xb, Z, vz, v0, v1: table_loss(net.apply, p, xb, Z, vz, v0, v1))

    def heldout_loss(p):
        tot = 0.0
        for i in range(0, n_held, held_bs):
            xb = jnp.asarray(x_held[i: i + held_bs])
            if tables is None:
                tot += float(step.loss(p, dynamic, xb, jax.random.fold_in(k_held, i))) * len(xb)
            else:
                tot += float(held_loss_fn(p, xb, *(jnp.asarray(a[i: i + held_bs]) for a in tables["held"]))) * len(xb)
        return tot / n_held

    info = {"model_name": model_name(classifier), "model_fingerprint": fingerprint(classifier),
            "value_model_fingerprint": fingerprint(value_model), "segments": seg_desc,
            "segments_sha": segments_hash(seg), "masker": masker.describe()}
    meta = {"training": {"epochs": epochs, "batch_size": batch_size, "n_pairs": n_pairs,
                         "learning_rate": learning_rate, "weight_decay": weight_decay, "heldout": n_held,
                         "n_train_images": n_train, "patience": patience,
                         "optimizer": "adamw, warmup + cosine decay",
                         "warm_start": copied, "resample": bool(resample),
                         "value_model": "classifier" if value_model is classifier else "value_model"}}
    meta.update(metadata or {})
    best, best_loss, bad_epochs, history = params, float("inf"), 0, []
    one = shared_empty(masker)  # v(empty) evaluated once per batch, not per image

    def cost(n_img: int, n_batches: int) -> int:
        return n_img * (2 * n_pairs + 1) + (n_batches if one else n_img)

    evals = 0 if tables is None else cost(n_train, -(-n_train // held_bs)) + cost(n_held, -(-n_held // held_bs))
    evals_per_step = cost(batch_size, 1) if tables is None else 0
    evals_held = cost(n_held, -(-n_held // held_bs)) if tables is None else 0

    def explainer_of(p):
        return build(net, p, value_model, segments=seg, masker=masker, classes=classes, n_classes=n_classes,
                     input_shape=(H, W, C), info=info)

    bar = tqdm(total=total, disable=not progress, desc="amortize", unit="step", dynamic_ncols=True)
    try:
        for epoch in range(epochs):
            t0 = time.perf_counter()
            perm = np.asarray(jax.random.permutation(jax.random.fold_in(k_shuffle, epoch), n_train))
            tot = 0.0
            for s in range(steps_per_epoch):
                idx = np.sort(perm[s * batch_size:(s + 1) * batch_size])
                if tables is None:
                    params, opt_state, loss = step(params, opt_state, dynamic, jnp.asarray(x_train[idx]),
                                                   jax.random.fold_in(k_step, epoch * steps_per_epoch + s))
                else:
                    params, opt_state, loss = table_step(params, opt_state, jnp.asarray(x_train[idx]),
                                                         *(jnp.asarray(a[idx]) for a in tables["train"]))
                tot += loss
                evals += evals_per_step
                if s % 10 == 0:
                    bar.set_postfix(epoch=epoch + 1, loss=f"{float(loss):.4g}")
                bar.update(1)
            train_loss = float(tot) / steps_per_epoch
            if not np.isfinite(train_loss):
                raise FloatingPointError(f"training diverged in epoch {epoch + 1} (loss {train_loss}); lower "
                                         "learning_rate or check the model's outputs on masked images")
            h = heldout_loss(params)
            evals += evals_held
            rec = {"epoch": epoch + 1, "loss": train_loss, "heldout_loss": h, "seconds": time.perf_counter() - t0,
                   "model_evals": evals}
            history.append(rec)
            improved = h < best_loss
            log(f"epoch {epoch + 1}/{epochs}: loss {train_loss:.4g}, held-out loss {h:.4g} ({n_held} images)"
                f"{' *' if improved else ''} [{rec['seconds']:.1f} s]")
            if improved:
                best, best_loss, bad_epochs = params, h, 0
                if checkpoint is not None:
                    from .checkpoint import save

                    save(checkpoint, explainer_of(best), metadata={**meta, "history": history,
                                                                  "training_seconds": time.perf_counter() - t_start})
            else:
                bad_epochs += 1
                if bad_epochs >= patience:
                    log(f"early stop: no lower held-out loss for {patience} epochs")
                    break
    finally:
        bar.close()
    meta.update({"history": history, "training_seconds": round(time.perf_counter() - t_start, 2),
                 "training_model_evals": evals, "best_heldout_loss": best_loss})
    return TrainResult(explainer_of(best), history, meta)
