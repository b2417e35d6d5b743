"""Comparison processes: eq, neq, gt, gte, lt, lte, between.

Types are checked strictly (spec): "1" is not 1, false is not 0, and ordering comparisons of
anything but numbers are false (gte/lte: unless the operands are equal). NaN compares as in
IEEE 754 (always unequal). No-data gives no-data: None for scalars; for cube data, whose
no-data value is NaN, the result is a float array of 1.0 / 0.0 with NaN where an operand is
no-data (a boolean array cannot hold no-data; the official `apply` test "multiple processes
with a data type change" expects it). Other arrays (numpy, JSON lists) give boolean arrays.
Why not bool where the data holds no NaN: docs/decisions/0003-boolean-cubes.md.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import numpy as np

from terracube import errors
from terracube.datacube.values import is_number
from terracube.engine.processes._elementwise import (
    is_array,
    is_boolean,
    nan_is_nodata,
    nodata_like,
    vectorised,
)
from terracube.engine.registry import process

_ELEMENT_KINDS = {"b": "boolean", "i": "number", "u": "number", "f": "number",
                  "U": "string", "S": "string", "M": "datetime"}


def _kind(value: Any) -> str:
    """The openEO type of a scalar, or of the elements of an array."""
    if is_array(value):
        return _ELEMENT_KINDS.get(value.dtype.kind, "other")
    if value is None:
        return "null"
    if is_boolean(value):
        return "boolean"
    if is_number(value):
        return "number"
    if isinstance(value, str):
        return "string"
    return "other"


def _elementwise(op: Callable[[Any, Any], Any], *operands: Any) -> Any:
    """Run a boolean `op` elementwise; NaN operands of cube data make the result no-data."""
    nodata = [i for i, v in enumerate(operands) if nan_is_nodata(v)]
    if not nodata:
        return vectorised(op, *operands, dtype=bool)
    dtype = np.result_type(*[operands[i].dtype for i in nodata])

    def run(*values: Any) -> Any:
        missing = np.isnan(values[nodata[0]])
        for i in nodata[1:]:
            missing = missing | np.isnan(values[i])
        out = np.asarray(op(*values), dtype=dtype)  # 1.0 / 0.0 straight in the cube's dtype
        if out.ndim:
            out[np.broadcast_to(missing, out.shape)] = np.nan
        elif missing:
            out = dtype.type(np.nan)
        return out

    return vectorised(run, *operands, dtype=dtype)


def _constant(template: Any, value: bool) -> Any:
    """`value` everywhere, shaped like the array `template`, no-data kept (lazily)."""
    return _elementwise(lambda a: np.full(np.shape(a), value), template)


def _compare(op: Callable[[Any, Any], Any], x: Any, y: Any, kinds: tuple[str, ...],
             mismatch: bool = False) -> Any:
    """Apply `op` if both operands are of the same kind, one of `kinds`; else `mismatch`."""
    comparable = _kind(x) == _kind(y) and _kind(x) in kinds
    array = next((v for v in (x, y) if is_array(v)), None)
    if array is not None:
        if x is None or y is None:
            return nodata_like(array)
        return _elementwise(op, x, y) if comparable else _constant(array, mismatch)
    if x is None or y is None:
        return None
    return bool(op(x, y)) if comparable else mismatch


def _equal(x: Any, y: Any, delta: Any, case_sensitive: bool, negate: bool) -> Any:
    if delta is not None and not (is_number(delta) and delta > 0):
        raise ValueError(f"'delta' must be a positive number, got {delta!r}")

    def op(a: Any, b: Any) -> Any:
        if _kind(a) == "number" and delta is not None:
            equal = (a == b) | (np.abs(a - b) <= delta)
        elif _kind(a) == "string" and not case_sensitive:
            if is_array(a) or is_array(b):
                equal = np.char.lower(np.asarray(a, dtype=str)) == np.char.lower(
                    np.asarray(b, dtype=str))
            else:
                equal = a.casefold() == b.casefold()
        else:
            equal = a == b
        return np.logical_not(equal) if negate else equal

    # Values of different types are never equal (spec: types are checked strictly).
    return _compare(op, x, y, ("number", "boolean", "string"), mismatch=negate)


@process()
def eq(x: Any, y: Any, delta: Any = None, case_sensitive: bool = True) -> Any:
    return _equal(x, y, delta, case_sensitive, negate=False)


@process()
def neq(x: Any, y: Any, delta: Any = None, case_sensitive: bool = True) -> Any:
    return _equal(x, y, delta, case_sensitive, negate=True)


def _order(op: Callable[[Any, Any], Any], x: Any, y: Any, or_equal: bool) -> Any:
    # gte/lte are defined as or(gt/lt, eq): equal non-numbers ("a", "a") are true too.
    if or_equal and not _kind(x) == _kind(y) == "number":
        return _equal(x, y, None, True, negate=False)
    return _compare(op, x, y, ("number",))


@process()
def gt(x: Any, y: Any) -> Any:
    return _order(operator.gt, x, y, or_equal=False)


@process()
def gte(x: Any, y: Any) -> Any:
    return _order(operator.ge, x, y, or_equal=True)


@process()
def lt(x: Any, y: Any) -> Any:
    return _order(operator.lt, x, y, or_equal=False)


@process()
def lte(x: Any, y: Any) -> Any:
    return _order(operator.le, x, y, or_equal=True)


@process()
def between(x: Any, min: Any, max: Any, exclude_max: bool = False) -> Any:
    for name, bound in (("min", min), ("max", max)):
        if not is_number(bound):
            raise errors.ProcessParameterInvalid(
                f"between: '{name}' must be a number, got {bound!r}.", argument=name)
    upper = operator.lt if exclude_max else operator.le
    if is_array(x):
        if _kind(x) != "number" or min > max:
            return _constant(x, False)
        return _elementwise(lambda a: (a >= min) & upper(a, max), x)
    if x is None:
        return None
    if not is_number(x) or min > max:
        return False
    return bool(x >= min and upper(x, max))
