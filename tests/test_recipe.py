"""Tests for companion.recipe: image folders, the decision guide, safetensors checkpoints, prediction."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import save_file

from companion import backbones, data, recipe, train

SIZE = 32  # the smallest image size of the renderer: fast forward passes


@pytest.fixture(scope="module")
def photos() -> data.ImageSet:
    return data.make_dataset(2, "new", image_size=SIZE, seed=0, cache=False)  # 12 images, 6 classes


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return backbones.load_backbone(pretrained=False, num_classes=len(data.CLASSES), seed=0).eval()


@pytest.fixture
def checkpoint(tmp_path, model) -> Path:
    return recipe.save_classifier(model, tmp_path / "model.safetensors", data.CLASSES, image_size=SIZE)


def _contents(path: Path) -> tuple[dict, dict]:
    with safe_open(str(path), framework="pt") as stored:
        return {name: stored.get_tensor(name) for name in stored.keys()}, stored.metadata()


# ----------------------------------------------------------------------------- image folders
def test_write_image_folder_round_trips_through_load_image_folder(tmp_path, photos):
    """Check that written PNGs load back with the same pixels per class (ImageFolder sorts class names)."""
    root = recipe.write_image_folder(photos, tmp_path / "photos")
    (root / "ok" / "notes.txt").write_text("not an image: ImageFolder skips other extensions")
    loaded = data.load_image_folder(root, image_size=SIZE)
    assert loaded.classes == tuple(sorted(data.CLASSES))
    assert len(loaded) == len(photos)
    for name in data.CLASSES:
        original = photos.images[photos.labels == data.CLASSES.index(name)]
        reread = loaded.images[loaded.labels == loaded.classes.index(name)]
        assert torch.equal(original, reread)


def test_write_image_folder_bad_inputs(tmp_path, photos):
    """Check that a non-empty target, an empty class, a bad class name and a non-ImageSet are refused."""
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "file.txt").write_text("x")
    with pytest.raises(ValueError, match="already exists and is not an empty folder"):
        recipe.write_image_folder(photos, tmp_path / "used")
    with pytest.raises(ValueError, match=r"the classes \['dent'\] have no images"):
        recipe.write_image_folder(photos.subset(photos.labels != 1), tmp_path / "a")
    renamed = data.ImageSet(photos.images, photos.labels, ("ok", "../up", "c", "d", "e", "f"))
    with pytest.raises(ValueError, match="cannot be a folder name"):
        recipe.write_image_folder(renamed, tmp_path / "b")
    with pytest.raises(TypeError, match="must be a companion.data.ImageSet"):
        recipe.write_image_folder(photos.images, tmp_path / "c")


def test_load_image_folder_reports_an_empty_class_and_a_broken_image(tmp_path, photos):
    """Check the ImageFolder errors a practitioner meets first: an empty class folder, a broken file."""
    root = recipe.write_image_folder(photos, tmp_path / "photos")
    (root / "spare").mkdir()
    with pytest.raises(ValueError, match="every class folder needs at least one image file.*spare"):
        data.load_image_folder(root, image_size=SIZE)
    (root / "spare").rmdir()
    (root / "dent" / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match="cannot read .*broken.jpg.* as an image"):
        data.load_image_folder(root, image_size=SIZE)


# ----------------------------------------------------------------------------- decision guide
@pytest.mark.parametrize("labels, accuracy, best_depth, strategy, top_k, rule", [
    (5, 0.9, None, "linear_probe", None, "1:"),
    (recipe.FEW_LABELS, 0.9, None, "linear_probe", None, "1:"),         # "few" includes the threshold
    (200, 0.9, None, "lp_ft", None, "2:"),
    (recipe.MANY_LABELS, 0.3, None, "full_finetune", None, "2:"),       # "many" includes the threshold
    (30, 0.9, 4, "partial_finetune", 2, "3:"),                          # similar: top 2 whatever the depth
    (30, 0.5, 7, "partial_finetune", 2, "4:"),
    (30, 0.5, 5, "partial_finetune", 4, "4:"),                          # from the best depth up
    (5, 0.3, None, "partial_finetune", 2, "4:"),                        # few labels but a different domain
])
def test_recommend_strategy_follows_the_decision_guide(labels, accuracy, best_depth, strategy, top_k, rule):
    """Check each rule of the decision guide, including the thresholds themselves."""
    advice = recipe.recommend_strategy(labels, accuracy, 6, best_depth=best_depth)
    assert (advice.strategy, advice.top_k_stages) == (strategy, top_k)
    assert advice.rule.startswith(rule)
    assert advice.run_options == ({} if top_k is None else {"top_k_stages": top_k})
    assert advice.strategy in str(advice)


def test_recommend_strategy_lift_and_warning():
    """Check that lift is the share of the way from chance to perfect, and near-chance features warn."""
    advice = recipe.recommend_strategy(24, 0.5, 6)
    assert advice.lift == pytest.approx((0.5 - 1 / 6) / (5 / 6))
    assert recipe.recommend_strategy(24, 0.75, 2).lift == pytest.approx(0.5)
    assert recipe.recommend_strategy(24, 0.75, 2).strategy == "partial_finetune"  # lift 0.5 counts as similar
    assert recipe.recommend_strategy(24, 0.75, 2).rule.startswith("3:")
    assert not any("warning" in reason for reason in advice.reasons)
    assert any("warning" in reason for reason in recipe.recommend_strategy(24, 0.2, 6).reasons)


@pytest.mark.parametrize("arguments, error, message", [
    ((24, 55.0, 6), ValueError, "must be a float in \\[0, 1\\].*fraction"),
    ((24, -0.1, 6), ValueError, "'probe_accuracy' parameter .* must be a float in \\[0, 1\\]"),
    ((24, "0.5", 6), TypeError, "'probe_accuracy'.*Got str"),
    ((0, 0.5, 6), ValueError, "'labels_per_class' parameter .* must be an int >= 1"),
    ((24.0, 0.5, 6), TypeError, "'labels_per_class'.*Got float"),
    ((24, 0.5, 1), ValueError, "'num_classes' parameter .* must be an int >= 2"),
])
def test_recommend_strategy_bad_inputs(arguments, error, message):
    """Check that percentages, negative counts and a single class are refused with the allowed range."""
    with pytest.raises(error, match=message):
        recipe.recommend_strategy(*arguments)


def test_recommend_strategy_bad_depth():
    """Check that a best depth outside the backbone's 9 depths is refused."""
    with pytest.raises(ValueError, match=r"'best_depth' parameter .* must be an int in \[0, 8\]. Got 9"):
        recipe.recommend_strategy(24, 0.5, 6, best_depth=9)


# ----------------------------------------------------------------------------- save and load
def test_save_and_load_round_trip(checkpoint, model, photos):
    """Check that a reloaded model has the same weights, label map and predictions as the saved one."""
    loaded, metadata = recipe.load_classifier(checkpoint, device="cpu")  # the fixture's model is on the CPU
    assert metadata["classes"] == data.CLASSES
    assert (metadata["backbone"], metadata["image_size"]) == ("efficientnet_lite0", SIZE)
    assert metadata["mean"] == metadata["std"] == (0.5, 0.5, 0.5)
    assert not loaded.training
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    before = recipe.predict_images(model, metadata, photos)
    after = recipe.predict_images(loaded, metadata, photos)
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
        recipe.save_classifier(model, checkpoint, data.CLASSES, image_size=SIZE)
    assert sorted(p.name for p in checkpoint.parent.iterdir()) == ["model.safetensors"]
    assert checkpoint.read_bytes() == old


def test_save_classifier_bad_inputs(tmp_path, model):
    """Check the messages for a wrong suffix, a missing folder, a wrong label map and a non-model."""
    classes = data.CLASSES
    with pytest.raises(ValueError, match="must end in .safetensors"):
        recipe.save_classifier(model, tmp_path / "model.pt", classes)
    with pytest.raises(ValueError, match="does not exist; create it first"):
        recipe.save_classifier(model, tmp_path / "nowhere" / "model.safetensors", classes)
    with pytest.raises(ValueError, match="head outputs 6 classes but 'classes' names 3"):
        recipe.save_classifier(model, tmp_path / "m.safetensors", classes[:3])
    with pytest.raises(ValueError, match="at least 2 distinct names"):
        recipe.save_classifier(model, tmp_path / "m.safetensors", ["ok"] * 6)
    with pytest.raises(TypeError, match="'classes' parameter"):
        recipe.save_classifier(model, tmp_path / "m.safetensors", "ok,dent")
    with pytest.raises(TypeError, match="Pass result.model"):
        recipe.save_classifier(type("Result", (), {"model": model})(), tmp_path / "m.safetensors", classes)
    with pytest.raises(TypeError, match="needs a timm backbone with a linear classifier"):
        recipe.save_classifier(train.make_scratch_cnn(6, width=4), tmp_path / "m.safetensors", classes)
    with pytest.raises(ValueError, match="'image_size' parameter .* in \\[32, 1024\\]"):
        recipe.save_classifier(model, tmp_path / "m.safetensors", classes, image_size=8)
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
        recipe.load_classifier(checkpoint)


def test_load_rejects_a_torch_save_pickle(tmp_path, model):
    """Check that a torch.save file renamed to .safetensors is refused (and never unpickled)."""
    path = tmp_path / "pickle.safetensors"
    torch.save(model.state_dict(), path)
    with pytest.raises(ValueError, match="not a readable safetensors file .*torch.save pickle"):
        recipe.load_classifier(path)


def test_load_detects_corrupted_weights(checkpoint):
    """Check that changed bytes inside the tensor data (a valid header) fail the sha256 check."""
    raw = bytearray(checkpoint.read_bytes())
    raw[-100] ^= 0xFF  # a byte of the last tensor's data
    checkpoint.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="is corrupted: the sha256 of its tensors differs"):
        recipe.load_classifier(checkpoint)


def test_load_missing_file_and_folder(tmp_path):
    """Check the messages for a path that does not exist and for a folder."""
    with pytest.raises(ValueError, match="does not exist; expected a .safetensors file"):
        recipe.load_classifier(tmp_path / "missing.safetensors")
    with pytest.raises(ValueError, match="is a folder"):
        recipe.load_classifier(tmp_path)


def test_load_rejects_weights_without_metadata(tmp_path, model):
    """Check that bare weights (no label map) are refused, naming the missing keys."""
    path = tmp_path / "bare.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, path)
    with pytest.raises(ValueError, match="has no format, format_version, backbone, classes.*in its metadata"):
        recipe.load_classifier(path)


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
    ({"backbone": "mobilenetv3_small_050"}, "does not match the 'mobilenetv3_small_050' architecture"),
])
def test_load_rejects_wrong_metadata(checkpoint, changes, message):
    """Check that a label map that disagrees with the head, or unreadable metadata, is named."""
    _rewrite(checkpoint, **changes)
    with pytest.raises(ValueError, match=message):
        recipe.load_classifier(checkpoint)


def test_load_rejects_a_tensor_of_the_wrong_shape(checkpoint):
    """Check that a checkpoint with a tensor of another shape names the tensor and both shapes."""
    tensors, metadata = _contents(checkpoint)
    tensors["conv_stem.weight"] = torch.zeros(16, 3, 3, 3)
    save_file(tensors, checkpoint, metadata={**metadata, "sha256": recipe._checksum(tensors)})
    with pytest.raises(ValueError, match=r"1 tensors of the wrong shape .*conv_stem.weight: \(16, 3, 3, 3\) "
                                         r"in the file, expected \(32, 3, 3, 3\)"):
        recipe.load_classifier(checkpoint)


def test_load_rejects_a_bad_path_type():
    """Check that a non-path is a TypeError."""
    with pytest.raises(TypeError, match="'path' parameter of load_classifier"):
        recipe.load_classifier(42)


# ----------------------------------------------------------------------------- prediction
def test_predict_images_reads_files_like_load_image_folder(tmp_path, checkpoint, photos):
    """Check that a folder, a list of files, one file and the loaded ImageSet give the same predictions."""
    model, metadata = recipe.load_classifier(checkpoint)
    root = recipe.write_image_folder(photos, tmp_path / "photos")
    from_folder = recipe.predict_images(model, metadata, root)
    loaded = data.load_image_folder(root, image_size=SIZE)  # the same sorted order: class, then file name
    from_set = recipe.predict_images(model, metadata, loaded)
    assert len(from_folder) == len(photos) and from_set.sources is None
    assert torch.equal(from_folder.probabilities, from_set.probabilities)
    files = [Path(source) for source in from_folder.sources]
    from_list = recipe.predict_images(model, metadata, files[:3], batch_size=2)
    assert torch.equal(from_list.labels, from_folder.labels[:3])
    one = recipe.predict_images(model, metadata, str(files[0]))
    assert one.names == from_folder.names[:1] and one.names[0] in data.CLASSES
    assert torch.allclose(from_folder.probabilities.sum(dim=1), torch.ones(len(photos)))


def test_predict_images_resizes_tensors_like_files(tmp_path, checkpoint):
    """Check that a larger uint8 tensor is resized and cropped as a file of that size would be."""
    model, metadata = recipe.load_classifier(checkpoint)
    big = data.make_dataset(1, "new", image_size=48, seed=1, cache=False)
    Image.fromarray(big.images[0].permute(1, 2, 0).numpy()).save(tmp_path / "big.png")
    from_tensor = recipe.predict_images(model, metadata, big.images[:1])
    from_file = recipe.predict_images(model, metadata, tmp_path / "big.png")
    assert torch.equal(from_tensor.probabilities, from_file.probabilities)


def test_predict_images_bad_inputs(tmp_path, checkpoint):
    """Check the messages for a missing path, a folder without images, a broken file and bad arguments."""
    model, metadata = recipe.load_classifier(checkpoint)
    with pytest.raises(ValueError, match="does not exist; expected an image file or a folder"):
        recipe.predict_images(model, metadata, tmp_path / "nothing.png")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no image files"):
        recipe.predict_images(model, metadata, tmp_path / "empty")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="cannot read .*broken.png.* as an image"):
        recipe.predict_images(model, metadata, tmp_path / "broken.png")
    with pytest.raises(ValueError, match=r"must be uint8 of shape \(N, 3, H, W\)"):
        recipe.predict_images(model, metadata, torch.zeros(2, 3, SIZE, SIZE))
    with pytest.raises(TypeError, match="'images' parameter .* a path, a list of paths"):
        recipe.predict_images(model, metadata, 3.5)
    with pytest.raises(ValueError, match="must be the dict returned by load_classifier"):
        recipe.predict_images(model, {"classes": data.CLASSES}, tmp_path)
    with pytest.raises(ValueError, match="the model outputs shape .* metadata names 3 classes"):
        recipe.predict_images(model, {**metadata, "classes": ("a", "b", "c")},
                              torch.zeros(1, 3, SIZE, SIZE, dtype=torch.uint8))
    with pytest.raises(TypeError, match="'model' parameter of predict_images"):
        recipe.predict_images("model.safetensors", metadata, tmp_path)
