"""Files: atomic writes (a temporary file moved into place)."""
from __future__ import annotations


def atomic_write(path, write) -> str:
    """Call ``write(binary_file)`` on a temporary file beside ``path``, then move it into place.

    An interrupted write (error, Ctrl-C) leaves no partial file under ``path``.
    Creates the folder if needed; the file gets the usual 0644 permissions.
    """
    import os
    import tempfile

    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.splitext(path)[1])
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path
