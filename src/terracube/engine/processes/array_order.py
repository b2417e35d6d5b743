"""Order-dependent array processes: order, sort, rearrange, array_interpolate_linear and the
cumulative processes (cumsum, cumproduct, cummax, cummin), vectorised along the array.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from dask.array.reductions import cumreduction

from terracube import errors
from terracube.datacube.values import (
    ArrayValue,
    apply_along,
    exact_array,
    int_valued,
    is_labeled,
    is_number,
    nodata_mask,
    numbers,
)
from terracube.engine.processes.arrays import (
    cube_dim_result,
    drop_dim_labels,
    is_dask,
    label_axis,
    labels_of,
    list_result,
    pick_list,
    values_with_nodata,
)
from terracube.engine.registry import process

# --- order and sorting ---------------------------------------------------------------------------


def _sort_keys(arr: ArrayValue) -> tuple[xr.DataArray, xr.DataArray]:
    """Numeric sort keys and the no-data mask (null, NaN) of an array of numbers or dates."""
    data = arr.data
    if data.dtype.kind in "iuf":
        keys = data.astype(float)
        return keys, keys.isnull()
    if data.dtype.kind == "M":
        return data.astype("int64"), data.isnull()
    if data.dtype.kind != "O":
        raise errors.ProcessParameterInvalid(
            f"order and sort need numbers, dates or date-times, not values of type "
            f"{data.dtype}.", argument="data")
    raw = np.asarray(data.values)
    null = np.array([v is None for v in raw], dtype=bool)
    present = raw[~null]
    if all(is_number(v) for v in present):
        keys = np.where(null, np.nan, raw).astype(float)
        null = null | np.isnan(keys)
    elif all(isinstance(v, str) for v in present):
        # Dates and date-times are compared as instants, not as strings (spec).
        stamps = pd.to_datetime(pd.Series(present), utc=True, format="ISO8601")
        keys = np.zeros(len(raw), dtype=np.int64)
        keys[~null] = stamps.astype("int64").to_numpy()
    else:
        raise errors.ProcessParameterInvalid(
            "order and sort need numbers, dates or date-times (all of one kind).",
            argument="data")
    return data.copy(data=keys), data.copy(data=null)


def _order_kernel(keys: np.ndarray, null: np.ndarray, asc: bool, nodata: bool | None,
                  drop_marker: bool) -> np.ndarray:
    keys = keys if asc else -keys
    keys = np.where(null, 0, keys)
    # No-data goes to the end (nodata true/null) or the start (false); the sort is stable,
    # so ties and no-data keep their original order.
    group = null if nodata in (True, None) else ~null
    order = np.lexsort((keys, group), axis=-1)
    if drop_marker and nodata is None:
        # Along cube dimensions the removed no-data positions become NaN padding at the end.
        out = order.astype(float)
        out[np.take_along_axis(null, order, axis=-1)] = np.nan
        return out
    return order


def _sorted_kernel(values: np.ndarray, keys: np.ndarray, null: np.ndarray, asc: bool,
                   nodata: bool | None) -> np.ndarray:
    order = _order_kernel(keys, null, asc, nodata, drop_marker=False)
    out = np.take_along_axis(values.astype(float), order, axis=-1)
    out[np.take_along_axis(null, order, axis=-1)] = np.nan
    return out


def _check_nodata_flag(nodata: Any) -> None:
    if nodata is not None and not isinstance(nodata, bool):
        raise errors.ProcessParameterInvalid(
            f"'nodata' must be true, false or null, got {nodata!r}.", argument="nodata")


def _list_order(arr: ArrayValue, asc: bool, nodata: bool | None) -> np.ndarray:
    """The positions of a JSON list's elements in sorted order (no-data dropped if null)."""
    keys, null = _sort_keys(arr)
    positions = _order_kernel(keys.values, null.values, asc, nodata, drop_marker=False)
    if nodata is None:
        positions = positions[: arr.size - int(null.values.sum())]
    return positions


@process()
def order(data: Any, asc: bool = True, nodata: bool | None = None) -> Any:
    _check_nodata_flag(nodata)
    arr = exact_array(data)
    if arr.is_list:
        if arr.size == 0:
            return []
        return [int(p) for p in _list_order(arr, asc, nodata)]
    keys, null = _sort_keys(arr)
    result = apply_along(_order_kernel, keys, arr.dim, null, asc=asc, nodata=nodata,
                    drop_marker=True, dtype=float if nodata is None else np.int64)
    return cube_dim_result(arr, result, keep_labels=False)


@process()
def sort(data: Any, asc: bool = True, nodata: bool | None = None) -> Any:
    _check_nodata_flag(nodata)
    arr = exact_array(data)
    if arr.is_list:
        if arr.size == 0:
            return list_result([], [] if is_labeled(arr) else None)
        return pick_list(arr, _list_order(arr, asc, nodata))
    keys, null = _sort_keys(arr)
    result = apply_along(_sorted_kernel, arr.data, arr.dim, keys, null, asc=asc, nodata=nodata)
    return cube_dim_result(arr, result, keep_labels=False)


def _take_kernel(values: np.ndarray, positions: np.ndarray) -> np.ndarray:
    missing = np.isnan(positions)
    index = np.where(missing, 0, positions).astype(np.int64)
    out = np.take_along_axis(values.astype(float), index, axis=-1)
    out[missing] = np.nan
    return out


@process()
def rearrange(data: Any, order: Any) -> Any:
    arr = exact_array(data)
    if isinstance(order, (list, tuple)):
        positions = np.asarray(order, dtype=np.int64) if len(order) else np.array([], np.int64)
        bad = [int(p) for p in positions if not 0 <= p < arr.size]
        if bad:
            raise errors.ProcessParameterInvalid(
                f"'order' has positions {bad} that are not in the array of {arr.size} "
                "elements.", argument="order")
        if arr.is_list:
            return pick_list(arr, positions)
        return ArrayValue(arr.data.isel({arr.dim: positions}), arr.dim, arr.labeled)
    perm = exact_array(order, "order")
    if arr.is_list:
        raise errors.ProcessParameterInvalid(
            "A per-pixel 'order' needs cube values in 'data'.", argument="order")
    positions = perm.data.astype(float)
    if perm.dim != arr.dim:
        positions = positions.rename({perm.dim: arr.dim})
    positions = drop_dim_labels(positions, arr.dim)
    values = drop_dim_labels(arr.data, arr.dim)
    result = apply_along(_take_kernel, values, arr.dim, positions,
                    size=positions.sizes[arr.dim])
    return ArrayValue(result, arr.dim)


# --- interpolation -------------------------------------------------------------------------------


def _interpolate_kernel(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Linear interpolation of the NaN gaps between valid values along the last axis."""
    y = y.astype(float)
    n = y.shape[-1]
    valid = ~np.isnan(y)
    idx = np.arange(n)
    before = np.maximum.accumulate(np.where(valid, idx, -1), axis=-1)
    after = np.minimum.accumulate(np.where(valid, idx, n)[..., ::-1], axis=-1)[..., ::-1]
    gap = ~valid & (before >= 0) & (after < n)
    lo, hi = np.clip(before, 0, n - 1), np.clip(after, 0, n - 1)
    y0 = np.take_along_axis(y, lo, axis=-1)
    y1 = np.take_along_axis(y, hi, axis=-1)
    t = (x - x[lo]) / (x[hi] - x[lo])
    # (1-t)*y0 + t*y1 keeps ±infinity neighbours infinite instead of inf - inf = NaN.
    return np.where(gap, (1 - t) * y0 + t * y1, y)


def _positions(arr: ArrayValue) -> np.ndarray:
    """The x axis of interpolation: numeric or temporal labels, else the indices."""
    labels = label_axis(arr)
    if is_labeled(arr) and labels.size == arr.size:
        if labels.dtype.kind in "iuf":
            return labels.astype(float)
        if labels.dtype.kind == "M":
            return labels.astype("datetime64[ns]").astype(np.int64).astype(float)
        if labels.dtype == object and all(is_number(v) for v in labels):
            return labels.astype(float)
    return np.arange(arr.size, dtype=float)


@process()
def array_interpolate_linear(data: Any) -> Any:
    arr = exact_array(data)
    if arr.size == 0:
        return list_result([], [] if is_labeled(arr) else None) if arr.is_list else arr
    values = numbers(arr).astype(float)
    result = apply_along(_interpolate_kernel, values, arr.dim, x=_positions(arr))
    if not arr.is_list:
        return cube_dim_result(arr, result)
    null = nodata_mask(arr)
    still = None if null is None else null.values & np.isnan(result.values)
    out = values_with_nodata(result.values, still, keep_int=int_valued(arr))
    return list_result(out, labels_of(arr) if is_labeled(arr) else None)


# --- cumulative processes ------------------------------------------------------------------------


def _accumulate(ufunc: np.ufunc, data: xr.DataArray, dim: str) -> xr.DataArray:
    axis = data.get_axis_num(dim)
    if is_dask(data):
        identity = {np.add: 0, np.multiply: 1}.get(ufunc)
        if identity is None:
            info = np.iinfo(data.dtype) if data.dtype.kind in "iu" else None
            low, high = (info.min, info.max) if info else (-np.inf, np.inf)
            identity = low if ufunc is np.maximum else high
        acc = cumreduction(ufunc.accumulate, ufunc, identity, data.data, axis=axis,
                           dtype=data.dtype)
    else:
        acc = ufunc.accumulate(np.asarray(data.data), axis=axis)
    return data.copy(data=acc)


def _cumulative(data: Any, ignore_nodata: bool, ufunc: np.ufunc, identity: float) -> Any:
    arr = exact_array(data)
    if arr.is_list and arr.size == 0:
        return list_result([], [] if is_labeled(arr) else None)
    values = numbers(arr)
    if values.dtype == bool:
        values = values.astype(np.int64)
    null = nodata_mask(arr)
    if null is None:
        result, out_null = _accumulate(ufunc, values, arr.dim), None
    else:
        # Skipped no-data stays no-data in the result; without ignore_nodata the first one
        # makes every following element no-data.
        result = _accumulate(ufunc, values.where(~null, identity), arr.dim)
        out_null = null if ignore_nodata else null.cumsum(arr.dim) > 0
    if not arr.is_list:
        if out_null is not None:
            result = result.where(~out_null)
        return cube_dim_result(arr, result)
    out = values_with_nodata(result.values, None if out_null is None else out_null.values,
                              keep_int=int_valued(arr))
    return list_result(out, labels_of(arr) if is_labeled(arr) else None)


@process()
def cumsum(data: Any, ignore_nodata: bool = True) -> Any:
    return _cumulative(data, ignore_nodata, np.add, 0)


@process()
def cumproduct(data: Any, ignore_nodata: bool = True) -> Any:
    return _cumulative(data, ignore_nodata, np.multiply, 1)


@process()
def cummax(data: Any, ignore_nodata: bool = True) -> Any:
    return _cumulative(data, ignore_nodata, np.maximum, -np.inf)


@process()
def cummin(data: Any, ignore_nodata: bool = True) -> Any:
    return _cumulative(data, ignore_nodata, np.minimum, np.inf)
