"""Elementwise dispatch for the scalar processes: Python scalars, numpy arrays, lazy DataArrays.

A process function is written once as a numpy function of whole arrays. `vectorised` runs it on
numpy arrays directly and on (dask-backed) DataArrays block by block, so callbacks over a cube
stay lazy and never loop over pixels in Python. `numeric` adds the scalar rules of the math
processes: no-data (None) in -> None out, numbers only, integers stay integers.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr
from dask.array.core import elemwise

from terracube import errors
from terracube.datacube.values import JSON_DIMS, ArrayValue, is_number
from terracube.engine.registry import kind_of

ARRAY_TYPES = (np.ndarray, xr.DataArray, da.Array)


def is_array(value: Any) -> bool:
    """True for values processed elementwise (cube data inside a callback), not openEO arrays."""
    return isinstance(value, ARRAY_TYPES)


def is_boolean(value: Any) -> bool:
    return isinstance(value, (bool, np.bool_))


def _quiet(func: Callable, *args: Any) -> Any:
    # IEEE 754 results (inf, NaN) are what the spec asks for, not warnings.
    with np.errstate(all="ignore"):
        return func(*args)


def _with_scalars(func: Callable, scalars: dict[int, Any], count: int, *arrays: Any) -> Any:
    it = iter(arrays)
    return func(*[scalars[i] if i in scalars else next(it) for i in range(count)])


def vectorised(func: Callable, *args: Any, dtype: Any = None) -> Any:
    """Apply a numpy function elementwise; lazy for dask, blockwise for DataArrays.

    `dtype` is the result dtype if known; otherwise dask infers it from a tiny sample.
    """
    run = partial(_quiet, func)
    if any(isinstance(a, xr.DataArray) for a in args):
        scalars = {i: a for i, a in enumerate(args) if not isinstance(a, ARRAY_TYPES)}
        if scalars:
            # Scalars are bound into the function, not passed to apply_ufunc: dask would
            # make them 0-d float64 arrays, and float32 blocks would silently become float64
            # (numpy promotes with arrays, not with Python numbers), unlike numpy-backed
            # data and unlike the dtype dask declares.
            arrays = [a for a in args if isinstance(a, ARRAY_TYPES)]
            run = partial(_with_scalars, run, scalars, len(args))
            args = tuple(arrays)
        return xr.apply_ufunc(run, *args, dask="parallelized",
                              output_dtypes=None if dtype is None else [dtype])
    if any(isinstance(a, da.Array) for a in args):
        return elemwise(run, *args, dtype=dtype)
    return run(*args)


def python_number(value: Any, keep_int: bool) -> int | float:
    """A numpy result as a Python number; integral finite values become int if `keep_int`."""
    value = float(value)
    if keep_int and math.isfinite(value) and value.is_integer():
        return int(value)
    return value


def numeric(func: Callable, integral: bool = False, **operands: Any) -> Any:
    """Run `func` on number operands (given by their openEO parameter names).

    Scalars: any None gives None; other non-numbers are ProcessParameterInvalid; the result is
    an int if it is integral and either all operands were ints or `integral` (rounding
    processes) is set.
    Arrays: None becomes NaN (the no-data value of arrays) and `func` runs elementwise.
    """
    cube_arrays = [v for v in operands.values() if isinstance(v, ArrayValue) and not v.is_list]
    if cube_arrays:
        # A cube's values along a dimension (the `data` of an apply_dimension callback) in a
        # math process: elementwise over the array, as CDSE and openeo-processes-dask do (the
        # client's append_and_rescale_indices scales every band with linear_scale_range(data),
        # users write `lambda x: x * 0.0001`). Plain JSON arrays stay refused (the spec).
        first = cube_arrays[0]
        plain = {k: v.data if isinstance(v, ArrayValue) and not v.is_list else v
                 for k, v in operands.items()}
        return first.with_data(numeric(func, integral, **plain))
    values = list(operands.values())
    if any(is_array(v) for v in values):
        for name, v in operands.items():
            if not (v is None or is_array(v) or is_number(v)):
                raise not_a_number(name, v)
        return vectorised(func, *[np.nan if v is None else v for v in values])
    if any(v is None for v in values):
        return None
    for name, v in operands.items():
        if not is_number(v):
            raise not_a_number(name, v)
    result = _quiet(func, *[np.float64(v) for v in values])
    keep_int = integral or all(isinstance(v, (int, np.integer)) for v in values)
    return python_number(result, keep_int)


def not_a_number(name: str, value: Any) -> errors.ProcessParameterInvalid:
    return errors.ProcessParameterInvalid(f"'{name}' must be a number, got {kind_of(value)}.",
                                          argument=name)


def nan_is_nodata(value: Any) -> bool:
    """True for float cube data, where NaN is the no-data value (engine convention).

    A JSON list (an array along LIST_DIM) keeps null as None, so a NaN in it is a real NaN.
    """
    return (isinstance(value, xr.DataArray) and value.dtype.kind == "f"
            and not JSON_DIMS & set(value.dims))


def nodata_like(value: Any) -> Any:
    """An all-no-data (NaN) float array shaped like `value`, lazily for DataArrays."""
    if isinstance(value, xr.DataArray):
        return xr.full_like(value, np.nan, dtype=float)
    return np.full(np.shape(value), np.nan)
