"""Thompson sampling over explanation settings, per model and per predicted class (pure functions).

Each arm is an explanation setting (method, segmentation, masker). For one
context (a model and the predicted class of the image about to be shown) an
arm's chance of a 👍 gets a Beta posterior:

.. math::

    \\theta_{c,s} \\sim \\mathrm{Beta}\\big(1 + n\\,m_s + u_{c,s},\\; 1 + n\\,(1 - m_s) + d_{c,s}\\big),
    \\qquad m_s = \\frac{1 + U_s}{2 + U_s + D_s},\\quad n = \\min(U_s + D_s,\\ \\kappa)

where ``u, d`` are the 👍 / 👎 on this class and ``U, D`` those on every
*other* class of the model: the prior of a class nobody has rated yet is the
evidence pooled over the other classes (worth at most ``kappa`` observations),
so what was learned on one class carries over to the next, and a class's own
feedback takes over as it accumulates. Counts may be fractional (a region mark
scores a setting in [0, 1]: a fraction of a 👍). :func:`thompson` draws one
``theta`` per arm and shows the arm with the largest draw (Thompson 1933;
Russo et al. 2018), and says why in words.

References:
  Thompson, W. R. (1933). On the likelihood that one unknown probability exceeds another in view of the
  evidence of two samples. Biometrika 25(3/4).
  Russo, D., Van Roy, B., Kazerouni, A., Osband, I. & Wen, Z. (2018). A tutorial on Thompson sampling.
  Foundations and Trends in Machine Learning 11(1).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

#: at most this many pooled observations from the other classes shape a class's prior
POOL_STRENGTH = 10.0

Counts = Mapping[tuple[int, str], tuple[float, float]]  # (predicted class, setting) -> (ups, downs)


@dataclass(frozen=True)
class Posterior:
    """The Beta posterior of one arm in one context, and the evidence behind it."""

    arm: str
    alpha: float
    beta: float
    ups: float  # on this class
    downs: float
    pooled_ups: float  # on the model's other classes
    pooled_downs: float

    @property
    def mean(self) -> float:
        return self.alpha / (self.alpha + self.beta)

    def as_dict(self) -> dict:
        return {"setting": self.arm, "alpha": round(self.alpha, 4), "beta": round(self.beta, 4),
                "mean": round(self.mean, 4), "ups": round(self.ups, 4), "downs": round(self.downs, 4),
                "pooled_ups": round(self.pooled_ups, 4), "pooled_downs": round(self.pooled_downs, 4)}


@dataclass(frozen=True)
class Choice:
    """The arm :func:`thompson` picked, every arm's draw and posterior, and the reason in one sentence."""

    arm: str
    draws: dict
    posteriors: tuple
    reason: str
    policy: str = "thompson"

    def as_dict(self) -> dict:
        return {"setting": self.arm, "policy": self.policy, "reason": self.reason,
                "draws": {k: round(float(v), 4) for k, v in self.draws.items()},
                "posteriors": [p.as_dict() for p in self.posteriors]}


def _check_arms(arms: Sequence[str]) -> list[str]:
    arms = list(arms)
    if not arms or not all(isinstance(a, str) and a for a in arms):
        raise ValueError(f"arms: expected a non-empty list of setting names, got {arms!r}")
    if len(set(arms)) != len(arms):
        raise ValueError(f"arms: expected distinct setting names, got {arms!r}")
    return arms


def posteriors(counts: Counts, *, context: int, arms: Sequence[str],
               pool_strength: float = POOL_STRENGTH) -> list[Posterior]:
    """The Beta posterior of every arm for the predicted class ``context``.

    Args:
      counts: ``{(predicted class, arm): (ups, downs)}``, the feedback of one model
        (fractional counts allowed; arms not in ``arms`` are ignored).
      context: the predicted class of the image to be shown.
      arms: the setting names to rank.
      pool_strength: ``kappa``, the most observations the other classes' pooled
        evidence is worth in the prior (0: every class learns alone).
    """
    arms = _check_arms(arms)
    if not pool_strength >= 0:
        raise ValueError(f"pool_strength: expected a number >= 0, got {pool_strength!r}")
    own = {a: [0.0, 0.0] for a in arms}
    pooled = {a: [0.0, 0.0] for a in arms}
    for (ctx, arm), (u, d) in counts.items():
        if arm not in own:
            continue
        if not (u >= 0 and d >= 0 and math.isfinite(u) and math.isfinite(d)):
            raise ValueError(f"counts[{(ctx, arm)!r}]: expected non-negative finite (ups, downs), got {(u, d)!r}")
        tgt = own if int(ctx) == int(context) else pooled
        tgt[arm][0] += float(u)
        tgt[arm][1] += float(d)
    out = []
    for a in arms:
        (u, d), (U, D) = own[a], pooled[a]
        m = (1.0 + U) / (2.0 + U + D)
        n = min(U + D, float(pool_strength))
        out.append(Posterior(a, 1.0 + n * m + u, 1.0 + n * (1.0 - m) + d, u, d, U, D))
    return out


def _rng(key) -> np.random.Generator:
    """A numpy generator from a JAX key: the draws are a few scalars, host-side, no compilation."""
    import jax
    import jax.numpy as jnp

    from shapjax._util.checks import check_key

    check_key(key)
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    return np.random.default_rng([int(v) for v in np.asarray(key).reshape(-1)])


def _describe(p: Posterior, class_name: str) -> str:
    own = f"{p.ups:g} 👍 {p.downs:g} 👎 on class {class_name!r}"
    pooled = f"{p.pooled_ups:g} 👍 {p.pooled_downs:g} 👎 on the other classes"
    return f"Beta({p.alpha:.2f}, {p.beta:.2f}), mean {p.mean:.2f}, from {own} and {pooled}"


def thompson(posts: Sequence[Posterior], *, key, class_name: str = "") -> Choice:
    """Draw ``theta ~ Beta(alpha, beta)`` per arm and pick the largest (Thompson sampling).

    Args:
      posts: :func:`posteriors` of the context.
      key: JAX PRNG key (the draws are reproducible from it).
      class_name: the context's class name, for the reason sentence.
    """
    posts = list(posts)
    if not posts or not all(isinstance(p, Posterior) for p in posts):
        raise TypeError("posts: expected a non-empty list of Posterior (from bandit.posteriors)")
    rng = _rng(key)
    draws = {p.arm: float(rng.beta(p.alpha, p.beta)) for p in posts}
    best = max(posts, key=lambda p: (draws[p.arm], p.mean))
    n_obs = sum(p.ups + p.downs + p.pooled_ups + p.pooled_downs for p in posts)
    lead = "no feedback yet, so every setting has the same uniform prior; " if n_obs == 0 else ""
    reason = (f"{lead}Thompson sampling drew {draws[best.arm]:.2f} for {best.arm}, the largest of {len(posts)} "
              f"draws; its posterior is {_describe(best, class_name)}")
    return Choice(best.arm, draws, tuple(posts), reason)


def uniform(arms: Sequence[str], *, key) -> Choice:
    """The baseline policy: a setting drawn uniformly at random (what the learning curve is compared with)."""
    arms = _check_arms(arms)
    arm = arms[int(_rng(key).integers(len(arms)))]
    return Choice(arm, {}, (), f"uniform random choice among {len(arms)} settings", policy="uniform")


def best_alternative(posts: Sequence[Posterior], *, exclude: str) -> str | None:
    """The arm with the highest posterior mean other than ``exclude`` (what a 👎 offers next), or None."""
    rest = [p for p in posts if p.arm != exclude]
    return max(rest, key=lambda p: p.mean).arm if rest else None
