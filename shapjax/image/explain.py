"""`explain`: Shapley values of image segments, one batched, compiled program.

For B images the flat stream of (image, coalition) pairs is composed and sent
through the model in chunks inside one ``jax.jit``; one coalition design is
shared by the batch so the regression estimators factor their system once.
"""
from __future__ import annotations

import logging
from functools import partial
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from shapjax._util import aot
from shapjax._util.autobatch import choose_batch_size
from shapjax._util.checks import check_images, check_int, check_key, check_output_dtype, is_traced
from shapjax._util.chunks import under_autodiff
from shapjax._util.modelfn import join_model, split_model
from shapjax._util.outputs import Outputs, parse_outputs
from shapjax._util.precision import as_device_arrays, check_precision, floatx, precision_scope
from shapjax._util.progress import BARS
from shapjax.engine import rounds
from shapjax.engine.estimators import get_estimator
from shapjax.engine.estimators import layout as layout_mod
from shapjax.engine.estimators.partition import Tree, balanced_tree, schedule
from shapjax.engine.games import auto_batch_size
from shapjax.engine.shapley import check_budget, check_design_memory, raise_not_finite, with_ends
from shapjax.image import controlshap
from shapjax.image.explanation import Explanation
from shapjax.image.hierarchy import partition_tree
from shapjax.image.maskers import Masker
from shapjax.image.segment import Segmenter, check_segments
from shapjax.kernels.masking import compose_rows


logger = logging.getLogger(__name__)


def shapjax_methods():
    from shapjax.engine.estimators import ESTIMATORS

    return list(ESTIMATORS)


def _as_images(images) -> jax.Array:
    return check_images(images, "images", single_ok=True)


def _model_classes(static, dynamic, H, W, C) -> int:
    n = 2
    try:
        out = jax.eval_shape(lambda d, x: join_model(static, d)(x), dynamic,
                             jax.ShapeDtypeStruct((n, H, W, C), jnp.float32))
    except Exception as e:  # noqa: BLE001
        raise ValueError(
            f"model_fn failed on images of shape [N, H, W, C] = {(n, H, W, C)}: {type(e).__name__}: {e}"
        ) from e
    shape = getattr(out, "shape", None)
    if shape is None or len(shape) != 2 or shape[0] != n:
        raise ValueError(
            f"model_fn must map images [N, H, W, C] to outputs [N, K]; for N={n} it returned shape {shape}"
        )
    check_output_dtype(out.dtype, "model_fn")
    return int(shape[1])


def _compose_eval(model_fn, images, repl, seg, out_idx, rows_b, Z):
    """Model outputs for coalitions ``Z [n, M]`` on images ``rows_b [n]`` -> ``[n, K]``."""
    n = rows_b.shape[0]
    r_idx = rows_b if repl.shape[0] > 1 else jnp.zeros_like(rows_b)
    x = compose_rows(images[rows_b], repl[r_idx], seg[rows_b], Z)  # [n, R, H, W, C]
    R = x.shape[1]
    out = jnp.asarray(model_fn(x.reshape((n * R,) + x.shape[2:])), floatx())
    out = out.reshape(n, R, -1).mean(1)
    return jnp.take_along_axis(out, out_idx[rows_b], axis=1)


def _chunked(fn, n_rows: int, batch_size: int, progress=None, unroll: bool = False, n_live=None):
    """Run ``fn(rows [bs] int) -> [bs, K]`` over ``0..n_rows-1`` in chunks (lax.map).

    With ``progress`` (a traced bar token of :mod:`shapjax._util.progress`) a
    ``jax.debug.callback`` reports each finished chunk to
    the host (the only host callback in the engine, off by default). With
    ``unroll`` (explain is being differentiated) the chunks are a straight-line
    sequence instead of a loop (see :func:`shapjax._util.chunks.under_autodiff`). With ``n_live``
    (traced: a bucketed job) only rows ``0..n_live-1`` are computed; chunks past it are skipped.
    """
    bs = min(batch_size, n_rows)
    n_chunks = -(-n_rows // bs)
    if progress is not None:
        inner = fn

        def fn(rows):
            out = inner(rows)
            jax.debug.callback(BARS.tick, progress, jnp.minimum(rows[-1] + 1, n_rows) - rows[0] + 0 * out[0, 0].astype(jnp.int32))
            return out

    last = n_rows - 1 if n_live is None else n_live - 1
    rows = jnp.minimum(jnp.arange(n_chunks * bs), last).reshape(n_chunks, bs)
    if n_chunks == 1:
        return fn(rows[0])[:n_rows]
    if unroll:
        return jnp.concatenate([fn(rows[i]) for i in range(n_chunks)])[:n_rows]
    if n_live is not None:  # chunks that start past the live rows are skipped
        shape = jax.eval_shape(fn, rows[0])
        skip = lambda r: jnp.zeros(shape.shape, shape.dtype)  # noqa: E731
        out = jax.lax.map(lambda a: jax.lax.cond(a[1] * bs < n_live, fn, skip, a[0]), (rows, jnp.arange(n_chunks)))
    else:
        out = jax.lax.map(fn, rows)
    return out.reshape(n_chunks * bs, -1)[:n_rows]


@partial(
    jax.jit,
    static_argnames=("model_fn", "n_segments", "method", "n_evals", "batch_size", "out_mode", "k", "ks", "all_active",
                     "unroll", "n_classes", "checks", "precision", "round_evals", "layout_static"),
)
def _explain_impl(key, images, seg, masker, out_idx, active, trees, model_tree, progress, tol=None, *, n_classes,
                  checks=False, precision="float32", **static):
    """The compiled program: the explanation, guarded against inputs that only a trace can see, and
    whether its values are finite (for the images of the batch that are live).

    Traced inputs (inside a user's ``jit``) cannot be checked on the host. Here, in the program,
    NaN/inf pixels, segment ids outside ``0..M-1`` and output indexes outside the model's classes
    make every returned value NaN (never a plausible wrong number); with ``checks=True`` they raise
    through :mod:`jax.experimental.checkify` instead (wrap the caller with ``checkify.checkify``).
    """
    del precision  # static only: a float64 program is its own cache entry (shapjax._util.precision)
    M = static["n_segments"]
    bad_pixels = ~jnp.all(jnp.isfinite(images))
    bad_ids = jnp.any((seg < 0) | (seg >= M))
    bad_out = jnp.any((out_idx < 0) | (out_idx >= n_classes)) if out_idx is not None else jnp.bool_(False)
    if checks:
        from jax.experimental import checkify

        checkify.check(~bad_pixels, "images: NaN or infinite pixel values")
        checkify.check(~bad_ids, f"segments: ids outside 0..n_segments-1 = 0..{M - 1}")
        checkify.check(~bad_out, f"outputs: class indexes outside 0..{n_classes - 1}")
    out = _explain_core(key, images, seg, masker, out_idx, active, trees, model_tree, progress, tol=tol, **static)
    bad = bad_pixels | bad_ids | bad_out
    poison = lambda a: None if a is None else jnp.where(bad, jnp.nan, a)  # noqa: E731
    phi, std, v0, v1, idx, info = out
    info = None if info is None else (info[0], poison(info[1]))
    phi = poison(phi)
    live = jnp.ones(phi.shape[0], bool) if static.get("b_live") is None else jnp.arange(phi.shape[0]) < static["b_live"]
    finite = jnp.all(jnp.isfinite(phi) | ~live.reshape((-1,) + (1,) * (phi.ndim - 1)))  # the host's check, here
    return phi, poison(std), poison(v0), poison(v1), idx, info, finite


def _explain_core(key, images, seg, masker, out_idx, active, trees, model_tree, progress, *, model_fn, n_segments,
                  method, n_evals, batch_size, out_mode, k, ks, all_active, unroll=False, tol=None, round_evals=None,
                  layout=None, b_live=None, layout_static=None):
    """The explanation program (``method`` may be a ControlSHAP name, :mod:`shapjax.image.controlshap`); returns ``(values, std, base, full, output_indexes, info)`` where
    ``info`` is None, or ``(evaluations spent, relative standard error)`` with ``tol`` (then
    ``round_evals`` is set and the rounds of :mod:`shapjax.engine.rounds` run)."""
    base, control = controlshap.base_method(method)
    est = get_estimator(base)
    model_fn = aot.recorded(join_model(model_fn, model_tree))
    M = n_segments
    B = images.shape[0]
    repl = masker.replacement(images, seg, M)
    if masker.same_for_every_image():
        repl = repl[:1]  # one copy, not B gathered copies
    if out_mode == "top":
        logits = jnp.asarray(model_fn(images), jnp.float32)
        out_idx = jax.lax.top_k(logits, k)[1].astype(jnp.int32)
    elif out_mode == "all":
        out_idx = jnp.broadcast_to(jnp.arange(k, dtype=jnp.int32)[None], (B, k))

    if est.estimate is not None:  # adaptive (partition): one game per image
        # vmap over the B games multiplies each model call by B: keep calls
        # at about batch_size composed images in all.
        per_game = max(1, batch_size // B)

        def one(b, tree):
            def eval_fn(Z):
                n = Z.shape[0]
                fn = lambda rows: _compose_eval(model_fn, images, repl, seg, out_idx, jnp.full_like(rows, b), Z[rows])  # noqa: E731
                return _chunked(fn, n, per_game, progress, unroll)

            phi, std, v0, v1 = est.estimate(eval_fn, M, n_evals, key=None, tree=tree, ks=ks)
            return phi, v0, v1

        phi, v0, v1 = jax.vmap(one)(jnp.arange(B), trees)
        return phi, None, v0, v1, out_idx, None

    if tol is not None:  # rounds of one shared design each until the relative standard error is under tol
        def eval_rows(Zr):
            n = Zr.shape[0]
            fn = lambda rows: _compose_eval(  # noqa: E731
                model_fn, images, repl, seg, out_idx, rows // n, Zr[rows % n])
            return _chunked(fn, B * n, batch_size, progress, unroll).reshape(B, n, -1)

        E = eval_rows(with_ends(jnp.zeros((0, M), bool)))
        r = rounds.run(est, key=key, n_players=M, round_evals=round_evals, n_evals=n_evals, tol=tol,
                       eval_rows=eval_rows, v0=E[:, 0], v1=E[:, 1], active=None if all_active else active)
        return r.values, r.std, E[:, 0], E[:, 1], out_idx, (r.spent, r.rse)

    if layout is not None:  # bucketed: live rows q = b * N_live + n of the first b_live images, the rest skipped
        d = est.build(M, layout, layout_static, key=key)
        solve = est.layout_solve
        Z = with_ends(d.coalitions)
        N, n_live = Z.shape[0], layout.n_live + 2
        fn = lambda q: _compose_eval(model_fn, images, repl, seg, out_idx, q // n_live, Z[q % n_live])  # noqa: E731
        out = _chunked(fn, B * N, batch_size, progress, unroll, n_live=b_live * n_live)
        q = jnp.arange(B * N)
        dest = jnp.where(q < b_live * n_live, (q // n_live) * N + q % n_live, B * N)
        V = jnp.zeros_like(out).at[dest].set(out, mode="drop").reshape(B, N, -1)
    else:
        d = est.design(M, n_evals, key=key)
        solve = est.solve
        Z = with_ends(d.coalitions)
        N = Z.shape[0]
        fn = lambda rows: _compose_eval(model_fn, images, repl, seg, out_idx, rows // N, Z[rows % N])  # noqa: E731
        V = _chunked(fn, B * N, batch_size, progress, unroll).reshape(B, N, -1)
        if control:  # control variates from the model's own gradient and Hessian (shapjax.image.controlshap)
            h0, G, H = controlshap.taylor(model_fn, images, repl, seg, out_idx, n_segments=M)
            phi, std = controlshap.estimate(est, d, V, h0, G, H, None if all_active else active, rounds.solve_games)
            return phi, std, V[:, 0], V[:, 1], out_idx, None
    if all_active:
        # One design shared by the whole batch: for the regression methods the
        # Gram matrix is factored once with B*K right-hand sides.
        K = V.shape[-1]
        Vf = jnp.moveaxis(V, 0, 1).reshape(N, B * K)
        phi, std = solve(d, Vf[2:], Vf[0], Vf[1], None)
        phi = jnp.moveaxis(phi.reshape(M, B, K), 1, 0)
        std = None if std is None else jnp.moveaxis(std.reshape(M, B, K), 1, 0)
    else:
        phi, std = jax.vmap(lambda y, a, b, act: solve(d, y, a, b, act))(V[:, 2:], V[:, 0], V[:, 1], active)
    return phi, std, V[:, 0], V[:, 1], out_idx, None


def _throw(err_and_out):
    err, out = err_and_out
    err.throw()
    return out


def _trees(seg: np.ndarray, M: int) -> Tree:
    """One spatial hierarchy per image (:func:`shapjax.image.hierarchy.partition_tree`), stacked."""
    ts = [partition_tree(s, n_segments=M) for s in seg]
    return Tree(*(np.stack([getattr(t, f) for t in ts]) for f in ("left", "right", "members")))


def explain(
    model_fn: Callable[[jax.Array], jax.Array],
    images,
    *,
    key,
    segments,
    masker: Masker,
    method: str = "kernel",
    n_evals: int = 2048,
    outputs: Outputs = None,
    batch_size: Optional[int] = None,
    n_segments: Optional[int] = None,
    progress: bool = False,
    checks: bool = False,
    check_result: bool = True,
    precision: str = "float32",
    tol: Optional[float] = None,
    round_evals: Optional[int] = None,
) -> Explanation:
    """Explain an image classifier's outputs with Shapley values of image segments.

    The B images are explained together: one coalition design is shared by the
    batch (for the regression methods the system is factored once), every
    (image, coalition) pair is composed and sent through ``model_fn`` in
    chunks of ``batch_size`` inside one compiled program.

    Args:
      model_fn: ``images [N, H, W, C] -> [N, K]`` (logits or probabilities;
        no softmax is added). Any JAX callable, e.g. a
        :class:`shapjax.models.Classifier`.
      images: ``[B, H, W, C]`` (or one ``[H, W, C]`` image).
      key: JAX PRNG key.
      segments: the players: int ids ``[H, W]`` or ``[B, H, W]`` in
        ``0..M-1``, or a segmenter from :mod:`shapjax.segment` (``grid`` is
        traceable; the scikit-image superpixels run on the host first).
      masker: what an absent segment becomes, from :mod:`shapjax.maskers`.
        With ``background(R images)`` the game value is the model's mean over
        the R backgrounds, so one coalition costs R model evaluations.
      method: ``"kernel"``, ``"leverage"``, ``"exact"``, ``"permutation"``,
        ``"antithetic"``, ``"stratified"``, ``"partition"`` (Owen values over
        a spatial hierarchy of the segments), ``"lime"`` or ``"occlusion"``; or
        ``"controlshap"`` (permutation sampling) / ``"controlshap-stratified"``: the sampler with
        a control variate from the model's own gradient and Hessian
        (:mod:`shapjax.image.controlshap`; needs a model JAX can differentiate twice).
      n_evals: coalitions evaluated per image (empty and full included).
      outputs: None (every output), an int (that class for every image), a list
        of K ints (those classes for every image), an int array ``[B, K]`` (per
        image), or ``"top-k"`` (the k largest outputs on the unmasked image).
      batch_size: model batch per call (chunk of composed images); None picks one.
      n_segments: number of segments, required only when ``segments`` is a
        traced array (inside the caller's ``jax.jit``).
      checks: check, inside the compiled program, what cannot be checked before it
        runs when the inputs are traced (inside your ``jax.jit``): NaN pixels,
        segment ids outside ``0..n_segments-1``, output indexes outside the model's
        classes. Without it such inputs make every value NaN; with it they raise
        through :mod:`jax.experimental.checkify` — wrap your jitted function:
        ``err, out = checkify.checkify(f)(...); err.throw()``. (Concrete inputs are
        always checked before tracing.)
      check_result: wait for the result and raise if it is not finite (NaN or inf model
        outputs on masked images, or an inadmissible input found in the program). With
        False, ``explain`` returns at once (JAX's asynchronous dispatch: successive calls,
        or calls on several devices, overlap) and :meth:`Explanation.check` does the check
        when you want it.
      progress: show a progress bar over the evaluated chunks (tqdm; adds a
        host callback per chunk, so leave it off inside your own ``jit``).
      precision: ``"float32"`` (default) or ``"float64"``: the dtype of the game values (the model's
        outputs, promoted), the regression weights and the solves; the model itself runs on the
        float32 images as always. ``"float64"`` compiles the program in JAX's x64 mode for this call
        (see :func:`shapjax.shapley`): full enumeration is then exact to ~1e-12 for the model's outputs.
      tol: to-tolerance mode (as :func:`shapjax.shapley`): rounds of ``round_evals`` coalitions per image,
        one design shared by the batch each round, until the relative standard error
        ``max_i std_i / max(|full - base|, ||values||_2)`` of *every* image and output is at most
        ``tol``, or another round would exceed ``n_evals`` per image (the cap). ``n_evals`` of the
        result is what each image spent (``evals`` too, also under your ``jax.jit``), ``rse`` the error
        reached. Needs kernel, leverage, permutation, antithetic or stratified.
      round_evals: coalitions per round and image for ``tol`` (default ``min(n_evals, max(256, 4 x the
        method's minimum))``).

    Returns:
      :class:`Explanation`.

    Example:
      >>> import jax, shapjax
      >>> from shapjax import maskers, segment
      >>> clf = shapjax.models.pretrained("mnist-cnn")
      >>> x = shapjax.data.samples("mnist").images[:2]
      >>> exp = shapjax.explain(clf, x, key=jax.random.key(0), segments=segment.grid(4, 4),
      ...                       masker=maskers.constant(0.0), n_evals=256, outputs="top-1")
      >>> exp.values.shape
      (2, 16, 1)
    """
    if method == "amortized":
        raise ValueError("method='amortized' (a trained explainer) is served by shapjax.explain or "
                         "shapjax.amortized.explain, not shapjax.image.explain")
    check_key(key)
    precision = check_precision(precision)
    kwargs = dict(key=key, segments=segments, masker=masker, method=method, n_evals=n_evals, outputs=outputs,
                  batch_size=batch_size, n_segments=n_segments, progress=progress, checks=checks,
                  check_result=check_result, precision=precision, tol=tol, round_evals=round_evals)
    with precision_scope(precision):  # every trace of the model in the chosen precision (see shapley)
        return _explain(model_fn, images, **kwargs)


def _explain(model_fn, images, *, key, segments, masker, method, n_evals, outputs, batch_size, n_segments, progress,
             checks, check_result, precision, tol, round_evals) -> Explanation:
    images = _as_images(images)
    B, H, W, C = images.shape
    base, control = controlshap.base_method(method)
    try:
        est = get_estimator(base)
    except ValueError:
        raise ValueError(f"method={method!r} is not known; valid methods: "
                         f"{', '.join(sorted([*shapjax_methods(), *controlshap.METHODS]))}") from None
    if control and tol is not None:
        raise ValueError(f"method={method!r} does not combine with tol= (yet); use tol with {base!r}")
    n_evals = check_int(n_evals, "n_evals", 1)
    if not isinstance(masker, Masker):
        raise TypeError(f"masker must be a masker from shapjax.maskers (constant, blur, segment_mean, background); got {type(masker).__name__}")
    masker.check(images)
    if isinstance(segments, Segmenter):
        seg_arr = segments(images)
        if n_segments is None and segments.fixed_n_segments is not None:
            n_segments = segments.fixed_n_segments
    elif callable(segments):
        raise TypeError("segments must be an int array [H, W] / [B, H, W] or a segmenter from shapjax.segment")
    else:
        seg_arr = segments
    seg, M = check_segments(seg_arr, images, n_segments=n_segments)
    check_budget(est, M, n_evals, f"{M} segments")
    if tol is not None:
        tol, round_evals = rounds.check_tol(tol, est, M, n_evals, round_evals, players=f"{M} segments")
    else:
        round_evals = None
    static_fn, model_tree = split_model(model_fn)
    model_tree = as_device_arrays(model_tree, precision)
    n_classes = _model_classes(static_fn, model_tree, H, W, C)
    out_mode, k, out_idx = parse_outputs(outputs, n_classes=n_classes, batch=B)
    if M > 1:
        check_design_memory(est, M, round_evals or n_evals, n_games=B, n_outputs=k, players=f"{M} segments")
    if batch_size is not None:
        batch_size = check_int(batch_size, "batch_size", 1)
    R = masker.n_replacements()
    rows = B * (2**M if method == "exact" else n_evals)
    layout, layout_static, B_run = None, None, B
    if est.layout is not None and M > 1 and tol is None and not control and not is_traced(images) and \
            not under_autodiff(model_tree, images):
        # budgets and batch sizes bucketed (four shapes per octave): one compiled program per bucket, the
        # extra rows and images skipped in the program (shapjax.engine.estimators.layout)
        layout, layout_static = layout_mod.bucketed_layout(est, M, n_evals, method)
        B_run = layout_mod.bucket(B)
        rows = B_run * (layout_static.n_rows + 2)
    # batch_size=None: chosen from the model by a short cached probe for big jobs (shapjax._util.autobatch)
    bs = batch_size or choose_batch_size(static_fn, model_tree, (H, W, C), rows=rows, n_replacements=R,
                                         fallback=auto_batch_size(rows, H * W * C * R))

    traced_seg = is_traced(seg)
    if traced_seg:
        active = None
        all_active = True
    else:
        counts = np.stack([np.bincount(s.reshape(-1), minlength=M) for s in np.asarray(seg)])
        active_np = counts > 0
        all_active = bool(active_np.all())
        active = None if all_active else jnp.asarray(active_np)
    trees, ks = None, None
    if method == "partition":
        if traced_seg:
            t = balanced_tree(M)
            trees = Tree(*(np.broadcast_to(a, (B,) + a.shape) for a in t))
        else:
            trees = _trees(np.asarray(seg), M)
        ks = tuple(schedule(M, n_evals, tree=balanced_tree(M)))
    used = est.used_evals(M, n_evals, tree=None) if M > 1 else 2
    if M == 1:
        raise ValueError("segments define a single segment: at least 2 players are needed to explain anything")
    progress = bool(progress) and not is_traced(images)
    unroll = under_autodiff(model_tree, images)
    if tol is not None and unroll:
        raise ValueError("tol= cannot be differentiated in reverse mode (its rounds are a lax.while_loop); "
                         "differentiate a fixed budget instead (n_evals=..., tol=None)")
    tol_arg = None if tol is None else jnp.asarray(tol, floatx())  # traced: a new tol does not recompile
    run_seg = seg_dev = seg if is_traced(seg) or isinstance(seg, jax.Array) else jax.device_put(np.asarray(seg))
    run_images, run_out, run_active, extra = images, out_idx, active, {}
    if layout is not None:
        if B_run > B:  # copies of the last image fill the bucket; the program skips them
            pad = lambda a: None if a is None else jnp.concatenate([a, jnp.repeat(a[-1:], B_run - B, axis=0)])  # noqa: E731
            run_images, run_seg, run_out, run_active = pad(images), pad(run_seg), pad(out_idx), pad(active)
        extra = dict(layout=layout, b_live=np.int32(B))
    static = dict(model_fn=static_fn, n_segments=M, method=method, n_evals=0 if layout is not None else n_evals,
                  batch_size=bs, out_mode=out_mode, k=k, ks=ks, all_active=all_active, unroll=unroll,
                  n_classes=n_classes, checks=bool(checks), precision=precision, round_evals=round_evals,
                  layout_static=layout_static)
    args = (key, run_images, run_seg, masker, run_out, run_active, trees, model_tree)  # then the progress token, tol
    run = lambda token: _explain_impl(*args, token, tol_arg, **static, **extra)  # noqa: E731
    if not checks and not progress and not unroll and not is_traced(images) and not is_traced(model_tree):
        # a stored executable, found in a fresh process without tracing (shapjax._util.aot)
        run = lambda token: aot.call(_explain_impl, (*args, None, tol_arg), static, kwargs=extra,  # noqa: E731
                                     model=(static_fn, model_tree))
    if checks and not is_traced(images) and not is_traced(model_tree) and not is_traced(seg):
        from jax.experimental import checkify

        inner = run
        run = lambda token: _throw(checkify.checkify(inner)(token))  # noqa: E731
    if progress:
        with BARS.open(total=B * used, desc=f"explain ({method})") as token:
            phi, std, v0, v1, out_idx, info, finite = jax.block_until_ready(run(jnp.int32(token)))
    else:
        phi, std, v0, v1, out_idx, info, finite = run(None)
    if B_run > B:
        phi, std, v0, v1, out_idx = (None if a is None else a[:B] for a in (phi, std, v0, v1, out_idx))
    if check_result and not is_traced(finite) and not bool(finite):
        raise_not_finite("model_fn", v0, v1, method, n_evals)
    evals = rse = None
    if info is not None:
        evals, rse = info
        used = n_evals if is_traced(evals) else int(evals)
        if not is_traced(rse) and float(rse) > tol:
            logger.warning("tol=%g was not reached within n_evals=%d per image (method=%r): relative standard "
                           "error %.3g after %d evaluations per image; raise n_evals", tol, n_evals, method,
                           float(rse), used)
    return Explanation(
        values=phi, base_values=v0, full_values=v1, std=std, segments=seg_dev, images=images,
        output_indexes=out_idx, evals=evals, rse=rse, method=method, masker=masker.describe(), n_evals=int(used),
    )


# --------------------------------------------------------------------------- one image, its own key


def explain_one_image(image, seg, masker, out_idx, active, tree, model_tree, *, key, model_fn, n_segments, method,
                      n_evals, batch_size, out_mode, k, ks, tol=None, round_evals=None):
    """The compiled core of :func:`explain` for ONE image with its own key (traceable, no checks).

    For :mod:`shapjax.pipeline`, which maps it over the images of a batch
    (``lax.map`` inside ``shard_map``), so that image ``i`` gets the key
    ``fold_in(key, i)`` and its own coalition design whatever the batch size or
    device count. The arguments are those of :func:`explain`'s compiled program
    without the batch axis: ``image [H, W, C]``, ``seg [H, W]``, ``out_idx [K]``
    (or None), ``active [M]`` bool (None: every segment is used), ``tree`` one
    partition :class:`Tree` (or None). Returns ``(values [M, K], std [M, K] |
    None, base [K], full [K], output_indexes [K], info)`` where ``info`` is None, or with ``tol``
    (and ``round_evals``) the image's ``(evaluations spent, relative standard error)``.
    """
    one = lambda a: None if a is None else a[None]  # noqa: E731
    base, control = controlshap.base_method(method)
    est = get_estimator(base)
    extra = {}
    if est.layout is not None and n_segments > 1 and tol is None and not control:
        # the design of explain's bucketed program (the same layout, and the same arithmetic), so that
        # image i is explain(x[i:i+1], key=fold_in(key, i)): the same coalitions (XLA may round the
        # loop body's arithmetic differently, by a few ulps)
        layout, layout_static = layout_mod.bucketed_layout(est, n_segments, n_evals, method)
        extra = dict(layout=layout, layout_static=layout_static, b_live=1)
    phi, std, v0, v1, idx, info = _explain_core(  # the pipeline checks its (concrete) inputs on the host
        key, image[None], seg[None], masker, one(out_idx), one(active),
        None if tree is None else Tree(*(a[None] for a in tree)), model_tree, None, model_fn=model_fn,
        n_segments=n_segments, method=method, n_evals=n_evals, batch_size=batch_size, out_mode=out_mode, k=k, ks=ks,
        all_active=active is None, tol=tol, round_evals=round_evals, **extra)
    return phi[0], None if std is None else std[0], v0[0], v1[0], idx[0], info
