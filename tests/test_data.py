"""Tests for companion.data: ImageSet, cached datasets, splits, subsets, ImageFolder loading."""

import numpy as np
import pytest
import torch
from PIL import Image

from companion import data


def test_make_dataset_balanced_and_cached(tmp_path):
    """Check that make_dataset is class-balanced, cached to one file, and identical when reloaded."""
    first = data.make_dataset(3, "existing", image_size=48, seed=2, cache_dir=tmp_path)
    assert first.class_counts() == {name: 3 for name in data.CLASSES}
    files = list(tmp_path.glob("warehouse_*.npz"))
    assert len(files) == 1 and not list(tmp_path.glob("*.tmp"))
    again = data.make_dataset(3, "existing", image_size=48, seed=2, cache_dir=tmp_path)
    assert torch.equal(first.images, again.images) and torch.equal(first.labels, again.labels)
    fresh = data.make_dataset(3, "existing", image_size=48, seed=2, cache=False)
    assert torch.equal(first.images, fresh.images)


def test_cache_key_depends_on_camera_and_version(tmp_path, monkeypatch):
    """Check that another camera or a new renderer version gets its own cache file."""
    data.make_dataset(1, "existing", image_size=32, cache_dir=tmp_path)
    data.make_dataset(1, "new", image_size=32, cache_dir=tmp_path)
    monkeypatch.setattr(data, "RENDERER_VERSION", "test-version")
    data.make_dataset(1, "existing", image_size=32, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("warehouse_*.npz"))) == 3


def test_corrupt_cache_file_is_rendered_again(tmp_path):
    """Check that a truncated cache file is replaced instead of crashing."""
    good = data.make_dataset(1, "existing", image_size=32, cache_dir=tmp_path)
    (path,) = tmp_path.glob("warehouse_*.npz")
    path.write_bytes(b"not a zip file")
    again = data.make_dataset(1, "existing", image_size=32, cache_dir=tmp_path)
    assert torch.equal(good.images, again.images)


def test_unwritable_cache_dir_says_what_to_do(tmp_path):
    """Check that a cache folder that cannot be created gives a message naming the fixes."""
    blocker = tmp_path / "a_file"
    blocker.write_text("in the way")
    with pytest.raises(OSError, match="cache=False"):
        data.make_dataset(1, "existing", image_size=32, cache_dir=blocker / "cache")
    assert blocker.read_text() == "in the way"


def test_make_dataset_validates():
    """Check that bad sizes, seeds and presets are refused with clear messages."""
    with pytest.raises(ValueError, match="'n_per_class' parameter of make_dataset"):
        data.make_dataset(0)
    with pytest.raises(ValueError, match="'seed' parameter of make_dataset"):
        data.make_dataset(1, seed=-3)
    with pytest.raises(ValueError, match="Unknown camera preset"):
        data.make_dataset(1, "thermal-9000", cache=False)


def _toy_set(per_class=10, classes=("a", "b", "c")):
    labels = torch.arange(per_class * len(classes)) % len(classes)
    images = torch.randint(0, 256, (len(labels), 3, 8, 8), dtype=torch.uint8)
    return data.ImageSet(images, labels, classes)


def test_stratified_split_keeps_proportions_and_is_disjoint():
    """Check that the split keeps every class in every part, covers all images once, and is seeded."""
    dataset = _toy_set(10)
    parts = data.stratified_split(dataset, (0.6, 0.2, 0.2), seed=1)
    assert [len(parts[k]) for k in ("train", "val", "test")] == [18, 6, 6]
    assert parts["val"].class_counts() == {"a": 2, "b": 2, "c": 2}
    rows = torch.cat([parts[k].images.flatten(1) for k in parts])
    assert len(torch.unique(rows, dim=0)) == len(dataset)
    again = data.stratified_split(dataset, (0.6, 0.2, 0.2), seed=1)
    assert torch.equal(again["test"].images, parts["test"].images)


def test_stratified_split_validates():
    """Check that bad fractions are refused."""
    with pytest.raises(ValueError, match="positive numbers summing to 1"):
        data.stratified_split(_toy_set(), (0.5, 0.5, 0.5))
    with pytest.raises(TypeError, match="expects an ImageSet"):
        data.stratified_split([1, 2, 3])


def test_sample_per_class_counts_and_limits():
    """Check that few-shot subsets have n per class and that asking for too many says the limit."""
    dataset = _toy_set(10)
    few = data.sample_per_class(dataset, 4, seed=0)
    assert few.class_counts() == {"a": 4, "b": 4, "c": 4}
    with pytest.raises(ValueError, match=r"must be an int in \[1, 10\], the size of the smallest class"):
        data.sample_per_class(dataset, 11)


def test_sample_per_class_indices_match_sample_per_class():
    """Check that the indices select exactly the subset sample_per_class returns, and validate alike."""
    dataset = _toy_set(10)
    for seed in (0, 3):
        index = data.sample_per_class_indices(dataset, 4, seed=seed)
        expected = data.sample_per_class(dataset, 4, seed=seed)
        assert np.all(np.diff(index) > 0)
        assert torch.equal(dataset.subset(index).labels, expected.labels)
        assert torch.equal(dataset.subset(index).images, expected.images)
    with pytest.raises(ValueError, match=r"must be an int in \[1, 10\]"):
        data.sample_per_class_indices(dataset, 11)


def test_imageset_validates():
    """Check that ImageSet refuses wrong dtypes, channel counts, lengths and labels."""
    images = torch.zeros(4, 3, 8, 8, dtype=torch.uint8)
    with pytest.raises(TypeError, match="uint8 tensor of shape"):
        data.ImageSet(images.float(), torch.zeros(4, dtype=torch.int64), ("a",))
    with pytest.raises(ValueError, match="3 \\(RGB\\) channels"):
        data.ImageSet(torch.zeros(4, 1, 8, 8, dtype=torch.uint8), torch.zeros(4, dtype=torch.int64), ("a",))
    with pytest.raises(ValueError, match="4 images but 3 labels"):
        data.ImageSet(images, torch.zeros(3, dtype=torch.int64), ("a",))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 1\]"):
        data.ImageSet(images, torch.tensor([0, 1, 2, 0]), ("a", "b"))


def _write_folder(root, classes=("cat", "dog"), per_class=3, size=(40, 30)):
    rng = np.random.default_rng(0)
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")


def test_load_image_folder_reads_classes_and_resizes(tmp_path):
    """Check that an ImageFolder tree becomes an ImageSet with square RGB images and folder classes."""
    _write_folder(tmp_path)
    Image.fromarray(np.zeros((20, 20), dtype=np.uint8)).save(tmp_path / "dog" / "grey.png")
    dataset = data.load_image_folder(tmp_path, image_size=32)
    assert dataset.classes == ("cat", "dog")
    assert dataset.images.shape == (7, 3, 32, 32)
    assert dataset.class_counts() == {"cat": 3, "dog": 4}


def test_load_image_folder_bad_inputs(tmp_path):
    """Check that a missing folder, an empty class and a non-image file get clear messages."""
    with pytest.raises(ValueError, match="is not a folder"):
        data.load_image_folder(tmp_path / "missing")
    _write_folder(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="at least one image file"):
        data.load_image_folder(tmp_path)
    (tmp_path / "empty").rmdir()
    (tmp_path / "cat" / "broken.png").write_bytes(b"this is not a png")
    with pytest.raises(ValueError, match="cannot read .*broken.png"):
        data.load_image_folder(tmp_path)


def test_default_cache_dir_follows_environment(monkeypatch, tmp_path):
    """Check that COMPANION_CACHE_DIR moves the dataset cache."""
    monkeypatch.setenv("COMPANION_CACHE_DIR", str(tmp_path / "elsewhere"))
    assert data.default_cache_dir() == tmp_path / "elsewhere"
    monkeypatch.delenv("COMPANION_CACHE_DIR")
    assert data.default_cache_dir().name == "tlf-companion"


def test_atomic_save_leaves_nothing_behind_on_failure(tmp_path, monkeypatch):
    """Check that a write that fails half-way removes its temporary file and keeps the old file."""
    target = tmp_path / "arrays.npz"
    data.atomic_save_npz(target, x=np.arange(3))

    def broken_savez(handle, **arrays):
        handle.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(data.np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        data.atomic_save_npz(target, x=np.arange(5))
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["arrays.npz"]
    with np.load(target) as stored:
        assert stored["x"].tolist() == [0, 1, 2]


def test_subset_accepts_masks_and_empty_lists():
    """Check that ImageSet.subset takes a boolean mask and an empty list."""
    dataset = _toy_set(2)
    mask = dataset.labels == 1
    assert len(dataset.subset(mask)) == 2
    assert len(dataset.subset([])) == 0
