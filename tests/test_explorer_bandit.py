"""The explorer's bandit (pure): Beta posteriors per (model, predicted class, setting), pooled prior, Thompson draws."""
import jax
import numpy as np
import pytest

from shapjax.explorer import bandit

ARMS = ["kernel|grid:8x8|blur:3", "gradcam", "ig"]


def test_no_feedback_is_a_uniform_prior():
    posts = bandit.posteriors({}, context=0, arms=ARMS)
    assert [(p.arm, p.alpha, p.beta) for p in posts] == [(a, 1.0, 1.0) for a in ARMS]
    ch = bandit.thompson(posts, key=jax.random.key(0), class_name="cat")
    assert ch.arm in ARMS and set(ch.draws) == set(ARMS)
    assert "no feedback yet" in ch.reason and ch.arm in ch.reason


def test_own_counts_add_to_the_posterior_and_fractions_are_allowed():
    posts = bandit.posteriors({(2, "gradcam"): (3, 1), (2, "ig"): (0.25, 0.75)}, context=2, arms=ARMS)
    p = {q.arm: q for q in posts}
    assert (p["gradcam"].alpha, p["gradcam"].beta) == (4.0, 2.0)
    assert (p["ig"].alpha, p["ig"].beta) == (1.25, 1.75)
    assert p["gradcam"].mean == pytest.approx(4 / 6)


def test_other_classes_pool_into_the_prior_capped_at_kappa():
    counts = {(0, "gradcam"): (30.0, 0.0), (1, "ig"): (0.0, 2.0)}
    p = {q.arm: q for q in bandit.posteriors(counts, context=5, arms=ARMS, pool_strength=10)}
    m = 31 / 32  # pooled mean of gradcam on the other classes, worth min(30, 10) = 10 observations
    assert p["gradcam"].alpha == pytest.approx(1 + 10 * m) and p["gradcam"].beta == pytest.approx(1 + 10 * (1 - m))
    assert p["ig"].alpha == pytest.approx(1 + 2 * 0.25) and p["ig"].beta == pytest.approx(1 + 2 * 0.75)
    assert p["gradcam"].mean > 0.85 > 0.5 > p["ig"].mean
    alone = {q.arm: q for q in bandit.posteriors(counts, context=5, arms=ARMS, pool_strength=0)}
    assert all((q.alpha, q.beta) == (1.0, 1.0) for q in alone.values())
    # a class's own verdicts are not counted again in its prior
    own = {q.arm: q for q in bandit.posteriors(counts, context=0, arms=ARMS)}
    assert (own["gradcam"].alpha, own["gradcam"].beta) == (31.0, 1.0)


def test_thompson_is_reproducible_from_the_key_and_follows_the_evidence():
    posts = bandit.posteriors({(0, "ig"): (40, 2), (0, "gradcam"): (2, 40)}, context=0, arms=ARMS)
    a = bandit.thompson(posts, key=jax.random.key(3))
    b = bandit.thompson(posts, key=jax.random.key(3))
    assert a.draws == b.draws
    picks = [bandit.thompson(posts, key=jax.random.key(s)).arm for s in range(200)]
    assert picks.count("ig") > 150 and picks.count("gradcam") < 5
    d = a.as_dict()
    assert d["policy"] == "thompson" and len(d["posteriors"]) == 3 and "Beta(" in d["reason"]


def test_uniform_baseline_and_best_alternative():
    picks = [bandit.uniform(ARMS, key=jax.random.key(s)).arm for s in range(300)]
    counts = np.array([picks.count(a) for a in ARMS])
    assert counts.min() > 60
    posts = bandit.posteriors({(0, "ig"): (5, 0), (0, "gradcam"): (1, 3)}, context=0, arms=ARMS)
    assert bandit.best_alternative(posts, exclude="gradcam") == "ig"
    assert bandit.best_alternative(posts, exclude="ig") == ARMS[0]
    assert bandit.best_alternative(posts[:1], exclude=ARMS[0]) is None


@pytest.mark.parametrize("kwargs,err,match", [
    (dict(counts={}, context=0, arms=[]), ValueError, "arms"),
    (dict(counts={}, context=0, arms=["a", "a"]), ValueError, "distinct"),
    (dict(counts={(0, "a"): (-1, 0)}, context=0, arms=["a"]), ValueError, "non-negative"),
    (dict(counts={(0, "a"): (float("nan"), 0)}, context=0, arms=["a"]), ValueError, "finite"),
    (dict(counts={}, context=0, arms=["a"], pool_strength=-1), ValueError, "pool_strength"),
])
def test_bad_inputs_are_named(kwargs, err, match):
    with pytest.raises(err, match=match):
        bandit.posteriors(**kwargs)


def test_thompson_needs_a_key_and_posteriors():
    posts = bandit.posteriors({}, context=0, arms=ARMS)
    with pytest.raises(TypeError, match="key"):
        bandit.thompson(posts, key=None)
    with pytest.raises(TypeError, match="posts"):
        bandit.thompson([], key=jax.random.key(0))
