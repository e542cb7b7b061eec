"""Files: atomic writes (a temporary file moved into place) and the JSON metadata beside checkpoints."""
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


def checkpoint_paths(path) -> tuple:
    """``(PATH.msgpack, PATH.json)`` of a checkpoint named by its ``.msgpack`` file, its ``.json`` file or its stem."""
    from pathlib import Path

    p = Path(path)
    if p.suffix == ".json":
        p = p.with_suffix(".msgpack")
    elif p.suffix != ".msgpack":
        p = p.with_name(p.name + ".msgpack")
    return p, p.with_suffix(".json")


def read_metadata(meta_path, *, what: str, kind: str, check) -> dict:
    """The JSON object in ``meta_path`` (the ``.json`` file beside a ``.msgpack`` checkpoint), passed through
    ``check(meta, str(meta_path))``.

    ``what`` names the metadata in the messages (``"checkpoint"`` -> "checkpoint metadata PATH ..."), ``kind``
    the file pair ("a checkpoint is a .msgpack file with a .json file beside it"). A missing file is a
    ``FileNotFoundError``, a file that is not JSON a ``ValueError``; ``check`` raises for the rest.
    """
    import json
    from pathlib import Path

    meta_path = Path(meta_path)
    if not meta_path.is_file():
        raise FileNotFoundError(f"{what} metadata {meta_path} not found ({kind} is a .msgpack file with a .json "
                                "file beside it)")
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{what} metadata {meta_path} is not valid JSON: {e}") from None
    check(meta, str(meta_path))
    return meta
