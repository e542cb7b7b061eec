"""The default chunk size: probed from the model for big jobs, cached, never for small ones; explain uses it."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import shapjax
from shapjax import maskers, segment
from shapjax._util import autobatch
from shapjax._util.modelfn import split_model

W = jax.random.normal(jax.random.key(0), (8, 8, 1, 3))
MODEL = jax.tree_util.Partial(lambda w, x: jnp.einsum("nhwc,hwck->nk", x, w), W)


def test_small_jobs_use_the_fallback_and_big_jobs_probe_once(monkeypatch):
    static, dynamic = split_model(MODEL)
    assert autobatch.choose_batch_size(static, dynamic, (8, 8, 1), rows=100, fallback=37) == 37
    monkeypatch.setattr(autobatch, "PROBE_MIN_JOB_SECONDS", 0.0)  # this tiny model's jobs are always short
    calls = []
    real = autobatch.probe
    monkeypatch.setattr(autobatch, "probe", lambda *a, **k: calls.append(1) or real(*a, **k))
    monkeypatch.setattr(autobatch, "_MEMO", {})
    b1 = autobatch.choose_batch_size(static, dynamic, (8, 8, 1), rows=5000, fallback=37)
    b2 = autobatch.choose_batch_size(static, jax.tree_util.tree_map(lambda a: a * 2, dynamic), (8, 8, 1),
                                     rows=5000, fallback=37)
    assert b1 == b2 and b1 in autobatch.CANDIDATES and len(calls) == 1  # new weights, same structure: cached
    assert autobatch.choose_batch_size(static, dynamic, (8, 8, 1), rows=5000, n_replacements=4, fallback=1) >= 1


def test_the_probe_is_kept_beside_the_compilation_cache(tmp_path, monkeypatch):
    static, dynamic = split_model(MODEL)
    monkeypatch.setattr(autobatch, "PROBE_MIN_JOB_SECONDS", 0.0)
    monkeypatch.setattr(autobatch, "_MEMO", {})
    monkeypatch.setattr(autobatch, "_disk_cache", lambda: tmp_path / "autobatch.json")
    b = autobatch.choose_batch_size(static, dynamic, (8, 8, 1), rows=4096, fallback=1)
    assert (tmp_path / "autobatch.json").is_file()
    monkeypatch.setattr(autobatch, "_MEMO", {})
    monkeypatch.setattr(autobatch, "probe", lambda *a, **k: (_ for _ in ()).throw(AssertionError("probed again")))
    assert autobatch.choose_batch_size(static, dynamic, (8, 8, 1), rows=4096, fallback=1) == b


def test_a_short_one_off_job_skips_the_probe(monkeypatch):
    """Big enough in rows, but its forward passes take milliseconds: the probe could not pay for itself."""
    static, dynamic = split_model(MODEL)
    monkeypatch.setattr(autobatch, "_MEMO", {})
    monkeypatch.setattr(autobatch, "_read_disk", lambda key: None)
    monkeypatch.setattr(autobatch, "probe", lambda *a, **k: (_ for _ in ()).throw(AssertionError("probed")))
    t = autobatch.job_seconds(static, dynamic, (8, 8, 1), batch=37, rows=5000)
    assert 0 < t < autobatch.PROBE_MIN_JOB_SECONDS
    assert autobatch.choose_batch_size(static, dynamic, (8, 8, 1), rows=5000, fallback=37) == 37
    # the forward call's time is kept: the next job of this model decides without compiling anything
    monkeypatch.setattr(autobatch.jax, "jit", lambda *a, **k: (_ for _ in ()).throw(AssertionError("compiled")))
    assert autobatch.choose_batch_size(static, dynamic, (8, 8, 1), rows=6000, fallback=37) == 37


def test_explain_with_the_probed_chunk_matches_a_fixed_chunk(monkeypatch):
    monkeypatch.setattr(autobatch, "PROBE_MIN_JOB_SECONDS", 0.0)
    x = jax.random.uniform(jax.random.key(1), (4, 8, 8, 1))
    kw = dict(key=jax.random.key(0), segments=segment.grid(4, 4), masker=maskers.constant(0.0), n_evals=1024)
    auto = shapjax.explain(MODEL, x, **kw)
    fixed = shapjax.explain(MODEL, x, **kw, batch_size=64)
    np.testing.assert_allclose(auto.values, fixed.values, rtol=1e-5, atol=1e-5)
    lazy = shapjax.explain(MODEL, x, **kw, check_result=False)
    assert lazy.check() is lazy
