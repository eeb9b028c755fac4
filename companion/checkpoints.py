"""Checkpoints: a trained classifier as one safetensors file, reloaded and used on new photos.

Scope: `save_classifier` writes the weights, the label map and the preprocessing (backbone
name, image size, mean and std, all read from the model's `companion.backbones.BackboneSpec`)
into ONE ``.safetensors`` file, atomically (temporary file in the same folder, then
``os.replace``); `load_classifier` checks every part before loading and says what is wrong;
`predict_images` classifies image files, a folder, an `ImageSet` or a uint8 tensor, resized with
`companion.data.resize_transform`, the same path `companion.data.load_image_folder` uses.

Usage::

    >>> import tempfile
    >>> from pathlib import Path
    >>> from companion import backbones, checkpoints
    >>> model = backbones.load_backbone(pretrained=False, num_classes=2, seed=0)
    >>> path = checkpoints.save_classifier(model, Path(tempfile.mkdtemp()) / "m.safetensors", ["ok", "dent"])
    >>> loaded, metadata = checkpoints.load_classifier(path, device="cpu")
    >>> metadata["classes"], metadata["image_size"]
    (('ok', 'dent'), 64)

Taught in ``notebooks/08_practical_recipe.ipynb``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Real
from pathlib import Path

import torch
from torch import nn

from companion import backbones, data, repro
from companion.data import ImageSet
from companion.validation import check, check_instance, check_int, invalid

__all__ = ["FORMAT", "FORMAT_VERSION", "Predictions", "save_classifier", "load_classifier", "predict_images"]

FORMAT = "tlf-companion-classifier"
FORMAT_VERSION = "1"
_REQUIRED_METADATA = ("format", "format_version", "backbone", "classes", "image_size", "mean", "std", "sha256")
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def _checksum(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 of every tensor's name, dtype, shape and bytes, in name order (safetensors has none)."""
    hasher = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        hasher.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        if tensor.numel():
            hasher.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return hasher.hexdigest()


_SCRATCH = re.compile(r"scratch_cnn_w(\d+)")  # the spec name of scratch.make_scratch_cnn(width=...)

def _head_name(model: nn.Module) -> str:
    """The state-dict prefix of the model's classifier, from its spec (``"classifier"`` for EfficientNets)."""
    spec = backbones.spec_of(model)
    head = model.get_submodule(spec.classifier) if hasattr(model, "get_submodule") else None
    check(isinstance(head, nn.Linear), model, "model", "save_classifier",
          f"a backbone whose classifier {spec.classifier!r} is a linear layer")
    return spec.classifier


def save_classifier(model: nn.Module, path: str | os.PathLike, classes: Sequence[str], *,
                    image_size: int | None = None) -> Path:
    """Save a trained classifier as ONE ``.safetensors`` file: weights, label map, preprocessing.

    The metadata holds the backbone's registry name (to rebuild the architecture), ``classes``
    in label order, the image size (default: the spec's) and the normalisation ``mean`` and
    ``std``, so `load_classifier` and `predict_images` need nothing else. The file is written to
    a temporary file and renamed over ``path``: a crash half-way leaves any older file intact.
    """
    func = "save_classifier"
    from safetensors.torch import save_file

    check_instance(model, "model", func, nn.Module, "a torch.nn.Module",
                   hint="Pass result.model for a StrategyResult." if hasattr(model, "model") else "")
    spec = backbones.spec_of(model)
    check(spec.timm_name is not None or _SCRATCH.fullmatch(spec.name) is not None, model, "model", func,
          "a registered timm backbone (backbones.load_backbone) or a scratch.make_scratch_cnn network")
    check_instance(path, "path", func, (str, os.PathLike), "a file path ending in .safetensors")
    path = Path(path)
    check(path.suffix == ".safetensors", str(path), "path", func, "a file path ending in .safetensors")
    check(path.parent.is_dir(), str(path), "path", func, "a path in an existing folder", "Create the folder first.")
    check(not isinstance(classes, str) and isinstance(classes, Sequence) and all(
        isinstance(name, str) and name for name in classes), classes, "classes", func,
        "a list of non-empty class names in label order")
    check(len(set(classes)) == len(classes) >= 2, classes, "classes", func, "at least 2 distinct names")
    image_size = spec.image_size if image_size is None else check_int(image_size, "image_size", func, low=32,
                                                                        high=1024)
    head = _head_name(model)
    num_outputs = model.get_submodule(head).out_features
    check(num_outputs == len(classes), classes, "classes", func,
          f"one name per output of the model's head ({num_outputs}), in label order")
    mean, std, backbone = spec.mean, spec.std, spec.name
    metadata = {"format": FORMAT, "format_version": FORMAT_VERSION, "backbone": backbone,
                "classes": json.dumps(list(classes)), "image_size": str(image_size),
                "mean": json.dumps(list(mean)), "std": json.dumps(list(std)), "head": head,
                "preprocessing": f"RGB, resize the shorter side to {image_size} (antialiased), centre-crop "
                                 f"{image_size}x{image_size}, divide by 255, subtract mean, divide by std"}
    tensors = {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()}
    metadata["sha256"] = _checksum(tensors)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(handle)
    try:
        save_file(tensors, temporary, metadata=metadata)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def _read_metadata(raw: dict | None, path: Path) -> dict:
    """Check the checkpoint's metadata; return it parsed (classes as a tuple, numbers as numbers)."""
    where = f"load_classifier: {str(path)!r}"
    missing = [key for key in _REQUIRED_METADATA if key not in (raw or {})]
    if missing:
        raise ValueError(f"{where} has no {', '.join(missing)} in its metadata; expected the keys "
                         f"{list(_REQUIRED_METADATA)} that checkpoints.save_classifier writes. The weights alone do "
                         "not say which class is which: re-save the model with save_classifier.")
    if raw["format"] != FORMAT or raw["format_version"] != FORMAT_VERSION:
        raise ValueError(f"{where} has format {raw['format']!r} version {raw['format_version']!r}; expected "
                         f"{FORMAT!r} version {FORMAT_VERSION!r}.")
    try:
        classes = json.loads(raw["classes"])
        image_size, mean, std = int(raw["image_size"]), json.loads(raw["mean"]), json.loads(raw["std"])
    except ValueError as error:
        raise ValueError(f"{where} has unreadable metadata ({error}); expected 'classes' as a JSON list of "
                         "names, 'image_size' as an integer, 'mean' and 'std' as JSON lists of 3 numbers.") from None
    if not isinstance(classes, list) or len(classes) < 2 or len(set(map(str, classes))) != len(classes) \
            or not all(isinstance(name, str) and name for name in classes):
        raise ValueError(f"{where} has a wrong label map {raw['classes']!r}; expected a JSON list of at least 2 "
                         "distinct class names in label order.")
    for name, values in (("mean", mean), ("std", std)):
        if not isinstance(values, list) or len(values) != 3 or not all(isinstance(v, Real) for v in values):
            raise ValueError(f"{where} has a wrong '{name}' {raw[name]!r}; expected a JSON list of 3 numbers.")
    if not 32 <= image_size <= 1024 or not all(value > 0 for value in std):
        raise ValueError(f"{where} has image_size {image_size} and std {std}; expected an image_size in "
                         "[32, 1024] and a positive std.")
    return {"backbone": raw["backbone"], "classes": tuple(classes), "image_size": image_size,
            "mean": tuple(float(v) for v in mean), "std": tuple(float(v) for v in std),
            "head": raw.get("head", "classifier"), "format_version": raw["format_version"],
            "preprocessing": raw.get("preprocessing", "")}


def load_classifier(path: str | os.PathLike, *, device: torch.device | str | None = None
                    ) -> tuple[nn.Module, dict]:
    """Load a classifier saved by `save_classifier`; return ``(model in eval mode, metadata)``.

    ``metadata`` holds ``backbone``, ``classes`` (label order), ``image_size``, ``mean``,
    ``std``. The architecture is rebuilt from the backbone name (no network, random weights)
    and every tensor is checked before any is loaded. A missing file, a file that is not
    safetensors (truncated, corrupted, a ``torch.save`` pickle), missing metadata, a label map
    that disagrees with the head, or a tensor of the wrong shape each raise a ``ValueError``
    that says what is wrong and what was expected.

    """
    func = "load_classifier"
    from safetensors import safe_open

    check_instance(path, "path", func, (str, os.PathLike), "a path to a .safetensors file")
    path = Path(path)
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise ValueError(f"{func}: {str(path)!r} {what}; expected a .safetensors file written by "
                         "checkpoints.save_classifier.")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as checkpoint:
            raw_metadata = checkpoint.metadata()
            tensors = {name: checkpoint.get_tensor(name) for name in checkpoint.keys()}
    except Exception as error:  # SafetensorError, OSError, ...: the bytes are not a safetensors file
        raise ValueError(f"{func}: {str(path)!r} is not a readable safetensors file ({error}). It may be "
                         "truncated or corrupted, or another format such as a torch.save pickle; save the "
                         "model again with checkpoints.save_classifier.") from None
    metadata = _read_metadata(raw_metadata, path)
    if _checksum(tensors) != raw_metadata["sha256"]:
        raise ValueError(f"{func}: {str(path)!r} is corrupted: the sha256 of its tensors differs from the one "
                         "recorded when it was saved, so some weights changed on disk. Use an intact copy or "
                         "save the model again.")
    classes, head = metadata["classes"], metadata["head"]
    weight = tensors.get(f"{head}.weight")
    if weight is not None and weight.ndim == 2 and weight.shape[0] != len(classes):
        raise ValueError(f"{func}: {str(path)!r} has a label map of {len(classes)} classes {list(classes)} but "
                         f"its head '{head}.weight' has {weight.shape[0]} rows, one per class; expected them "
                         "to agree. The metadata belongs to another model: re-save with save_classifier.")
    try:
        scratch_width = _SCRATCH.fullmatch(metadata["backbone"])
        if scratch_width is not None:  # the course's scratch CNN: rebuilt from its width
            from companion import scratch
            model = scratch.make_scratch_cnn(len(classes), width=int(scratch_width.group(1)), seed=0)
        else:
            model = backbones.load_backbone(metadata["backbone"], pretrained=False, num_classes=len(classes),
                                            seed=0)
    except (ValueError, TypeError) as error:
        raise ValueError(f"{func}: {str(path)!r} names the backbone {metadata['backbone']!r}, which cannot be "
                         f"rebuilt ({error}).") from None
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise ValueError(f"{func}: {str(path)!r} does not match the {metadata['backbone']!r} architecture: "
                         f"{len(missing)} tensors missing (e.g. {missing[:3]}), {len(unexpected)} unexpected "
                         f"(e.g. {unexpected[:3]}). Expected the {len(expected)} tensors of its state_dict.")
    wrong = [(name, tuple(tensors[name].shape), tuple(tensor.shape)) for name, tensor in expected.items()
             if tensors[name].shape != tensor.shape]
    if wrong:
        shown = "; ".join(f"{name}: {got} in the file, expected {want}" for name, got, want in wrong[:3])
        raise ValueError(f"{func}: {str(path)!r} has {len(wrong)} tensors of the wrong shape for "
                         f"{metadata['backbone']!r} with {len(classes)} classes ({shown}).")
    model.load_state_dict(tensors)
    model.to(repro.get_device(device))
    model.eval()
    return model, metadata


# ----------------------------------------------------------------------------- prediction
@dataclass
class Predictions:
    """Predicted ``labels`` (N,) int64, ``probabilities`` (N, K) float32, and where each image came from."""

    labels: torch.Tensor
    probabilities: torch.Tensor
    classes: tuple[str, ...]
    sources: tuple[str, ...] | None = None  # file paths, when the images were read from files

    @property
    def names(self) -> list[str]:
        """The predicted class name of every image."""
        return [self.classes[int(label)] for label in self.labels]

    def __len__(self) -> int:
        return len(self.labels)


def _image_files(images, func: str) -> list[Path]:
    """The image files named by a path (file or folder, searched recursively) or a list of paths."""
    paths = [Path(images)] if isinstance(images, (str, os.PathLike)) else [Path(p) for p in images]
    files = []
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in _IMAGE_SUFFIXES)
            if not found:
                raise ValueError(f"{func}: the folder {str(path)!r} holds no image files "
                                 f"({', '.join(_IMAGE_SUFFIXES)}).")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise ValueError(f"{func}: {str(path)!r} does not exist; expected an image file or a folder of them.")
    return files


def _read_images(images, image_size: int, func: str) -> tuple[torch.Tensor, tuple[str, ...] | None]:
    """uint8 (N, 3, image_size, image_size) images and their file paths (None for tensors)."""
    from PIL import Image, UnidentifiedImageError

    if isinstance(images, ImageSet):
        images = images.images
    if isinstance(images, torch.Tensor):
        check(images.dtype == torch.uint8 and images.ndim == 4 and images.shape[1] == 3 and len(images) > 0,
              images, "images", func, "uint8 tensor images of shape (N, 3, H, W), N >= 1")
        if images.shape[-2:] == (image_size, image_size):
            return images, None
        return torch.stack([data.resize_transform(image_size)(image) for image in images]), None
    if not isinstance(images, (str, os.PathLike)) and not (
            isinstance(images, Sequence) and images and all(isinstance(p, (str, os.PathLike)) for p in images)):
        raise invalid(images, "images", func, "a path, a list of paths, a companion.data.ImageSet or a uint8 tensor")
    transform = data.resize_transform(image_size, from_pil=True)
    loaded = []
    files = _image_files(images, func)
    for file in files:
        try:
            with Image.open(file) as image:
                loaded.append(transform(image.convert("RGB")))  # (3, S, S) uint8
        except (UnidentifiedImageError, OSError) as error:
            raise ValueError(f"{func}: cannot read {str(file)!r} as an image ({error}).") from None
    return torch.stack(loaded), tuple(str(file) for file in files)


def predict_images(model: nn.Module, metadata: dict, images, *, batch_size: int = 64,
                   device: torch.device | str | None = None) -> Predictions:
    """Classify images with a model and the metadata of `load_classifier`; return `Predictions`.

    ``images``: an image file, a folder (every image file inside, searched recursively, in
    sorted order), a list of files, a `companion.data.ImageSet` or uint8 ``(N, 3, H, W)``.
    Files are read as RGB, resized and centre-cropped to ``metadata["image_size"]`` with
    `companion.data.resize_transform`, then normalised with the metadata's mean and std. The
    model runs in eval mode under ``torch.inference_mode`` (``channels_last``, as in training).
    """
    func = "predict_images"
    check_instance(model, "model", func, nn.Module, "a torch.nn.Module")
    needed = ("classes", "image_size", "mean", "std")
    check(isinstance(metadata, dict) and all(key in metadata for key in needed), metadata, "metadata", func,
          f"the dict returned by load_classifier, with keys {list(needed)}")
    batch_size = check_int(batch_size, "batch_size", func, low=1)
    pixels, sources = _read_images(images, int(metadata["image_size"]), func)  # (N, 3, S, S) uint8
    device = repro.get_device(device)
    mean = torch.tensor(metadata["mean"], dtype=torch.float32, device=device).view(1, 3, 1, 1)
    std = torch.tensor(metadata["std"], dtype=torch.float32, device=device).view(1, 3, 1, 1)
    model.to(device, memory_format=torch.channels_last)
    model.eval()
    chunks = []
    with torch.inference_mode():
        for batch in pixels.split(batch_size):
            x = (batch.to(device).float() / 255.0 - mean) / std  # (B, 3, S, S), as backbones.preprocess
            logits = model(x.contiguous(memory_format=torch.channels_last))  # (B, K)
            if logits.ndim != 2 or logits.shape[1] != len(metadata["classes"]):
                raise ValueError(f"{func}: the model outputs shape {tuple(logits.shape)} but the metadata names "
                                 f"{len(metadata['classes'])} classes; pass the metadata saved with this model.")
            chunks.append(logits.float().softmax(dim=1).cpu())  # (B, K)
    probabilities = torch.cat(chunks)  # (N, K)
    return Predictions(probabilities.argmax(dim=1), probabilities, tuple(metadata["classes"]), sources)
