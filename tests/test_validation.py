"""Tests for companion.validation: every checker, the error type and the message shape."""

import re

import numpy as np
import pytest
import torch

from companion import validation
from companion.data import ImageSet
from companion.validation import (InvalidParameterError, check, check_bool, check_callable, check_choice,
                                  check_float, check_image_set, check_instance, check_int, check_seed,
                                  check_train_val, invalid)

MESSAGE = re.compile(r"The '(?P<name>\w+)' parameter of (?P<func>[\w.]+) must be (?P<allowed>.+)\. "
                     r"Got (?P<value>.+) instead\.(?: (?P<hint>.+))?$")


def image_set(labels, classes=("a", "b", "c")) -> ImageSet:
    labels = torch.as_tensor(labels, dtype=torch.int64)
    return ImageSet(torch.zeros(len(labels), 3, 4, 4, dtype=torch.uint8), labels, classes)


def raised(call) -> InvalidParameterError:
    with pytest.raises(InvalidParameterError) as info:
        call()
    return info.value


def test_the_error_is_both_a_value_error_and_a_type_error():
    """Check that InvalidParameterError is caught by except ValueError and by except TypeError."""
    assert issubclass(InvalidParameterError, ValueError) and issubclass(InvalidParameterError, TypeError)
    for kind in (ValueError, TypeError):
        with pytest.raises(kind):
            check_int("3", "n", "f")


def test_the_message_names_parameter_function_allowed_value_and_hint():
    """Check the message shape: parameter, function, what is allowed, what was given, then the hint."""
    error = invalid(9, "up_to", "freeze", "an int in [0, 8]", "There are 9 depths.")
    match = MESSAGE.fullmatch(str(error))
    assert isinstance(error, InvalidParameterError) and match
    assert match.groupdict() == {"name": "up_to", "func": "freeze", "allowed": "an int in [0, 8]", "value": "9",
                                 "hint": "There are 9 depths."}
    assert str(invalid(9, "up_to", "freeze", "an int")) == ("The 'up_to' parameter of freeze must be an int. "
                                                            "Got 9 instead.")


@pytest.mark.parametrize("value, shown", [
    (None, "None"), (True, "True"), ("abc", "'abc'"), (2.5, "2.5"), ([1, 2], "[1, 2]"),
    ("x" * 200, "'" + "x" * 76 + "..."),
    (torch.zeros(2, 3, dtype=torch.uint8), "a Tensor of shape (2, 3) torch.uint8"),
    (np.zeros((4,)), "a ndarray of shape (4,) float64"),
    (object(), "a object"), (list(range(100)), "a list"),
])
def test_the_given_value_is_shown_briefly(value, shown):
    """Check that values are shown as a short repr, and arrays and long lists by type and shape."""
    assert MESSAGE.fullmatch(str(invalid(value, "x", "f", "something"))).group("value") == shown


def test_check_raises_only_when_not_ok():
    """Check that check passes when ok and raises the built message (with its hint) otherwise."""
    assert check(True, 1, "x", "f", "anything") is None
    error = raised(lambda: check(False, 1, "x", "f", "two", "Use 2."))
    assert str(error) == "The 'x' parameter of f must be two. Got 1 instead. Use 2."


@pytest.mark.parametrize("value", [3, np.int64(3), np.int32(3), np.uint8(3), torch.tensor(3).item()])
def test_check_int_accepts_every_integral_type_and_returns_a_python_int(value):
    """Check that numpy integers pass as ints and come back as Python ints."""
    result = check_int(value, "n", "f", low=1, high=3)
    assert result == 3 and type(result) is int


@pytest.mark.parametrize("value, kwargs, allowed", [
    (True, {}, "an int"),
    (np.bool_(True), {}, "an int"),
    (2.0, {"low": 1}, "an int >= 1"),
    ("3", {}, "an int"),
    (0, {"low": 1}, "an int >= 1"),
    (10, {"high": 9}, "an int <= 9"),
    (12, {"low": 0, "high": 9}, "an int in [0, 9]"),
    (None, {"low": 1}, "an int >= 1"),
    (-1, {"low": 0, "optional": True}, "None or an int >= 0"),
])
def test_check_int_refuses_bools_floats_strings_and_out_of_range(value, kwargs, allowed):
    """Check that bools are not ints, floats and strings are refused, and the bounds are named."""
    match = MESSAGE.fullmatch(str(raised(lambda: check_int(value, "n", "f", **kwargs))))
    assert match.group("allowed") == allowed


def test_check_int_optional_and_bounds_inclusive():
    """Check that None passes only when optional and both bounds are inclusive."""
    assert check_int(None, "n", "f", optional=True) is None
    assert check_int(0, "n", "f", low=0, high=0) == 0


@pytest.mark.parametrize("value", [0.5, 1, np.float32(0.5), np.int64(1), np.float64(1.0)])
def test_check_float_accepts_real_numbers_and_returns_a_python_float(value):
    """Check that ints and numpy numbers pass as floats and come back as Python floats."""
    result = check_float(value, "lr", "fit", low=0.0, high=1.0, low_open=True)
    assert type(result) is float and result == float(value)


@pytest.mark.parametrize("value, kwargs, allowed", [
    (0.0, {"low": 0.0, "low_open": True}, "a float > 0.0"),
    (-1.0, {"low": 0.0}, "a float >= 0.0"),
    (1.0, {"high": 1.0, "high_open": True}, "a float < 1.0"),
    (1.5, {"low": 0.0, "high": 1.0, "low_open": True}, "a float in (0.0, 1.0]"),
    (1.0, {"low": 0.0, "high": 1.0, "high_open": True}, "a float in [0.0, 1.0)"),
    (float("nan"), {}, "a float"),
    (float("inf"), {}, "a float"),
    (True, {}, "a float"),
    ("0.1", {}, "a float"),
    (None, {"low": 0.0, "optional": True, "low_open": True}, None),
])
def test_check_float_refuses_non_finite_bools_strings_and_out_of_range(value, kwargs, allowed):
    """Check that NaN, inf, bools and strings are refused and open or closed bounds are named."""
    if allowed is None:
        assert check_float(value, "lr", "fit", **kwargs) is None
        return
    match = MESSAGE.fullmatch(str(raised(lambda: check_float(value, "lr", "fit", **kwargs))))
    assert match.group("allowed") == allowed and match.group("func") == "fit"


def test_check_float_appends_its_hint():
    """Check that a hint follows the message."""
    error = raised(lambda: check_float(55.0, "accuracy", "f", low=0.0, high=1.0, hint="A fraction, not a percentage."))
    assert str(error).endswith("Got 55.0 instead. A fraction, not a percentage.")


@pytest.mark.parametrize("value", [1, 0, "True", None, np.bool_(True)])
def test_check_bool_accepts_only_true_and_false(value):
    """Check that only the two bools pass (not 1, 0, strings, None or numpy bools)."""
    assert check_bool(True, "b", "f") is True and check_bool(False, "b", "f") is False
    assert MESSAGE.fullmatch(str(raised(lambda: check_bool(value, "b", "f")))).group("allowed") == "True or False"


def test_check_choice_accepts_members_and_lists_the_choices():
    """Check that a member passes and anything else, a value of another type too, lists the choices."""
    assert check_choice("sgd", "optimizer", "fit", ["adamw", "sgd"]) == "sgd"
    for value in ("adam", 1, None, ("sgd",)):
        error = raised(lambda: check_choice(value, "optimizer", "fit", ("adamw", "sgd")))
        assert MESSAGE.fullmatch(str(error)).group("allowed") == "one of ('adamw', 'sgd')"


def test_check_callable_and_check_instance():
    """Check that callables and instances pass, None only when optional, and the description is used."""
    assert check_callable(len, "f", "g", "a function") is len
    assert check_callable(None, "f", "g", "None or a function", optional=True) is None
    assert "must be a function. Got None" in str(raised(lambda: check_callable(None, "f", "g", "a function")))
    assert check_instance(3, "x", "g", (int, float), "a number") == 3
    assert check_instance(None, "x", "g", int, "None or an int", optional=True) is None
    error = raised(lambda: check_instance("3", "x", "g", int, "an int", hint="Convert it."))
    assert str(error) == "The 'x' parameter of g must be an int. Got '3' instead. Convert it."


def test_check_seed():
    """Check that a seed is an int >= 0 (np.int64 too), None only when optional."""
    assert check_seed(np.int64(7), "seed", "f") == 7 and check_seed(None, "seed", "f", optional=True) is None
    for value in (-1, 1.5, True, None):
        assert "'seed' parameter of f must be" in str(raised(lambda: check_seed(value, "seed", "f")))


def test_check_image_set():
    """Check that an ImageSet passes and a non-ImageSet, an empty one or too few classes are refused."""
    assert check_image_set(image_set([0, 1]), "train_set", "fit", min_classes=2) is None
    assert "must be a companion.data.ImageSet. Got a Tensor" in str(
        raised(lambda: check_image_set(torch.zeros(2, 3, 4, 4), "train_set", "fit")))
    assert "must be a non-empty ImageSet" in str(raised(lambda: check_image_set(image_set([]), "dataset", "f")))
    error = str(raised(lambda: check_image_set(image_set([1, 1]), "train_set", "fit", min_classes=2)))
    assert "must be an ImageSet with at least 2 classes" in error and "It holds 1" in error


def test_check_train_val():
    """Check that the training set needs 2 classes, the validation set is optional but must share the classes."""
    train = image_set([0, 1, 2])
    assert check_train_val(train, None, "fit") is None and check_train_val(train, image_set([0]), "fit") is None
    assert "'train_set' parameter of fit" in str(raised(lambda: check_train_val(image_set([0]), None, "fit")))
    other = image_set([0, 1], classes=("x", "y", "z"))
    assert "'val_set' parameter of fit must be an ImageSet with the same classes as train_set" in str(
        raised(lambda: check_train_val(train, other, "fit")))
    assert "'val_set' parameter of fit must be a non-empty" in str(
        raised(lambda: check_train_val(train, image_set([]), "fit")))


def test_check_features_returns_a_finite_float_matrix_or_names_what_is_wrong():
    """Check that integer and float (N, D) arrays come back as float64; bad dtype, shape, size and NaN are refused."""
    out = validation.check_features([[1, 2], [3, 4]], "X", "f")
    assert out.dtype == np.float64 and out.shape == (2, 2)
    for value, message in (([["a", "b"], ["c", "d"]], "real-valued numeric array"), (np.zeros(4), "2-D array"),
                           (np.zeros((1, 3)), "at least 2 samples"), (np.zeros((3, 0)), "at least 1 feature"),
                           (np.array([[0.0, np.nan], [1.0, 2.0]]), "only finite values. Got 1 NaN")):
        with pytest.raises(InvalidParameterError, match=re.escape(message)):
            validation.check_features(value, "X", "f")


def test_check_array_checks_the_dtype_kind_then_the_axes():
    """Check that check_array returns the array, and names the parameter, the rule and the value given."""
    kwargs = dict(kinds="iu", ndim=1, kind_text="integer labels", shape_text="(n_samples,)", hint=" Flatten it.")
    np.testing.assert_array_equal(validation.check_array([3, 1], "y", "f", **kwargs), [3, 1])
    with pytest.raises(validation.InvalidParameterError, match=r"'y' parameter of f must be integer labels\. "
                                                                r"Got an array of dtype float64 instead\."):
        validation.check_array([0.5], "y", "f", **kwargs)
    with pytest.raises(ValueError, match=r"must be a 1-D array of shape \(n_samples,\)\. Got an array of shape "
                                         r"\(1, 2\) instead\. Flatten it\."):
        validation.check_array([[1, 2]], "y", "f", **kwargs)


def test_every_public_checker_is_tested():
    """Check that __all__ lists exactly the checkers tested here (a new one needs a test)."""
    assert set(validation.__all__) == {"InvalidParameterError", "invalid", "check", "check_int", "check_float",
                                       "check_bool", "check_choice", "check_callable", "check_instance",
                                       "check_seed", "check_image_set", "check_train_val", "check_features",
                                       "check_array"}
