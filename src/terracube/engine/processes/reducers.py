"""The openEO reducers (sum, mean, quantiles, all, any, ...): one value from an array, vectorised.

Each reducer works along the array's `dim`, so the same function reduces a JSON list and, as
the reducer of reduce_dimension, a whole (dask-backed) cube dimension in one lazy operation.
`ignore_nodata` skips no-data: null in JSON lists (where NaN is an ordinary number that
propagates), NaN along cube dimensions.
"""

from __future__ import annotations

import warnings
from functools import partial
from typing import Any, NamedTuple

import dask.array as da
import numpy as np
import xarray as xr

from terracube import errors
from terracube.datacube.values import (
    ArrayValue,
    apply_along,
    exact_array,
    int_valued,
    nodata_mask,
    numbers,
    to_python,
)
from terracube.engine.registry import process
from terracube.process_errors import (
    AscendingProbabilitiesRequired,
    QuantilesParameterConflict,
    QuantilesParameterMissing,
)


class _Numbers(NamedTuple):
    """An array's numbers ready to reduce along `arr.dim`."""

    arr: ArrayValue
    values: xr.DataArray | None  # None: the result is no-data (a null and ignore_nodata=false)
    skipna: bool  # cube dimensions: NaN is no-data; JSON lists: nulls are already dropped
    keep_int: bool  # a JSON list of integers: integral results stay ints


def _numbers(data: Any, ignore_nodata: bool) -> _Numbers:
    arr = exact_array(data)
    values = numbers(arr)
    if not arr.is_list:
        return _Numbers(arr, values, ignore_nodata, False)
    null = nodata_mask(arr)
    if null is not None:
        missing = np.asarray(null.values)
        if missing.any() and not ignore_nodata:
            return _Numbers(arr, None, False, False)
        values = values.isel({arr.dim: np.flatnonzero(~missing)})
    # In JSON lists NaN is a number, not no-data: it propagates (skipna=False).
    return _Numbers(arr, values, False, int_valued(arr))


def _reduce(data: Any, ignore_nodata: bool, how: str, keep_int: bool = True,
            **kwargs: Any) -> Any:
    prepared = _numbers(data, ignore_nodata)
    arr, values = prepared.arr, prepared.values
    if arr.is_list and (values is None or values.size == 0):
        return None
    if values.dtype == bool:
        values = values.astype(np.int64)
    if how in ("sum", "prod") and prepared.skipna:
        kwargs["min_count"] = 1  # a pixel with only no-data gives no-data, not 0 or 1
    if how == "median" and prepared.skipna and values.dtype.kind == "f":
        return _nan_median(values, arr.dim)
    if how in _FOLDS and prepared.skipna and values.dtype.kind == "f" and \
            isinstance(values.data, da.Array) and \
            len(values.chunks[values.get_axis_num(arr.dim)]) > 1:
        return _fold(values, arr.dim, _FOLDS[how])
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        result = getattr(values, how)(arr.dim, skipna=prepared.skipna, **kwargs)
    if arr.is_list:
        return to_python(result.values, keep_int and prepared.keep_int)
    return result


_NETWORK_MAX = 8  # up to this many values per pixel a sorting network beats np.sort


def _halfway(lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """(lower + upper) / 2, and the value itself where both are the same value (doubling a
    value above half the float maximum would overflow to ±inf)."""
    out = np.add(lower, upper)
    np.true_divide(out, 2, out=out)
    overflow = np.isinf(out)
    if overflow.any():  # rare: those pixels only
        at = np.flatnonzero(overflow)
        lo, up = lower.ravel()[at], upper.ravel()[at]
        out.ravel()[at] = np.where(lo == up, lo, out.ravel()[at])
    return out


def _nan_median_two(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The NaN-skipping median of two arrays: their mean, the valid one, or NaN.

    Branch-free: fmin/fmax give the valid value twice where the other is NaN, and its
    double halved is itself. Masked selections (np.where, copyto with a mask) cost 10-20 ms
    per 2048² block on scattered no-data, against 2 ms for a ufunc pass. The only pixels
    where this differs from the mean-or-valid formula are those whose double overflows
    (|v| > max/2 gives ±inf): they are recomputed with that formula."""
    out = np.fmax(x, y)
    lower = np.fmin(x, y)
    np.add(out, lower, out=out)  # x + y where both are valid (addition commutes)
    np.true_divide(out, 2, out=out)
    overflow = np.isinf(out)
    if overflow.any():
        at = np.flatnonzero(overflow)
        a, b = x.ravel()[at], y.ravel()[at]
        out.ravel()[at] = np.where(np.isnan(a) | (a == b), b,
                                   np.where(np.isnan(b), a, out.ravel()[at]))
    return out


def _nan_median_rows(rows: list[np.ndarray], dtype: np.dtype) -> np.ndarray:
    """The NaN-skipping median of up to _NETWORK_MAX arrays of the same shape, pixel by
    pixel (the rows of `_nan_median_last_axis`, or the blocks of one chunk per date).
    The rows may be views of dask's blocks: they are read, never written."""
    n = len(rows)
    if n == 1:
        return rows[0].copy()
    if n == 2:
        return _nan_median_two(*rows)
    missing = np.zeros(rows[0].shape, dtype=np.uint8)  # no-data values per pixel
    work = []
    for r in rows:
        np.add(missing, np.isnan(r), out=missing)
        work.append(np.fmin(r, np.inf))  # no-data sorts last (as +inf); a new array
    spare = np.empty_like(work[0])
    for lap in range(n):  # odd-even transposition sort: n laps of compare-exchange
        for i in range(lap % 2, n - 1, 2):
            a, b = work[i], work[i + 1]
            np.minimum(a, b, out=spare)
            np.maximum(a, b, out=b)
            work[i], spare = spare, a
    lower = np.full(missing.shape, np.nan, dtype=dtype)
    upper = np.full(missing.shape, np.nan, dtype=dtype)
    for count in range(1, n + 1):
        here = missing == n - count
        lower = np.where(here, work[(count - 1) // 2], lower)
        upper = np.where(here, work[count // 2], upper)
    return _halfway(lower, upper)


def _nan_median_last_axis(a: np.ndarray) -> np.ndarray:
    """The median along the last axis ignoring NaN (NaN where all are NaN), as np.nanmedian.

    numpy's nanmedian takes a masked-array path with a warning per all-NaN pixel for short
    axes (ten times slower on cube blocks). Short axes (a few dates per month, the usual
    case) are sorted with a vectorised sorting network over whole slices; longer ones with
    one np.sort. Same values, same dtype.
    """
    n = a.shape[-1]
    if n == 0:
        return np.full(a.shape[:-1], np.nan, dtype=a.dtype)
    if n <= _NETWORK_MAX:
        return _nan_median_rows([a[..., i] for i in range(n)], a.dtype)
    ordered = np.sort(a, axis=-1)  # NaN sorts last
    valid = np.count_nonzero(~np.isnan(ordered), axis=-1)
    low = np.maximum((valid - 1) // 2, 0)[..., None]
    high = np.where(valid == 0, 0, valid // 2)[..., None]
    lower = np.take_along_axis(ordered, low, axis=-1)[..., 0]
    upper = np.take_along_axis(ordered, high, axis=-1)[..., 0]
    return _halfway(lower, upper)  # all-NaN pixels: NaN, as ordered[..., 0] is NaN


# NaN-skipping extremes folded chunk after chunk: a tree reduction would first concatenate
# the chunks along the dimension (a copy of the data per level); NaN only where all are NaN.
_FOLDS = {"max": np.fmax, "min": np.fmin}


# Blocks folded per task: few, so that finished blocks (a date's NDVI, 16 MB at 2048²) do not
# wait in memory for a wide combine (16 held 0.4 GB in W1 medium); the number of ufunc
# passes is the same for any tree.
_FOLD_EVERY = 4


def _fold_blocks(blocks: Any, axis: tuple[int, ...], keepdims: bool,
                 ufunc: np.ufunc) -> np.ndarray:
    if isinstance(blocks, np.ndarray):
        blocks = [blocks]
    while blocks and isinstance(blocks[0], list):  # nested per reduced axis (one here)
        blocks = [b for sub in blocks for b in sub]
    result = None
    owned = False  # blocks belong to dask: written into only once a new array holds them
    for block in blocks:
        part = block if block.shape[axis[0]] == 1 else ufunc.reduce(block, axis=axis[0],
                                                                     keepdims=True)
        if result is None:
            result = part
        elif owned:
            ufunc(result, part, out=result)
        else:
            result, owned = ufunc(result, part), True
    return result if keepdims else np.squeeze(result, axis=axis)


def _fold(values: xr.DataArray, dim: str, ufunc: np.ufunc) -> xr.DataArray:
    axis = values.get_axis_num(dim)
    fold = partial(_fold_blocks, ufunc=ufunc)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        reduced = da.reduction(values.data, chunk=fold, combine=fold, aggregate=fold,
                               axis=axis, dtype=values.dtype, concatenate=False,
                               split_every=_FOLD_EVERY)
    dims = [d for d in values.dims if d != dim]
    coords = {k: c for k, c in values.coords.items() if dim not in c.dims}
    return xr.DataArray(reduced, dims=dims, coords=coords)


# A median needs all values of a pixel along the dimension in one chunk; the other axes keep
# their chunks unless that makes a chunk larger than this (then the spatial ones are halved).
_MEDIAN_CHUNK_BYTES = 64 * 2**20


def _whole_along(values: xr.DataArray, dim: str) -> xr.DataArray:
    data = values.data
    if not isinstance(data, da.Array):
        return values
    axis = values.get_axis_num(dim)
    chunks: dict[int, Any] = {axis: -1}
    others = [i for i in range(data.ndim) if i != axis]
    size = data.shape[axis] * data.dtype.itemsize * int(np.prod(
        [data.chunksize[i] for i in others]))
    spatial = others[-2:]
    factor = 1
    while size / factor**2 > _MEDIAN_CHUNK_BYTES and \
            all(data.chunksize[i] // (2 * factor) >= 128 for i in spatial):
        factor *= 2
    for i in spatial:
        chunks[i] = max(1, data.chunksize[i] // factor) if factor > 1 else data.chunks[i]
    return values.copy(data=data.rechunk(chunks))


def _median_of_blocks(blocks: Any, axis: int, dtype: np.dtype) -> np.ndarray:
    """The median along `axis` of the blocks of one chunk (a list along that axis, not
    concatenated: each value along it is one row of the sorting network)."""
    if isinstance(blocks, np.ndarray):
        blocks = [blocks]
    lead = (slice(None),) * axis
    rows = [b[(*lead, i)] for b in blocks for i in range(b.shape[axis])]  # views
    with np.errstate(all="ignore"):
        return _nan_median_rows(rows, dtype)


def _nan_median(values: xr.DataArray, dim: str) -> xr.DataArray:
    data = values.data
    axis = values.get_axis_num(dim)
    if isinstance(data, da.Array) and 0 < data.shape[axis] <= _NETWORK_MAX:
        # Few values per pixel (e.g. the dates of a month): the chunks along `dim` go to
        # the sorting network as they are, without first being copied into one chunk.
        index = tuple(range(data.ndim))
        out_index = tuple(i for i in index if i != axis)
        reduced = da.blockwise(partial(_median_of_blocks, axis=axis, dtype=values.dtype),
                               out_index, data, index, concatenate=False,
                               dtype=values.dtype)
        dims = [d for d in values.dims if d != dim]
        coords = {k: c for k, c in values.coords.items() if dim not in c.dims}
        return xr.DataArray(reduced, dims=dims, coords=coords, name=values.name)
    return xr.apply_ufunc(_nan_median_last_axis, _whole_along(values, dim),
                          input_core_dims=[[dim]], dask="parallelized",
                          output_dtypes=[values.dtype])


@process("sum")
def sum_(data: Any, ignore_nodata: bool = True) -> Any:
    return _reduce(data, ignore_nodata, "sum")


@process()
def product(data: Any, ignore_nodata: bool = True) -> Any:
    return _reduce(data, ignore_nodata, "prod")


@process("min")
def min_(data: Any, ignore_nodata: bool = True) -> Any:
    return _reduce(data, ignore_nodata, "min")


@process("max")
def max_(data: Any, ignore_nodata: bool = True) -> Any:
    return _reduce(data, ignore_nodata, "max")


@process()
def mean(data: Any, ignore_nodata: bool = True) -> Any:
    return _reduce(data, ignore_nodata, "mean", keep_int=False)


@process()
def median(data: Any, ignore_nodata: bool = True) -> Any:
    return _reduce(data, ignore_nodata, "median", keep_int=False)


@process()
def sd(data: Any, ignore_nodata: bool = True) -> Any:
    return _reduce(data, ignore_nodata, "std", keep_int=False, ddof=1)


@process()
def variance(data: Any, ignore_nodata: bool = True) -> Any:
    return _reduce(data, ignore_nodata, "var", keep_int=False, ddof=1)


@process()
def extrema(data: Any, ignore_nodata: bool = True) -> Any:
    low = _reduce(data, ignore_nodata, "min")
    high = _reduce(data, ignore_nodata, "max")
    if not isinstance(low, xr.DataArray):
        return [low, high]
    arr = exact_array(data)
    return ArrayValue(xr.concat([low, high], dim=arr.dim, coords="minimal", compat="override",
                                join="override"), arr.dim)


# --- quantiles -----------------------------------------------------------------------------------


def _probabilities(probabilities: Any, q: Any) -> np.ndarray:
    if probabilities is None and q is None:
        raise QuantilesParameterMissing("quantiles needs 'probabilities'.")
    if probabilities is not None and q is not None:
        raise QuantilesParameterConflict(
            "quantiles takes 'probabilities' or the deprecated 'q', not both.")
    given = probabilities if probabilities is not None else q
    if isinstance(given, (int, np.integer)) and not isinstance(given, bool):
        if given < 2:
            raise ValueError(f"the number of intervals must be at least 2, got {given}")
        return np.arange(1, given) / given
    if not isinstance(given, (list, tuple)):
        raise errors.ProcessParameterInvalid(
            "'probabilities' must be an array of probabilities or an integer.",
            argument="probabilities" if probabilities is not None else "q")
    probs = np.asarray(given, dtype=float)
    if probs.size and (np.any(probs < 0) or np.any(probs > 1) or np.isnan(probs).any()):
        raise ValueError("probabilities must be between 0 and 1")
    if np.any(np.diff(probs) < 0):
        raise AscendingProbabilitiesRequired(
            "The probabilities must be sorted in ascending order.")
    return probs


def _quantile_kernel(values: np.ndarray, probs: np.ndarray, propagate_nan: bool) -> np.ndarray:
    """Sample quantiles of type 7 (Hyndman & Fan) along the last axis, NaN skipped.

    With `propagate_nan`, any NaN along the axis makes all quantiles NaN.
    """
    values = values.astype(float)
    ordered = np.sort(values, axis=-1)  # NaN sorts last
    valid = ~np.isnan(values)
    n = valid.sum(axis=-1, keepdims=True)
    h = (n - 1) * probs
    below = np.floor(h)
    t = h - below
    lo = np.clip(below, 0, None).astype(np.int64)
    hi = np.minimum(lo + 1, np.maximum(n - 1, 0))
    a = np.take_along_axis(ordered, lo, axis=-1)
    b = np.take_along_axis(ordered, hi, axis=-1)
    # (1-t)*a + t*b, not a + t*(b-a): an infinite neighbour gives ±inf, not inf - inf = NaN.
    out = np.where(t == 0, a, (1 - t) * a + t * b)
    out = np.where(n == 0, np.nan, out)
    if propagate_nan:
        out = np.where((~valid).any(axis=-1, keepdims=True), np.nan, out)
    return out


@process()
def quantiles(data: Any, probabilities: Any = None, q: int | None = None,
              ignore_nodata: bool = True) -> Any:
    probs = _probabilities(probabilities, q)
    prepared = _numbers(data, ignore_nodata)
    arr, values = prepared.arr, prepared.values
    if arr.is_list:
        if values is None or values.size == 0:
            return [None] * probs.size
        with np.errstate(all="ignore"):
            out = _quantile_kernel(np.asarray(values.values), probs, propagate_nan=True)
        return [to_python(v) for v in out.tolist()]
    result = apply_along(_quantile_kernel, values, arr.dim, size=probs.size, probs=probs,
                    propagate_nan=not ignore_nodata)
    return ArrayValue(result, arr.dim)


# --- logic ---------------------------------------------------------------------------------------


def _truth(data: Any) -> tuple[ArrayValue, xr.DataArray, xr.DataArray | None]:
    """The array, where its values are true, and where they are no-data (None if nowhere)."""
    arr = exact_array(data)
    values = arr.data
    null = nodata_mask(arr)
    if values.dtype == bool:
        return arr, values, null
    if values.dtype == object:
        missing = np.asarray(null.values)
        raw = np.where(missing, False, np.asarray(values.values))
        if any(not isinstance(v, (bool, np.bool_)) for v in raw):
            raise errors.ProcessParameterInvalid("all and any need boolean values.",
                                                 argument="data")
        return arr, values.copy(data=raw.astype(bool)), null
    if values.dtype.kind in "iuf":
        truth = values != 0
        return arr, truth if null is None else truth & ~null, null
    raise errors.ProcessParameterInvalid(
        f"all and any need boolean values, got values of type {values.dtype}.", argument="data")


def _logic(data: Any, ignore_nodata: bool, all_: bool) -> Any:
    arr, truth, null = _truth(data)
    dim = arr.dim
    if null is None:
        result = truth.all(dim) if all_ else truth.any(dim)
        return arr.finish(result)
    if ignore_nodata:
        result = (truth | null).all(dim) if all_ else truth.any(dim)
        return arr.finish(result)
    # Pairwise reduction with no-data (truth tables of the spec): a decisive value (false for
    # all, true for any) wins over no-data; otherwise any no-data makes the result no-data.
    decisive = (~truth & ~null).any(dim) if all_ else truth.any(dim)
    undecided = null.any(dim)
    if arr.is_list:
        if bool(decisive):
            return not all_
        return None if bool(undecided) else all_
    verdict = 0.0 if all_ else 1.0
    return xr.where(decisive, verdict, xr.where(undecided, np.nan, 1.0 - verdict))


@process("all")
def all_(data: Any, ignore_nodata: bool = True) -> Any:
    return _logic(data, ignore_nodata, all_=True)


@process("any")
def any_(data: Any, ignore_nodata: bool = True) -> Any:
    return _logic(data, ignore_nodata, all_=False)
