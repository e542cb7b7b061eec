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


def _map_count() -> int:
    try:
        with open("/proc/self/maps") as f:
            return sum(1 for _ in f)
    except OSError:  # not Linux
        return 0


def pytest_runtest_teardown(item, nextitem):
    """Free jax's compiled programs at the end of every test module.

    Each XLA:CPU executable holds about three memory mappings of JIT code, and jax keeps every program it
    compiled for the life of the process. The suite compiles ~20,000 programs: in one process that passes
    Linux's default ``vm.max_map_count`` (65,530) at about 95 % of the run, the next mmap fails and XLA:CPU dies
    with SIGSEGV (CI exit 139, three times; the first two were blamed on the to-tolerance tests, which only
    happened to run there). Clearing jax's caches between modules keeps the process at a few thousand
    mappings; tests within a module still share their programs."""
    if nextitem is None or nextitem.module is not item.module or _map_count() > 30_000:
        import gc

        from shapjax._util import aot

        jax.clear_caches()
        aot.clear()  # shapjax's own executables (shapjax._util.aot), when a test switched them on
        gc.collect()
