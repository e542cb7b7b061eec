"""JAX's persistent compilation cache, switched on for shapjax: a second process starts warm.

The command line turns it on by default; the library leaves it to the user
(:func:`shapjax.enable_compilation_cache`). Where the programs go: the ``path`` argument, else
``$SHAPJAX_CACHE_DIR``, else ``$XDG_CACHE_HOME/shapjax/jax`` (``~/.cache/shapjax/jax``).
``SHAPJAX_NO_CACHE=1`` (or ``shapjax --no-cache ...``) turns it off.

Beside JAX's cache, ``<folder>/programs`` keeps shapjax's own executables under a key computed
without tracing (:mod:`shapjax._util.aot`): a fresh process's first explanation neither traces nor
lowers its program.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

_LOG = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    if os.environ.get("SHAPJAX_CACHE_DIR"):
        return Path(os.environ["SHAPJAX_CACHE_DIR"]).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "shapjax" / "jax"


def cache_disabled() -> bool:
    return os.environ.get("SHAPJAX_NO_CACHE", "").strip().lower() not in ("", "0", "false", "no")


def enable_compilation_cache(path: str | os.PathLike | None = None, *, min_compile_seconds: float = 0.0) -> Path | None:
    """Turn on JAX's persistent compilation cache in ``path`` (see the module doc); returns the folder,
    or None when ``SHAPJAX_NO_CACHE`` is set. Programs that took at least ``min_compile_seconds`` to
    compile are kept (0: every program, which is what makes a one-off explanation fast the second time).

    Call it before the first explanation of the process. It sets JAX's global configuration
    (``jax_compilation_cache_dir``), so it affects every JAX program of the process, not only shapjax's.
    """
    if cache_disabled():
        return None
    import jax

    folder = Path(path).expanduser() if path is not None else default_cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # an unwritable cache must not stop the job
        _LOG.warning("compilation cache disabled: cannot create %s (%s)", folder, e)
        return None
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_compile_seconds))
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    from shapjax._util import aot

    aot.enable(folder / "programs")  # executables found again without tracing (shapjax._util.aot)
    return folder
