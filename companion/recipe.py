"""The practical recipe: from a folder of your own photos to a saved classifier you can reload.

Scope: the steps of the workflow that the other modules do not cover.

- `write_image_folder`: write an `ImageSet` as ``root/<class>/<file>.png``, the layout that
  `companion.data.load_image_folder` reads (demos, tests, exporting a labelled set).
- `recommend_strategy`: the course's decision guide as four explicit rules, from the label
  budget and the linear-probe evidence.
- `save_classifier` / `load_classifier`: a trained model as ONE safetensors file holding the
  weights, the label map and the preprocessing; written atomically (temporary file in the same
  folder, then ``os.replace``), validated on load with a message that names what is wrong.
- `predict_images`: class predictions for image files, a folder, an `ImageSet` or a uint8
  tensor, preprocessed exactly as the checkpoint says.

Usage::

    from companion import data, recipe
    photos = data.load_image_folder("my_photos/", image_size=112)
    advice = recipe.recommend_strategy(labels_per_class=24, probe_accuracy=0.5, num_classes=6)
    recipe.save_classifier(model, "defects.safetensors", photos.classes)
    model, metadata = recipe.load_classifier("defects.safetensors")
    print(recipe.predict_images(model, metadata, "new_photos/").names)

Taught in ``notebooks/08_practical_recipe.ipynb``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Integral, Real
from pathlib import Path

import torch
from torch import nn

from companion import backbones, repro
from companion.data import ImageSet

__all__ = ["FEW_LABELS", "MANY_LABELS", "SIMILAR_LIFT", "NO_SIGNAL_LIFT", "FORMAT", "FORMAT_VERSION",
           "Recommendation", "Predictions", "write_image_folder", "recommend_strategy", "save_classifier",
           "load_classifier", "predict_images"]

# The decision guide's thresholds (see recommend_strategy).
FEW_LABELS = 10      # labels per class at or below which fine-tuning risks memorising the few images
MANY_LABELS = 100    # labels per class from which the whole network can adapt without overfitting
SIMILAR_LIFT = 0.5   # probe lift from which the frozen features count as "close to the target"
NO_SIGNAL_LIFT = 0.1  # below it, the frozen features carry hardly any class information

FORMAT = "tlf-companion-classifier"
FORMAT_VERSION = "1"
_REQUIRED_METADATA = ("format", "format_version", "backbone", "classes", "image_size", "mean", "std", "sha256")
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def _fail(func: str, name: str, allowed: str, value: object, error: type = ValueError):
    shown = type(value).__name__ if error is TypeError else repr(value)
    return error(f"The '{name}' parameter of {func} must be {allowed}. Got {shown} instead.")


def _as_int(value: object, name: str, func: str, low: int, high: int | None = None) -> int:
    allowed = f"an int in [{low}, {high}]" if high is not None else f"an int >= {low}"
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise _fail(func, name, allowed, value, TypeError)
    if value < low or (high is not None and value > high):
        raise _fail(func, name, allowed, value)
    return int(value)


# ----------------------------------------------------------------------------- folders
def write_image_folder(dataset: ImageSet, root: str | os.PathLike) -> Path:
    """Write every image of ``dataset`` as ``root/<class name>/<class name>_<index>.png``.

    ``root`` must be new or empty (so two datasets are never mixed by accident); every class
    needs at least one image, because an ImageFolder cannot hold an empty class. PNG is lossless,
    so `companion.data.load_image_folder` reads back the same pixels at the same size.

    Usage: ``write_image_folder(data.make_dataset(40, "new"), "photos/")``
    """
    func = "write_image_folder"
    from PIL import Image

    if not isinstance(dataset, ImageSet):
        raise _fail(func, "dataset", "a companion.data.ImageSet", dataset, TypeError)
    if not isinstance(root, (str, os.PathLike)):
        raise _fail(func, "root", "a folder path (str or pathlib.Path)", root, TypeError)
    root = Path(root)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise ValueError(f"{func}: {str(root)!r} already exists and is not an empty folder. "
                         "Pass a new or empty folder, so that two datasets are never mixed.")
    counts = dataset.class_counts()
    empty = [name for name, count in counts.items() if count == 0]
    if empty:
        raise ValueError(f"{func}: the classes {empty} have no images; an ImageFolder cannot hold an empty "
                         "class folder. Drop those classes or add images to them.")
    for name in dataset.classes:  # every name checked before any folder is made: a refusal writes nothing
        if not name or name != Path(name).name or name.startswith("."):
            raise ValueError(f"{func}: the class name {name!r} cannot be a folder name; use plain names "
                             "without path separators or a leading dot.")
    for name in dataset.classes:
        (root / name).mkdir(parents=True, exist_ok=True)
    width = len(str(max(len(dataset) - 1, 0)))
    for index in range(len(dataset)):
        name = dataset.classes[int(dataset.labels[index])]
        pixels = dataset.images[index].permute(1, 2, 0).numpy()  # (H, W, 3) uint8
        Image.fromarray(pixels).save(root / name / f"{name}_{index:0{width}d}.png")
    return root


# ----------------------------------------------------------------------------- decision guide
@dataclass(frozen=True)
class Recommendation:
    """A reuse strategy for `companion.strategies.run_strategy`, with the rule that chose it.

    ``lift`` is the probe accuracy above chance as a share of the way from chance to perfect;
    ``run_options`` holds the extra keyword arguments of ``run_strategy`` (``top_k_stages``).
    """

    strategy: str
    rule: str
    reasons: tuple[str, ...]
    lift: float
    top_k_stages: int | None = None

    @property
    def run_options(self) -> dict:
        """Keyword arguments for ``run_strategy`` besides the strategy, e.g. ``{"top_k_stages": 2}``."""
        return {} if self.top_k_stages is None else {"top_k_stages": self.top_k_stages}

    def __str__(self) -> str:
        extra = f" (top_k_stages={self.top_k_stages})" if self.top_k_stages is not None else ""
        lines = [f"recommended strategy: {self.strategy}{extra}", f"rule: {self.rule}"]
        return "\n".join(lines + [f"- {reason}" for reason in self.reasons])


def recommend_strategy(labels_per_class: int, probe_accuracy: float, num_classes: int, *,
                       best_depth: int | None = None) -> Recommendation:
    """Pick a reuse strategy from the label budget and how well frozen features already work.

    The evidence is the validation accuracy of a linear probe on the frozen backbone (the best
    depth of `companion.features.probe_by_depth`), turned into a *lift* that does not depend on
    the number of classes: ``lift = (probe_accuracy - chance) / (1 - chance)``, chance being
    ``1 / num_classes``. A lift of at least `SIMILAR_LIFT` (0.5) means the source features are
    close to what the target needs ("similar domain"); below it the target is "different".
    ``labels_per_class`` is the label count of the smallest class of the training split. The
    rules, first match wins:

    1. few labels (<= `FEW_LABELS`) and a similar domain: ``linear_probe``. The frozen features
       already separate the classes; with so few images, training more than a head overfits.
    2. many labels (>= `MANY_LABELS`): ``lp_ft`` in a similar domain (fit the head first, so
       that fine-tuning does not distort good features through a random head, Kumar et al.
       2022), ``full_finetune`` in a different one (the features need to move).
    3. a similar domain, moderate labels: ``partial_finetune`` of the top 2 depths.
    4. a different domain, fewer than `MANY_LABELS` labels: ``partial_finetune`` from the best
       probe depth up (``top_k_stages = max(2, 9 - best_depth)``; 2 without ``best_depth``): the
       depths above the best one are the source-specific part worth adapting.

    A lift below `NO_SIGNAL_LIFT` adds a warning: check the labels and images first, and
    compare against a from-scratch baseline. LogME (`companion.similarity.logme`) is not an
    input: its values rank depths or backbones on the same data but have no absolute scale.

    Usage: ``recommend_strategy(labels_per_class=24, probe_accuracy=0.5, num_classes=6, best_depth=7)``
    """
    func = "recommend_strategy"
    labels_per_class = _as_int(labels_per_class, "labels_per_class", func, 1)
    num_classes = _as_int(num_classes, "num_classes", func, 2)
    if isinstance(probe_accuracy, bool) or not isinstance(probe_accuracy, Real):
        raise _fail(func, "probe_accuracy", "a float in [0, 1]", probe_accuracy, TypeError)
    if not (math.isfinite(probe_accuracy) and 0.0 <= probe_accuracy <= 1.0):
        hint = " Give a fraction, not a percentage." if 1.0 < probe_accuracy <= 100.0 else ""
        raise ValueError(f"The 'probe_accuracy' parameter of {func} must be a float in [0, 1]. "
                         f"Got {probe_accuracy!r} instead.{hint}")
    num_depths = backbones.NUM_DEPTHS
    if best_depth is not None:
        best_depth = _as_int(best_depth, "best_depth", func, 0, num_depths - 1)
    chance = 1.0 / num_classes
    lift = (float(probe_accuracy) - chance) / (1.0 - chance)
    similar = lift >= SIMILAR_LIFT
    evidence = (f"a linear probe reaches {probe_accuracy:.3f} (chance {chance:.3f}): lift {lift:.3f}, "
                f"{'at least' if similar else 'below'} {SIMILAR_LIFT} -> "
                f"{'similar' if similar else 'different'} domain")
    budget = (f"{labels_per_class} labels per class: "
              + ("few" if labels_per_class <= FEW_LABELS else "many" if labels_per_class >= MANY_LABELS
                 else "moderate") + f" (few <= {FEW_LABELS}, many >= {MANY_LABELS})")
    top_k = None
    if labels_per_class <= FEW_LABELS and similar:
        strategy, rule = "linear_probe", "1: few labels, similar domain -> train only a linear head"
    elif labels_per_class >= MANY_LABELS:
        strategy = "lp_ft" if similar else "full_finetune"
        rule = ("2: many labels, similar domain -> LP-FT (head first, then everything)" if similar
                else "2: many labels, different domain -> fine-tune the whole network")
    elif similar:
        strategy, top_k = "partial_finetune", 2
        rule = "3: moderate labels, similar domain -> fine-tune the top 2 depths"
    else:
        top_k = 2 if best_depth is None else max(2, num_depths - best_depth)
        strategy = "partial_finetune"
        rule = f"4: different domain, fewer than {MANY_LABELS} labels -> fine-tune the top {top_k} depths"
        if best_depth is not None:
            evidence += f"; best probe depth {best_depth}, so depths {num_depths - top_k}-{num_depths - 1} adapt"
    reasons = [budget, evidence]
    if lift < NO_SIGNAL_LIFT:
        reasons.append(f"warning: lift below {NO_SIGNAL_LIFT}: the frozen features barely beat chance. Check the "
                       "labels and the images first; then compare with a from-scratch CNN (strategy 'scratch').")
    return Recommendation(strategy, rule, tuple(reasons), lift, top_k)


# ----------------------------------------------------------------------------- saving and loading
def _checksum(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 of every tensor's name, dtype, shape and bytes, in name order (safetensors has none)."""
    hasher = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        hasher.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        if tensor.numel():
            hasher.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return hasher.hexdigest()


def _head_name(model: nn.Module) -> str:
    """The state-dict prefix of the model's classifier (``"classifier"`` for timm EfficientNets)."""
    get_classifier = getattr(model, "get_classifier", None)
    head = get_classifier() if callable(get_classifier) else None
    name = next((name for name, module in model.named_modules() if name and module is head), None)
    if not isinstance(head, nn.Linear) or name is None:
        raise TypeError("save_classifier needs a timm backbone with a linear classifier (get_classifier()), "
                        f"e.g. from backbones.load_backbone or run_strategy(...).model. Got {type(model).__name__}.")
    return name


def save_classifier(model: nn.Module, path: str | os.PathLike, classes: Sequence[str], *,
                    backbone: str = "efficientnet_lite0", image_size: int = 112) -> Path:
    """Save a trained classifier as ONE ``.safetensors`` file: weights, label map, preprocessing.

    The metadata holds the ``backbone`` name (to rebuild the architecture), ``classes`` in label
    order, the ``image_size`` and the normalisation ``mean`` and ``std``, so `load_classifier`
    and `predict_images` need nothing else. The file is written to a temporary file in the same
    folder and then renamed over ``path`` (``os.replace``): an error or a crash half-way leaves
    any older file at ``path`` intact and no partial file behind.

    Usage: ``save_classifier(result.model, "defects.safetensors", train_set.classes, image_size=112)``
    """
    func = "save_classifier"
    from safetensors.torch import save_file

    if not isinstance(model, nn.Module):
        hint = " Pass result.model for a StrategyResult." if hasattr(model, "model") else ""
        raise TypeError(f"The 'model' parameter of {func} must be a torch.nn.Module. "
                        f"Got {type(model).__name__} instead.{hint}")
    if not isinstance(path, (str, os.PathLike)):
        raise _fail(func, "path", "a file path ending in .safetensors", path, TypeError)
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"The 'path' parameter of {func} must end in .safetensors. Got {str(path)!r} instead.")
    if not path.parent.is_dir():
        raise ValueError(f"{func}: the folder {str(path.parent)!r} does not exist; create it first.")
    if isinstance(classes, str) or not isinstance(classes, Sequence) or not all(
            isinstance(name, str) and name for name in classes):
        raise _fail(func, "classes", "a list of non-empty class names in label order", classes, TypeError)
    if len(set(classes)) != len(classes) or len(classes) < 2:
        raise ValueError(f"The 'classes' parameter of {func} must hold at least 2 distinct names. "
                         f"Got {list(classes)!r} instead.")
    if not isinstance(backbone, str):
        raise _fail(func, "backbone", "a backbone name such as 'efficientnet_lite0'", backbone, TypeError)
    image_size = _as_int(image_size, "image_size", func, 32, 1024)
    head = _head_name(model)
    num_outputs = model.get_classifier().out_features
    if num_outputs != len(classes):
        raise ValueError(f"{func}: the model's head outputs {num_outputs} classes but 'classes' names "
                         f"{len(classes)}: {list(classes)}. Pass one name per output, in label order.")
    mean, std = backbones._normalisation(backbone)
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
                         f"{list(_REQUIRED_METADATA)} that recipe.save_classifier writes. The weights alone do "
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

    Usage: ``model, metadata = load_classifier("defects.safetensors"); metadata["classes"]``
    """
    func = "load_classifier"
    from safetensors import safe_open

    if not isinstance(path, (str, os.PathLike)):
        raise _fail(func, "path", "a path to a .safetensors file", path, TypeError)
    path = Path(path)
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise ValueError(f"{func}: {str(path)!r} {what}; expected a .safetensors file written by "
                         "recipe.save_classifier.")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as checkpoint:
            raw_metadata = checkpoint.metadata()
            tensors = {name: checkpoint.get_tensor(name) for name in checkpoint.keys()}
    except Exception as error:  # SafetensorError, OSError, ...: the bytes are not a safetensors file
        raise ValueError(f"{func}: {str(path)!r} is not a readable safetensors file ({error}). It may be "
                         "truncated or corrupted, or another format such as a torch.save pickle; save the "
                         "model again with recipe.save_classifier.") from None
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
        model = backbones.load_backbone(metadata["backbone"], pretrained=False, num_classes=len(classes), seed=0)
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


def _transform(image_size: int):
    """Shorter side to ``image_size`` and a centre crop: what `companion.data.load_image_folder` does."""
    from torchvision.transforms import v2

    return v2.Compose([v2.Resize(image_size, antialias=True), v2.CenterCrop(image_size)])


def _read_images(images, image_size: int, func: str) -> tuple[torch.Tensor, tuple[str, ...] | None]:
    """uint8 (N, 3, image_size, image_size) images and their file paths (None for tensors)."""
    from PIL import Image, UnidentifiedImageError
    from torchvision.transforms import v2

    if isinstance(images, ImageSet):
        images = images.images
    if isinstance(images, torch.Tensor):
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3 or len(images) == 0:
            raise ValueError(f"Tensor images passed to {func} must be uint8 of shape (N, 3, H, W), N >= 1. Got "
                             f"{images.dtype} of shape {tuple(images.shape)} instead.")
        if images.shape[-2:] == (image_size, image_size):
            return images, None
        return torch.stack([_transform(image_size)(image) for image in images]), None
    if not isinstance(images, (str, os.PathLike)) and not (
            isinstance(images, Sequence) and images and all(isinstance(p, (str, os.PathLike)) for p in images)):
        raise _fail(func, "images", "a path, a list of paths, a companion.data.ImageSet or a uint8 tensor",
                    images, TypeError)
    transform = v2.Compose([v2.PILToTensor(), _transform(image_size)])
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
    Files are read as RGB, resized and centre-cropped to ``metadata["image_size"]`` like
    `companion.data.load_image_folder`, then normalised with the metadata's mean and std. The
    model runs in eval mode under ``torch.inference_mode`` (``channels_last``, as in training).

    Usage: ``predictions = predict_images(model, metadata, "new_photos/"); predictions.names[:5]``
    """
    func = "predict_images"
    if not isinstance(model, nn.Module):
        raise _fail(func, "model", "a torch.nn.Module", model, TypeError)
    needed = ("classes", "image_size", "mean", "std")
    if not isinstance(metadata, dict) or any(key not in metadata for key in needed):
        raise ValueError(f"The 'metadata' parameter of {func} must be the dict returned by load_classifier, "
                         f"with keys {list(needed)}. Got {metadata!r:.120} instead.")
    batch_size = _as_int(batch_size, "batch_size", func, 1)
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
