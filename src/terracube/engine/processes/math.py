"""Mathematical processes (openEO category "math"): arithmetic, rounding, trigonometry, constants.

Each works on Python numbers (None is no-data and passes through) and elementwise on numpy
arrays and lazy DataArrays (NaN is no-data), following IEEE 754: a division by zero gives
±infinity or NaN instead of an error, as the spec allows.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from terracube import errors
from terracube.datacube.values import is_number
from terracube.engine.processes._elementwise import numeric
from terracube.engine.registry import process
from terracube.process_errors import MinMaxSwapped


def _float(a: Any) -> Any:
    """Integer arrays as float, so that negative powers and zero divisors follow IEEE 754."""
    return np.asarray(a, dtype=np.float64) if np.asarray(a).dtype.kind in "biu" else a


# --- arithmetic -----------------------------------------------------------------------------
@process()
def absolute(x: Any) -> Any:
    return numeric(np.abs, x=x)


@process()
def add(x: Any, y: Any) -> Any:
    return numeric(np.add, x=x, y=y)


@process()
def subtract(x: Any, y: Any) -> Any:
    return numeric(np.subtract, x=x, y=y)


@process()
def multiply(x: Any, y: Any) -> Any:
    return numeric(np.multiply, x=x, y=y)


@process()
def divide(x: Any, y: Any) -> Any:
    return numeric(np.true_divide, x=x, y=y)


def _mod(x: Any, y: Any) -> Any:
    x, y = _float(x), _float(y)
    r = np.mod(x, y)  # sign of the divisor, as the spec asks
    r = np.where(np.isinf(y) & np.isfinite(x), x, r)  # spec examples: mod(2, ±inf) = 2
    return np.where(y == 0, np.true_divide(x, y), r)  # x / 0: ±inf or NaN like divide


@process()
def mod(x: Any, y: Any) -> Any:
    return numeric(_mod, x=x, y=y)


@process()
def power(base: Any, p: Any) -> Any:
    return numeric(lambda b, e: np.power(_float(b), e), base=base, p=p)


@process()
def sqrt(x: Any) -> Any:
    return numeric(np.sqrt, x=x)


@process()
def exp(p: Any) -> Any:
    return numeric(np.exp, p=p)


@process()
def ln(x: Any) -> Any:
    return numeric(np.log, x=x)


@process()
def log(x: Any, base: Any) -> Any:
    return numeric(lambda v, b: np.log(v) / np.log(b), x=x, base=base)


@process()
def sgn(x: Any) -> Any:
    return numeric(np.sign, integral=True, x=x)


# --- rounding -------------------------------------------------------------------------------
@process()
def ceil(x: Any) -> Any:
    return numeric(np.ceil, integral=True, x=x)


@process()
def floor(x: Any) -> Any:
    return numeric(np.floor, integral=True, x=x)


@process("int")
def int_(x: Any) -> Any:
    result = numeric(np.trunc, integral=True, x=x)
    # An integer cannot be NaN: the spec's test suite expects no-data for int(NaN).
    if isinstance(result, float) and math.isnan(result):
        return None
    return result


@process("round")
def round_(x: Any, p: int = 0) -> Any:
    if not isinstance(p, (int, np.integer)) or isinstance(p, bool):
        raise errors.ProcessParameterInvalid(f"'p' must be an integer, got {p!r}.", argument="p")
    # np.round scales by 10**p and rounds half to even, which is what the spec examples show
    # (round(0.35, 1) = 0.4, unlike Python's decimal-exact round()).
    return numeric(lambda v: np.round(v, int(p)), integral=p <= 0, x=x)


# --- ranges ---------------------------------------------------------------------------------
@process()
def clip(x: Any, min: Any, max: Any) -> Any:
    if is_number(min) and is_number(max) and min > max:
        raise MinMaxSwapped(
            f"clip: min ({min}) must be lower than or equal to max ({max}).", argument="min")
    return numeric(np.clip, x=x, min=min, max=max)


def _scale(x: Any, in_min: Any, in_max: Any, out_min: Any, out_max: Any) -> Any:
    x = np.clip(x, np.minimum(in_min, in_max), np.maximum(in_min, in_max))
    return (x - in_min) / (in_max - in_min) * (out_max - out_min) + out_min


@process()
def linear_scale_range(x: Any, inputMin: Any, inputMax: Any, outputMin: Any = 0,
                       outputMax: Any = 1) -> Any:
    return numeric(_scale, x=x, inputMin=inputMin, inputMax=inputMax, outputMin=outputMin,
                   outputMax=outputMax)


@process()
def normalized_difference(x: Any, y: Any) -> Any:
    return numeric(lambda a, b: (a - b) / (a + b), x=x, y=y)


# --- constants ------------------------------------------------------------------------------
@process()
def e() -> float:
    return math.e


@process()
def pi() -> float:
    return math.pi


@process()
def nan() -> float:
    return math.nan


@process()
def constant(x: Any) -> Any:
    return x


# --- trigonometric and hyperbolic -----------------------------------------------------------
@process()
def sin(x: Any) -> Any:
    return numeric(np.sin, x=x)


@process()
def cos(x: Any) -> Any:
    return numeric(np.cos, x=x)


@process()
def tan(x: Any) -> Any:
    return numeric(np.tan, x=x)


@process()
def arcsin(x: Any) -> Any:
    return numeric(np.arcsin, x=x)


@process()
def arccos(x: Any) -> Any:
    return numeric(np.arccos, x=x)


@process()
def arctan(x: Any) -> Any:
    return numeric(np.arctan, x=x)


@process()
def arctan2(y: Any, x: Any) -> Any:
    return numeric(np.arctan2, y=y, x=x)


@process()
def sinh(x: Any) -> Any:
    return numeric(np.sinh, x=x)


@process()
def cosh(x: Any) -> Any:
    return numeric(np.cosh, x=x)


@process()
def tanh(x: Any) -> Any:
    return numeric(np.tanh, x=x)


@process()
def arsinh(x: Any) -> Any:
    return numeric(np.arcsinh, x=x)


@process()
def arcosh(x: Any) -> Any:
    return numeric(np.arccosh, x=x)


@process()
def artanh(x: Any) -> Any:
    return numeric(np.arctanh, x=x)
