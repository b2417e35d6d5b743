"""Logical processes and value checks: and, or, xor, not, if, is_nan, is_nodata, is_valid, ...

Booleans use three-valued logic with no-data as "unknown" (the truth tables of the spec).
Scalars: None is no-data. Arrays: boolean arrays cannot hold no-data; float arrays can (NaN),
so a float operand gives a float result of 1.0 / 0.0 / NaN, and boolean operands a boolean one.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from terracube import errors
from terracube.datacube.values import is_number
from terracube.engine.processes._elementwise import (
    is_array,
    is_boolean,
    nan_is_nodata,
    vectorised,
)
from terracube.engine.registry import kind_of, process

Masks = tuple[Any, Any]  # (is true, is false); both false means no-data


def _masks(value: Any) -> Masks:
    """Truth masks of one operand: an array, a boolean or None."""
    if is_array(value):
        a = np.asarray(value)
        if a.dtype.kind == "b":
            return a, ~a
        with np.errstate(invalid="ignore"):
            return (a != 0) & ~np.isnan(a), a == 0
    return value is True or value is np.True_, value is False or value is np.False_


def _is_bool_typed(value: Any) -> bool:
    return value.dtype.kind == "b" if is_array(value) else is_boolean(value)


def _three_valued(rule: Callable[..., Masks], name: str, *operands: Any) -> Any:
    """Apply a truth-table `rule` (on masks) to scalars or elementwise to arrays."""
    if any(is_array(v) for v in operands):
        bools = all(_is_bool_typed(v) for v in operands)
        # 1.0 / 0.0 / NaN are exact in float32: no float64 upcast of float32 cubes.
        out = np.result_type(np.float32, *[v.dtype for v in operands if is_array(v)])
        one, zero, nan = out.type(1), out.type(0), out.type(np.nan)

        def run(*values: Any) -> Any:
            true, false = rule(*map(_masks, values))
            return true if bools else np.where(true, one, np.where(false, zero, nan))

        args = [np.nan if v is None else v for v in operands]
        return vectorised(run, *args, dtype=bool if bools else out)
    for argument, v in zip(("x", "y"), operands):  # and/or/xor take x and y, not takes x
        if v is not None and not is_boolean(v):
            raise errors.ProcessParameterInvalid(
                f"{name}: '{argument}' must be a boolean or null, got {kind_of(v)}.",
                argument=argument)
    true, false = rule(*map(_masks, operands))
    return True if true else False if false else None


@process("and")
def and_(x: Any, y: Any) -> Any:
    return _three_valued(lambda a, b: (a[0] & b[0], a[1] | b[1]), "and", x, y)


@process("or")
def or_(x: Any, y: Any) -> Any:
    return _three_valued(lambda a, b: (a[0] | b[0], a[1] & b[1]), "or", x, y)


@process()
def xor(x: Any, y: Any) -> Any:
    return _three_valued(
        lambda a, b: ((a[0] & b[1]) | (a[1] & b[0]), (a[0] & b[0]) | (a[1] & b[1])), "xor", x, y)


@process("not")
def not_(x: Any) -> Any:
    return _three_valued(lambda a: (a[1], a[0]), "not", x)


@process("if")
def if_(value: Any, accept: Any, reject: Any = None) -> Any:
    if is_array(value):
        def choose(v: Any, a: Any, r: Any) -> Any:
            return np.where(_masks(v)[0], a, r)

        return vectorised(choose, value, *[np.nan if v is None else v for v in (accept, reject)])
    if value is not None and not is_boolean(value):
        raise errors.ProcessParameterInvalid(
            f"if: 'value' must be a boolean or null, got {kind_of(value)}.", argument="value")
    return accept if value else reject


# --- value checks ---------------------------------------------------------------------------
def _check(value: Any, floats: Callable[[np.ndarray], Any], others: bool,
           nulls: bool | None = None) -> Any:
    """Elementwise check of an array: `floats` for float data, `nulls` for the None elements of
    object arrays (others get `others`), otherwise the constant `others`."""

    def run(a: np.ndarray) -> np.ndarray:
        if a.dtype.kind in "fc":
            return floats(a)
        if a.dtype.kind == "O" and nulls is not None:
            return np.where(np.equal(a, None), nulls, others)
        return np.full(a.shape, others)

    return vectorised(run, value, dtype=bool)


def _never(a: np.ndarray) -> np.ndarray:
    return np.zeros(a.shape, dtype=bool)


@process()
def is_nan(x: Any) -> Any:
    if is_array(x):
        return _check(x, np.isnan, False)
    return is_number(x) and math.isnan(x)


@process()
def is_nodata(x: Any) -> Any:
    if is_array(x):  # no-data: NaN in cube data, None in object arrays (JSON lists)
        return _check(x, np.isnan if nan_is_nodata(x) else _never, False, nulls=True)
    return x is None


@process()
def is_valid(x: Any) -> Any:
    if is_array(x):
        return _check(x, np.isfinite, True, nulls=False)
    if x is None:
        return False
    return math.isfinite(x) if is_number(x) else True


@process()
def is_infinite(x: Any) -> Any:
    if is_array(x):
        return _check(x, np.isinf, False)
    return is_number(x) and math.isinf(x)
