"""The house: packages that follow the data flow, layered imports, no cycles, small modules, one installed name."""
from __future__ import annotations

import ast
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "shapjax"

#: package -> the shapjax packages it may import (docs/architecture.md draws the same map)
BASE = {"shapjax._util", "shapjax.kernels"}
ALLOWED = {
    "shapjax.kernels": set(),
    "shapjax._util": set(),
    "shapjax.engine": BASE,
    "shapjax.image": BASE | {"shapjax.engine"},
    "shapjax.baselines": BASE | {"shapjax.engine", "shapjax.image"},
    "shapjax.plot": BASE | {"shapjax.image"},
    "shapjax.evaluation": BASE | {"shapjax.engine", "shapjax.image", "shapjax.baselines", "shapjax.plot"},
    "shapjax.models": BASE,
    "shapjax.data": BASE,
}
#: wave-2 rooms may build on every layer below the command line
ROOMS = {"shapjax.pipeline", "shapjax.amortized", "shapjax.counterfactual", "shapjax.explorer"}
TOP = {"shapjax", "shapjax._compat", "shapjax.__main__"}  # the facade, the deprecation aliases, python -m shapjax


def _files():
    yield from ((p, "shapjax." + ".".join(p.relative_to(PKG).with_suffix("").parts)) for p in PKG.rglob("*.py"))
    yield from ((p, "shapjax.kernels." + p.stem) for p in (ROOT / "kernels").glob("*.py"))


def _module(path: Path, dotted: str) -> str:
    return dotted[: -len(".__init__")] if dotted.endswith(".__init__") else dotted


def _package(mod: str) -> str:
    parts = mod.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else mod


def _imports(path: Path, mod: str):
    pkg_of_file = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg_of_file.split(".")
                base = base[: len(base) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            yield name
            for a in node.names:  # from shapjax import models -> shapjax.models
                yield f"{name}.{a.name}"


def _graph():
    edges = {}
    for path, dotted in _files():
        mod = _module(path, dotted)
        edges[mod] = {i for i in _imports(path, mod) if i.startswith("shapjax.") or i == "shapjax"}
    return edges


def test_packages_import_only_the_layers_below_them():
    bad = []
    for mod, targets in _graph().items():
        src = _package(mod)
        if mod in TOP or src == "shapjax.cli":
            continue
        for t in targets:
            dst = _package(t)
            if dst in (src, "shapjax") and t != "shapjax":
                continue
            if t == "shapjax":
                bad.append(f"{mod} imports the top-level facade shapjax")
                continue
            if src in ROOMS:
                ok = dst != "shapjax.cli"
            else:
                ok = dst in ALLOWED.get(src, set())
            if not ok:
                bad.append(f"{mod} -> {t}")
    assert not bad, "layering violations:\n" + "\n".join(sorted(bad))


def test_no_import_cycles_between_packages():
    pk = {}
    for mod, targets in _graph().items():
        if mod in TOP:
            continue
        for t in targets:
            a, b = _package(mod), _package(t)
            if a != b and b != "shapjax":
                pk.setdefault(a, set()).add(b)
    seen, stack = set(), []

    def visit(n):
        if n in stack:
            raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(n):] + [n]))
        if n in seen:
            return
        stack.append(n)
        for m in pk.get(n, ()):
            visit(m)
        stack.pop()
        seen.add(n)

    for n in list(pk):
        visit(n)


def test_no_module_over_600_lines():
    long = [f"{p.relative_to(ROOT)}: {n}" for p, _ in _files() if (n := len(p.read_text().splitlines())) > 600]
    assert not long, long


def test_every_package_folder_is_listed_in_pyproject():
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(cfg["packages"])
    found = {"shapjax." + ".".join(p.parent.relative_to(PKG).parts) if p.parent != PKG else "shapjax"
             for p in PKG.rglob("__init__.py")}
    found.add("shapjax.kernels")
    assert found == listed, f"missing: {sorted(found - listed)}, stale: {sorted(listed - found)}"
    assert cfg["package-dir"] == {"shapjax.kernels": "kernels"}


def test_architecture_doc_names_every_package():
    doc = (ROOT / "docs" / "architecture.md").read_text()
    for pkg in ALLOWED:
        assert f"`{pkg}`" in doc or f"`{pkg.split('.', 1)[1]}/`" in doc, pkg


def test_installed_package_owns_only_its_own_name(tmp_path):
    """From another folder: shapjax and shapjax.kernels import; a top-level `kernels` does not exist."""
    code = ("import importlib.util, shapjax, shapjax.kernels\n"
            "assert importlib.util.find_spec('kernels') is None, 'a top-level kernels package is installed'\n"
            "print(shapjax.kernels.constrained_wls.__module__)")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "shapjax.kernels.wls"


def test_old_module_paths_forward_with_a_deprecation_warning():
    import importlib

    from shapjax import _compat

    for old, new in _compat.MOVED.items():
        with pytest.warns(DeprecationWarning, match=new.replace(".", r"\.")):
            sys.modules.pop(old, None)
            mod = importlib.import_module(old)
        target = importlib.import_module(new)
        name = next(n for n in target.__all__ if not n.startswith("_")) if hasattr(target, "__all__") else None
        if name:
            assert getattr(mod, name) is getattr(target, name)


def test_estimators_say_what_they_estimate():
    from shapjax import ESTIMATORS
    from shapjax.engine.estimators import TARGETS

    assert {e.estimates for e in ESTIMATORS.values()} <= set(TARGETS)
    assert ESTIMATORS["partition"].estimates == "owen" and not ESTIMATORS["partition"].shapley
    assert ESTIMATORS["lime"].estimates == "lime-surrogate" and ESTIMATORS["occlusion"].estimates == "leave-one-out"
    assert all(ESTIMATORS[m].shapley for m in ("exact", "kernel", "leverage", "permutation"))


def test_persistent_compilation_cache_makes_a_second_process_warm(tmp_path):
    """The cache folder fills on the first run and is reused by the second (a fresh process)."""
    code = ("import jax, jax.numpy as jnp, shapjax\n"
            f"print(shapjax.enable_compilation_cache({str(tmp_path)!r}))\n"
            "r = shapjax.shapley(lambda z: jnp.tanh(z.astype(jnp.float32) @ jnp.arange(6.0)), 6, "
            "key=jax.random.key(0), n_evals=40)\n"
            "print(float(r.values.sum()))\n")
    env = {k: v for k, v in os.environ.items() if k != "SHAPJAX_NO_CACHE"}
    first = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert first.returncode == 0, first.stderr
    entries = set(os.listdir(tmp_path))
    assert entries, "no compiled program was written to the cache"
    second = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert second.returncode == 0 and second.stdout == first.stdout
    assert set(os.listdir(tmp_path)) == entries, "the second process compiled programs the first one had cached"
    off = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**env, "SHAPJAX_NO_CACHE": "1"})
    assert off.stdout.splitlines()[0] == "None"
