import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=1")
os.environ.setdefault("MPLBACKEND", "Agg")
# The CLI switches jax's persistent compilation cache on by default; tests call cli.main in-process, and a
# cache switched on there would stay on (and write every later test's programs) for the rest of the session.
# Tests that need the cache enable it explicitly (tests/test_layout.py runs it in a subprocess).
os.environ.setdefault("SHAPJAX_NO_CACHE", "1")
