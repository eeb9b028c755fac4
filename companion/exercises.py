"""Code exercises: checkers that run the reader's function on a small case and say what is wrong.

Scope: each ``check_*`` function takes the function a reader wrote for a code exercise of the
knowledge checks (`companion.quiz`), runs it on a small model or a synthetic data set, compares
the result with the course's own implementation, and returns a `CheckResult` that lists every
problem in plain words (an exception in the reader's code is a finding, not a crash).
`CHECKERS` maps each checker's name to it; the question files name the checker they use.

Usage::

    >>> from companion import exercises
    >>> def freeze_up_to(model, k):
    ...     pass  # forgot to freeze anything
    >>> exercises.check_freeze_up_to(freeze_up_to).passed
    False

Taught in ``notebooks/04_feature_extraction_vs_fine_tuning.ipynb`` (freezing, learning-rate
groups) and ``notebooks/02_reusable_features.ipynb`` (probes, feature extraction).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from companion.validation import check_callable

__all__ = ["CheckResult", "CHECKERS", "check_freeze_up_to", "check_param_groups", "check_probe_accuracy",
           "check_extract_features"]


@dataclass(frozen=True, repr=False)
class CheckResult:
    """What a checker found: ``passed``, else the ``problems`` in plain words."""

    name: str
    problems: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return not self.problems

    def __repr__(self) -> str:
        problems = "".join(f"\n  - {problem}" for problem in self.problems)
        return f"\u2717 {self.name}:{problems}" if problems else f"\u2713 {self.name} passes."


def _run(function: Callable, caller: str, call: str, *args) -> tuple[object, str | None]:
    check_callable(function, "function", caller, "a function (the one you wrote for the exercise)")
    try:
        return function(*args), None
    except Exception as error:  # the reader's code: an error is a finding, not a crash
        kind = "ValueError" if isinstance(error, ValueError) else type(error).__name__  # its subclasses too
        return None, f"{call} raised {kind}: {error}"


def _small_model():
    """A random-init EfficientNet-Lite0 with a 6-class head (offline, ~0.1 s) and its depths."""
    from companion import backbones
    model = backbones.load_backbone("efficientnet_lite0", pretrained=False, num_classes=6, seed=0)
    return model, backbones.stages(model)


def _freeze_problem(model, depths, k: int) -> str | None:
    """The first way in which ``model`` is not frozen exactly up to depth ``k``, if any."""
    should = f"only depths 0-{k - 1} should be frozen" if k else "no depth should be frozen"
    for depth, (name, module) in enumerate(depths):
        trainable = [p.requires_grad for p in module.parameters()]
        if depth < k and any(trainable):
            return (f"depth {depth} ({name!r}) is still trainable: {should}, but {sum(trainable)}"
                    f" of its {len(trainable)} tensors have requires_grad=True.")
        if depth >= k and not all(trainable):
            return (f"depth {depth} ({name!r}) is frozen, but {should}: set requires_grad=True "
                    "on every other depth, whatever an earlier call froze.")
    if not all(p.requires_grad for p in model.get_classifier().parameters()):
        return "the classifier is frozen: it is not a depth and must stay trainable."
    return None


def check_freeze_up_to(function: Callable) -> CheckResult:
    """Run the reader's ``freeze_up_to(model, k)`` on a small model and say what is wrong.

    >>> from companion import adapt
    >>> check_freeze_up_to(lambda model, k: adapt.freeze(model, k)).passed
    True
    """
    model, depths = _small_model()
    problems = []
    for k in (3, 9, 0, 5, 10, -1):  # 0 right after 9 catches a function that only freezes
        call = f"freeze_up_to(model, {k})"
        _, error = _run(function, "check_freeze_up_to", call, model, k)
        if k not in range(len(depths) + 1):
            if not (error or "").startswith(f"{call} raised ValueError"):
                problems.append(f"{error or call + ' returned'}; it should raise ValueError: "
                                "there are 9 depths, so k must be in [0, 9].")
        elif error or _freeze_problem(model, depths, k):
            problems.append(error or f"after {call}, {_freeze_problem(model, depths, k)}")
    return CheckResult("freeze_up_to", tuple(problems))


def _group_problems(groups: object, model, depths, lr: float, decay: float) -> list[str]:
    """Compare ``groups`` with the expected lr of every trainable parameter."""
    if not isinstance(groups, (list, tuple)) or not all(
            isinstance(group, dict) and {"params", "lr"} <= group.keys() for group in groups):
        return [f"returned a {type(groups).__name__}: return a list of dicts, each with the "
                "keys 'params' and 'lr'."]
    names, top = {id(p): name for name, p in model.named_parameters()}, len(depths) - 1
    expected = {id(p): (f"depth {d}, {name!r}", lr * decay ** (top - d),
                        f" = {lr} * {decay} ** {top - d}")
                for d, (name, module) in enumerate(depths) for p in module.parameters()}
    expected.update({id(p): ("the classifier", lr, "")
                     for p in model.get_classifier().parameters()})
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    found, seen = {}, {}  # found: one message per (kind of problem, depth)
    for group in groups:
        for p in list(group["params"]):
            seen.setdefault(id(p), []).append(group["lr"])
    for pid, rates in seen.items():
        name, (where, rate, formula) = names.get(pid), expected.get(pid, ("", 0, ""))
        if name is None:
            found.setdefault(("foreign", ""), "a group holds a tensor that is not in the model.")
        elif len(rates) > 1:
            found.setdefault(("twice", where), f"{name!r} is in {len(rates)} groups; an optimizer "
                             "refuses a parameter that appears twice.")
        elif pid not in trainable:
            found.setdefault(("frozen", where), f"{name!r} ({where}) is frozen but in a group: "
                             "leave frozen parameters out.")
        elif isinstance(rates[0], bool) or not isinstance(rates[0], (int, float)) \
                or not math.isclose(rates[0], rate, rel_tol=1e-6):
            found.setdefault(("lr", where), f"{name!r} ({where}) gets lr {rates[0]!r}; expected "
                             f"{rate:.6g}{formula}.")
    missing = [names[pid] for pid in names if pid in trainable and pid not in seen]
    if missing:
        found["missing", ""] = (f"{len(missing)} trainable tensors are in no group, e.g. "
                                f"{missing[0]!r}: the optimizer would never update them.")
    order = ("foreign", "twice", "missing", "frozen", "lr")  # the most serious problem first
    return [found[key] for key in sorted(found, key=lambda key: order.index(key[0]))]


def check_param_groups(function: Callable) -> CheckResult:
    """Run the reader's ``make_param_groups(model, lr, decay)`` and say what is wrong.

    >>> check_param_groups(lambda model, lr, decay: []).passed
    False
    """
    import torch
    problems = []
    for lr, decay, num_frozen in ((1e-3, 0.5, 0), (1e-2, 0.8, 4)):
        model, depths = _small_model()
        for _, module in depths[:num_frozen]:
            module.requires_grad_(False)
        call = f"make_param_groups(model, {lr}, {decay})"
        groups, error = _run(function, "check_param_groups", call, model, lr, decay)
        found = [error] if error else _group_problems(groups, model, depths, lr, decay)
        if not found:
            try:
                torch.optim.AdamW(groups, lr=lr)
            except Exception as optimizer_error:
                found = [f"torch.optim.AdamW rejects the groups: {optimizer_error}"]
        frozen = f" (depths 0-{num_frozen - 1} frozen)" if num_frozen else ""
        problems += [message if error else f"{call}{frozen}: {message}" for message in found[:2]]
    return CheckResult("make_param_groups", tuple(problems))


def _probe_case():
    """Three classes in 8 features of very different scales: 60 training and 60 test rows.

    A standardised logistic regression scores 0.95 on the test rows, and the usual variants
    (another C, no scaling) land within 0.05 of it; the error rate, a percentage, a score with
    shuffled labels all land far from it, so each mistake gives a number of its own.
    """
    import numpy as np
    rng = np.random.default_rng(3)
    means = rng.normal(size=(3, 8)) * 0.8
    y_train, y_test = (rng.permutation(np.arange(60) % 3) for _ in range(2))
    scale = rng.uniform(0.5, 20, size=8)
    X_train = (means[y_train] + rng.normal(size=(60, 8))) * scale
    X_test = (means[y_test] + rng.normal(size=(60, 8))) * scale
    return X_train.astype(np.float32), y_train, X_test.astype(np.float32), y_test


def _reference_probe_accuracy(X_train, y_train, X_test, y_test) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    return float(probe.fit(X_train, y_train).score(X_test, y_test))


def _as_accuracy(value: object, call: str) -> tuple[float | None, str | None]:
    """The reader's return value as a float, or the sentence saying why it is not one."""
    import numpy as np
    shape = tuple(getattr(value, "shape", ()))
    if shape and int(np.prod(shape)) > 1:
        return None, (f"{call} returned an array of shape {shape}: return one number, the "
                      "fraction of test rows predicted right (e.g. probe.score(X_test, y_test)).")
    try:
        if isinstance(value, (bool, np.bool_, str, bytes)) or value is None:
            raise TypeError
        number = float(value.item() if hasattr(value, "item") else value)
    except (TypeError, ValueError):
        return None, (f"{call} returned {type(value).__name__} {str(value)[:40]!r}: return the "
                      "accuracy as a float in [0, 1].")
    return number, None


def check_probe_accuracy(function: Callable) -> CheckResult:
    """Run the reader's ``linear_probe_accuracy(X_train, y_train, X_test, y_test)``.

    The function should fit a linear probe (logistic regression, best on standardised features)
    on the training rows only and return its accuracy on the test rows as a float in [0, 1].
    The checker compares it with a reference on a small synthetic case, then calls it again
    with shuffled training labels and with shuffled test labels: a probe fitted on the test rows,
    or scored on the training rows, does not notice. Labels arrive as torch tensors, as
    ``ImageSet.labels`` do.
    >>> check_probe_accuracy(lambda X_train, y_train, X_test, y_test: 1.0).passed
    False
    """
    import numpy as np
    import torch
    X_train, y_train, X_test, y_test = _probe_case()
    reference, tolerance = _reference_probe_accuracy(X_train, y_train, X_test, y_test), 0.1
    name, caller = "linear_probe_accuracy", "check_probe_accuracy"

    def call(X_a, y_a, X_b, y_b, what: str) -> tuple[float | None, str | None]:
        inputs = [X_a.copy(), torch.from_numpy(y_a), X_b.copy(), torch.from_numpy(y_b)]
        text = f"{name}(X_train, y_train, X_test, y_test{what})"
        value, error = _run(function, caller, text, *inputs)
        if error:
            return None, error
        for given, original, label in ((inputs[0], X_a, "X_train"), (inputs[2], X_b, "X_test")):
            if not np.array_equal(given, original):
                return None, (f"{text} changed {label} in place: leave the caller's arrays alone "
                              "(a StandardScaler in a pipeline scales a copy).")
        return _as_accuracy(value, text)

    value, problem = call(X_train, y_train, X_test, y_test, "")
    if problem:
        return CheckResult(name, (problem,))
    expected = f"expected about {reference:.3f} (a standardised logistic regression)"
    if 1 < value <= 100 and abs(value / 100 - reference) <= tolerance:
        return CheckResult(name, (f"returned {value:.4g}, a percentage: return a fraction in "
                                  f"[0, 1]; {expected}.",))
    if abs(value - reference) > tolerance:
        if abs(value - (1 - reference)) <= tolerance:
            return CheckResult(name, (f"returned {value:.3f}, which looks like the error rate: "
                                      f"return the fraction predicted right; {expected}.",))
        return CheckResult(name, (f"returned {value:.3f}; {expected}.",))
    problems = []
    rng = np.random.default_rng(0)
    shuffles = ((rng.permutation(y_train), y_test, "y_train", "the probe must learn from X_train "
                 "and y_train only, never from the test rows"),
                (y_train, rng.permutation(y_test), "y_test", "score the probe on X_test and "
                 "y_test, not on the rows it was fitted on"))
    for y_a, y_b, shuffled_name, advice in shuffles:
        shuffled, error = call(X_train, y_a, X_test, y_b, f" with {shuffled_name} shuffled")
        chance = _reference_probe_accuracy(X_train, y_a, X_test, y_b)
        if error:
            problems.append(error)
        elif shuffled == value or shuffled > chance + 0.3:
            problems.append(f"with {shuffled_name} shuffled the accuracy should fall to about "
                            f"{chance:.3f}, but it is {shuffled:.3f}: {advice}.")
    return CheckResult(name, tuple(problems))


def _batchnorm_state(model) -> dict:
    from torch.nn.modules.batchnorm import _BatchNorm
    return {f"{name}.{buffer}": getattr(module, buffer).clone()
            for name, module in model.named_modules() if isinstance(module, _BatchNorm)
            for buffer in ("running_mean", "running_var")}


def check_extract_features(function: Callable) -> CheckResult:
    """Run the reader's ``extract_pooled_features(model, x)`` and say what is wrong.

    The function should return the globally average-pooled final features ``(B, 1280)`` of a
    preprocessed batch ``x`` without changing the model: BatchNorm in eval mode (a train-mode
    forward pass moves every running mean and variance), no gradient graph, and the model's
    train/eval mode as it was. The checker calls it on a small model left in train mode, as it
    is after a training loop, then on one in eval mode.
    >>> from companion import features
    >>> check_extract_features(lambda model, x: features._global_pool(model.forward_features(x))).passed
    False
    """
    import copy

    import torch
    name, caller = "extract_pooled_features", "check_extract_features"
    problems, pristine = [], _small_model()[0]
    for was_training in (True, False):
        model = copy.deepcopy(pristine)  # running statistics as loaded, whatever the last call did
        x = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(0))  # (B, 3, H, W)
        model.eval()
        with torch.no_grad():
            expected = model.forward_features(x).mean(dim=(2, 3))  # (4, 1280)
        model.train(was_training)
        before = _batchnorm_state(model)
        mode = "train" if was_training else "eval"
        call = f"{name}(model, x) with the model in {mode} mode"
        output, error = _run(function, caller, call, model, x.clone())
        if error:
            problems.append(error)
            continue
        drifted = [key for key, value in _batchnorm_state(model).items()
                   if not torch.equal(value, before[key])]
        if drifted:
            problems.append(f"after {call}, {len(drifted)} BatchNorm running statistics changed "
                            f"(e.g. {drifted[0]!r}): the forward pass ran in train mode. Call "
                            "model.eval() before it.")
        if model.training != was_training:
            problems.append(f"after {call}, the model is in "
                            f"{'train' if model.training else 'eval'} mode: put it back as it was "
                            "(was_training = model.training ... model.train(was_training)).")
        call = f"{name}(model, x)"
        if not isinstance(output, torch.Tensor):
            problems.append(f"{call} returned {type(output).__name__}: return a torch.Tensor.")
            continue
        shape = tuple(output.shape)
        if shape == (4, 1280, 2, 2):
            problems.append(f"{call} returned shape {shape}, the feature maps: average them over "
                            "height and width (dims 2 and 3) to get (4, 1280).")
        elif shape != (4, 1280):
            problems.append(f"{call} returned shape {shape}; expected (4, 1280): the "
                            "forward_features output averaged over height and width.")
        elif output.requires_grad:
            problems.append(f"{call} returned a tensor that records gradients: compute it under "
                            "torch.no_grad() or torch.inference_mode().")
        elif not torch.allclose(output.float(), expected, atol=1e-4, rtol=1e-4):
            difference = (output.float() - expected).abs().max().item()
            problems.append(f"{call} differs from the eval-mode features by up to "
                            f"{difference:.3g}: use model.forward_features(x) in eval mode, then "
                            ".mean(dim=(2, 3)).")
    return CheckResult(name, tuple(dict.fromkeys(problems)))


CHECKERS = {"check_freeze_up_to": check_freeze_up_to, "check_param_groups": check_param_groups,
            "check_probe_accuracy": check_probe_accuracy,
            "check_extract_features": check_extract_features}


# ----------------------------------------------------------------------------- score
