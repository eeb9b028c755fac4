"""Argument checks shared by every public function of the companion.

Scope: one error type and one message shape for every bad argument, after scikit-learn's
``InvalidParameterError``: ``InvalidParameterError`` is a subclass of both ``ValueError`` and
``TypeError``, so ``except ValueError`` and ``except TypeError`` both catch it, and its message
names the function, the parameter, what is allowed and what was given::

    The 'up_to' parameter of freeze must be an int in [0, 9]. Got 12 instead.

Every checker takes ``(value, name, func, ...)`` in that order and returns the value it
accepted (ints as ``int``, floats as ``float``), so a caller writes
``batch_size = check_int(batch_size, "batch_size", "fit", low=1)``. Ints are any
``numbers.Integral`` but ``bool`` (``np.int64`` passes); floats are any finite real number.

Usage::

    >>> from companion.validation import check_int
    >>> check_int(3, "num_epochs", "fit", low=1)
    3
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from numbers import Integral, Real

import numpy as np

__all__ = ["InvalidParameterError", "invalid", "check", "check_int", "check_float", "check_bool",
           "check_choice", "check_callable", "check_instance", "check_seed", "check_image_set",
           "check_train_val", "check_features", "check_array"]


class InvalidParameterError(ValueError, TypeError):
    """A public function got an argument it cannot use; the message says what was allowed."""


def _shown(value: object) -> str:
    """A short description of ``value`` for an error message: its repr, or its type and shape."""
    if value is None or isinstance(value, (bool, Integral, Real, str)):
        text = repr(value)
        return text if len(text) <= 80 else text[:77] + "..."
    if isinstance(value, (list, tuple)) and len(repr(value)) <= 80:
        return repr(value)
    shape = getattr(value, "shape", None)
    if shape is not None:
        dtype = getattr(value, "dtype", "")
        return f"a {type(value).__name__} of shape {tuple(shape)} {dtype}".rstrip()
    return f"a {type(value).__name__}"


def invalid(value: object, name: str, func: str, allowed: str, hint: str = "") -> InvalidParameterError:
    """Build (not raise) the error for ``value`` of parameter ``name`` of ``func``.

    >>> print(invalid(9, "up_to", "freeze", "an int in [0, 8]"))
    The 'up_to' parameter of freeze must be an int in [0, 8]. Got 9 instead.
    """
    message = f"The '{name}' parameter of {func} must be {allowed}. Got {_shown(value)} instead."
    return InvalidParameterError(f"{message} {hint}" if hint else message)


def check(ok: bool, value: object, name: str, func: str, allowed: str, hint: str = "") -> None:
    """Raise `InvalidParameterError` for ``value`` unless ``ok``."""
    if not ok:
        raise invalid(value, name, func, allowed, hint)


def _bounds(low, high, low_open: bool = False, high_open: bool = False) -> str:
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    if low is not None:
        return f"{'>' if low_open else '>='} {low}"
    if high is not None:
        return f"{'<' if high_open else '<='} {high}"
    return ""


def check_int(value: object, name: str, func: str, *, low: int | None = None, high: int | None = None,
              optional: bool = False) -> int | None:
    """Return ``value`` as an int if it is an integer in ``[low, high]`` (None too if ``optional``).

    >>> import numpy as np
    >>> check_int(np.int64(4), "n_per_class", "make_dataset", low=1)
    4
    """
    if optional and value is None:
        return None
    allowed = " ".join(part for part in ("None or" if optional else "", "an int", _bounds(low, high)) if part)
    ok = isinstance(value, Integral) and not isinstance(value, bool)
    ok = ok and (low is None or value >= low) and (high is None or value <= high)
    check(ok, value, name, func, allowed)
    return int(value)


def check_float(value: object, name: str, func: str, *, low: float | None = None, high: float | None = None,
                low_open: bool = False, high_open: bool = False, optional: bool = False,
                hint: str = "") -> float | None:
    """Return ``value`` as a float if it is a finite real number within the bounds.

    ``low_open=True`` excludes ``low`` itself (``lr`` must be > 0).

    >>> check_float(3e-4, "lr", "fit", low=0.0, low_open=True)
    0.0003
    """
    if optional and value is None:
        return None
    bounds = _bounds(low, high, low_open, high_open)
    allowed = " ".join(part for part in ("None or" if optional else "", "a float", bounds) if part)
    ok = isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    check(ok, value, name, func, allowed, hint)
    return float(value)


def check_bool(value: object, name: str, func: str) -> bool:
    """Return ``value`` if it is True or False."""
    check(isinstance(value, bool), value, name, func, "True or False")
    return value


def check_choice(value: object, name: str, func: str, choices: Iterable) -> object:
    """Return ``value`` if it is one of ``choices``.

    >>> check_choice("sgd", "optimizer", "fit", ("adamw", "sgd"))
    'sgd'
    """
    choices = tuple(choices)
    check(isinstance(value, type(choices[0])) and value in choices, value, name, func, f"one of {choices}")
    return value


def check_callable(value: object, name: str, func: str, allowed: str, *, optional: bool = False) -> Callable | None:
    """Return ``value`` if it is callable (or None when ``optional``); ``allowed`` describes it."""
    check(callable(value) or (optional and value is None), value, name, func, allowed)
    return value


def check_instance(value: object, name: str, func: str, types: type | tuple[type, ...], allowed: str,
                   *, optional: bool = False, hint: str = "") -> object:
    """Return ``value`` if it is an instance of ``types`` (or None when ``optional``)."""
    check(isinstance(value, types) or (optional and value is None), value, name, func, allowed, hint)
    return value


def check_seed(value: object, name: str, func: str, *, optional: bool = False) -> int | None:
    """Return a seed: an int >= 0 (None too when ``optional``)."""
    return check_int(value, name, func, low=0, optional=optional)


def check_image_set(value: object, name: str, func: str, *, min_classes: int = 1) -> None:
    """Check that ``value`` is a non-empty `companion.data.ImageSet` holding ``min_classes`` classes."""
    from companion.data import ImageSet  # data imports this module

    check_instance(value, name, func, ImageSet, "a companion.data.ImageSet")
    check(len(value) > 0, value, name, func, "a non-empty ImageSet", "It holds 0 images.")
    num_present = len(set(value.labels.tolist()))
    check(num_present >= min_classes, value, name, func, f"an ImageSet with at least {min_classes} classes",
          f"It holds {num_present} (a classifier cannot learn from one class).")


def check_train_val(train_set: object, val_set: object, func: str) -> None:
    """A training set with at least two classes, and an optional validation set with the same classes."""
    check_image_set(train_set, "train_set", func, min_classes=2)
    if val_set is not None:
        check_image_set(val_set, "val_set", func)
        check(val_set.classes == train_set.classes, val_set, "val_set", func,
              "an ImageSet with the same classes as train_set",
              f"Its classes are {val_set.classes}; train_set's are {train_set.classes}.")


def check_array(value: object, name: str, function: str, *, kinds: str, ndim: int, kind_text: str,
                shape_text: str, hint: str = "") -> np.ndarray:
    """Return ``value`` as an array whose dtype kind is one of ``kinds`` and with ``ndim`` axes, or raise.

    >>> check_array([1, 2], "labels", "f", kinds="iu", ndim=1, kind_text="integer labels",
    ...             shape_text="(n_samples,)").shape
    (2,)
    """
    array = np.asarray(value)
    if array.dtype.kind not in kinds:
        raise InvalidParameterError(
            f"The '{name}' parameter of {function} must be {kind_text}. Got an array of dtype "
            f"{array.dtype} instead."
        )
    if array.ndim != ndim:
        raise InvalidParameterError(
            f"The '{name}' parameter of {function} must be a {ndim}-D array of shape {shape_text}. "
            f"Got an array of shape {array.shape} instead.{hint}"
        )
    return array


def check_features(
    features: object, name: str, function: str, min_samples: int = 2
) -> np.ndarray:
    """Return ``features`` as a finite float64 array of shape (N, D), or raise (similarity, transferability)."""
    array = check_array(features, name, function, kinds="iuf", ndim=2,
                        kind_text="a real-valued numeric array of shape (n_samples, n_features)",
                        shape_text="(n_samples, n_features)",
                        hint=" Pool or flatten each example's features first, e.g. "
                             "features.reshape(len(features), -1).")
    num_samples, num_features = array.shape
    if num_samples < min_samples:
        raise InvalidParameterError(
            f"The '{name}' parameter of {function} must have at least {min_samples} samples "
            f"(rows). Got {num_samples} instead."
        )
    if num_features < 1:
        raise InvalidParameterError(
            f"The '{name}' parameter of {function} must have at least 1 feature (column). "
            f"Got 0 instead."
        )
    array = array.astype(np.float64, copy=False)
    num_bad = int(np.count_nonzero(~np.isfinite(array)))
    if num_bad:
        raise InvalidParameterError(
            f"The '{name}' parameter of {function} must contain only finite values. Got "
            f"{num_bad} NaN or infinite entries instead; drop or impute them first."
        )
    return array
