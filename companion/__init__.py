"""Companion package of the *Transfer Learning Fundamentals* course.

One module per idea; import them explicitly, e.g. ``from companion import data, backbones``:

- ``data``: the procedural warehouse-defect dataset, splits, few-shot subsets, ``ImageFolder``.
- ``render``: the vectorised renderer and camera setups behind ``data``.
- ``backbones``: pretrained (offline) and random-init backbones, stages, preprocessing.
- ``adapt``: freezing by depth, heads, BatchNorm handling, parameter groups.
- ``features``: cached feature extraction and linear probes.
- ``train``: the one training loop every strategy uses.
- ``similarity``: domain / representation similarity and transferability scores.
- ``repro``: seeding, deterministic mode, device choice, environment report.
- ``plots``: every figure of the course.
"""

__version__ = "0.1.0"
