"""Sparse counterfactuals (shapjax.counterfactual): the oracle and projections against exact answers,
FW-L1-q on linear models against the analytic optimum, feasibility, jit/vmap, determinism, errors, the CLI.

Small models (a linear map, a 2-layer MLP on 6x6 images) keep compilation short; the CLI test runs the
shipped robust MNIST model once with few steps.
"""
from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from shapjax import counterfactual as cfl
from shapjax.counterfactual import _core

H = W = 6
D = H * W
lmo = jax.jit(cfl.lmo_l1q)
project_l1 = jax.jit(cfl.project_l1_box)
project_l2 = jax.jit(cfl.project_l2_box)


def _linear_apply(w, b, x):
    return x.reshape(x.shape[0], -1) @ w + b


def _mlp_apply(w1, w2, x):
    return jnp.tanh(x.reshape(x.shape[0], -1) @ w1) @ w2


def _linear(w, b=None):
    """logits = flatten(x) @ w (+ b): a pytree callable, so its weights are traced."""
    b = jnp.zeros(w.shape[1]) if b is None else b
    return jax.tree_util.Partial(_linear_apply, w, b)


def _mlp(seed=0, K=3):
    k1, k2 = jax.random.split(jax.random.key(seed))
    w1 = jax.random.normal(k1, (D, 16)) / np.sqrt(D) * 3
    w2 = jax.random.normal(k2, (16, K)) / 4 * 3
    return jax.tree_util.Partial(_mlp_apply, w1, w2)


def _images(n, seed=0):
    return jax.random.uniform(jax.random.key(seed), (n, H, W, 1))


# ----------------------------------------------------------------------------- the oracle


def test_sparsity_k():
    assert [int(cfl.sparsity_k(q, 784)) for q in (1.0, 0.975, 0.9, 0.0)] == [1, 19, 78, 784]


@pytest.mark.parametrize("k", [1, 3, 10])
def test_lmo_is_a_k_sparse_vertex_of_the_l1_ball(k):
    """Exactly k non-zeros on the top-k |g|, each sign(g) * eps / k: L1 norm eps, a vertex of B1 and Binf(eps/k)."""
    g = jax.random.normal(jax.random.key(k), (50,))
    eps = 0.3
    s = np.asarray(lmo(g, k, eps))
    top = np.argsort(-np.abs(np.asarray(g)))[:k]
    assert np.count_nonzero(s) == k
    np.testing.assert_allclose(s[top], np.sign(np.asarray(g))[top] * eps / k, rtol=1e-6)
    assert abs(np.abs(s).sum() - eps) < 1e-6
    if k == 1:  # a vertex of the L1 ball itself: +-eps e_i
        assert np.flatnonzero(s).tolist() == [int(np.argmax(np.abs(np.asarray(g))))]


def test_lmo_is_the_exact_lp_optimum_over_allowed_coordinates():
    """max <g, s> over ||s||_1 <= eps, ||s||_inf <= eps/k, s_i = 0 where not allowed: scipy's linprog agrees."""
    from scipy.optimize import linprog

    rng = np.random.default_rng(0)
    for trial in range(5):
        d, k, eps = 30, 4, 1.2
        g = rng.normal(size=d)
        allowed = rng.random(d) < 0.6
        s = np.asarray(lmo(jnp.asarray(g, jnp.float32), k, eps, allowed=jnp.asarray(allowed)))
        # s = p - n with 0 <= p, n <= eps/k (0 where not allowed), sum(p + n) <= eps
        bounds = [(0, eps / k if a_ else 0) for a_ in allowed] * 2
        res = linprog(np.concatenate([-g, g]), A_ub=np.ones((1, 2 * d)), b_ub=[eps], bounds=bounds)
        assert res.status == 0
        assert abs(g @ s - (-res.fun)) < 1e-5, trial
        assert np.count_nonzero(s) == k and np.all(s[~allowed] == 0)
        assert abs(np.abs(s).sum() - eps) < 1e-5
    # fewer useful coordinates than k: only those are set
    s = np.asarray(lmo(jnp.array([0.0, 2.0, 0.0, -1.0]), 3, 1.0))
    np.testing.assert_allclose(s, [0, 1 / 3, 0, -1 / 3], rtol=1e-6)


# ----------------------------------------------------------------------------- projections


def _duchi(v, eps):
    """Duchi et al. (2008), Figure 1, in float64."""
    if np.abs(v).sum() <= eps:
        return v
    u = np.sort(np.abs(v))[::-1]
    css = np.cumsum(u)
    rho = np.nonzero(u * np.arange(1, len(u) + 1) > css - eps)[0][-1]
    theta = (css[rho] - eps) / (rho + 1.0)
    return np.sign(v) * np.maximum(np.abs(v) - theta, 0.0)


def _l1_box_bisect(v, eps, lo, hi):
    cap = np.where(v >= 0, hi, -lo)
    f = lambda t: np.clip(np.abs(v) - t, 0, cap).sum()  # noqa: E731
    if f(0.0) <= eps:
        return np.clip(v, lo, hi)
    a, b = 0.0, np.abs(v).max()
    for _ in range(200):
        m = 0.5 * (a + b)
        a, b = (m, b) if f(m) > eps else (a, m)
    return np.sign(v) * np.clip(np.abs(v) - b, 0, cap)


def test_project_l1_matches_duchi_without_a_box():
    rng = np.random.default_rng(1)
    V = rng.normal(size=(6, 40)) * 2
    inf = jnp.full((40,), jnp.inf)
    P = jax.jit(jax.vmap(cfl.project_l1_box, in_axes=(0, None, None, None)))(jnp.asarray(V, jnp.float32), 3.0,
                                                                            -inf, inf)
    for v, p in zip(V, np.asarray(P)):
        np.testing.assert_allclose(p, _duchi(v, 3.0), atol=2e-5)


def test_project_l1_box_is_exact():
    rng = np.random.default_rng(2)
    for eps in (0.5, 2.0, 50.0):  # active ball; the box alone (50 is never reached)
        x = rng.choice([0.0, 1.0, 0.3, 0.8], size=40)
        lo, hi = -x, 1 - x
        v = rng.normal(size=40)
        p = np.asarray(project_l1(jnp.asarray(v, jnp.float32), eps, jnp.asarray(lo, jnp.float32),
                                  jnp.asarray(hi, jnp.float32)))
        np.testing.assert_allclose(p, _l1_box_bisect(v, eps, lo, hi), atol=2e-5)
        assert np.abs(p).sum() <= eps + 1e-5 and np.all(p >= lo - 1e-7) and np.all(p <= hi + 1e-7)


def test_project_l2_box_is_exact():
    rng = np.random.default_rng(3)
    x = rng.choice([0.0, 1.0, 0.5], size=30)
    lo, hi = -x, 1 - x
    v = rng.normal(size=30) * 2
    p = np.asarray(project_l2(jnp.asarray(v, jnp.float32), 1.5, jnp.asarray(lo, jnp.float32),
                              jnp.asarray(hi, jnp.float32)))
    # reference: the same KKT form clip(t v, lo, hi), t by bisection in float64
    a, b = 0.0, 1.0
    for _ in range(200):
        m = 0.5 * (a + b)
        a, b = (m, b) if np.linalg.norm(np.clip(m * v, lo, hi)) <= 1.5 else (a, m)
    np.testing.assert_allclose(p, np.clip(a * v, lo, hi), atol=1e-5)
    assert np.linalg.norm(p) <= 1.5 + 1e-5
    # and it beats every other feasible point we try
    for _ in range(50):
        z = np.clip(rng.normal(size=30), lo, hi)
        z = z * min(1.0, 1.5 / np.linalg.norm(z))
        assert np.linalg.norm(p - v) <= np.linalg.norm(z - v) + 1e-5


# ----------------------------------------------------------------------------- the searches


def _greedy_l1_box(w_diff, x, eps):
    """argmin w_diff . delta over ||delta||_1 <= eps, 0 <= x + delta <= 1 (the feasible counterfactuals):
    the budget fills the largest |w_i| first, each towards -sign(w_i) up to its bound. Without an active box:
    the vertex -sign(w_i*) eps e_i* of the L1 ball on the largest |w_i|."""
    d, budget = np.zeros_like(x), eps
    for i in np.argsort(-np.abs(w_diff), kind="stable"):
        cap = min(x[i] if w_diff[i] > 0 else 1 - x[i], budget)
        d[i] = -np.sign(w_diff[i]) * cap
        budget -= cap
        if budget <= 1e-12:
            break
    return d


def _linear_problem(box_at_top: bool):
    rng = np.random.default_rng(4)
    w = rng.normal(size=(D, 2)) * 0.3
    x = np.full(D, 0.5)
    w_diff = w[:, 0] - w[:, 1]  # targeted to class 1: minimise the logit difference z_0 - z_1
    if box_at_top:  # the best coordinate can only move 0.05: the box decides
        top = np.argmax(np.abs(w_diff))
        x[top] = 0.95 if w_diff[top] < 0 else 0.05
    b = jnp.asarray([0.01 - float(x @ w_diff), 0.0])  # z_0 - z_1 = 0.01 + w_diff . delta: class 0 wins at first
    return w, w_diff, x, b


def test_fw_reaches_the_analytic_optimum_on_a_linear_model():
    """A linear logit difference over the L1 ball is minimised at the vertex -sign(w_i) eps e_i of the largest
    |w_i|. FW-L1-q with q = 1 (k = 1) lands on it at the first step (gamma_0 = 1) and stays; with k = 4 it
    lands on the best point of B1 and Binf(eps/4), the top-4 coordinates at eps/4."""
    w, w_diff, x, b = _linear_problem(False)
    model = _linear(jnp.asarray(w, jnp.float32), b)
    img = jnp.asarray(x, jnp.float32).reshape(1, H, W, 1)
    eps = 0.25
    for q, k in ((1.0, 1), (1 - 4.5 / D, 4)):
        cf = cfl.fw_l1q(model, img, key=jax.random.key(0), target=1, eps=eps, q=q, dq=0.0, steps=8)
        top = np.argsort(-np.abs(w_diff), kind="stable")[:k]
        want = np.zeros(D)
        want[top] = -np.sign(w_diff[top]) * eps / k
        np.testing.assert_allclose(np.asarray(cf.delta).reshape(-1), want, atol=1e-6)
        assert int(cf.l0[0]) == k and bool(cf.success[0])
        np.testing.assert_allclose(np.asarray(cf.trace.l1[0, 1:]), eps, rtol=1e-5)  # on the L1 sphere from step 1
    one = np.zeros(D)
    one[np.argmax(np.abs(w_diff))] = -np.sign(w_diff[np.argmax(np.abs(w_diff))]) * eps
    np.testing.assert_allclose(_greedy_l1_box(w_diff, x, eps), one)  # the k = 1 answer is the L1-ball optimum


def test_fw_with_the_box_active_approaches_the_optimum():
    """The best coordinate can move only 0.05: the optimum spills the budget to the next ones (greedy);
    FW-L1-q (q = 1) gets within 2% of it, with the perturbation in the ball and the box."""
    w, w_diff, x, b = _linear_problem(True)
    model = _linear(jnp.asarray(w, jnp.float32), b)
    eps = 0.6
    cf = cfl.fw_l1q(model, jnp.asarray(x, jnp.float32).reshape(1, H, W, 1), key=jax.random.key(0), target=1,
                    eps=eps, q=1.0, dq=0.0, steps=60)
    d = np.asarray(cf.delta).reshape(-1)
    best = float(w_diff @ _greedy_l1_box(w_diff, x, eps))
    assert float(w_diff @ d) <= 0.98 * best  # best < 0
    assert np.abs(d).sum() <= eps + 1e-5 and np.all(x + d >= -1e-6) and np.all(x + d <= 1 + 1e-6)
    top = int(np.argmax(np.abs(w_diff)))
    assert abs(abs(d[top]) - 0.05) < 1e-6  # the best pixel is driven to its bound


def test_pgd_l1_approaches_the_same_optimum():
    w, w_diff, x, b = _linear_problem(True)
    model = _linear(jnp.asarray(w, jnp.float32), b)
    cf = cfl.pgd_l1(model, jnp.asarray(x, jnp.float32).reshape(1, H, W, 1), target=1, eps=0.6, steps=200,
                    step_size=0.05)
    best = float(w_diff @ _greedy_l1_box(w_diff, x, 0.6))
    assert float(w_diff @ np.asarray(cf.delta).reshape(-1)) <= 0.97 * best
    assert np.abs(np.asarray(cf.delta)).sum() <= 0.6 + 1e-5


@pytest.fixture(scope="module")
def mlp_runs():
    model = _mlp()
    x = _images(5)
    key = jax.random.key(1)
    kw = dict(target="next", eps=3.0, q=0.8, dq=0.1, steps=12)
    return model, x, key, kw, cfl.fw_l1q(model, x, key=key, **kw)


def test_iterates_stay_in_the_ball_and_the_box(mlp_runs):
    model, x, key, kw, cf = mlp_runs
    assert np.all(np.asarray(cf.trace.l1) <= kw["eps"] * (1 + 1e-5))
    # an intermediate iterate: the search with fewer steps (same key) is a prefix of the longer one
    short = cfl.fw_l1q(model, x, key=key, **dict(kw, steps=3))
    np.testing.assert_allclose(np.asarray(short.trace.l1), np.asarray(cf.trace.l1)[:, :4], rtol=1e-5)
    xs = np.asarray(short.counterfactual)
    assert xs.min() >= -1e-6 and xs.max() <= 1 + 1e-6
    xs = np.asarray(cf.counterfactual)
    assert xs.min() >= -1e-6 and xs.max() <= 1 + 1e-6
    np.testing.assert_allclose(xs, np.asarray(x + cf.delta), atol=1e-6)
    for fn, e, norm in ((cfl.pgd_l1, 3.0, "l1"), (cfl.pgd_l2, 1.0, "l2")):
        p = fn(model, x, target="next", eps=e, steps=6)
        assert np.all(np.asarray(getattr(p.trace, norm)) <= e * (1 + 1e-4))
        assert np.asarray(p.counterfactual).min() >= -1e-6 and np.asarray(p.counterfactual).max() <= 1 + 1e-6


def test_targets_trace_and_success(mlp_runs):
    model, x, key, kw, cf = mlp_runs
    p0 = np.asarray(model(x))
    np.testing.assert_array_equal(np.asarray(cf.target), (p0.argmax(1) + 1) % 3)
    T = kw["steps"]
    assert cf.trace.probs.shape == (5, T + 1, 3) and cf.trace.l0.shape == (5, T + 1)
    np.testing.assert_allclose(np.asarray(cf.trace.probs[:, 0]), np.asarray(jax.nn.softmax(p0)), atol=1e-5)
    assert np.all(np.asarray(cf.trace.l0[:, 0]) == 0)
    np.testing.assert_array_equal(np.asarray(cf.success), np.asarray(cf.prediction) == np.asarray(cf.target))
    second = _core._resolve("second", jnp.zeros(5, jnp.int32), jnp.asarray(p0))
    np.testing.assert_array_equal(np.asarray(second), np.argsort(-p0, 1)[:, 1])
    un = cfl.fw_l1q(model, x, key=key, **dict(kw, target=None))
    assert not un.targeted and np.array_equal(np.asarray(un.target), p0.argmax(1))
    assert np.array_equal(np.asarray(un.success), np.asarray(un.prediction) != p0.argmax(1))


def test_stop_on_success_freezes_the_first_counterfactual(mlp_runs):
    model, x, key, kw, cf = mlp_runs
    st = cfl.fw_l1q(model, x, key=key, **kw, stop_on_success=True)
    first = np.asarray(st.first_success)
    np.testing.assert_array_equal(first, np.asarray(cf.first_success))
    for b, t in enumerate(first):
        if t >= 0:
            assert np.all(np.asarray(st.trace.l1[b, t:]) == np.asarray(st.trace.l1[b, t]))
            assert bool(st.success[b])


def test_jit_vmap_and_no_recompilation(mlp_runs):
    model, x, key, kw, cf = mlp_runs
    jitted = jax.jit(lambda m, x, k: cfl.fw_l1q(m, x, key=k, **kw).delta)
    np.testing.assert_allclose(np.asarray(jitted(model, x, key)), np.asarray(cf.delta), atol=1e-6)
    keys = jax.random.split(jax.random.key(7), 2)
    batched = jax.vmap(lambda k: cfl.fw_l1q(model, x, key=k, **kw).delta)(keys)
    for i in range(2):
        np.testing.assert_allclose(np.asarray(batched[i]),
                                   np.asarray(cfl.fw_l1q(model, x, key=keys[i], **kw).delta), atol=1e-6)
    n = _core.run._cache_size()
    cfl.fw_l1q(_mlp(seed=5), x, key=key, **dict(kw, eps=2.0, q=0.9), stop_on_success=True)  # all traced
    assert _core.run._cache_size() == n


def test_deterministic_per_key_and_per_image(mlp_runs):
    model, x, key, kw, cf = mlp_runs
    again = cfl.fw_l1q(model, x, key=key, **kw)
    np.testing.assert_array_equal(np.asarray(again.delta), np.asarray(cf.delta))
    other = cfl.fw_l1q(model, x, key=jax.random.key(2), **kw)
    assert not np.allclose(np.asarray(other.delta), np.asarray(cf.delta))
    # image b uses fold_in(key, b): chunking does not change the result
    chunked = cfl.fw_l1q(model, x, key=key, **kw, batch_size=2)
    np.testing.assert_allclose(np.asarray(chunked.delta), np.asarray(cf.delta), atol=1e-6)


@pytest.mark.parametrize("kwargs,exc,word", [
    (dict(images=np.zeros((1, H, W, 1), np.uint8)), TypeError, "images"),
    (dict(images=np.full((1, H, W, 1), 2.0, np.float32)), ValueError, "images"),
    (dict(images=np.zeros((H, W, 1), np.float32)), ValueError, "images"),
    (dict(key=None), TypeError, "key"),
    (dict(key=0), TypeError, "key"),
    (dict(q=1.5), ValueError, "q"),
    (dict(dq=-0.1), ValueError, "dq"),
    (dict(eps=-1.0), ValueError, "eps"),
    (dict(eps=float("nan")), ValueError, "eps"),
    (dict(steps=0), ValueError, "steps"),
    (dict(c=0.0), ValueError, "c"),
    (dict(target=3), ValueError, "target"),
    (dict(target="last"), ValueError, "target"),
    (dict(target=[0, 1]), ValueError, "target"),
    (dict(target=0.5), TypeError, "target"),
    (dict(target=None, labels=[7]), ValueError, "labels"),
    (dict(target=1, labels=[0]), ValueError, "labels"),
    (dict(loss="hinge"), ValueError, "loss"),
    (dict(batch_size=0), ValueError, "batch_size"),
])
def test_bad_input_names_the_argument(kwargs, exc, word):
    args = dict(images=np.full((1, H, W, 1), 0.5, np.float32), key=jax.random.key(0), target=1)
    args.update(kwargs)
    images = args.pop("images")
    with pytest.raises(exc, match=rf"\b{word}\b"):
        cfl.fw_l1q(_mlp(), images, **args)


def test_pgd_bad_input():
    with pytest.raises(ValueError, match="step_size"):
        cfl.pgd_l2(_mlp(), _images(1), target=1, step_size=0.0)
    with pytest.raises(ValueError, match="eps"):
        cfl.pgd_l1(_mlp(), _images(1), target=1, eps=0.0)


# ----------------------------------------------------------------------------- the CLI and the shipped models


def test_cli_on_the_shipped_robust_model(tmp_path, capsys):
    from shapjax import cli, models

    name = "mnist-cnn-robust" if "mnist-cnn-robust" in models.available() else "mnist-cnn"
    out = tmp_path / "cf"
    rc = cli.main(["counterfactual", "samples:mnist:3", "--model", name, "--target", "next", "--steps", "12",
                   "--stop-on-success", "--out", str(out), "--quiet"])
    assert rc == 0
    assert "counterfactual" in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_images"] == 3 and summary["model"] == name and summary["method"] == "fw_l1q"
    assert (out / "counterfactual.png").stat().st_size > 1000
    z = np.load(out / "counterfactuals.npz")
    assert z["delta"].shape == (3, 28, 28, 1) and z["trace_probs"].shape == (3, 13, 10)
    np.testing.assert_allclose(z["counterfactuals"], z["images"] + z["delta"], atol=1e-6)
    for img, t in zip(summary["images"], z["target"]):
        assert img["target"] == str(t) and isinstance(img["success"], bool)
    assert summary["n_success"] == int(z["success"].sum()) >= 2
    # a bad target is one line naming the option
    assert cli.main(["counterfactual", "samples:mnist:1", "--model", name, "--target", "cat",
                     "--out", str(out)]) != 0
    assert "--target" in capsys.readouterr().err


def test_models_list_shows_pgd_accuracy():
    from shapjax import models
    from shapjax.cli.app import models_lines

    names = models.available()
    for robust in ("mnist-cnn-robust", "planted-patch-robust"):
        if robust not in names:
            pytest.skip(f"{robust} not shipped in this checkout")
        meta = models.metadata(robust)
        std = models.metadata(meta["robust_version_of"])
        assert meta["pgd_accuracy"]["eps"] == std["pgd_accuracy"]["eps"]
        assert meta["pgd_accuracy"]["accuracy"] > std["pgd_accuracy"]["accuracy"] + 0.3
    assert any("PGD-L2" in line and line.startswith("mnist-cnn-robust") for line in models_lines())
