"""Tests for companion.checkpoints: one safetensors file per classifier, checked on load, used on photos."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import save_file

from companion import backbones, checkpoints, data, scratch, train

SIZE = 32  # the smallest image size of the renderer: fast forward passes


@pytest.fixture(scope="module")
def photos() -> data.ImageSet:
    return data.make_dataset(2, "new", image_size=SIZE, seed=0, cache=False)  # 12 images, 6 classes


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return backbones.load_backbone(pretrained=False, num_classes=len(data.CLASSES), seed=0).eval()


@pytest.fixture
def checkpoint(tmp_path, model) -> Path:
    return checkpoints.save_classifier(model, tmp_path / "model.safetensors", data.CLASSES, image_size=SIZE)


def _contents(path: Path) -> tuple[dict, dict]:
    with safe_open(str(path), framework="pt") as stored:
        return {name: stored.get_tensor(name) for name in stored.keys()}, stored.metadata()


# ----------------------------------------------------------------------------- save and load
def test_save_and_load_round_trip(checkpoint, model, photos):
    """Check that a reloaded model has the same weights, label map and predictions as the saved one."""
    loaded, metadata = checkpoints.load_classifier(checkpoint, device="cpu")  # the fixture's model is on the CPU
    assert metadata["classes"] == data.CLASSES
    assert (metadata["backbone"], metadata["image_size"]) == ("efficientnet_lite0", SIZE)
    assert metadata["mean"] == metadata["std"] == (0.5, 0.5, 0.5)
    assert not loaded.training
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    before = checkpoints.predict_images(model, metadata, photos)
    after = checkpoints.predict_images(loaded, metadata, photos)
    assert torch.equal(before.probabilities, after.probabilities)
    assert torch.equal(after.labels, train.predict(model, photos))  # same preprocessing as training
    assert sorted(p.name for p in checkpoint.parent.iterdir()) == ["model.safetensors"]


def test_save_is_atomic(checkpoint, model, monkeypatch):
    """Check that a save that fails half-way keeps the old file and leaves no temporary file."""
    import safetensors.torch

    old = checkpoint.read_bytes()

    def broken_save_file(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", broken_save_file)
    with pytest.raises(OSError, match="disk full"):
        checkpoints.save_classifier(model, checkpoint, data.CLASSES, image_size=SIZE)
    assert sorted(p.name for p in checkpoint.parent.iterdir()) == ["model.safetensors"]
    assert checkpoint.read_bytes() == old


def test_save_classifier_bad_inputs(tmp_path, model):
    """Check the messages for a wrong suffix, a missing folder, a wrong label map and a non-model."""
    classes = data.CLASSES
    with pytest.raises(ValueError, match="The 'path' parameter of save_classifier must be a file path ending in "
                                         ".safetensors"):
        checkpoints.save_classifier(model, tmp_path / "model.pt", classes)
    with pytest.raises(ValueError, match="must be a path in an existing folder.*Create the folder first"):
        checkpoints.save_classifier(model, tmp_path / "nowhere" / "model.safetensors", classes)
    with pytest.raises(ValueError, match=r"The 'classes' parameter of save_classifier must be one name per output of "
                                         r"the model's head \(6\), in label order"):
        checkpoints.save_classifier(model, tmp_path / "m.safetensors", classes[:3])
    with pytest.raises(ValueError, match="at least 2 distinct names"):
        checkpoints.save_classifier(model, tmp_path / "m.safetensors", ["ok"] * 6)
    with pytest.raises(TypeError, match="The 'classes' parameter of save_classifier must be a list of non-empty "
                                        "class names"):
        checkpoints.save_classifier(model, tmp_path / "m.safetensors", "ok,dent")
    with pytest.raises(TypeError, match="Pass result.model"):
        checkpoints.save_classifier(type("Result", (), {"model": model})(), tmp_path / "m.safetensors", classes)
    with pytest.raises(ValueError, match="must be a backbone that carries its BackboneSpec"):
        checkpoints.save_classifier(torch.nn.Linear(2, 6), tmp_path / "m.safetensors", classes)
    with pytest.raises(ValueError, match=r"The 'image_size' parameter of save_classifier must be an int in "
                                         r"\[32, 1024\]"):
        checkpoints.save_classifier(model, tmp_path / "m.safetensors", classes, image_size=8)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("content, message", [
    (lambda raw: raw[: len(raw) // 2], "not a readable safetensors file .*truncated or corrupted"),
    (lambda raw: b"", "not a readable safetensors file"),
    (lambda raw: b"definitely not safetensors" * 4, "not a readable safetensors file"),
])
def test_load_rejects_files_that_are_not_safetensors(checkpoint, content, message):
    """Check that a truncated, empty or foreign file gets a ValueError, not a crash in the parser."""
    checkpoint.write_bytes(content(checkpoint.read_bytes()))
    with pytest.raises(ValueError, match=message):
        checkpoints.load_classifier(checkpoint)


def test_load_rejects_a_torch_save_pickle(tmp_path, model):
    """Check that a torch.save file renamed to .safetensors is refused (and never unpickled)."""
    path = tmp_path / "pickle.safetensors"
    torch.save(model.state_dict(), path)
    with pytest.raises(ValueError, match="not a readable safetensors file .*torch.save pickle"):
        checkpoints.load_classifier(path)


def test_load_detects_corrupted_weights(checkpoint):
    """Check that changed bytes inside the tensor data (a valid header) fail the sha256 check."""
    raw = bytearray(checkpoint.read_bytes())
    raw[-100] ^= 0xFF  # a byte of the last tensor's data
    checkpoint.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="is corrupted: the sha256 of its tensors differs"):
        checkpoints.load_classifier(checkpoint)


def test_load_missing_file_and_folder(tmp_path):
    """Check the messages for a path that does not exist and for a folder."""
    with pytest.raises(ValueError, match="does not exist; expected a .safetensors file"):
        checkpoints.load_classifier(tmp_path / "missing.safetensors")
    with pytest.raises(ValueError, match="is a folder"):
        checkpoints.load_classifier(tmp_path)


def test_load_rejects_weights_without_metadata(tmp_path, model):
    """Check that bare weights (no label map) are refused, naming the missing keys."""
    path = tmp_path / "bare.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, path)
    with pytest.raises(ValueError, match="has no format, format_version, backbone, classes.*in its metadata"):
        checkpoints.load_classifier(path)


def _rewrite(path: Path, **changes) -> None:
    """Rewrite a checkpoint with some metadata values changed (the tensors and their sha256 intact)."""
    tensors, metadata = _contents(path)
    save_file(tensors, path, metadata={**metadata, **changes})


@pytest.mark.parametrize("changes, message", [
    ({"classes": json.dumps(["ok", "dent", "tear"])},
     r"label map of 3 classes .* head 'classifier.weight' has 6 rows"),
    ({"classes": "ok, dent, tear"}, "unreadable metadata .*'classes' as a JSON list"),
    ({"classes": json.dumps(["ok", "ok", "a", "b", "c", "d"])}, "wrong label map"),
    ({"format": "something-else"}, "has format 'something-else'.*expected 'tlf-companion-classifier'"),
    ({"image_size": "8"}, "expected an image_size in \\[32, 1024\\]"),
    ({"mean": "[0.5, 0.5]"}, "wrong 'mean'.*3 numbers"),
    ({"backbone": "no_such_net"}, "names the backbone 'no_such_net', which cannot be rebuilt"),
    ({"backbone": "mobilenetv3_small_050"}, "names the backbone 'mobilenetv3_small_050', which cannot be rebuilt"),
    ({"backbone": "efficientnet_b0"}, "does not match the 'efficientnet_b0' architecture: .* tensors missing"),
])
def test_load_rejects_wrong_metadata(checkpoint, changes, message):
    """Check that a label map that disagrees with the head, or unreadable metadata, is named."""
    _rewrite(checkpoint, **changes)
    with pytest.raises(ValueError, match=message):
        checkpoints.load_classifier(checkpoint)


def test_load_rejects_a_tensor_of_the_wrong_shape(checkpoint):
    """Check that a checkpoint with a tensor of another shape names the tensor and both shapes."""
    tensors, metadata = _contents(checkpoint)
    tensors["conv_stem.weight"] = torch.zeros(16, 3, 3, 3)
    save_file(tensors, checkpoint, metadata={**metadata, "sha256": checkpoints._checksum(tensors)})
    with pytest.raises(ValueError, match=r"1 tensors of the wrong shape .*conv_stem.weight: \(16, 3, 3, 3\) "
                                         r"in the file, expected \(32, 3, 3, 3\)"):
        checkpoints.load_classifier(checkpoint)


def test_load_rejects_a_bad_path_type():
    """Check that a non-path is a TypeError."""
    with pytest.raises(TypeError, match="The 'path' parameter of load_classifier must be a path to a .safetensors"):
        checkpoints.load_classifier(42)


# ----------------------------------------------------------------------------- prediction
def test_predict_images_reads_files_like_load_image_folder(tmp_path, checkpoint, photos):
    """Check that a folder, a list of files, one file and the loaded ImageSet give the same predictions."""
    model, metadata = checkpoints.load_classifier(checkpoint)
    root = data.write_image_folder(photos, tmp_path / "photos")
    from_folder = checkpoints.predict_images(model, metadata, root)
    loaded = data.load_image_folder(root, image_size=SIZE)  # the same sorted order: class, then file name
    from_set = checkpoints.predict_images(model, metadata, loaded)
    assert len(from_folder) == len(photos) and from_set.sources is None
    assert torch.equal(from_folder.probabilities, from_set.probabilities)
    files = [Path(source) for source in from_folder.sources]
    from_list = checkpoints.predict_images(model, metadata, files[:3], batch_size=2)
    assert torch.equal(from_list.labels, from_folder.labels[:3])
    one = checkpoints.predict_images(model, metadata, str(files[0]))
    assert one.names == from_folder.names[:1] and one.names[0] in data.CLASSES
    assert torch.allclose(from_folder.probabilities.sum(dim=1), torch.ones(len(photos)))


def test_predict_images_resizes_tensors_like_files(tmp_path, checkpoint):
    """Check that a larger uint8 tensor is resized and cropped as a file of that size would be."""
    model, metadata = checkpoints.load_classifier(checkpoint)
    big = data.make_dataset(1, "new", image_size=48, seed=1, cache=False)
    Image.fromarray(big.images[0].permute(1, 2, 0).numpy()).save(tmp_path / "big.png")
    from_tensor = checkpoints.predict_images(model, metadata, big.images[:1])
    from_file = checkpoints.predict_images(model, metadata, tmp_path / "big.png")
    assert torch.equal(from_tensor.probabilities, from_file.probabilities)


def test_predict_images_bad_inputs(tmp_path, checkpoint):
    """Check the messages for a missing path, a folder without images, a broken file and bad arguments."""
    model, metadata = checkpoints.load_classifier(checkpoint)
    with pytest.raises(ValueError, match="does not exist; expected an image file or a folder"):
        checkpoints.predict_images(model, metadata, tmp_path / "nothing.png")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no image files"):
        checkpoints.predict_images(model, metadata, tmp_path / "empty")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="cannot read .*broken.png.* as an image"):
        checkpoints.predict_images(model, metadata, tmp_path / "broken.png")
    with pytest.raises(ValueError, match=r"The 'images' parameter of predict_images must be uint8 tensor images of "
                                         r"shape \(N, 3, H, W\)"):
        checkpoints.predict_images(model, metadata, torch.zeros(2, 3, SIZE, SIZE))
    with pytest.raises(TypeError, match="The 'images' parameter of predict_images must be a path, a list of paths"):
        checkpoints.predict_images(model, metadata, 3.5)
    with pytest.raises(ValueError, match="The 'metadata' parameter of predict_images must be the dict returned by "
                                         "load_classifier"):
        checkpoints.predict_images(model, {"classes": data.CLASSES}, tmp_path)
    with pytest.raises(ValueError, match="the model outputs shape .* metadata names 3 classes"):
        checkpoints.predict_images(model, {**metadata, "classes": ("a", "b", "c")},
                              torch.zeros(1, 3, SIZE, SIZE, dtype=torch.uint8))
    with pytest.raises(TypeError, match="The 'model' parameter of predict_images must be a torch.nn.Module"):
        checkpoints.predict_images("model.safetensors", metadata, tmp_path)


def test_the_image_size_and_normalisation_come_from_the_spec(tmp_path):
    """Check that without image_size the spec's size is saved, and mean and std are the spec's (not an argument)."""
    b0 = backbones.load_backbone("efficientnet_b0", pretrained=False, num_classes=2, seed=0)
    path = checkpoints.save_classifier(b0, tmp_path / "b0.safetensors", ["ok", "dent"])
    _, metadata = _contents(path)
    spec = backbones.get_spec("efficientnet_b0")
    assert (metadata["backbone"], int(metadata["image_size"])) == ("efficientnet_b0", spec.image_size)
    assert tuple(json.loads(metadata["mean"])) == spec.mean and tuple(json.loads(metadata["std"])) == spec.std
    assert f"{spec.image_size}x{spec.image_size}" in metadata["preprocessing"]
    loaded, read = checkpoints.load_classifier(path, device="cpu")
    assert read["mean"] == spec.mean and backbones.spec_of(loaded) is spec
    with pytest.raises(TypeError):
        checkpoints.save_classifier(b0, tmp_path / "again.safetensors", ["ok", "dent"], backbone="efficientnet_b0")


def test_save_refuses_a_head_that_is_not_linear(tmp_path):
    """Check that a model whose spec's classifier is not a linear layer is refused before anything is written."""
    model = backbones.load_backbone(pretrained=False, num_classes=6, seed=0)
    model.classifier = torch.nn.Sequential(torch.nn.Dropout(0.1), torch.nn.Linear(1280, 6))
    with pytest.raises(ValueError, match="The 'model' parameter of save_classifier must be a backbone whose "
                                         "classifier 'classifier' is a linear layer"):
        checkpoints.save_classifier(model, tmp_path / "m.safetensors", data.CLASSES)
    assert list(tmp_path.iterdir()) == []



def test_a_scratch_cnn_round_trips_with_its_width(tmp_path):
    """Check that the course's scratch CNN is saved, rebuilt from its width and predicts exactly the same."""
    classes = [f"class{i}" for i in range(6)]
    model = scratch.make_scratch_cnn(6, width=4, seed=3).eval()
    path = checkpoints.save_classifier(model, tmp_path / "scratch.safetensors", classes)
    loaded, metadata = checkpoints.load_classifier(path)
    assert metadata["backbone"] == "scratch_cnn_w4" and metadata["classes"] == tuple(classes)
    images = data.make_dataset(1, seed=0, image_size=64, cache=False).images
    with torch.no_grad():
        assert torch.equal(model(train.to_input(model, images, "cpu")), loaded(train.to_input(loaded, images, "cpu")))
