"""Stored executables (shapjax._util.aot): a fresh process runs a known explanation without tracing
it, and no change of model, constants, configuration or arguments can reuse a wrong executable."""
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import shapjax
from shapjax import maskers
from shapjax._util import aot
from shapjax._util.compile_log import CompileLog

KEY = jax.random.key(0)
X = jax.random.uniform(jax.random.key(1), (2, 8, 8, 1))
KW = dict(segments=shapjax.segment.grid(2, 2), masker=maskers.constant(0.0), method="kernel", n_evals=12,
          outputs=[0, 1])


@pytest.fixture
def store(tmp_path):
    aot.clear()
    folder = aot.enable(tmp_path / "programs")
    yield folder
    aot.enable(None)
    aot.clear()


def _files(folder, ext=".xla"):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(ext))


def _reference(model, x=X, key=KEY, **kw):
    """The same explanation through jax.jit alone (no stored executables)."""
    saved = aot.folder()
    aot.enable(None)
    try:
        return shapjax.explain(model, x, key=key, **{**KW, **kw})
    finally:
        aot.enable(saved)


def _linear(w):
    return jax.tree_util.Partial(lambda w, x: jnp.tanh(x.reshape(x.shape[0], -1) @ w), w)


W = jax.random.normal(jax.random.key(2), (64, 3)) / 8


def test_new_weights_reuse_the_executable_and_give_their_own_values(store):
    a = shapjax.explain(_linear(W), X, key=KEY, **KW)
    assert len(_files(store)) == 1
    with CompileLog() as log:
        b = shapjax.explain(_linear(2 * W), X, key=KEY, **KW)
    assert log.count("_explain_impl") == 0 and log.trace_seconds < 0.5
    assert len(_files(store)) == 1
    np.testing.assert_array_equal(np.asarray(a.values), np.asarray(_reference(_linear(W)).values))
    np.testing.assert_array_equal(np.asarray(b.values), np.asarray(_reference(_linear(2 * W)).values))
    assert not np.allclose(a.values, b.values)


def test_a_stored_executable_is_found_again_without_tracing(store):
    shapjax.explain(_linear(W), X, key=KEY, **KW)
    aot.clear()  # what a fresh process holds: only the files
    key = jax.random.key(5)
    with CompileLog() as log:
        e = shapjax.explain(_linear(W), X, key=key, **KW)
    assert log.count("_explain_impl") == 0, log.by_name
    np.testing.assert_array_equal(np.asarray(e.values), np.asarray(_reference(_linear(W), key=key).values))


def _closure_model(const):
    c = np.asarray(const, np.float32)

    def model(x):
        return jnp.tanh(x.reshape(x.shape[0], -1) @ W + c)
    return model


def test_different_constants_never_reuse_an_executable(store):
    """Same code, same argument shapes, other constant values: the jaxpr's constants join the key
    (after aot.clear(), as in a fresh process where only the files remain)."""
    m1, m2 = _closure_model([0.0, 0.0, 0.0]), _closure_model([3.0, -1.0, 0.5])
    a = shapjax.explain(m1, X, key=KEY, **KW)
    aot.clear()
    b = shapjax.explain(m2, X, key=KEY, **KW)
    assert len(_files(store)) == 2
    np.testing.assert_array_equal(np.asarray(b.values), np.asarray(_reference(m2).values))
    assert not np.allclose(a.values, b.values)


SCALE = 1.0


def _global_model(x):
    return jnp.tanh(SCALE * x.reshape(x.shape[0], -1) @ W)


def test_a_changed_global_never_reuses_an_executable(store):
    global SCALE
    a = shapjax.explain(_global_model, X, key=KEY, **KW)
    SCALE = 3.0
    try:
        aot.clear()
        b = shapjax.explain(_global_model, X, key=KEY, **KW)
        np.testing.assert_array_equal(np.asarray(b.values), np.asarray(_reference(_global_model).values))
    finally:
        SCALE = 1.0
    assert not np.allclose(a.values, b.values) and len(_files(store)) == 2


def test_other_code_of_the_same_shapes_gets_its_own_executable(store):
    relu = jax.tree_util.Partial(lambda w, x: jax.nn.relu(x.reshape(x.shape[0], -1) @ w), W)
    shapjax.explain(_linear(W), X, key=KEY, **KW)
    aot.clear()
    b = shapjax.explain(relu, X, key=KEY, **KW)
    np.testing.assert_array_equal(np.asarray(b.values), np.asarray(_reference(relu).values))
    assert len(_files(store)) == 2


def test_budgets_batches_and_precision_are_in_the_key(store):
    shapjax.explain(_linear(W), X, key=KEY, **KW)
    shapjax.explain(_linear(W), X[:1], key=KEY, **KW)  # another batch bucket
    shapjax.explain(_linear(W), X, key=KEY, **{**KW, "n_evals": 64})  # another budget bucket
    e64 = shapjax.explain(_linear(W), X, key=KEY, precision="float64", **KW)
    assert len(_files(store)) == 4
    assert e64.values.dtype == jnp.float64
    np.testing.assert_allclose(np.asarray(e64.values), np.asarray(_reference(_linear(W), precision="float64").values),
                               rtol=0, atol=1e-12)


def test_a_model_that_calls_back_into_python_is_not_stored(store, monkeypatch):
    wn = np.asarray(W)

    def host(x):
        return np.tanh(x.reshape(x.shape[0], -1) @ wn)

    def model(x):
        return jax.pure_callback(host, jax.ShapeDtypeStruct((x.shape[0], 3), jnp.float32), x)

    e = shapjax.explain(model, X, key=KEY, **KW)
    assert _files(store) == []
    assert _files(store, ".unstorable")  # later processes go straight to jax.jit (and JAX's own cache)
    aot.clear()
    compiles, real = [], aot._fresh_compile
    monkeypatch.setattr(aot, "_fresh_compile", lambda: compiles.append(1) or real())
    again = shapjax.explain(model, X, key=KEY, **KW)
    assert compiles == []  # not compiled past JAX's persistent cache a second time
    np.testing.assert_array_equal(np.asarray(again.values), np.asarray(e.values))
    np.testing.assert_allclose(np.asarray(e.values), np.asarray(_reference(model).values), rtol=1e-6)


def test_a_damaged_entry_is_compiled_again(store, caplog):
    a = shapjax.explain(_linear(W), X, key=KEY, **KW)
    (f,) = _files(store)
    (store / f).write_bytes(b"not a program")
    aot.clear()
    b = shapjax.explain(_linear(W), X, key=KEY, **KW)
    np.testing.assert_array_equal(np.asarray(a.values), np.asarray(b.values))
    assert "unreadable" in caplog.text
    assert (store / f).read_bytes() != b"not a program"  # rewritten


def test_unstable_descriptions_are_refused():
    class Opaque:
        pass

    with pytest.raises(aot.NotStorable):
        aot.stable_repr(Opaque())
    assert aot.stable_repr((3, "kernel", (1, 2))) == "(3, 'kernel', (1, 2))"

    class UserNode:
        def __init__(self, a):
            self.a = a

    jax.tree_util.register_pytree_node(UserNode, lambda n: ((n.a,), None), lambda _, c: UserNode(*c))
    with pytest.raises(aot.NotStorable):
        aot.tree_repr(jax.tree_util.tree_structure(UserNode(jnp.ones(2))))


def test_off_without_a_folder():
    aot.enable(None)
    calls = []
    fake = lambda *a, **k: calls.append((a, k)) or "ran"  # noqa: E731
    assert aot.call(fake, (1,), {"n": 2}) == "ran" and calls == [((1,), {"n": 2})]


_SCRIPT = r"""
import json, sys, jax, jax.numpy as jnp, numpy as np, shapjax
from shapjax import maskers
from shapjax._util.compile_log import CompileLog
shapjax.enable_compilation_cache(sys.argv[1])
w = jax.random.normal(jax.random.key(2), (64, 3)) / 8
model = jax.tree_util.Partial(lambda w, x: jnp.tanh(x.reshape(x.shape[0], -1) @ w), w)
x = jax.random.uniform(jax.random.key(1), (2, 8, 8, 1))
with CompileLog() as log:
    e = shapjax.explain(model, x, key=jax.random.key(0), segments=shapjax.segment.grid(2, 2),
                        masker=maskers.constant(0.0), method=sys.argv[2], n_evals=12, outputs=[0, 1])
    v = np.asarray(e.values)
from shapjax._util import aot
print("RESULT " + json.dumps({"values": v.tolist(), "explain_compiles": log.count("_explain_impl"),
                              "trace_s": log.trace_seconds, "preloaded": aot.stats["preloaded"]}))
"""


@pytest.mark.parametrize("method", ["kernel", "leverage"])
def test_a_fresh_process_runs_the_stored_program_without_compiling(tmp_path, method):
    import json

    env = {k: v for k, v in os.environ.items() if k != "SHAPJAX_NO_CACHE"}
    runs = []
    for _ in range(2):
        p = subprocess.run([sys.executable, "-c", _SCRIPT, str(tmp_path), method], capture_output=True, text=True,
                           env=env, timeout=300)
        assert p.returncode == 0, p.stderr[-3000:]
        runs.append(json.loads(p.stdout.split("RESULT ", 1)[1]))
    cold, warm = runs
    assert cold["explain_compiles"] == 1 and warm["explain_compiles"] == 0, runs
    assert cold["preloaded"] == 0 and warm["preloaded"] == 1, runs  # read back while the model was built
    assert warm["values"] == cold["values"]  # bit for bit
    assert _files(tmp_path / "programs")


def test_explain_dataset_finds_its_stored_program(store, tmp_path):
    sys.path.insert(0, os.path.dirname(__file__))
    from pipeline_model import linear_model
    from test_pipeline import CFG, _same_store

    clf = linear_model()
    shapjax.explain_dataset(clf, "samples:mnist:6", key=KEY, store=tmp_path / "a.zarr", batch_size=3, **CFG)
    n = len(_files(store))
    assert n >= 1
    aot.clear()  # a fresh run: only the files
    with CompileLog() as log:
        shapjax.explain_dataset(clf, "samples:mnist:6", key=KEY, store=tmp_path / "b.zarr", batch_size=3, **CFG)
    assert log.count("local") == 0, log.by_name
    assert len(_files(store)) == n
    _same_store(tmp_path / "a.zarr", tmp_path / "b.zarr")


def test_the_store_keeps_the_most_recently_used_within_its_size(store, monkeypatch):
    shapjax.explain(_linear(W), X, key=KEY, **KW)
    (first,) = _files(store)
    size = (store / first).stat().st_size
    monkeypatch.setattr(aot, "MAX_STORE_BYTES", int(1.5 * size))  # room for one executable
    shapjax.explain(_linear(W), X[:1], key=KEY, **KW)  # another batch bucket: a second executable
    assert len(_files(store)) == 1 and _files(store) != [first]


def _fresh_process(store):
    """What a new process that enables the same folder holds: the files, and the preload it starts."""
    aot.clear()
    aot.enable(store)


def test_enable_preloads_what_the_last_process_used_first(store):
    shapjax.explain(_linear(W), X, key=KEY, **KW)
    assert json.loads((store / aot.RECENT).read_text()) == _files(store)
    _fresh_process(store)
    before = aot.stats["preloaded"]
    key = jax.random.key(7)
    with CompileLog() as log:
        e = shapjax.explain(_linear(W), X, key=key, **KW)
    assert aot.stats["preloaded"] == before + 1 and log.count("_explain_impl") == 0
    np.testing.assert_array_equal(np.asarray(e.values), np.asarray(_reference(_linear(W), key=key).values))


def test_a_wrong_preload_guess_is_never_used(store):
    """The preloaded executable is the last process's; a call whose key names another file (here:
    other code of the same shapes) compiles its own, exactly as without preloading."""
    relu = jax.tree_util.Partial(lambda w, x: jax.nn.relu(x.reshape(x.shape[0], -1) @ w), W)
    shapjax.explain(_linear(W), X, key=KEY, **KW)
    _fresh_process(store)
    before = aot.stats["preloaded"]
    b = shapjax.explain(relu, X, key=KEY, **KW)
    assert aot.stats["preloaded"] == before
    np.testing.assert_array_equal(np.asarray(b.values), np.asarray(_reference(relu).values))
    assert len(_files(store)) == 2


def test_a_damaged_preload_is_compiled_again(store, caplog):
    a = shapjax.explain(_linear(W), X, key=KEY, **KW)
    (f,) = _files(store)
    (store / f).write_bytes(b"not a program")
    _fresh_process(store)
    b = shapjax.explain(_linear(W), X, key=KEY, **KW)
    np.testing.assert_array_equal(np.asarray(a.values), np.asarray(b.values))
    assert "unreadable" in caplog.text and (store / f).read_bytes() != b"not a program"


def test_compile_log_skips_shapjax_background_threads():
    import threading

    def compile_new(background):
        if background:
            aot.background_threads.add(threading.get_ident())
        try:
            jax.jit(lambda a: a * 3.0 + float(background) + 0.125)(jnp.ones(5)).block_until_ready()
        finally:
            aot.background_threads.discard(threading.get_ident())

    counts = []
    for background in (True, False):
        with CompileLog() as log:
            t = threading.Thread(target=compile_new, args=(background,))
            t.start()
            t.join()
        counts.append(log.compiles)
    assert counts[0] == 0 and counts[1] >= 1, counts
