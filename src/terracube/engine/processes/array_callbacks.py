"""The array processes that call a child process on the elements: array_apply, array_filter,
count.

The callback is called once with the whole array (vectorised along its dimension, lazy for
cube dimensions); only JSON lists of values that cannot be vectorised are called element by
element.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import xarray as xr

from terracube import errors
from terracube.datacube.values import (
    ELEMENT_DIM,
    LIST_DIM,
    ArrayValue,
    apply_along,
    exact_array,
    is_labeled,
    is_number,
    nodata_mask,
    numbers,
    to_list,
    to_python,
)
from terracube.engine.processes.arrays import (
    cube_dim_result,
    is_dask,
    labels_of,
    list_result,
    pick_list,
)
from terracube.engine.registry import kind_of, process

# --- callbacks ---------------------------------------------------------------------------------


def _vectorisable(arr: ArrayValue) -> bool:
    """True unless the array is a JSON list of strings, booleans with nulls, objects, ...

    Those only exist in JSON lists, where the callback then runs once per element (cube
    dimensions are always numeric and always get one call with the whole cube).
    """
    if not arr.is_list:
        return True
    # A JSON list is small: one call per element gives exact JSON semantics (ints stay ints,
    # null results stay null, e.g. array_find inside array_apply), at no real cost.
    return False


def _callback_arguments(arr: ArrayValue) -> dict:
    """x, index and label for one vectorised call: whole arrays broadcastable along `dim`."""
    if arr.dim == LIST_DIM:
        renamed = arr.with_data(arr.data.rename({LIST_DIM: ELEMENT_DIM}))
        return _callback_arguments(ArrayValue(renamed.data, ELEMENT_DIM, arr.labeled))
    dim = arr.dim
    coords = {dim: arr.data.coords[dim]} if dim in arr.data.coords else None
    index = xr.DataArray(np.arange(arr.size), dims=[dim], coords=coords)
    label = None
    if is_labeled(arr):
        labels = labels_of(arr)
        # Strings as a numpy string array, numbers as numbers (what elementwise processes
        # expect); only labels of mixed kinds need an object array.
        mixed = len({isinstance(v, str) for v in labels}) > 1
        label = xr.DataArray(np.array(labels, dtype=object if mixed else None), dims=[dim],
                             coords=coords)
    return {"x": numbers(arr), "index": index, "label": label}


def _call_each(arr: ArrayValue, callback: Any, context: Any) -> list:
    labels = labels_of(arr) if is_labeled(arr) else [None] * arr.size
    return [callback(x=x, index=i, label=labels[i], context=context)
            for i, x in enumerate(to_list(arr))]


def _require_callback(callback: Any, name: str) -> None:
    if not callable(callback):
        raise errors.ProcessParameterInvalid(
            f"'{name}' must be a process ({{\"process_graph\": ...}}), got {kind_of(callback)}.",
            argument=name)


def _full(result: Any, arr: ArrayValue, argument: str) -> xr.DataArray:
    """A callback result as a DataArray shaped like `arr.data` (same dims, same order)."""
    data = arr.data
    if isinstance(result, ArrayValue):
        raise errors.ProcessParameterInvalid(
            f"The '{argument}' must return one value per array element, not an array.",
            argument=argument)
    if not isinstance(result, xr.DataArray):
        raw = np.asarray(np.nan if result is None else result)
        if raw.ndim == 0:
            result = xr.DataArray(raw)
        elif raw.shape == data.shape:
            result = data.copy(data=raw)
        elif raw.ndim == 1 and raw.shape[0] == arr.size:
            result = xr.DataArray(raw, dims=[arr.dim])
        else:
            raise errors.ProcessParameterInvalid(
                f"The '{argument}' returned an array of shape {raw.shape} for an array of "
                f"shape {data.shape}.", argument=argument)
    if ELEMENT_DIM in result.dims and arr.dim == LIST_DIM:
        result = result.rename({ELEMENT_DIM: LIST_DIM})
    extra = set(result.dims) - set(data.dims)
    if extra:
        raise errors.ProcessParameterInvalid(
            f"The '{argument}' must return one value per element, but returned "
            + ("an array for each" if all(str(d).startswith("__") for d in extra)
               else f"values along the dimensions {sorted(map(str, extra))}") + ".",
            argument=argument)
    if result.dims != data.dims or result.shape != data.shape:
        result = result.broadcast_like(data).transpose(*data.dims)
        if is_dask(data) and not is_dask(result):
            result = result.chunk(dict(data.chunksizes))
    return result


def _is_true(values: Any) -> Any:
    """Where a condition's result is `true` (null and NaN count as false)."""
    if isinstance(values, xr.DataArray) and values.dtype == bool:
        return values
    return values == True  # noqa: E712 - elementwise comparison with the boolean true


# --- callbacks over arrays -----------------------------------------------------------------------


@process()
def array_apply(data: Any, process: Any, context: Any = None) -> Any:
    _require_callback(process, "process")
    arr = exact_array(data)
    labels = labels_of(arr) if is_labeled(arr) else None
    if arr.is_list and not _vectorisable(arr):
        return list_result(_call_each(arr, process, context), labels)
    if arr.is_list and arr.size == 0:
        return list_result([], labels)
    result = _full(process(**_callback_arguments(arr), context=context), arr, "process")
    if not arr.is_list:
        return cube_dim_result(arr, result)
    out = [to_python(v) for v in np.asarray(result.values).tolist()]
    null = nodata_mask(arr)
    if null is not None:  # null in, NaN out: the element stays no-data
        for i in np.flatnonzero(null.values):
            if isinstance(out[i], float) and math.isnan(out[i]):
                out[i] = None
    return list_result(out, labels)


def _compact(values: np.ndarray, keep: np.ndarray) -> np.ndarray:
    # Kept values move to the front in their order, the rest become NaN (per pixel).
    order = np.argsort(~keep, axis=-1, kind="stable")
    out = np.take_along_axis(values.astype(float), order, axis=-1)
    out[~np.take_along_axis(keep, order, axis=-1)] = np.nan
    return out


@process()
def array_filter(data: Any, condition: Any = None, context: Any = None,
                 process: Any = None) -> Any:
    # `process` is not a parameter of array_filter; the official test cases (openeo-processes
    # 2.0.0-rc.2 tests/array_filter.json5) still pass the condition under that older name.
    if condition is None and process is None:
        raise errors.ProcessParameterRequired("array_filter needs the argument 'condition'.",
                                              argument="condition")
    condition = condition if condition is not None else process
    _require_callback(condition, "condition")
    arr = exact_array(data)
    labeled = is_labeled(arr)
    if arr.is_list:
        if arr.size == 0:
            return list_result([], [] if labeled else None)
        if _vectorisable(arr):
            res = condition(**_callback_arguments(arr), context=context)
            keep = np.asarray(_is_true(_full(res, arr, "condition")).values, dtype=bool)
        else:
            keep = np.array([r is True for r in _call_each(arr, condition, context)], dtype=bool)
        return pick_list(arr, np.flatnonzero(keep))
    res = condition(**_callback_arguments(arr), context=context)
    if not isinstance(res, xr.DataArray) or set(res.dims) <= {arr.dim}:
        # The same answer for every pixel (it depends on index/label only): select positions.
        along = ArrayValue(xr.DataArray(np.zeros(arr.size), dims=[arr.dim]), arr.dim)
        keep = np.asarray(_is_true(_full(res, along, "condition")).values, dtype=bool)
        return ArrayValue(arr.data.isel({arr.dim: np.flatnonzero(keep)}), arr.dim, arr.labeled)
    # Per-pixel answers: a cube cannot be ragged, so every pixel keeps its matching values in
    # order at the front and is padded with no-data (NaN) to the original length.
    keep = _is_true(_full(res, arr, "condition"))
    compacted = apply_along(_compact, arr.data, arr.dim, keep)
    return cube_dim_result(arr, compacted, keep_labels=False)


def _valid(arr: ArrayValue) -> xr.DataArray:
    """is_valid() for every element: not no-data, not NaN, not ±infinity."""
    data = arr.data
    if data.dtype.kind in "fc":
        return np.isfinite(data)
    if data.dtype != object:
        return xr.ones_like(data, dtype=bool)
    raw = np.asarray(data.values)
    return data.copy(data=_valid_each(raw).astype(bool))


_valid_each = np.frompyfunc(
    lambda v: v is not None and not (is_number(v) and not math.isfinite(v)), 1, 1)


@process()
def count(data: Any, condition: Any = None, context: Any = None) -> Any:
    arr = exact_array(data)
    if condition is None:
        counted = _valid(arr)
    elif condition is True:
        counted = xr.ones_like(arr.data, dtype=bool)
    elif callable(condition):
        if arr.is_list and arr.size == 0:
            return 0
        if arr.is_list and not _vectorisable(arr):
            return sum(1 for r in _call_each(arr, condition, context) if r is True)
        counted = _is_true(_full(condition(x=numbers(arr), context=context), arr,
                                 "condition"))
    else:
        raise errors.ProcessParameterInvalid(
            f"'condition' must be null, true or a process, got {kind_of(condition)}.",
            argument="condition")
    return arr.finish(counted.sum(arr.dim))
