"""Tests for companion.imagenet: ImageNet class names, loading photos, and the backbone's own predictions."""

import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image

from companion import backbones, imagenet

CAT_CLASSES = {"tabby, tabby cat", "tiger cat", "Egyptian cat", "Persian cat", "Siamese cat, Siamese"}
COFFEE_CLASSES = {"espresso", "cup", "coffee mug"}


@pytest.fixture(scope="module")
def photos():
    return torch.stack([imagenet.load_image(skimage.data.chelsea()),
                        imagenet.load_image(skimage.data.coffee())])  # (2, 3, 224, 224)


def test_pretrained_recognises_cat_and_espresso(photos):
    """Check that the loaded weights are ImageNet-trained: chelsea is a cat, coffee an espresso."""
    model = backbones.load_backbone("efficientnet_lite0", pretrained=True)
    cat, coffee = imagenet.predict(model, photos, top_k=5)
    assert len(cat) == len(coffee) == 5
    assert cat[0][0] in CAT_CLASSES
    assert coffee[0][0] == "espresso" and coffee[0][1] > 0.5
    assert {"Egyptian cat", "tiger cat"} <= {label for label, _ in cat}
    assert all(first[1] >= second[1] for first, second in zip(cat, cat[1:]))


def test_random_init_does_not_recognise_photos(photos):
    """Check that the random-init control predicts neither a cat nor an espresso."""
    model = backbones.load_backbone("efficientnet_lite0", pretrained=False, seed=0)
    cat, coffee = imagenet.predict(model, photos, top_k=1)
    assert cat[0][0] not in CAT_CLASSES
    assert coffee[0][0] not in COFFEE_CLASSES


def test_predict_normalises_with_the_model_spec_and_restores_its_mode(photos, monkeypatch):
    """Check that predict preprocesses with the model's own spec and gives a training model back training."""
    model = backbones.load_backbone("efficientnet_lite0", pretrained=False, seed=0).train()
    seen = []
    real = backbones.preprocess
    monkeypatch.setattr(backbones, "preprocess", lambda images, spec: seen.append(spec) or real(images, spec))
    imagenet.predict(model, photos[:1], top_k=2)
    assert seen == [model] and model.training


def test_predict_rejects_a_replaced_head_and_a_bad_top_k(photos):
    """Check that predict needs the 1000-class head and a top_k in [1, 1000]."""
    six = backbones.load_backbone(pretrained=False, num_classes=6, seed=0)
    with pytest.raises(ValueError, match="The 'model' parameter of predict must be a model with the 1000-class "
                                         "ImageNet head.*It has 6 classes"):
        imagenet.predict(six, photos)
    model = backbones.load_backbone(pretrained=False, seed=0)
    with pytest.raises(ValueError, match=r"The 'top_k' parameter of predict must be an int in \[1, 1000\]"):
        imagenet.predict(model, photos, top_k=0)


def test_load_image_resizes_and_converts():
    """Check that load_image gives (3, size, size) uint8 from color, grayscale, PIL and RGBA input."""
    assert imagenet.load_image(skimage.data.chelsea(), size=64).shape == (3, 64, 64)
    gray = imagenet.load_image(skimage.data.camera(), size=32)
    assert gray.dtype == torch.uint8 and gray.shape == (3, 32, 32)
    assert torch.equal(gray[0], gray[2])
    pil = imagenet.load_image(Image.fromarray(skimage.data.chelsea()), size=64)
    assert torch.equal(pil, imagenet.load_image(skimage.data.chelsea(), size=64))
    rgba = np.random.default_rng(0).integers(0, 255, (30, 40, 4), dtype=np.uint8)
    assert imagenet.load_image(rgba, size=16).shape == (3, 16, 16)


@pytest.mark.parametrize("image, kwargs, error, match", [
    (3, {}, TypeError, "The 'image' parameter of load_image must be a path, PIL image or numpy array. Got 3"),
    (np.zeros((4, 4), dtype=np.float64), {}, ValueError, r"must be a uint8 array of shape \(H, W\) or \(H, W, C\)"),
    (np.zeros((1, 4, 4, 3), dtype=np.uint8), {}, ValueError, "must be a uint8 array"),
    (np.zeros((4, 4), dtype=np.uint8), {"size": 0}, ValueError,
     "The 'size' parameter of load_image must be an int >= 1"),
    (np.zeros((4, 4), dtype=np.uint8), {"crop_pct": 1.5}, ValueError,
     r"The 'crop_pct' parameter of load_image must be a float in \(0.0, 1.0\]"),
])
def test_load_image_rejects_bad_arguments(image, kwargs, error, match):
    """Check that load_image names the bad argument and what is allowed."""
    with pytest.raises(error, match=match):
        imagenet.load_image(image, **kwargs)


def test_class_names_offline():
    """Check that the 1000 ImageNet names come from timm, in index order, as a fresh list."""
    names = imagenet.class_names()
    assert len(names) == 1000 and names[285] == "Egyptian cat" and names[967] == "espresso"
    names[0] = "changed"
    assert imagenet.class_names()[0] != "changed"
