"""Public signatures follow one convention: `key` keyword-only and required, options keyword-only."""
import importlib
import inspect
import pkgutil

import pytest

import shapjax


def _public_modules():
    """Every module of the installed package whose dotted path has no private (``_``) part."""
    names = ["shapjax"]
    for info in pkgutil.walk_packages(shapjax.__path__, "shapjax."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    return sorted(names)


MODULES = _public_modules()
# Small pure helpers whose positional arguments are all data.
DATA_ONLY = {"auto_batch_size", "check_int", "check_key", "check_budget", "output_spec"}
# grid(rows, cols) mirrors a shape; cli entry points take argv.
POSITIONAL_OK = {("grid", "cols"), ("cli_main", "argv"), ("main", "argv")}


def public_functions():
    for modname in MODULES:
        mod = importlib.import_module(modname)
        for name, obj in vars(mod).items():
            if name.startswith("_") or not inspect.isfunction(obj):
                continue
            if obj.__module__ != mod.__name__ and not obj.__module__.startswith(mod.__name__):
                continue
            yield f"{modname}.{name}", obj


FUNCS = sorted(public_functions())


@pytest.mark.parametrize("qualname,fn", FUNCS, ids=[q for q, _ in FUNCS])
def test_key_is_keyword_only_required_and_named_key(qualname, fn):
    params = list(inspect.signature(fn).parameters.values())
    names = [p.name for p in params]
    for bad in ("rng", "prng_key", "seed_key"):
        assert bad not in names, f"{qualname}: randomness must come from a parameter named `key`"
    if "key" in names:
        key = params[names.index("key")]
        assert key.kind is inspect.Parameter.KEYWORD_ONLY, f"{qualname}: `key` must be keyword-only"
        # data.load takes a key only for the synthetic source (which also accepts "planted-patch:SEED");
        # the exact/occlusion designs and the partition estimator are deterministic (key=None is allowed).
        if qualname != "shapjax.data.load":
            assert key.default is inspect.Parameter.empty, f"{qualname}: `key` must not be optional"


@pytest.mark.parametrize("qualname,fn", FUNCS, ids=[q for q, _ in FUNCS])
def test_options_are_keyword_only(qualname, fn):
    if fn.__name__ in DATA_ONLY:
        return
    for i, p in enumerate(inspect.signature(fn).parameters.values()):
        if i == 0 or (fn.__name__, p.name) in POSITIONAL_OK:
            continue  # a constructor's one primary setting, e.g. blur(sigma), may be positional
        if p.default is not inspect.Parameter.empty and p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD:
            pytest.fail(f"{qualname}: option `{p.name}` has a default but is not keyword-only")


def test_there_are_many_public_functions():
    assert len(FUNCS) > 60
