"""The frozen prefix, computed once: what makes strategies with a frozen bottom cheap.

Scope: when the bottom ``num_frozen`` depths of a backbone are frozen and the images are not
augmented, those depths compute the same output for an image at every epoch. `PrefixCache`
computes that output once per image (eval mode, ``torch.inference_mode``), keyed by the frozen
depths' weights and the image's bytes, and keeps it in memory, so every later run on an image it
has seen (another label budget, seed or strategy, the same validation or test split) skips it.
`Suffix` runs the depths above and the head on the cached output; `PrefixCache.model_input`
feeds it to `companion.train.fit`. With the whole backbone frozen the output is pooled to
``(C, 1, 1)``: the head pools anyway. Training on the cache gives the same weights as
recomputing the prefix, up to float rounding. The linear probe, head-only training and partial
fine-tuning (`companion.strategies`), the sample-efficiency lab and the layer-transfer lab all
use this one implementation.

Usage::

    >>> import torch
    >>> from companion import data, prefix, scratch
    >>> images = data.make_dataset(2, seed=0, image_size=32, cache=False)
    >>> model = scratch.make_scratch_cnn(6, width=4, seed=0)
    >>> cache = prefix.PrefixCache()
    >>> tuple(cache.activations(model, 3, images).shape)  # the output of block2 for 12 images
    (12, 8, 4, 4)
    >>> len(cache)
    12
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

import torch
from torch import nn

from companion import backbones, repro, train
from companion.data import ImageSet
from companion.validation import check_image_set, check_instance, check_int

__all__ = ["Suffix", "PrefixCache", "image_digests", "weights_fingerprint"]


class Suffix(nn.Module):
    """Depths ``start`` and above of ``model`` and its head, fed the output of depth ``start - 1``."""

    def __init__(self, model: nn.Module, start: int) -> None:
        super().__init__()
        self.model, self.start = model, start

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, h, w): the cached prefix output
        for _, stage in backbones.stages(self.model)[self.start:]:
            x = stage(x)  # (B, C_k, h_k, w_k)
        return self.model.forward_head(x)  # (B, num_classes)


def image_digests(dataset: ImageSet) -> list[bytes]:
    """A 16-byte fingerprint of each image of ``dataset``: its shape and its bytes."""
    digests = []
    for image in dataset.images:
        hasher = hashlib.blake2b(str(tuple(image.shape)).encode(), digest_size=16)
        hasher.update(image.contiguous().numpy().tobytes())
        digests.append(hasher.digest())
    return digests


def weights_fingerprint(modules: Sequence[nn.Module]) -> str:
    """A hash of every parameter and buffer of ``modules``: changes when any of their numbers does."""
    hasher = hashlib.blake2b(digest_size=16)
    for module in modules:
        for name, tensor in module.state_dict().items():
            flat = tensor.detach().cpu().contiguous().reshape(-1)
            hasher.update(f"{name}{tuple(tensor.shape)}{tensor.dtype}".encode())
            if flat.numel():
                hasher.update(flat.view(torch.uint8).numpy())
    return hasher.hexdigest()


class PrefixCache:
    """The output of the frozen bottom depths of a backbone, per image, computed once and kept in memory.

    One cache can serve several backbones and cut points: each (frozen weights, ``num_frozen``)
    pair has its own table. Memory: 3 KB per 64-px image with 7 of EfficientNet-Lite0's 9
    depths frozen, 5 KB for the pooled output of the whole backbone.
    """

    def __init__(self) -> None:
        self._tables: dict[tuple, dict[bytes, torch.Tensor]] = {}

    def __len__(self) -> int:
        """How many (cut point, image) outputs are stored."""
        return sum(len(table) for table in self._tables.values())

    def clear(self) -> None:
        """Forget every stored output."""
        self._tables.clear()

    def activations(self, model: nn.Module, num_frozen: int, dataset: ImageSet, *, batch_size: int = 128,
                    device: torch.device | str | None = None) -> torch.Tensor:
        """The output of depths ``[0, num_frozen)`` for every image of ``dataset``: ``(N, C, h, w)``.

        Only images not seen before with the same frozen weights run through the model, which
        comes back as it went in (mode, device, memory layout).
        """
        func = "PrefixCache.activations"
        check_instance(model, "model", func, nn.Module, "a backbone (torch.nn.Module)")
        num_depths = backbones.spec_of(model).num_depths
        num_frozen = check_int(num_frozen, "num_frozen", func, low=1, high=num_depths)
        check_image_set(dataset, "dataset", func)
        batch_size = check_int(batch_size, "batch_size", func, low=1)
        device = repro.get_device(device)
        depths = [stage for _, stage in backbones.stages(model)[:num_frozen]]
        spec = backbones.spec_of(model)
        key = (spec.name, spec.mean, spec.std, num_frozen, weights_fingerprint(depths))
        table = self._tables.setdefault(key, {})
        digests = image_digests(dataset)
        missing = sorted({digest: row for row, digest in enumerate(digests) if digest not in table}.values())
        if missing:
            with repro.model_left_as_it_was(model), torch.inference_mode():
                model.to(device, memory_format=torch.channels_last)
                model.eval()  # frozen BatchNorm normalises with its running statistics, as in adapt.train_mode
                for rows in torch.tensor(missing, dtype=torch.int64).split(batch_size):
                    x = train.to_input(model, dataset.images[rows], device)  # (B, 3, H, W)
                    for stage in depths:
                        x = stage(x)  # (B, C_k, h_k, w_k)
                    if num_frozen == num_depths:
                        x = x.mean(dim=(2, 3), keepdim=True)  # (B, C, 1, 1): the head pools anyway
                    for row, activation in zip(rows.tolist(), x):
                        table[digests[row]] = activation.clone()
        # .to(device): an earlier run may have filled the table on another device; clone: usable by autograd
        return torch.stack([table[digest] for digest in digests]).to(device).clone()  # (N, C, h, w)

    def model_input(self, model: nn.Module, num_frozen: int, datasets: Sequence[ImageSet], *,
                    batch_size: int = 128, device: torch.device | str | None = None) -> Callable:
        """A ``model_input(dataset, indices)`` for `train.fit` / `train.evaluate` over ``datasets``.

        Pair it with ``Suffix(model, num_frozen)`` as the model to train or score.
        """
        cached = [(dataset, self.activations(model, num_frozen, dataset, batch_size=batch_size, device=device))
                  for dataset in datasets if dataset is not None]

        def model_input(dataset: ImageSet, indices: torch.Tensor) -> torch.Tensor:
            activations = next((tensor for known, tensor in cached if known is dataset), None)
            if activations is None:
                raise ValueError("PrefixCache.model_input: this dataset was not among the datasets the input "
                                 "was built for; pass it in 'datasets'.")
            return activations[indices.to(activations.device)]  # (B, C, h, w)

        return model_input
