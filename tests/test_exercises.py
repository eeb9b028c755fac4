"""Tests for companion.exercises: the checkers of the code exercises find and name each mistake."""

from __future__ import annotations

import re

import pytest

from quiz_questions import by_id as _by_id, function_from as _function

from companion import backbones, exercises, quiz


@pytest.mark.parametrize("qid", ["ch04-freeze-up-to", "ch05-param-groups", "ch02-probe-accuracy",
                                 "ch05-extract-features"])
def test_checker_accepts_the_reference_solution_and_refuses_the_starter(qid):
    """Check that each code exercise's checker passes its solution and fails its starter code."""
    question = _by_id(qid)
    checker = exercises.CHECKERS[question["checker"]]
    result = checker(_function(question["solution"], question["function"]))
    assert result.passed and repr(result).startswith("\u2713")
    result = checker(_function(question["starter"], question["function"]))
    assert not result.passed and repr(result).startswith("\u2717")


FREEZE_MISTAKES = {
    "only freezes, never unfreezes": (
        "def freeze_up_to(model, k):\n"
        "    if not 0 <= k <= 9:\n        raise ValueError(k)\n"
        "    for depth, (name, module) in enumerate(backbones.stages(model)):\n"
        "        if depth < k:\n            module.requires_grad_(False)\n",
        r"after freeze_up_to\(model, 0\), depth 0 \('stem'\) is frozen, but no depth should be"),
    "off by one": (
        "def freeze_up_to(model, k):\n"
        "    if not 0 <= k <= 9:\n        raise ValueError(k)\n"
        "    for depth, (name, module) in enumerate(backbones.stages(model)):\n"
        "        module.requires_grad_(depth > k)\n",
        r"after freeze_up_to\(model, 3\), depth 3 \('blocks.2'\) is frozen, but only depths 0-2"),
    "freezes the classifier too": (
        "def freeze_up_to(model, k):\n"
        "    if not 0 <= k <= 9:\n        raise ValueError(k)\n"
        "    model.requires_grad_(k == 0)\n",
        r"after freeze_up_to\(model, 3\), depth 3 \('blocks.2'\) is frozen"),
    "skips a depth": (
        "def freeze_up_to(model, k):\n"
        "    if not 0 <= k <= 9:\n        raise ValueError(k)\n"
        "    for depth, (name, module) in enumerate(backbones.stages(model)):\n"
        "        module.requires_grad_(depth >= k or depth == 1)\n",
        r"after freeze_up_to\(model, 3\), depth 1 \('blocks.0'\) is still trainable: only "
        r"depths 0-2 should be frozen, but 6 of its 6 tensors have requires_grad=True"),
    "no validation": (
        "def freeze_up_to(model, k):\n"
        "    for depth, (name, module) in enumerate(backbones.stages(model)):\n"
        "        module.requires_grad_(depth >= k)\n",
        r"freeze_up_to\(model, 10\) returned; it should raise ValueError: there are 9 depths"),
    "crashes": (
        "def freeze_up_to(model, k):\n    model.stages[k].freeze()\n",
        r"freeze_up_to\(model, 3\) raised AttributeError: 'EfficientNet' object has no attribute"),
}


def test_check_freeze_up_to_names_a_frozen_classifier():
    """Check that freezing the classifier with the backbone is reported as such."""
    def freeze_up_to(model, k):
        if not 0 <= k <= 9:
            raise ValueError(k)
        for depth, (name, module) in enumerate(backbones.stages(model)):
            module.requires_grad_(depth >= k)
        model.get_classifier().requires_grad_(k < 9)

    assert "after freeze_up_to(model, 9), the classifier is frozen: it is not a depth" in \
        repr(exercises.check_freeze_up_to(freeze_up_to))


GROUP_MISTAKES = {
    "decay the wrong way": (
        "    return [{'params': [p for p in module.parameters() if p.requires_grad],\n"
        "             'lr': lr * decay ** depth} for depth, (name, module) in enumerate(depths)]"
        " + [{'params': list(model.get_classifier().parameters()), 'lr': lr}]\n",
        r"make_param_groups\(model, 0.001, 0.5\): 'conv_stem.weight' \(depth 0, 'stem'\) gets lr "
        r"0.001; expected 3.90625e-06 = 0.001 \* 0.5 \*\* 8\."),
    "keeps frozen parameters": (
        "    return [{'params': list(module.parameters()), 'lr': lr * decay ** (8 - depth)}\n"
        "            for depth, (name, module) in enumerate(depths)]"
        " + [{'params': list(model.get_classifier().parameters()), 'lr': lr}]\n",
        r"\(depths 0-3 frozen\): 'conv_stem.weight' \(depth 0, 'stem'\) is frozen but in a group"),
    "forgets the classifier": (
        "    return [{'params': list(module.parameters()), 'lr': lr * decay ** (8 - depth)}\n"
        "            for depth, (name, module) in enumerate(depths)]\n",
        r"2 trainable tensors are in no group, e.g. 'classifier.weight'"),
    "adds the whole model again": (
        "    return [{'params': list(model.parameters()), 'lr': lr}]"
        " + [{'params': list(model.get_classifier().parameters()), 'lr': lr}]\n",
        r"'classifier.weight' is in 2 groups; an optimizer refuses"),
    "returns the parameters": (
        "    return model.parameters()\n",
        r"returned a generator: return a list of dicts, each with the keys 'params' and 'lr'"),
}


@pytest.mark.parametrize("checker", sorted(exercises.CHECKERS.values(), key=lambda c: c.__name__))
def test_checkers_reject_what_is_not_a_function(checker):
    """Check that a checker given no function raises a TypeError that says so."""
    with pytest.raises(TypeError, match=r"'function' parameter of check_\w+ must be a function \(the one you "
                                        r"wrote for the exercise\). Got 'freeze_up_to' instead"):
        checker("freeze_up_to")


PROBE = ("from sklearn.linear_model import LogisticRegression\n"
         "from sklearn.pipeline import make_pipeline\n"
         "from sklearn.preprocessing import StandardScaler\n\n"
         "def linear_probe_accuracy(X_train, y_train, X_test, y_test):\n"
         "    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))\n")
PROBE_MISTAKES = {
    "a percentage": (
        "    return 100 * probe.fit(X_train, y_train).score(X_test, y_test)\n",
        r"returned 95, a percentage: return a fraction in \[0, 1\]; expected about 0.950"),
    "the error rate": (
        "    return 1 - probe.fit(X_train, y_train).score(X_test, y_test)\n",
        r"returned 0.050, which looks like the error rate"),
    "fitted on the test rows": (
        "    return probe.fit(X_test, y_test).score(X_test, y_test)\n",
        r"with y_train shuffled the accuracy should fall to about 0.200, but it is 0.983: the "
        r"probe must learn from X_train and y_train only"),
    "fitted on train and test rows": (
        "    import numpy as np\n"
        "    probe.fit(np.concatenate([X_train, X_test]), np.concatenate([y_train, y_test]))\n"
        "    return probe.score(X_test, y_test)\n",
        r"with y_train shuffled the accuracy should fall to about 0.200, but it is 0.933"),
    "scored on the training rows": (
        "    return probe.fit(X_train, y_train).score(X_train, y_train)\n",
        r"with y_test shuffled .* score the probe on X_test and y_test, not on the rows it was"),
    "one value per row": (
        "    return probe.fit(X_train, y_train).predict(X_test) == y_test.numpy()\n",
        r"returned an array of shape \(60,\): return one number"),
    "scales in place": (
        "    X_train -= X_train.mean(0)\n"
        "    return probe.fit(X_train, y_train).score(X_test, y_test)\n",
        r"changed X_train in place: leave the caller's arrays alone"),
    "labels as numpy only": (
        "    return probe.fit(X_train, y_train.numpy()).score(X_test, y_test.astype(int))\n",
        r"raised AttributeError: 'Tensor' object has no attribute 'astype'"),
}


def test_check_probe_accuracy_accepts_a_probe_without_scaling():
    """Check that an unscaled logistic regression, a reasonable variant, passes too."""
    source = ("from sklearn.linear_model import LogisticRegression\n\n"
              "def linear_probe_accuracy(X_train, y_train, X_test, y_test):\n"
              "    return LogisticRegression(max_iter=5000).fit(X_train, y_train)"
              ".score(X_test, y_test)\n")
    assert exercises.check_probe_accuracy(_function(source, "linear_probe_accuracy")).passed


EXTRACT = "import torch\n\ndef extract_pooled_features(model, x):\n"
EXTRACT_MISTAKES = {
    "train mode": (
        "    with torch.no_grad():\n"
        "        return model.forward_features(x).mean(dim=(2, 3))\n",
        r"after extract_pooled_features\(model, x\) with the model in train mode, 98 BatchNorm "
        r"running statistics changed \(e.g. 'bn1.running_mean'\): .* Call model.eval\(\)"),
    "eval mode for good": (
        "    model.eval()\n"
        "    with torch.no_grad():\n"
        "        return model.forward_features(x).mean(dim=(2, 3))\n",
        r"with the model in train mode, the model is in eval mode: put it back as it was"),
    "always back to train mode": (
        "    model.eval()\n"
        "    with torch.no_grad():\n"
        "        features = model.forward_features(x).mean(dim=(2, 3))\n"
        "    model.train()\n"
        "    return features\n",
        r"with the model in eval mode, the model is in train mode: put it back"),
    "records gradients": (
        "    was_training = model.eval().training\n"
        "    return model.forward_features(x).mean(dim=(2, 3))\n",
        r"returned a tensor that records gradients: compute it under torch.no_grad\(\)"),
    "feature maps": (
        "    with torch.no_grad():\n"
        "        return model.eval().forward_features(x)\n",
        r"returned shape \(4, 1280, 2, 2\), the feature maps: average them over height"),
    "logits": (
        "    with torch.no_grad():\n"
        "        return model.eval()(x)\n",
        r"returned shape \(4, 6\); expected \(4, 1280\)"),
}


GROUPS = ("from companion import backbones\n\n"
          "def make_param_groups(model, lr, decay):\n"
          "    depths = backbones.stages(model)\n")
# checker -> (the source before each mistake's code, the function's name, the mistakes)
MISTAKES = {"check_freeze_up_to": ("from companion import backbones\n", "freeze_up_to", FREEZE_MISTAKES),
            "check_param_groups": (GROUPS, "make_param_groups", GROUP_MISTAKES),
            "check_probe_accuracy": (PROBE, "linear_probe_accuracy", PROBE_MISTAKES),
            "check_extract_features": (EXTRACT, "extract_pooled_features", EXTRACT_MISTAKES)}
CASES = [(checker, mistake) for checker, (_, _, mistakes) in MISTAKES.items() for mistake in sorted(mistakes)]


@pytest.mark.parametrize("checker, mistake", CASES, ids=[f"{checker}-{mistake}" for checker, mistake in CASES])
def test_checkers_say_what_is_wrong(checker, mistake):
    """Check that each checker names the call, the depth or tensor and what was expected, for each known mistake."""
    prefix, name, mistakes = MISTAKES[checker]
    source, message = mistakes[mistake]
    result = exercises.CHECKERS[checker](_function(prefix + source, name))
    assert not result.passed
    assert re.search(message, repr(result)), repr(result)


def test_every_checker_has_a_code_question():
    """Check that each checker of exercises.CHECKERS is used by a code exercise, and there are >= 4."""
    used = {question["checker"] for question in quiz.questions() if question["type"] == "code"}
    assert used == set(exercises.CHECKERS) and len(used) >= 4
    assert all(exercises.CHECKERS[name].__name__ == name for name in exercises.CHECKERS)


def test_check_result_repr_lists_the_problems():
    """Check that a CheckResult passes without problems and lists them, one per line, otherwise."""
    assert exercises.CheckResult("f", ()).passed and repr(exercises.CheckResult("f", ())) == "\u2713 f passes."
    failed = exercises.CheckResult("f", ("one", "two"))
    assert not failed.passed and repr(failed) == "\u2717 f:\n  - one\n  - two"

