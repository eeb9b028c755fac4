"""Tests for companion.cache: the one reader and writer of every cached file."""

import warnings
import zipfile

import numpy as np
import pytest

from companion import cache
from companion.cache import CacheWarning

KEY = "key-1"


def stored(path, key=KEY, **arrays):
    """Write ``arrays`` (default: x and y) at ``path`` with ``cache.write``; return them."""
    arrays = arrays or {"x": np.arange(6, dtype=np.float32).reshape(2, 3), "y": np.array([1, 2], np.int64)}
    cache.write(path, key, **arrays)
    return arrays


def read_quietly(path, key=KEY, names=("x", "y")):
    """``cache.read`` that must not warn."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return cache.read(path, key, list(names))


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    """Check that COMPANION_CACHE_DIR moves the cache, and the default is ~/.cache/tlf-companion."""
    monkeypatch.setenv("COMPANION_CACHE_DIR", str(tmp_path / "elsewhere"))
    assert cache.cache_dir() == tmp_path / "elsewhere"
    monkeypatch.delenv("COMPANION_CACHE_DIR")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache.cache_dir() == tmp_path / ".cache" / "tlf-companion"


def test_round_trip_returns_the_arrays_written(tmp_path):
    """Check that write then read gives the same arrays, dtypes and shapes, and only the names asked for."""
    path = tmp_path / "sub" / "folder" / "a.npz"  # folders are created
    arrays = stored(path)
    back = read_quietly(path)
    assert set(back) == {"x", "y"}
    for name, array in arrays.items():
        assert back[name].dtype == array.dtype and np.array_equal(back[name], array)
    assert set(read_quietly(path, names=["y"])) == {"y"}


def test_a_missing_file_is_a_silent_miss(tmp_path):
    """Check that a file that does not exist is a miss without any warning."""
    assert read_quietly(tmp_path / "nothing.npz") is None
    assert not list(tmp_path.iterdir())


def _truncated(path):
    path.write_bytes(path.read_bytes()[:40])


def _garbage(path):
    path.write_bytes(b"this is not a zip file at all")


def _another_key(path):
    stored(path, key="another key")


def _missing_array(path):
    stored(path, x=np.zeros(3))


def _a_folder(path):
    path.unlink()
    (path / "inside").mkdir(parents=True)
    (path / "inside" / "file.txt").write_text("left by some other tool")


def _no_key(path):
    np.savez(path, x=np.zeros(3), y=np.zeros(2))


def _pickled_object(path):
    np.savez(path, key=np.array(KEY), x=np.array([{"a": 1}], dtype=object), y=np.zeros(2))


DAMAGE = {"truncated": _truncated, "garbage": _garbage, "another key": _another_key,
          "missing an array": _missing_array, "a folder": _a_folder, "no key": _no_key,
          "an object array": _pickled_object}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_an_unusable_file_is_a_miss_with_one_warning_then_replaced(tmp_path, damage):
    """Check that every unusable file is a miss with exactly one CacheWarning naming it, and write replaces it."""
    path = tmp_path / "a.npz"
    stored(path)
    DAMAGE[damage](path)
    with pytest.warns(CacheWarning) as record:
        assert cache.read(path, KEY, ["x", "y"]) is None
    assert len(record) == 1 and str(path) in str(record[0].message)
    assert "recomputing" in str(record[0].message)
    arrays = stored(path)
    back = read_quietly(path)
    assert all(np.array_equal(back[name], arrays[name]) for name in arrays)
    assert [p.name for p in tmp_path.iterdir()] == ["a.npz"]


def test_the_warning_points_at_the_caller(tmp_path):
    """Check that the CacheWarning is attributed to the code that called read, not to the cache module."""
    path = tmp_path / "a.npz"
    _garbage(path)
    with pytest.warns(CacheWarning) as record:
        cache.read(path, KEY, ["x"])
    assert record[0].filename == __file__


def test_write_is_atomic_and_keeps_the_old_file_on_failure(tmp_path, monkeypatch):
    """Check that a write interrupted half-way leaves no .tmp file and the previous file intact."""
    path = tmp_path / "a.npz"
    arrays = stored(path)

    def interrupted(file, **_):
        file.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt

    monkeypatch.setattr(cache.np, "savez", interrupted)
    with pytest.raises(KeyboardInterrupt):
        cache.write(path, KEY, x=np.ones(3))
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["a.npz"]
    assert np.array_equal(read_quietly(path)["x"], arrays["x"])
    assert zipfile.is_zipfile(path)


def test_write_leaves_no_temporary_file(tmp_path):
    """Check that a successful write leaves exactly the target file (no .tmp)."""
    for _ in range(2):
        stored(tmp_path / "a.npz")
    assert [p.name for p in tmp_path.iterdir()] == ["a.npz"]


def test_an_unwritable_folder_raises_an_oserror_naming_the_ways_out(tmp_path):
    """Check that a folder that cannot be created raises an OSError naming the file, the variable and cache=False."""
    blocker = tmp_path / "a_file"
    blocker.write_text("in the way")
    with pytest.raises(OSError, match=r"Could not write the cache file .*a_file.*COMPANION_CACHE_DIR.*cache=False"):
        cache.write(blocker / "sub" / "a.npz", KEY, x=np.zeros(1))
    assert blocker.read_text() == "in the way"
