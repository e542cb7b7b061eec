"""Standard errors of the regression estimators where the design has few sampled pairs.

Leverage's design gives a stratum of one pair to each size it samples when the budget is small next
to the number of players (M = 32 at 86 evaluations: 10 strata of one pair; M = 4096 at 9,218: 512).
A stratum of one pair has no variance estimate of its own, so without collapsing such strata the
standard errors were exactly 0 there; and below about two sampled pairs per player the standard
errors of kernel and leverage alike understate the error, which ``shapley`` / ``explain`` log.
"""
import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import shapjax
from shapjax.engine.estimators import leverage
from shapjax.engine.estimators.layout import _std_warning_once, variance_strata


@pytest.fixture(autouse=True)
def _fresh_warnings():
    _std_warning_once.cache_clear()  # the warning is logged once per process and budget: earlier tests may have used it


def _game(M):
    w = jnp.asarray(np.random.default_rng(0).normal(size=M), jnp.float32)
    return lambda z: jnp.tanh(z.astype(jnp.float32) @ w / 3.0) ** 2


@pytest.mark.parametrize("count, labels", [
    ([3], [0]), ([1], [0]), ([1, 3], [0, 0]), ([3, 1], [0, 0]), ([2, 1, 2], [0, 0, 2]), ([1, 1], [0, 0]),
    ([1, 1, 1], [0, 0, 0]), ([1, 1, 1, 1, 1], [0, 0, 2, 2, 2]), ([2, 1, 1, 1, 3, 1], [0, 1, 1, 1, 4, 4]),
    ([1, 2, 2], [0, 0, 2]),
])
def test_variance_strata_collapse_single_pair_strata(count, labels):
    strata = np.arange(10, 10 + len(count))
    fpc = np.linspace(0.5, 1.0, 20)
    got, new_fpc = variance_strata(strata, count, fpc)
    assert got.tolist() == [10 + x for x in labels]
    for h in set(labels):  # a group's fpc: the pair-weighted mean of its members'
        members = [i for i, x in enumerate(labels) if x == h]
        want = sum(fpc[10 + i] * count[i] for i in members) / sum(count[i] for i in members)
        assert new_fpc[10 + h] == pytest.approx(want)


def test_leverage_std_positive_with_one_pair_per_stratum(caplog):
    M, n = 32, 86
    _, sampled = leverage.plan(M, n - 2)
    assert len(sampled) >= 2 and all(k == 1 for _, k in sampled)  # the design this test is about
    with caplog.at_level(logging.WARNING, logger="shapjax"):
        res = shapjax.shapley(_game(M), M, key=jax.random.key(0), method="leverage", n_evals=n)
    std = np.asarray(res.std)
    assert np.all(np.isfinite(std)) and np.all(std > 0)  # was exactly 0 for every player
    assert any("understate the error" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("method", ["kernel", "leverage"])
def test_std_warning_only_below_two_pairs_per_player(method, caplog):
    M = 16
    game = _game(M)
    with caplog.at_level(logging.WARNING, logger="shapjax"):
        shapjax.shapley(game, M, key=jax.random.key(1), method=method, n_evals=64)  # 15 sampled pairs
    msgs = [r.getMessage() for r in caplog.records if "understate the error" in r.getMessage()]
    assert msgs and "15 sampled coalition pairs for 16 players" in msgs[0] and "n_evals >= 98" in msgs[0]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="shapjax"):
        shapjax.shapley(game, M, key=jax.random.key(1), method=method, n_evals=98)  # 32 pairs: 2 per player
    assert not [r for r in caplog.records if "understate the error" in r.getMessage()]
