"""scipy's OpenBLAS (the LAPACK of XLA:CPU's custom calls) is capped at one thread once a regression
program has run, and numpy's own BLAS is left alone (shapjax._util.cpu_threads). Each case runs in a
fresh process: the cap is process-wide and set once."""
import json
import os
import subprocess
import sys

import pytest

_SCRIPT = r"""
import json, os
import jax, jax.numpy as jnp, numpy as np
import shapjax
from shapjax import maskers

def blas_threads():
    import scipy, threadpoolctl
    from pathlib import Path
    here = Path(scipy.__file__).resolve().parent
    roots = (str(here), str(here.parent / "scipy.libs"))
    out = {"scipy": [], "other": []}
    for i in threadpoolctl.threadpool_info():
        if i["user_api"] == "blas":
            out["scipy" if str(Path(i["filepath"]).resolve()).startswith(roots) else "other"].append(i["num_threads"])
    return out

model = lambda x: jnp.stack([x.mean((1, 2, 3)), (x ** 2).mean((1, 2, 3))], axis=1)
x = jax.random.uniform(jax.random.key(0), (1, 8, 8, 1))
kw = dict(segments=shapjax.segment.grid(2, 2), masker=maskers.constant(0.0), method="kernel", n_evals=12, outputs=[0])
np.asarray(shapjax.explain(model, x, key=jax.random.key(1), **kw).values)  # compiles: JAX loads scipy's LAPACK
before = blas_threads()
v = np.asarray(shapjax.explain(model, x, key=jax.random.key(1), **kw).values)  # the cap is set before this one
print("RESULT " + json.dumps({"before": before, "after": blas_threads(), "values": v.tolist()}))
"""


def _run(value):
    env = {k: v for k, v in os.environ.items() if k not in ("SHAPJAX_LAPACK_THREADS", "OPENBLAS_NUM_THREADS")}
    if value is not None:
        env["SHAPJAX_LAPACK_THREADS"] = value
    p = subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(p.stdout.split("RESULT ", 1)[1]), p.stderr


@pytest.fixture(scope="module")
def default_run():
    pytest.importorskip("threadpoolctl")
    return _run(None)


def test_scipys_openblas_runs_one_thread_after_a_regression_program(default_run):
    res, _ = default_run
    if not res["before"]["scipy"]:
        pytest.skip("scipy uses no BLAS that threadpoolctl can see here")
    assert res["after"]["scipy"] == [1] * len(res["after"]["scipy"]), res
    if res["before"]["other"]:  # numpy's own OpenBLAS is not scipy's: left as it was
        assert res["after"]["other"] == res["before"]["other"], res


def test_keep_leaves_openblas_alone_and_the_values_do_not_change(default_run):
    if (os.cpu_count() or 1) < 2:
        pytest.skip("one core: OpenBLAS starts with one thread anyway")
    res, _ = default_run
    kept, _ = _run("keep")
    if not kept["before"]["scipy"]:
        pytest.skip("scipy uses no BLAS that threadpoolctl can see here")
    assert kept["after"]["scipy"] == kept["before"]["scipy"] and max(kept["after"]["scipy"]) >= 2, kept
    assert kept["values"] == res["values"]  # a 4-player Cholesky: same bits with any thread count


def test_a_bad_setting_warns_and_caps_at_one():
    pytest.importorskip("threadpoolctl")
    res, err = _run("lots")
    if not res["before"]["scipy"]:
        pytest.skip("scipy uses no BLAS that threadpoolctl can see here")
    assert "SHAPJAX_LAPACK_THREADS='lots'" in err
    assert res["after"]["scipy"] == [1] * len(res["after"]["scipy"])
