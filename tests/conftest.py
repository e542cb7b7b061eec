import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=1")
os.environ.setdefault("MPLBACKEND", "Agg")
# The CLI switches jax's persistent compilation cache on by default; tests call cli.main in-process, and a
# cache switched on there would stay on (and write every later test's programs) for the rest of the session.
# Tests that need the cache enable it explicitly (tests/test_layout.py runs it in a subprocess).
os.environ.setdefault("SHAPJAX_NO_CACHE", "1")

import jax  # noqa: E402

# ... and no JAX persistent cache in this process at all, whoever sets a cache folder later: JAX decides once per
# process, at the first compilation, whether the cache is used.
jax.config.update("jax_enable_compilation_cache", False)


def pytest_collection_modifyitems(session, config, items):
    """Run the to-tolerance tests first, in a fresh process state: twice in CI, after ~1,300 other tests in the
    same process, XLA:CPU crashed (SIGSEGV) compiling or caching one of their while-loop programs; alone, and
    early, they pass. Order only; nothing is skipped."""
    items.sort(key=lambda item: 0 if item.nodeid.startswith("tests/test_tolerance.py") else 1)
