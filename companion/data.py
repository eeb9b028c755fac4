"""Datasets for the course: the warehouse-defect photos, splits, few-shot subsets, your own photos.

Every dataset is an :class:`ImageSet`: uint8 images ``(N, 3, H, W)``, int64 labels and class names.
Rendered datasets are cached on disk by `companion.cache`, keyed by every parameter and the
renderer version; a damaged cache file is rendered again. `write_image_folder` and
`load_image_folder` move datasets to and from a torchvision ``ImageFolder`` of your own photos.

Usage::

    >>> from companion import data
    >>> pool = data.make_dataset(n_per_class=10, camera="existing", seed=0, image_size=32, cache=False)
    >>> splits = data.stratified_split(pool, fractions=(0.6, 0.2, 0.2), seed=0)
    >>> len(data.sample_per_class(splits["train"], n_per_class=5, seed=0))
    30

Taught in ``notebooks/01_meet_the_data_and_backbone.ipynb``.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from numbers import Real
from pathlib import Path

import numpy as np
import torch

from companion import cache as disk
from companion.cameras import CAMERA_PRESETS, CameraSetup, camera_key, get_camera, interpolate_cameras
from companion.render import CLASSES, RENDERER_VERSION, render_parcels
from companion.validation import check, check_bool, check_instance, check_int, check_seed

__all__ = [
    "CLASSES", "CAMERA_PRESETS", "CameraSetup", "ImageSet", "interpolate_cameras", "load_image_folder",
    "make_dataset", "sample_per_class", "sample_per_class_indices", "stratified_split", "write_image_folder",
]


@dataclass(frozen=True)
class ImageSet:
    """Images with labels: the one dataset type of the course.

    ``images`` is uint8 ``(N, 3, H, W)`` RGB, ``labels`` int64 ``(N,)`` in ``[0, len(classes))``.
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.images, torch.Tensor) or self.images.dtype != torch.uint8 or self.images.ndim != 4:
            got = f"{type(self.images).__name__} {getattr(self.images, 'dtype', '')} {tuple(getattr(self.images, 'shape', ()))}"
            raise TypeError(f"ImageSet.images must be a uint8 tensor of shape (N, 3, H, W). Got {got}.")
        if self.images.shape[1] != 3:
            raise ValueError(
                f"ImageSet.images must have 3 (RGB) channels in dimension 1. Got shape {tuple(self.images.shape)}; "
                "convert greyscale or RGBA images to RGB first."
            )
        if not isinstance(self.labels, torch.Tensor) or self.labels.ndim != 1 or self.labels.dtype != torch.int64:
            got = f"{type(self.labels).__name__} {getattr(self.labels, 'dtype', '')} {tuple(getattr(self.labels, 'shape', ()))}"
            raise TypeError(f"ImageSet.labels must be a 1-D int64 tensor. Got {got}; convert with "
                            "torch.as_tensor(labels, dtype=torch.int64).")
        if len(self.labels) != len(self.images):
            raise ValueError(
                f"ImageSet has {len(self.images)} images but {len(self.labels)} labels; they must match."
            )
        if len(self.classes) == 0:
            raise ValueError("ImageSet.classes must name at least one class.")
        if len(self.labels) and (int(self.labels.min()) < 0 or int(self.labels.max()) >= len(self.classes)):
            raise ValueError(
                f"ImageSet.labels must lie in [0, {len(self.classes) - 1}] for {len(self.classes)} classes. "
                f"Got values from {int(self.labels.min())} to {int(self.labels.max())}."
            )
        object.__setattr__(self, "classes", tuple(self.classes))

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices) -> ImageSet:
        """The images at ``indices`` (ints or a boolean mask), same classes."""
        index = torch.as_tensor(np.asarray(indices))
        if index.dtype == torch.bool:
            index = index.nonzero().flatten()
        elif index.numel() == 0:
            index = index.long()  # an empty list arrives as float
        return ImageSet(self.images[index], self.labels[index], self.classes)

    def class_counts(self) -> dict[str, int]:
        """How many images each class has, e.g. ``{'ok': 100, 'dent': 100, ...}``."""
        counts = torch.bincount(self.labels, minlength=len(self.classes)).tolist()
        return dict(zip(self.classes, counts))


def make_dataset(n_per_class: int, camera: str | CameraSetup = "existing", *, image_size: int = 64,
                 seed: int = 0, cache: bool = True, cache_dir: str | Path | None = None) -> ImageSet:
    """Render ``n_per_class`` warehouse photos of each of the six classes, in shuffled order.

    The same arguments always give the same bytes. With ``cache=True`` the result is stored
    under `companion.cache.cache_dir` (or ``cache_dir``), keyed by every argument, the camera's
    settings and the renderer version.
    """
    func = "make_dataset"
    n_per_class = check_int(n_per_class, "n_per_class", func, low=1, high=100_000)
    seed = check_seed(seed, "seed", func)
    image_size = check_int(image_size, "image_size", func, low=32, high=512)
    check_bool(cache, "cache", func)
    camera = get_camera(camera)
    key = json.dumps({"renderer": RENDERER_VERSION, "camera": camera_key(camera), "n_per_class": n_per_class,
                      "image_size": image_size, "seed": seed, "classes": CLASSES}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:20]
    path = (Path(cache_dir) if cache_dir is not None else disk.cache_dir()) / f"warehouse_{digest}.npz"
    if cache:
        stored = disk.read(path, key, ["images", "labels"])
        if stored is not None and stored["images"].shape == (6 * n_per_class, 3, image_size, image_size):
            return ImageSet(torch.from_numpy(stored["images"]), torch.from_numpy(stored["labels"]), CLASSES)
    labels = np.repeat(np.arange(len(CLASSES)), n_per_class)
    labels = np.random.default_rng([seed, 7]).permutation(labels)
    images = render_parcels(labels, camera, seed=seed, image_size=image_size)
    dataset = ImageSet(images, torch.from_numpy(labels.astype(np.int64)), CLASSES)
    if cache:
        disk.write(path, key, images=images.numpy(), labels=labels.astype(np.int64))
    return dataset


def stratified_split(dataset: ImageSet, fractions: tuple[float, ...] = (0.6, 0.2, 0.2), *,
                     names: tuple[str, ...] = ("train", "val", "test"), seed: int = 0) -> dict[str, ImageSet]:
    """Split a dataset into parts with the same class proportions, e.g. ``parts["test"]``."""
    func = "stratified_split"
    check_instance(dataset, "dataset", func, ImageSet, "a companion.data.ImageSet")
    ok = isinstance(fractions, (tuple, list, np.ndarray)) and len(fractions) == len(names) and all(
        isinstance(f, Real) and f > 0 for f in fractions) and abs(sum(fractions) - 1) <= 1e-6
    check(ok, fractions, "fractions", func, f"{len(names)} positive numbers summing to 1 (one per name in {names})")
    fractions = tuple(float(f) for f in fractions)
    rng = np.random.default_rng(check_seed(seed, "seed", func))
    labels = dataset.labels.numpy()
    parts: list[list[np.ndarray]] = [[] for _ in names]
    bounds = np.cumsum((0.0,) + fractions)
    for k in range(len(dataset.classes)):
        members = rng.permutation(np.flatnonzero(labels == k))
        cuts = np.round(bounds * len(members)).astype(int)
        for i in range(len(names)):
            parts[i].append(members[cuts[i]:cuts[i + 1]])
    result = {}
    for name, chunks in zip(names, parts):
        index = np.sort(np.concatenate(chunks))
        check(len(index) > 0, fractions, "fractions", func, f"fractions that leave the '{name}' part non-empty",
              "Use a larger dataset or fraction.")
        result[name] = dataset.subset(index)
    return result


def sample_per_class_indices(dataset: ImageSet, n_per_class: int, *, seed: int = 0) -> np.ndarray:
    """The sorted rows of ``n_per_class`` random images of every class (the few-shot subsets).

    Use the indices to take few-shot subsets of features already extracted for the whole
    ``dataset`` (one backbone pass, many subsets); `sample_per_class` takes the images.
    """
    func = "sample_per_class"
    check_instance(dataset, "dataset", func, ImageSet, "a companion.data.ImageSet")
    counts = dataset.class_counts()
    smallest = min(counts, key=counts.get)
    n_per_class = check_int(n_per_class, "n_per_class", func, low=1, high=counts[smallest])
    rng = np.random.default_rng(check_seed(seed, "seed", func))
    labels = dataset.labels.numpy()
    index = np.concatenate([rng.choice(np.flatnonzero(labels == k), n_per_class, replace=False)
                            for k in range(len(dataset.classes))])
    return np.sort(index)


def sample_per_class(dataset: ImageSet, n_per_class: int, *, seed: int = 0) -> ImageSet:
    """Keep ``n_per_class`` random images of every class: ``sample_per_class(train, 20, seed=0)``."""
    return dataset.subset(sample_per_class_indices(dataset, n_per_class, seed=seed))


def load_image_folder(root: str | Path, *, image_size: int = 64) -> ImageSet:
    """Load your own photos from ``root/<class name>/<image files>`` (torchvision ``ImageFolder``).

    Each image is converted to RGB, resized (shorter side) and centre-cropped to ``image_size``.
    """
    from PIL import Image, UnidentifiedImageError
    from torchvision import datasets

    func = "load_image_folder"
    image_size = check_int(image_size, "image_size", func, low=32, high=1024)
    check_instance(root, "root", func, (str, os.PathLike), "a folder path (str or pathlib.Path)")
    root = Path(root)
    check(root.is_dir(), str(root), "root", func, "an existing folder of root/<class>/<image> files")
    subfolders = sorted(p.name for p in root.iterdir() if p.is_dir())
    check(len(subfolders) >= 2, str(root), "root", func, "a folder with one sub-folder per class (at least 2)",
          f"It holds {subfolders}.")
    transform = resize_transform(image_size, from_pil=True)

    def loader(path: str):
        try:
            with Image.open(path) as image:
                return image.convert("RGB")
        except (UnidentifiedImageError, OSError) as error:
            raise ValueError(f"{func}: cannot read {path!r} as an image ({error}).") from error

    try:
        folder = datasets.ImageFolder(str(root), transform=transform, loader=loader)
    except FileNotFoundError as error:
        raise ValueError(f"{func}: every class folder needs at least one image file ({error}).") from error
    images = torch.stack([folder[i][0] for i in range(len(folder))])  # (N, 3, S, S) uint8
    labels = torch.tensor(folder.targets, dtype=torch.int64)
    return ImageSet(images, labels, tuple(folder.classes))


def resize_transform(image_size: int, *, from_pil: bool = False):
    """Shorter side to ``image_size`` (antialiased), then a centre crop: the one resize path of the course.

    `load_image_folder` and `companion.checkpoints.predict_images` both use it, so a photo is
    prepared the same way for training and for prediction.
    """
    from torchvision.transforms import v2

    steps = [v2.Resize(image_size, antialias=True), v2.CenterCrop(image_size)]
    return v2.Compose(([v2.PILToTensor()] if from_pil else []) + steps)


def write_image_folder(dataset: ImageSet, root: str | os.PathLike) -> Path:
    """Write every image of ``dataset`` as ``root/<class name>/<class name>_<index>.png``.

    ``root`` must be new or empty (so two datasets are never mixed by accident), and every class
    needs at least one image, because an ImageFolder cannot hold an empty class. PNG is lossless,
    so `load_image_folder` reads back the same pixels at the same size.
    """
    from PIL import Image

    func = "write_image_folder"
    check_instance(dataset, "dataset", func, ImageSet, "a companion.data.ImageSet")
    check_instance(root, "root", func, (str, os.PathLike), "a folder path (str or pathlib.Path)")
    root = Path(root)
    check(not root.exists() or (root.is_dir() and not any(root.iterdir())), str(root), "root", func,
          "a new or empty folder", "It already holds files; two datasets must never be mixed.")
    empty = [name for name, count in dataset.class_counts().items() if count == 0]
    check(not empty, dataset, "dataset", func, "an ImageSet with at least one image per class",
          f"The classes {empty} have none; an ImageFolder cannot hold an empty class folder.")
    for name in dataset.classes:  # every name checked before any folder is made: a refusal writes nothing
        check(bool(name) and name == Path(name).name and not name.startswith("."), dataset, "dataset", func,
              "class names that can be folder names", f"{name!r} has a path separator or a leading dot.")
    for name in dataset.classes:
        (root / name).mkdir(parents=True, exist_ok=True)
    width = len(str(max(len(dataset) - 1, 0)))
    for index in range(len(dataset)):
        name = dataset.classes[int(dataset.labels[index])]
        pixels = dataset.images[index].permute(1, 2, 0).numpy()  # (H, W, 3) uint8
        Image.fromarray(pixels).save(root / name / f"{name}_{index:0{width}d}.png")
    return root
