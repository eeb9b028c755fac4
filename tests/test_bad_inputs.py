"""Bad inputs across the companion's public API: the ones no module's own tests cover.

tests/README.md lists every bad input the suite tries, with the function, the error and the test
that proves it; this file holds the rows that had no test elsewhere: broken image files, a dataset
cache written by another version, NaN pixels, and the promise that a failing call never leaves a
half-written file in a cache or output folder.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from companion import backbones, checkpoints, data, features, imagenet
from companion.cache import CacheWarning


def _png(size: int = 48, seed: int = 0, fmt: str = "PNG") -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, fmt)
    return buffer.getvalue()


@pytest.fixture
def folder(tmp_path):
    """An ImageFolder tree with two classes of two photos each."""
    for name in ("cat", "dog"):
        (tmp_path / name).mkdir()
        for index in range(2):
            (tmp_path / name / f"{index}.png").write_bytes(_png(seed=index))
    return tmp_path


# ----------------------------------------------------------------------------- image files
@pytest.mark.parametrize("name, content, message", [
    ("cut.png", _png()[:300], r"cannot read '.*cut.png' as an image \(image file is truncated"),
    ("cut.jpg", _png(fmt="JPEG")[:500], r"cannot read '.*cut.jpg' as an image \(Truncated File "
                                        r"Read\)"),
    ("empty.png", b"", r"cannot read '.*empty.png' as an image \(cannot identify image file"),
    ("notes.png", b"a text file named like a photo", r"cannot read '.*notes.png' as an image"),
])
def test_load_image_folder_names_a_broken_image_file(folder, name, content, message):
    """Check that a truncated, empty or fake image file is named in a ValueError."""
    (folder / "cat" / name).write_bytes(content)
    with pytest.raises(ValueError, match=message):
        data.load_image_folder(folder, image_size=32)


def test_load_image_folder_refuses_a_class_with_only_an_empty_subfolder(folder):
    """Check that a class folder with no image anywhere below it is refused, not skipped.

    Images in sub-folders of a class folder belong to that class (ImageFolder walks the tree).
    """
    (folder / "bird" / "nested").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"every class folder needs at least one image file "
                                         r"\(Found no valid file for the classes bird"):
        data.load_image_folder(folder, image_size=32)
    (folder / "bird" / "nested" / "0.png").write_bytes(_png())
    assert data.load_image_folder(folder, image_size=32).class_counts()["bird"] == 1


def test_load_image_folder_skips_files_that_are_not_images_by_name(folder):
    """Check that a README or .txt among the photos is ignored (ImageFolder's extension filter)."""
    (folder / "cat" / "README.txt").write_text("taken with a phone")
    dataset = data.load_image_folder(folder, image_size=32)
    assert dataset.class_counts() == {"cat": 2, "dog": 2}


@pytest.mark.parametrize("content, error, message", [
    (b"", ValueError, r"load_image: cannot read '.*photo.png' as an image \(cannot identify"),
    (_png()[:300], ValueError, r"load_image: cannot read '.*photo.png' as an image \(image file "
                               r"is truncated"),
    (None, FileNotFoundError, r"No such file or directory: '.*photo.png'"),
])
def test_load_image_names_a_broken_or_missing_file(tmp_path, content, error, message):
    """Check that load_image turns PIL's errors about a bad file into one that names the path."""
    path = tmp_path / "photo.png"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(error, match=message):
        imagenet.load_image(path)


def test_load_image_of_a_good_file_is_unchanged(tmp_path):
    """Check that reading a path gives the same pixels as reading the PIL image (RGBA too)."""
    pixels = np.random.default_rng(0).integers(0, 255, (30, 40, 4), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "rgba.png")
    expected = imagenet.load_image(Image.fromarray(pixels), size=16)
    assert torch.equal(imagenet.load_image(tmp_path / "rgba.png", size=16), expected)


# ----------------------------------------------------------------------------- tensors
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_preprocess_refuses_non_finite_pixels(value):
    """Check that NaN or inf pixels are refused instead of turning every feature into NaN."""
    images = torch.rand(2, 3, 8, 8)
    images[1, 0, 2, 2] = value
    with pytest.raises(ValueError, match=r"The 'images' parameter of preprocess must be finite float images in "
                                         r"\[0, 1\]. .* 1 values are NaN or infinite"):
        backbones.preprocess(images)


@pytest.mark.parametrize("labels, shown", [
    (torch.zeros(4, dtype=torch.int32), r"Got Tensor torch.int32 \(4,\)"),
    (torch.zeros(4, 1, dtype=torch.int64), r"Got Tensor torch.int64 \(4, 1\)"),
    ([0, 0, 0, 0], r"Got list  \(\)"),
])
def test_imageset_names_the_labels_it_got(labels, shown):
    """Check that labels of the wrong dtype or shape are named, with the conversion to use."""
    with pytest.raises(TypeError, match=r"ImageSet.labels must be a 1-D int64 tensor. " + shown +
                                        r"; convert with torch.as_tensor"):
        data.ImageSet(torch.zeros(4, 3, 8, 8, dtype=torch.uint8), labels, ("a",))


# ----------------------------------------------------------------------------- caches
def test_a_dataset_cache_file_of_another_version_is_rendered_again(tmp_path):
    """Check that a cache file at the right path whose stored key differs is replaced."""
    fresh = data.make_dataset(1, image_size=32, cache=False)
    data.make_dataset(1, image_size=32, cache_dir=tmp_path)
    (path,) = tmp_path.glob("warehouse_*.npz")
    with np.load(path) as stored:
        key = str(stored["key"])
    old_key = json.dumps({**json.loads(key), "renderer": "0.old"}, sort_keys=True)
    np.savez(path, images=np.zeros_like(fresh.images.numpy()), labels=fresh.labels.numpy(),
             key=np.array(old_key))  # what an older renderer would have left under this name
    with pytest.warns(CacheWarning, match="written under another key"):
        again = data.make_dataset(1, image_size=32, cache_dir=tmp_path)
    assert torch.equal(again.images, fresh.images)
    with np.load(path) as stored:
        assert str(stored["key"]) == key
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


@pytest.fixture(scope="module")
def tiny():
    """A random-init Lite0 and six 32-pixel photos."""
    model = backbones.load_backbone(pretrained=False, num_classes=6, seed=0)
    return model, data.make_dataset(1, image_size=32, cache=False)


def _leftovers(root) -> list[str]:
    """Files under ``root`` that are temporary, or .npz files that do not load."""
    found = [str(p.relative_to(root)) for p in root.rglob("*.tmp")]
    for path in root.rglob("*.npz"):
        try:
            with np.load(path, allow_pickle=False) as stored:
                [stored[name] for name in stored.files]
        except Exception:
            found.append(str(path.relative_to(root)))
    return found


def test_no_bad_input_leaves_a_half_written_file(tmp_path, monkeypatch, tiny):
    """Check that refused arguments write nothing and interrupted writes leave no partial file."""
    model, dataset = tiny
    cache = tmp_path / "cache"
    cache.mkdir()
    refused = [
        lambda: data.make_dataset(0, cache_dir=cache),
        lambda: data.make_dataset(1, "fisheye", cache_dir=cache),
        lambda: data.make_dataset(1, image_size=8, cache_dir=cache),
        lambda: features.extract_features(model, dataset, depth=9, cache_dir=cache),
        lambda: features.extract_features(model, dataset.subset([]), cache_dir=cache),
        lambda: features.extract_features_by_depth(model, dataset, [0, 12], cache_dir=cache),
        lambda: features.extract_features(model, dataset, device="tpu", cache_dir=cache),
    ]
    for call in refused:
        with pytest.raises((ValueError, TypeError)):
            call()
    assert list(cache.iterdir()) == []

    real_savez = np.savez

    def interrupted(handle, **arrays):  # half a file on disk, then Ctrl+C
        handle.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", interrupted)  # what companion.cache.write calls
    with pytest.raises(KeyboardInterrupt):
        data.make_dataset(1, image_size=32, cache_dir=cache)
    with pytest.raises(KeyboardInterrupt):
        features.extract_features(model, dataset, depth=0, device="cpu", cache_dir=cache)
    assert list(cache.iterdir()) == []
    monkeypatch.setattr(np, "savez", real_savez)
    features.clear_feature_cache()
    X = features.extract_features(model, dataset, depth=0, device="cpu", cache_dir=cache)
    assert X.shape == (6, 32) and len(list(cache.glob("*.npz"))) == 1
    assert _leftovers(tmp_path) == []


def test_refused_outputs_leave_the_output_folder_as_it_was(tmp_path, tiny):
    """Check that a refused save or image-folder export writes nothing, not even a folder."""
    model, dataset = tiny
    out = tmp_path / "out"
    out.mkdir()
    renamed = data.ImageSet(dataset.images, dataset.labels, ("ok", "../up", "c", "d", "e", "f"))
    refused = [
        lambda: data.write_image_folder(renamed, out / "photos"),  # a class name is a path
        lambda: data.write_image_folder(dataset.subset(dataset.labels != 1), out / "photos"),
        lambda: checkpoints.save_classifier(model, out / "model.pt", data.CLASSES),
        lambda: checkpoints.save_classifier(model, out / "model.safetensors", data.CLASSES[:3]),
        lambda: checkpoints.save_classifier(model, out / "model.safetensors", data.CLASSES, image_size=8),
    ]
    for call in refused:
        with pytest.raises((ValueError, TypeError)):
            call()
        assert [str(p.relative_to(out)) for p in out.rglob("*")] == []
    data.write_image_folder(dataset, out / "photos")  # the same folder still works afterwards
    assert len(data.load_image_folder(out / "photos", image_size=32)) == len(dataset)


# ----------------------------------------------------------------------------- the table
def test_the_readme_table_names_real_tests():
    """Check that tests/README.md lists >= 20 bad inputs, each proved by a test that exists."""
    import re
    from pathlib import Path

    here = Path(__file__).resolve().parent
    rows = [line for line in (here / "README.md").read_text(encoding="utf-8").splitlines()
            if re.match(r"\| \d+ \|", line)]
    assert len(rows) >= 20
    for row in rows:
        references = re.findall(r"`(test_\w+\.py)::(test_\w+)`", row)
        assert references, row
        for file, name in references:
            source = (here / file).read_text(encoding="utf-8")
            assert re.search(rf"^def {name}\(", source, re.M), f"{file}::{name} does not exist"
