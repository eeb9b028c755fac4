"""Datasets for the course: the warehouse-defect photos, splits, few-shot subsets, your own photos.

Every dataset is an :class:`ImageSet`: uint8 images ``(N, 3, H, W)``, int64 labels and class names.
Rendered datasets are cached on disk, keyed by every parameter and the renderer version, and
written atomically (temporary file, then rename), so an interrupted run never leaves a broken
cache behind.

Usage::

    from companion import data
    pool = data.make_dataset(n_per_class=100, camera="existing", seed=0)
    splits = data.stratified_split(pool, fractions=(0.6, 0.2, 0.2), seed=0)
    few = data.sample_per_class(splits["train"], n_per_class=5, seed=0)

Taught in ``notebooks/01_meet_the_data_and_backbone.ipynb``.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from companion.render import CAMERA_PRESETS, CLASSES, RENDERER_VERSION, CameraSetup, camera_key, get_camera
from companion.render import interpolate_cameras, render_parcels

__all__ = [
    "CLASSES", "CAMERA_PRESETS", "CameraSetup", "ImageSet", "default_cache_dir", "interpolate_cameras",
    "load_image_folder", "make_dataset", "sample_per_class", "sample_per_class_indices",
    "stratified_split",
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


def default_cache_dir() -> Path:
    """Where rendered datasets are cached: ``$COMPANION_CACHE_DIR`` or ``~/.cache/tlf-companion``."""
    return Path(os.environ.get("COMPANION_CACHE_DIR", Path.home() / ".cache" / "tlf-companion"))


def _check_int(name: str, function: str, value, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low or (high is not None and value > high):
        bounds = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(f"The '{name}' parameter of {function} must be an int {bounds}. Got {value!r} instead.")
    return int(value)


def atomic_save_npz(path: Path, **arrays: np.ndarray) -> None:
    """Write arrays to ``path`` via a temporary file in the same folder and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def make_dataset(n_per_class: int, camera: str | CameraSetup = "existing", *, image_size: int = 112,
                 seed: int = 0, cache: bool = True, cache_dir: str | Path | None = None) -> ImageSet:
    """Render ``n_per_class`` warehouse photos of each of the six classes, in shuffled order.

    The same arguments always give the same bytes. With ``cache=True`` the result is stored
    under :func:`default_cache_dir` (or ``cache_dir``), keyed by every argument, the camera's
    settings and the renderer version.

    Usage: ``make_dataset(50, "new", seed=1)``.
    """
    n_per_class = _check_int("n_per_class", "make_dataset", n_per_class, 1, 100_000)
    seed = _check_int("seed", "make_dataset", seed, 0)
    image_size = _check_int("image_size", "make_dataset", image_size, 32, 512)
    camera = get_camera(camera)
    key = json.dumps({"renderer": RENDERER_VERSION, "camera": camera_key(camera), "n_per_class": n_per_class,
                      "image_size": image_size, "seed": seed, "classes": CLASSES}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:20]
    path = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = path / f"warehouse_{digest}.npz"
    if cache and path.exists():
        try:
            with np.load(path, allow_pickle=False) as stored:
                if str(stored["key"]) == key:
                    return ImageSet(torch.from_numpy(stored["images"]), torch.from_numpy(stored["labels"]), CLASSES)
        except (OSError, ValueError, KeyError):
            pass  # unreadable or foreign file: render again and overwrite it
    labels = np.repeat(np.arange(len(CLASSES)), n_per_class)
    labels = np.random.default_rng([seed, 7]).permutation(labels)
    images = render_parcels(labels, camera, seed=seed, image_size=image_size)
    dataset = ImageSet(images, torch.from_numpy(labels.astype(np.int64)), CLASSES)
    if cache:
        try:
            atomic_save_npz(path, images=images.numpy(), labels=labels.astype(np.int64), key=np.array(key))
        except OSError as error:
            raise OSError(
                f"Could not write the dataset cache to {path.parent} ({error}). Pass cache=False, or set "
                "COMPANION_CACHE_DIR to a writable folder."
            ) from error
    return dataset


def stratified_split(dataset: ImageSet, fractions: tuple[float, ...] = (0.6, 0.2, 0.2), *,
                     names: tuple[str, ...] = ("train", "val", "test"), seed: int = 0) -> dict[str, ImageSet]:
    """Split a dataset into parts with the same class proportions.

    Usage: ``parts = stratified_split(pool, (0.6, 0.2, 0.2), seed=0); parts["test"]``.
    """
    if not isinstance(dataset, ImageSet):
        raise TypeError(f"stratified_split expects an ImageSet. Got {type(dataset).__name__}.")
    fractions = tuple(float(f) for f in fractions)
    if len(fractions) != len(names) or any(f <= 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(
            f"The 'fractions' parameter of stratified_split must hold {len(names)} positive numbers summing to 1 "
            f"(one per name in {names}). Got {fractions} instead."
        )
    seed = _check_int("seed", "stratified_split", seed, 0)
    rng = np.random.default_rng(seed)
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
        if len(index) == 0:
            raise ValueError(f"The '{name}' part of stratified_split would be empty; use a larger dataset or fraction.")
        result[name] = dataset.subset(index)
    return result


def sample_per_class(dataset: ImageSet, n_per_class: int, *, seed: int = 0) -> ImageSet:
    """Keep ``n_per_class`` random images of every class (the few-shot training sets).

    Usage: ``sample_per_class(train, 20, seed=0)``.
    """
    if not isinstance(dataset, ImageSet):
        raise TypeError(f"sample_per_class expects an ImageSet. Got {type(dataset).__name__}.")
    counts = dataset.class_counts()
    smallest = min(counts, key=counts.get)
    if isinstance(n_per_class, bool) or not isinstance(n_per_class, (int, np.integer)) or n_per_class < 1 \
            or n_per_class > counts[smallest]:
        raise ValueError(
            f"The 'n_per_class' parameter of sample_per_class must be an int in [1, {counts[smallest]}], "
            f"the size of the smallest class ({smallest!r}). Got {n_per_class!r} instead."
        )
    seed = _check_int("seed", "sample_per_class", seed, 0)
    rng = np.random.default_rng(seed)
    labels = dataset.labels.numpy()
    index = np.concatenate([rng.choice(np.flatnonzero(labels == k), int(n_per_class), replace=False)
                            for k in range(len(dataset.classes))])
    return dataset.subset(np.sort(index))


def sample_per_class_indices(dataset: ImageSet, n_per_class: int, *, seed: int = 0) -> np.ndarray:
    """The sorted row indices that :func:`sample_per_class` keeps, for the same arguments.

    ``dataset.subset(sample_per_class_indices(dataset, n, seed=s))`` equals
    ``sample_per_class(dataset, n, seed=s)``. Use the indices to take few-shot subsets of
    features already extracted for the whole ``dataset`` (one backbone pass, many subsets).

    Usage: ``index = sample_per_class_indices(train, 20, seed=0); X_few = X_train[index]``.
    """
    sample_per_class(dataset, n_per_class, seed=seed)  # validates the arguments, with its messages
    rng = np.random.default_rng(_check_int("seed", "sample_per_class", seed, 0))
    labels = dataset.labels.numpy()
    index = np.concatenate([rng.choice(np.flatnonzero(labels == k), int(n_per_class), replace=False)
                            for k in range(len(dataset.classes))])
    return np.sort(index)  # the same draws as sample_per_class makes


def load_image_folder(root: str | Path, *, image_size: int = 112) -> ImageSet:
    """Load your own photos from ``root/<class name>/<image files>`` (torchvision ``ImageFolder``).

    Each image is resized (shorter side) and centre-cropped to ``image_size``, converted to RGB.

    Usage: ``load_image_folder("photos/", image_size=112)``.
    """
    from PIL import Image, UnidentifiedImageError
    from torchvision import datasets
    from torchvision.transforms import v2

    image_size = _check_int("image_size", "load_image_folder", image_size, 32, 1024)
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"load_image_folder: {str(root)!r} is not a folder. Expected root/<class>/<image> files.")
    subfolders = sorted(p.name for p in root.iterdir() if p.is_dir())
    if len(subfolders) < 2:
        raise ValueError(
            f"load_image_folder: {str(root)!r} must hold one sub-folder per class (at least 2). Found {subfolders}."
        )
    transform = v2.Compose([v2.PILToTensor(), v2.Resize(image_size, antialias=True), v2.CenterCrop(image_size)])

    def loader(path: str):
        try:
            with Image.open(path) as image:
                return image.convert("RGB")
        except (UnidentifiedImageError, OSError) as error:
            raise ValueError(f"load_image_folder: cannot read {path!r} as an image ({error}).") from error

    try:
        folder = datasets.ImageFolder(str(root), transform=transform, loader=loader)
    except FileNotFoundError as error:
        raise ValueError(
            f"load_image_folder: every class folder needs at least one image file ({error})."
        ) from error
    images = torch.stack([folder[i][0] for i in range(len(folder))])  # (N, 3, S, S) uint8
    labels = torch.tensor(folder.targets, dtype=torch.int64)
    return ImageSet(images, labels, tuple(folder.classes))
