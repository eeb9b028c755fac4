"""The on-disk cache: one reader and one writer for every cached file of the companion.

Scope: rendered datasets (`companion.data`), extracted features (`companion.features`) and the
base networks of the layer-transfer lab (`companion.layer_transfer`) are ``.npz`` files under
`cache_dir`, each holding its arrays and the ``key`` that produced them. `read` returns the
arrays, or None on a miss. A file that cannot be used for any reason (truncated by a full disk,
garbage, written under another key, missing an array, a folder where the file should be)
counts as a miss too, with one `CacheWarning` that names the file; the caller recomputes and
`write` replaces it. `write` goes through a temporary file in the same folder and an atomic
``os.replace``, so an interrupted run never leaves a half-written file behind.

Usage::

    >>> import numpy as np, tempfile
    >>> from pathlib import Path
    >>> from companion import cache
    >>> path = Path(tempfile.mkdtemp()) / "example.npz"
    >>> cache.read(path, "key-1", ["x"]) is None  # nothing there yet: a miss
    True
    >>> cache.write(path, "key-1", x=np.arange(3))
    >>> cache.read(path, "key-1", ["x"])["x"]
    array([0, 1, 2])
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["CacheWarning", "cache_dir", "read", "write"]


class CacheWarning(UserWarning):
    """A cached file could not be used and will be recomputed."""


def cache_dir() -> Path:
    """The cache folder: ``$COMPANION_CACHE_DIR``, else ``~/.cache/tlf-companion``.

    >>> cache_dir().name in ("tlf-companion", Path(os.environ.get("COMPANION_CACHE_DIR", "x")).name)
    True
    """
    return Path(os.environ.get("COMPANION_CACHE_DIR", Path.home() / ".cache" / "tlf-companion"))


def _unusable(path: Path, reason: str) -> None:
    warnings.warn(f"companion cache: {path} is unusable ({reason}); recomputing it and replacing the file",
                  CacheWarning, stacklevel=3)


def read(path: str | os.PathLike, key: str, names: Sequence[str]) -> dict[str, np.ndarray] | None:
    """The arrays ``names`` stored at ``path`` under ``key``, or None on a miss.

    A missing file is a silent miss; any other reason not to use the file is a miss with a
    `CacheWarning` naming it. Arrays are read without pickle.
    """
    path = Path(path)
    if not path.exists():
        return None
    if not path.is_file():
        _unusable(path, "a folder or other non-file where the cache file should be")
        return None
    try:
        # Open the file here, not in np.load: np.load leaks its handle when the zip is unreadable
        # (a ResourceWarning, and on Windows `write` could then not replace the file).
        with open(path, "rb") as handle, np.load(handle, allow_pickle=False) as stored:
            stored_key = str(stored["key"]) if "key" in stored.files else None
            if stored_key != key:
                _unusable(path, "written under another key")
                return None
            missing = [name for name in names if name not in stored.files]
            if missing:
                _unusable(path, f"no array {missing[0]!r}")
                return None
            return {name: stored[name] for name in names}
    except Exception as error:  # truncated zip, garbage bytes, a bad header, an unreadable array
        _unusable(path, f"{type(error).__name__}: {error}")
        return None


def write(path: str | os.PathLike, key: str, **arrays: np.ndarray) -> None:
    """Store ``arrays`` and ``key`` at ``path`` atomically (temporary file, then ``os.replace``).

    Whatever occupied ``path`` before (an older file, a folder left by some other tool) is
    replaced. An ``OSError`` (a read-only or full disk) is raised with the folder and the ways
    out: another ``COMPANION_CACHE_DIR``, or ``cache=False``.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as file:
                np.savez(file, key=np.array(key), **arrays)
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    except OSError as error:
        raise OSError(f"Could not write the cache file {path} ({error}). Set COMPANION_CACHE_DIR to a writable "
                      "folder with free space, or pass cache=False.") from error
