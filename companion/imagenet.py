"""The backbone's own task: ImageNet class names, loading a photo, top-k predictions.

Scope: the sanity check that a loaded backbone really carries ImageNet weights (chapter 1 shows
that it calls a cat a cat and an espresso an espresso), with the preprocessing the model was
pretrained with.

Usage::

    >>> from companion import imagenet
    >>> imagenet.class_names()[285]
    'Egyptian cat'

Taught in ``notebooks/01_meet_the_data_and_backbone.ipynb``.
"""

from __future__ import annotations

import functools
import os

import numpy as np
import torch
from torch import nn

from companion import backbones
from companion.validation import check_float, check_instance, check_int, invalid

__all__ = ["class_names", "load_image", "predict"]


@functools.lru_cache(maxsize=1)
def _class_names() -> tuple[str, ...]:
    from timm.data import ImageNetInfo
    info = ImageNetInfo()
    return tuple(info.index_to_description(index) for index in range(info.num_classes()))


def class_names() -> list[str]:
    """The 1000 ImageNet class names in index order (offline, from timm)."""
    return list(_class_names())


def load_image(image, size: int = 224, crop_pct: float = 0.875) -> torch.Tensor:
    """Load a photo (path, PIL image or H x W [x C] uint8 array) as a (3, size, size) uint8 tensor.

    Resizes the short side to ``size / crop_pct`` (bicubic) and centre-crops ``size``, as timm
    evaluates ImageNet models. Grayscale becomes RGB, alpha is dropped.

    >>> import skimage.data
    >>> tuple(load_image(skimage.data.chelsea()).shape)
    (3, 224, 224)
    """
    from PIL import Image
    from torchvision.transforms import v2

    func = "load_image"
    size = check_int(size, "size", func, low=1)
    crop_pct = check_float(crop_pct, "crop_pct", func, low=0.0, high=1.0, low_open=True)
    if isinstance(image, (str, os.PathLike)):
        try:
            with Image.open(image) as opened:
                image = opened.convert("RGB")  # reads every pixel now: a truncated file fails here
        except FileNotFoundError:
            raise
        except OSError as error:  # PIL.UnidentifiedImageError, "image file is truncated", ...
            raise ValueError(f"{func}: cannot read {str(image)!r} as an image ({error}).") from error
    elif isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim not in (2, 3):
            raise invalid(image, "image", func, "a uint8 array of shape (H, W) or (H, W, C)")
        image = Image.fromarray(image)
    else:
        check_instance(image, "image", func, Image.Image, "a path, PIL image or numpy array")
    transform = v2.Compose([
        v2.PILToTensor(),
        v2.Resize(int(round(size / crop_pct)), interpolation=v2.InterpolationMode.BICUBIC, antialias=True),
        v2.CenterCrop(size),
    ])
    return transform(image.convert("RGB"))  # (3, size, size) uint8


def predict(model: nn.Module, images_uint8: torch.Tensor, top_k: int = 5) -> list[list[tuple[str, float]]]:
    """The ``top_k`` (ImageNet class name, probability) pairs of each image.

    The images are normalised with the model's own spec; the model runs in eval mode under
    ``torch.inference_mode()`` on its device, and its training mode is restored afterwards.

    >>> import skimage.data
    >>> model = backbones.load_backbone(pretrained=True)
    >>> predict(model, load_image(skimage.data.coffee()).unsqueeze(0), top_k=1)[0][0][0]
    'espresso'
    """
    top_k = check_int(top_k, "top_k", "predict", low=1, high=1000)
    if getattr(model, "num_classes", 1000) != 1000:
        raise invalid(model, "model", "predict", "a model with the 1000-class ImageNet head",
                      f"It has {model.num_classes} classes; load it with num_classes=1000.")
    device = next(model.parameters()).device
    x = backbones.preprocess(images_uint8, model).to(device)  # (N, 3, H, W)
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        probabilities = model(x).softmax(dim=1).cpu()  # (N, 1000)
    model.train(was_training)
    values, indices = probabilities.topk(top_k, dim=1)  # (N, top_k)
    names = _class_names()
    return [[(names[index], float(value)) for value, index in zip(row_values.tolist(), row_indices.tolist())]
            for row_values, row_indices in zip(values, indices)]
