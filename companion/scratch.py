"""The from-scratch baseline: a small CNN that every transfer strategy has to beat.

Scope: `ScratchCNN`, five conv-BatchNorm-ReLU blocks, global average pooling and a linear
classifier, and `make_scratch_cnn`, which builds one with reproducible random weights. Like a
timm model it answers ``forward_features``, ``forward_head``, ``get_classifier`` and
``reset_classifier``, and it carries a `companion.backbones.BackboneSpec`, so `train.fit`,
the frozen-prefix cache and the probes treat it like any backbone. Its recipe (learning-rate
grid, schedule) is ``companion.recipes.RECIPES["scratch"]``.

Usage::

    >>> from companion import scratch
    >>> model = scratch.make_scratch_cnn(num_classes=6, seed=0)
    >>> model.spec.num_depths, model.num_features
    (5, 128)

Taught in ``notebooks/04_feature_extraction_vs_fine_tuning.ipynb``.
"""

from __future__ import annotations

import torch
from torch import nn

from companion.backbones import BackboneSpec
from companion.validation import check, check_int, check_seed

__all__ = ["ScratchCNN", "make_scratch_cnn", "scratch_spec"]

_STRIDES = (2, 2, 2, 1, 2)


def scratch_spec(width: int) -> BackboneSpec:
    """The `BackboneSpec` of a `ScratchCNN` of ``width`` base channels (inputs scaled to [-1, 1])."""
    channels = (width // 2, width, 2 * width, 2 * width, 4 * width)
    strides, total = [], 1
    for stride in _STRIDES:
        total *= stride
        strides.append(total)
    return BackboneSpec(name=f"scratch_cnn_w{width}", timm_name=None, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
                        image_size=64, stage_layout=tuple((f"block{i}", (f"blocks.{i}",)) for i in range(5)),
                        channels=channels, strides=tuple(strides), classifier="classifier",
                        first_conv="blocks.0.0", weights="none")


class ScratchCNN(nn.Module):
    """Five conv-BN-ReLU blocks, global average pooling and a linear classifier.

    At 64 px the feature maps are 32, 16, 8, 8 and 4 px with ``w/2, w, 2w, 2w, 4w``
    channels: a defect of a few pixels still spans cells of the 16-px map, and the stride-1
    block at 8 px adds context before the last downsampling.
    """

    def __init__(self, num_classes: int, width: int = 32) -> None:
        super().__init__()
        self.spec = self.backbone_spec = scratch_spec(width)
        channels = (3,) + self.spec.channels
        self.blocks = nn.Sequential(*(
            nn.Sequential(nn.Conv2d(channels[i], channels[i + 1], 3, stride, padding=1, bias=False),
                          nn.BatchNorm2d(channels[i + 1]), nn.ReLU(inplace=True))
            for i, stride in enumerate(_STRIDES)))
        self.num_features = channels[-1]
        self.num_classes = num_classes
        self.classifier = nn.Linear(self.num_features, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)  # (B, 4w, H/16, W/16)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(x.mean(dim=(2, 3)))  # (B, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))  # (B, num_classes)

    def get_classifier(self) -> nn.Linear:
        return self.classifier

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.classifier = nn.Linear(self.num_features, num_classes)


def make_scratch_cnn(num_classes: int, width: int = 32, seed: int | None = None) -> ScratchCNN:
    """A randomly initialised `ScratchCNN`; ``seed`` fixes its weights without touching the global RNG.

    Train it with the same recipe, learning-rate search and data as the transferred models, so
    the comparison is fair.

    >>> make_scratch_cnn(num_classes=6, width=16, seed=0).num_features
    64
    """
    func = "make_scratch_cnn"
    num_classes = check_int(num_classes, "num_classes", func, low=2)
    width = check_int(width, "width", func, low=2)
    check(width % 2 == 0, width, "width", func, "an even int >= 2")
    seed = check_seed(seed, "seed", func, optional=True)
    with torch.random.fork_rng(devices=[], enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        return ScratchCNN(num_classes, width)
