"""Comparison processes: eq, neq, gt, gte, lt, lte, between.

Types are checked strictly (spec): "1" is not 1, false is not 0, and ordering comparisons of
anything but numbers are false. No-data gives no-data (scalars: None; arrays: an all-NaN float
array when an operand is the scalar None). NaN compares as in IEEE 754 (always unequal).
"""

from __future__ import annotations

import operator
from typing import Any, Callable

import numpy as np

from terracube.engine.processes._elementwise import (
    is_array,
    is_boolean,
    is_number,
    nodata_like,
    vectorised,
)
from terracube.engine.registry import process


def _kind(value: Any) -> str:
    """The openEO type of a scalar, or of the elements of an array."""
    if is_array(value):
        return {"b": "boolean", "i": "number", "u": "number", "f": "number",
                "U": "string", "S": "string", "M": "datetime"}.get(value.dtype.kind, "other")
    if value is None:
        return "null"
    if is_boolean(value):
        return "boolean"
    if is_number(value):
        return "number"
    if isinstance(value, str):
        return "string"
    return "other"


def _array_operand(operands: tuple[Any, ...]) -> Any:
    return next((v for v in operands if is_array(v)), None)


def _constant(template: Any, value: bool) -> Any:
    """A boolean array shaped like `template` holding `value` everywhere (lazily)."""
    return vectorised(lambda a: np.full(np.shape(a), value), template, dtype=bool)


def _compare(op: Callable[[Any, Any], Any], x: Any, y: Any, kinds: tuple[str, ...]) -> Any:
    """Apply `op` if both operands are of one of `kinds` (and the same kind), else false."""
    array = _array_operand((x, y))
    if array is not None:
        if x is None or y is None:
            return nodata_like(array)
        if _kind(x) != _kind(y) or _kind(x) not in kinds:
            return _constant(array, False)
        return vectorised(op, x, y, dtype=bool)
    if x is None or y is None:
        return None
    if _kind(x) != _kind(y) or _kind(x) not in kinds:
        return False
    return bool(op(x, y))


def _equal(x: Any, y: Any, delta: Any, case_sensitive: bool) -> Any:
    if delta is not None and not (is_number(delta) and delta > 0):
        raise ValueError(f"'delta' must be a positive number, got {delta!r}")

    def op(a: Any, b: Any) -> Any:
        if _kind(a) == "number" and delta is not None:
            return (a == b) | (np.abs(a - b) <= delta)
        if _kind(a) == "string" and not case_sensitive:
            if is_array(a) or is_array(b):
                return np.char.lower(np.asarray(a, dtype=str)) == np.char.lower(
                    np.asarray(b, dtype=str))
            return a.casefold() == b.casefold()
        return a == b

    return _compare(op, x, y, ("number", "boolean", "string"))


@process()
def eq(x: Any, y: Any, delta: Any = None, case_sensitive: bool = True) -> Any:
    return _equal(x, y, delta, case_sensitive)


@process()
def neq(x: Any, y: Any, delta: Any = None, case_sensitive: bool = True) -> Any:
    equal = _equal(x, y, delta, case_sensitive)
    if equal is None:
        return None
    if is_array(equal):
        return equal if equal.dtype.kind == "f" else ~equal  # all-NaN stays no-data
    return not equal


@process()
def gt(x: Any, y: Any) -> Any:
    return _compare(operator.gt, x, y, ("number",))


@process()
def gte(x: Any, y: Any) -> Any:
    return _compare(operator.ge, x, y, ("number",))


@process()
def lt(x: Any, y: Any) -> Any:
    return _compare(operator.lt, x, y, ("number",))


@process()
def lte(x: Any, y: Any) -> Any:
    return _compare(operator.le, x, y, ("number",))


@process()
def between(x: Any, min: Any, max: Any, exclude_max: bool = False) -> Any:
    for name, bound in (("min", min), ("max", max)):
        if not is_number(bound):
            raise TypeError(f"between: '{name}' must be a number, got {bound!r}")
    upper = operator.lt if exclude_max else operator.le
    if is_array(x):
        if _kind(x) != "number" or min > max:
            return _constant(x, False)
        return vectorised(lambda a: (a >= min) & upper(a, max), x, dtype=bool)
    if x is None:
        return None
    if not is_number(x) or min > max:
        return False
    return bool(x >= min and upper(x, max))
