"""Tests for companion.data: ImageSet, cached datasets, splits, subsets, ImageFolder writing and loading."""

import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from companion import cache, data
from companion.cache import CacheWarning

SIZE = 32  # the smallest image size of the renderer: fast


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


def test_make_dataset_reads_the_cache_instead_of_rendering(tmp_path, monkeypatch):
    """Check that a cached dataset is read back without calling the renderer."""
    data.make_dataset(1, image_size=SIZE, cache_dir=tmp_path)

    def no_rendering(*args, **kwargs):
        raise AssertionError("rendered although the dataset was cached")

    monkeypatch.setattr(data, "render_parcels", no_rendering)
    assert len(data.make_dataset(1, image_size=SIZE, cache_dir=tmp_path)) == 6


def test_the_default_cache_folder_is_cache_dir(tmp_path, monkeypatch):
    """Check that without cache_dir the dataset goes to companion.cache.cache_dir()."""
    monkeypatch.setenv("COMPANION_CACHE_DIR", str(tmp_path / "elsewhere"))
    data.make_dataset(1, image_size=SIZE)
    assert len(list(cache.cache_dir().glob("warehouse_*.npz"))) == 1


def test_cache_key_depends_on_camera_and_version(tmp_path, monkeypatch):
    """Check that another camera, camera setting or renderer version gets its own cache file."""
    data.make_dataset(1, "existing", image_size=SIZE, cache_dir=tmp_path)
    data.make_dataset(1, "new", image_size=SIZE, cache_dir=tmp_path)
    data.make_dataset(1, data.CameraSetup(name="existing", distractors=0.5), image_size=SIZE, cache_dir=tmp_path)
    monkeypatch.setattr(data, "RENDERER_VERSION", "test-version")
    data.make_dataset(1, "existing", image_size=SIZE, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("warehouse_*.npz"))) == 4


def test_corrupt_cache_file_is_rendered_again(tmp_path):
    """Check that a truncated cache file is replaced, with a CacheWarning, instead of crashing."""
    good = data.make_dataset(1, "existing", image_size=SIZE, cache_dir=tmp_path)
    (path,) = tmp_path.glob("warehouse_*.npz")
    path.write_bytes(path.read_bytes()[:100])
    with pytest.warns(CacheWarning, match="warehouse_"):
        again = data.make_dataset(1, "existing", image_size=SIZE, cache_dir=tmp_path)
    assert torch.equal(good.images, again.images)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the file was replaced: no second warning
        assert torch.equal(data.make_dataset(1, "existing", image_size=SIZE, cache_dir=tmp_path).images, good.images)


def test_unwritable_cache_dir_says_what_to_do(tmp_path):
    """Check that a cache folder that cannot be created gives a message naming the fixes."""
    blocker = tmp_path / "a_file"
    blocker.write_text("in the way")
    with pytest.raises(OSError, match="Could not write the cache file .*COMPANION_CACHE_DIR.*cache=False"):
        data.make_dataset(1, "existing", image_size=SIZE, cache_dir=blocker / "cache")
    assert blocker.read_text() == "in the way"


@pytest.mark.parametrize("kwargs, message", [
    ({"n_per_class": 0}, r"The 'n_per_class' parameter of make_dataset must be an int in \[1, 100000\]"),
    ({"n_per_class": 2.0}, "'n_per_class' parameter of make_dataset"),
    ({"n_per_class": 1, "seed": -3}, "The 'seed' parameter of make_dataset must be an int >= 0"),
    ({"n_per_class": 1, "image_size": 8}, r"The 'image_size' parameter of make_dataset must be an int in \[32, 512\]"),
    ({"n_per_class": 1, "cache": "yes"}, "The 'cache' parameter of make_dataset must be True or False"),
    ({"n_per_class": 1, "camera": "thermal-9000"}, "The 'camera' parameter of get_camera must be one of"),
])
def test_make_dataset_validates(kwargs, message):
    """Check that bad sizes, seeds, flags and presets are refused with clear messages."""
    with pytest.raises(ValueError, match=message):
        data.make_dataset(**kwargs)


def test_make_dataset_accepts_numpy_integers():
    """Check that numpy integers work as n_per_class, image_size and seed."""
    dataset = data.make_dataset(np.int64(1), image_size=np.int64(SIZE), seed=np.int64(0), cache=False)
    assert dataset.images.shape == (6, 3, SIZE, SIZE)


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
    """Check that bad fractions, a part that would be empty and a non-ImageSet are refused."""
    with pytest.raises(ValueError, match="must be 3 positive numbers summing to 1"):
        data.stratified_split(_toy_set(), (0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="fractions that leave the 'test' part non-empty"):
        data.stratified_split(_toy_set(2), (0.7, 0.29, 0.01))
    with pytest.raises(TypeError, match="The 'dataset' parameter of stratified_split must be a "
                                        "companion.data.ImageSet"):
        data.stratified_split([1, 2, 3])


def test_sample_per_class_counts_and_limits():
    """Check that few-shot subsets have n per class and that asking for too many says the limit."""
    dataset = _toy_set(10)
    few = data.sample_per_class(dataset, 4, seed=0)
    assert few.class_counts() == {"a": 4, "b": 4, "c": 4}
    with pytest.raises(ValueError, match=r"The 'n_per_class' parameter of sample_per_class must be an int in "
                                         r"\[1, 10\]. Got 11 instead"):
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
    with pytest.raises(ValueError, match="must name at least one class"):
        data.ImageSet(images, torch.zeros(4, dtype=torch.int64), ())


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
    dataset = data.load_image_folder(tmp_path, image_size=SIZE)
    assert dataset.classes == ("cat", "dog")
    assert dataset.images.shape == (7, 3, SIZE, SIZE)
    assert dataset.class_counts() == {"cat": 3, "dog": 4}


def test_load_image_folder_bad_inputs(tmp_path):
    """Check that a missing folder, one class, an empty class and a non-image file get clear messages."""
    with pytest.raises(ValueError, match="The 'root' parameter of load_image_folder must be an existing folder"):
        data.load_image_folder(tmp_path / "missing")
    _write_folder(tmp_path, classes=("cat",))
    with pytest.raises(ValueError, match=r"must be a folder with one sub-folder per class \(at least 2\)"):
        data.load_image_folder(tmp_path)
    _write_folder(tmp_path, classes=("dog",))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="at least one image file"):
        data.load_image_folder(tmp_path)
    (tmp_path / "empty").rmdir()
    (tmp_path / "cat" / "broken.png").write_bytes(b"this is not a png")
    with pytest.raises(ValueError, match="cannot read .*broken.png"):
        data.load_image_folder(tmp_path)
    with pytest.raises(TypeError, match="The 'root' parameter of load_image_folder must be a folder path"):
        data.load_image_folder(3)


def test_resize_transform_resizes_the_shorter_side_then_crops_the_centre():
    """Check that a tensor and a PIL image of the same pixels come out the same, square and centred."""
    pixels = np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8)  # (H, W, 3)
    from_tensor = data.resize_transform(20)(torch.from_numpy(pixels).permute(2, 0, 1))
    from_pil = data.resize_transform(20, from_pil=True)(Image.fromarray(pixels))
    assert from_tensor.shape == from_pil.shape == (3, 20, 20) and from_pil.dtype == torch.uint8
    assert torch.equal(from_tensor, from_pil)
    exact = torch.from_numpy(pixels[:, 10:50]).permute(2, 0, 1)  # already square after the crop
    assert torch.equal(data.resize_transform(40)(torch.from_numpy(pixels).permute(2, 0, 1)), exact)


def test_subset_accepts_masks_and_empty_lists():
    """Check that ImageSet.subset takes a boolean mask and an empty list."""
    dataset = _toy_set(2)
    mask = dataset.labels == 1
    assert len(dataset.subset(mask)) == 2
    assert len(dataset.subset([])) == 0


# ----------------------------------------------------------------------------- image folders
@pytest.fixture(scope="module")
def photos() -> data.ImageSet:
    return data.make_dataset(2, "new", image_size=SIZE, seed=0, cache=False)  # 12 images, 6 classes


def test_write_image_folder_round_trips_through_load_image_folder(tmp_path, photos):
    """Check that written PNGs load back with the same pixels per class (ImageFolder sorts class names)."""
    root = data.write_image_folder(photos, tmp_path / "photos")
    (root / "ok" / "notes.txt").write_text("not an image: ImageFolder skips other extensions")
    loaded = data.load_image_folder(root, image_size=SIZE)
    assert loaded.classes == tuple(sorted(data.CLASSES))
    assert len(loaded) == len(photos)
    for name in data.CLASSES:
        original = photos.images[photos.labels == data.CLASSES.index(name)]
        reread = loaded.images[loaded.labels == loaded.classes.index(name)]
        assert torch.equal(original, reread)


def test_write_image_folder_bad_inputs(tmp_path, photos):
    """Check that a non-empty target, an empty class, a bad class name and a non-ImageSet are refused unwritten."""
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "file.txt").write_text("x")
    with pytest.raises(ValueError, match="The 'root' parameter of write_image_folder must be a new or empty folder"):
        data.write_image_folder(photos, tmp_path / "used")
    with pytest.raises(ValueError, match=r"at least one image per class.*The classes \['dent'\] have none"):
        data.write_image_folder(photos.subset(photos.labels != 1), tmp_path / "a")
    renamed = data.ImageSet(photos.images, photos.labels, ("ok", "../up", "c", "d", "e", "f"))
    with pytest.raises(ValueError, match="class names that can be folder names.*'../up' has a path separator"):
        data.write_image_folder(renamed, tmp_path / "b")
    with pytest.raises(TypeError, match="The 'dataset' parameter of write_image_folder must be a "
                                        "companion.data.ImageSet"):
        data.write_image_folder(photos.images, tmp_path / "c")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["used"]


def test_load_image_folder_reports_an_empty_class_and_a_broken_image(tmp_path, photos):
    """Check the ImageFolder errors a practitioner meets first: an empty class folder, a broken file."""
    root = data.write_image_folder(photos, tmp_path / "photos")
    (root / "spare").mkdir()
    with pytest.raises(ValueError, match="every class folder needs at least one image file.*spare"):
        data.load_image_folder(root, image_size=SIZE)
    (root / "spare").rmdir()
    (root / "dent" / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match="cannot read .*broken.jpg.* as an image"):
        data.load_image_folder(root, image_size=SIZE)
