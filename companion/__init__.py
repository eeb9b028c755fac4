"""Companion package of the *Transfer Learning Fundamentals* course.

One module per idea; import them explicitly, e.g. ``from companion import data, backbones``.
Each names the chapter that teaches it.

Data (chapter 1):

- ``cameras``: camera setups (the existing camera, the new camera, the x-ray scanner), the dial.
- ``render``: the procedural renderer of parcel photos with defects and distractors.
- ``data``: ``ImageSet``, rendered datasets, splits, few-shot subsets, your own photo folders.
- ``cache``: the one reader and writer of every on-disk cache.

Backbones and their features (chapters 1 and 2):

- ``backbones``: the registry of backbone facts, loading offline, depths, preprocessing.
- ``imagenet``: ImageNet class names and predictions, the sanity check of a loaded backbone.
- ``features``: cached feature extraction, per depth.
- ``probes``: linear probes on features.

Similarity (chapter 3):

- ``similarity``: domain distances, CKA, and the distance from the source read off BatchNorm.
- ``transferability``: LogME, a score computed before any training.

Training and comparing strategies (chapter 4, used by every lab):

- ``validation``: one error type and one message shape for every bad argument.
- ``adapt``: freezing by depth, heads, BatchNorm handling, learning-rate groups.
- ``train``: the one training loop.
- ``scratch``: the from-scratch CNN baseline.
- ``prefix``: frozen depths computed once per image.
- ``recipes``: one training recipe per strategy, as data.
- ``strategies``: the reuse strategies, their learning-rate search and their evaluation.
- ``grid``: strategies x label budgets x seeds, the schedule check, the run cache.
- ``compare``: paired differences with 95 % intervals; ties named as ties.

Labs (chapters 5 to 8):

- ``efficiency``: reading sample-efficiency curves (chapter 6).
- ``layer_transfer``: Yosinski et al.'s layer-transfer experiment in miniature (chapter 7).
- ``guide``: the decision guide (chapter 8).
- ``checkpoints``: one safetensors file per classifier, reloaded and used on photos (chapter 8).

Around the chapters:

- ``repro``: seeding, deterministic mode, the device, an environment report (every chapter).
- ``plots`` and ``charts``: every figure of the course.
- ``quiz`` and ``exercises``: the self-grading knowledge checks and code exercises.
"""

__version__ = "0.2.0"
