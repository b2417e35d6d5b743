"""The openEO array processes (array_*, first, last, order, sort, count, cum*), vectorised.

Every process takes a JSON list, a labeled array or, inside a callback, a cube dimension
(an ArrayValue whose `dim` is that dimension) and works along `dim` with whole-array numpy,
xarray or dask operations. JSON lists keep null (None) and NaN apart; along cube dimensions
NaN is the no-data value. Array results are Python lists for plain lists, labeled ArrayValues
for labeled lists and ArrayValues along the same `dim` for cube dimensions (lazy stays lazy).
"""

from __future__ import annotations

import math
from typing import Any

import dask.array as dsa
import numpy as np
import pandas as pd
import xarray as xr
from dask.array.reductions import cumreduction

from terracube import errors
from terracube.datacube.cube import datetime_labels_to_strings
from terracube.datacube.values import (
    ELEMENT_DIM,
    LIST_DIM,
    ArrayValue,
    apply_along,
    exact_array,
    int_valued,
    is_labeled,
    is_number,
    label_index,
    labeled_array,
    nodata_mask,
    numbers,
    stack_list,
    to_list,
    to_python,
)
from terracube.engine.processes._arguments import label_argument, list_argument
from terracube.engine.registry import kind_of, process
from terracube.process_errors import (
    ArrayElementNotAvailable,
    ArrayElementParameterConflict,
    ArrayElementParameterMissing,
    ArrayLabelConflict,
    ArrayLengthMismatch,
    ArrayNotLabeled,
    LabelExists,
)

# --- small helpers ---------------------------------------------------------------------------


def _is_lazy(data: xr.DataArray) -> bool:
    return isinstance(data.data, dsa.Array)


def _labels(arr: ArrayValue) -> list:
    """The labels as Python values; RFC 3339 strings for temporal labels."""
    if arr.dim not in arr.data.coords:
        return []
    raw = np.asarray(arr.data.coords[arr.dim].values)
    if raw.dtype.kind == "M":
        return datetime_labels_to_strings(raw)
    return [to_python(v) for v in raw.tolist()]


def _label_axis(arr: ArrayValue) -> np.ndarray:
    return np.asarray(arr.data.coords[arr.dim].values) if arr.dim in arr.data.coords \
        else np.array([], dtype=object)


def _label_matches(arr: ArrayValue, label: Any) -> np.ndarray:
    """Positions along `dim` whose label equals `label` (strictly: a string never equals a number;
    temporal labels are compared as instants)."""
    labels = _label_axis(arr)
    if labels.dtype.kind == "M":
        if not isinstance(label, str):
            return np.zeros(len(labels), dtype=bool)
        try:
            ts = pd.Timestamp(label)
        except ValueError:  # not a date: no temporal label can be equal to it
            return np.zeros(len(labels), dtype=bool)
        if ts.tzinfo is not None:
            ts = ts.tz_convert("UTC").tz_localize(None)
        return labels.astype("datetime64[ns]") == ts.to_datetime64()
    if isinstance(label, str):
        if labels.dtype.kind in "US":
            return labels == label
        return np.array([isinstance(v, str) and v == label for v in labels], dtype=bool)
    if is_number(label):
        if labels.dtype.kind in "iuf":
            return labels == label
        return np.array([is_number(v) and v == label for v in labels], dtype=bool)
    return np.zeros(len(labels), dtype=bool)


def _label_position(arr: ArrayValue, label: Any) -> int | None:
    hits = np.flatnonzero(_label_matches(arr, label))
    return int(hits[0]) if hits.size else None


def _whole_number(value: Any, name: str) -> int:
    """An integer argument; JSON numbers like 2.0 count as integers, booleans do not."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        return int(value)
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return int(value)
    raise errors.ProcessParameterInvalid(f"'{name}' must be an integer, got {value!r}.",
                                         argument=name)


def _drop_dim_coords(data: xr.DataArray, dim: str) -> xr.DataArray:
    return data.drop_vars([c for c in data.coords if dim in data.coords[c].dims])


def _cube_result(arr: ArrayValue, data: xr.DataArray, keep_labels: bool = True) -> ArrayValue:
    """An array result along a cube dimension; labels only where they still mean something."""
    if not keep_labels:
        data = _drop_dim_coords(data, arr.dim)
    elif arr.dim in arr.data.coords and data.sizes[arr.dim] == arr.size:
        data = data.assign_coords({arr.dim: arr.data.coords[arr.dim]})
    return ArrayValue(data, arr.dim, arr.labeled and keep_labels)


def _list_result(values: list, labels: list | None = None) -> Any:
    """An array result of a JSON list: a Python list, or a labeled array if labels are given."""
    if labels is None:
        return values
    return labeled_array(values, labels)


def _pick_list(arr: ArrayValue, positions: Any) -> Any:
    """The elements of a JSON list (with their labels, if labeled) at `positions`, in order."""
    values = to_list(arr)
    labels = _labels(arr) if is_labeled(arr) else None
    return _list_result([values[i] for i in positions],
                        [labels[i] for i in positions] if labels is not None else None)


def _values_with_nodata(values: np.ndarray, nodata: np.ndarray | None,
                        keep_int: bool = False) -> list:
    """Python values of a 1-d numeric array with None where `nodata` is set."""
    out = [to_python(v, keep_int) for v in np.asarray(values).tolist()]
    if nodata is not None:
        for i in np.flatnonzero(nodata):
            out[i] = None
    return out


def _plane(arr: ArrayValue, value: Any, argument: str = "value") -> xr.DataArray:
    """`value` as one cube slice without `dim` (lazy for dask cubes)."""
    base = arr.data.isel({arr.dim: 0}, drop=True) if arr.size else arr.data.sum(arr.dim)
    if isinstance(value, xr.DataArray):
        return value.broadcast_like(base).transpose(*base.dims)
    if not (value is None or is_number(value) or isinstance(value, (bool, np.bool_))):
        raise errors.ProcessParameterInvalid(
            f"'{argument}' is {kind_of(value)}, which cannot be put into a data cube.",
            argument=argument)
    fill = np.nan if value is None else value
    return xr.full_like(base, fill, dtype=np.result_type(base.dtype, np.asarray(fill).dtype))


def _slices(arr: ArrayValue, other: ArrayValue) -> xr.DataArray:
    """`other` (a JSON list or another cube dimension) as slices along `arr`'s cube dimension."""
    if not other.is_list:
        data = other.data
        if other.dim != arr.dim:
            data = data.rename({other.dim: arr.dim})
        missing = {d: arr.data.sizes[d] for d in arr.data.dims if d not in data.dims}
        if missing:  # a value per pixel computed from fewer dimensions: broadcast it
            data = data.expand_dims(missing)
        return data
    base = arr.data.isel({arr.dim: 0}, drop=True) if arr.size else arr.data.sum(arr.dim)
    values = xr.DataArray(np.asarray(numbers(other).values), dims=[arr.dim])
    if arr.dim in other.data.coords:
        values = values.assign_coords({arr.dim: other.data.coords[other.dim].values})
    return values.broadcast_like(base).transpose(*arr.data.dims)


def _concat(parts: list[xr.DataArray], dim: str) -> xr.DataArray:
    parts = [p for p in parts if p.sizes.get(dim, 0) > 0] or parts[:1]
    if len(parts) == 1:
        return parts[0]
    return xr.concat(parts, dim=dim, coords="minimal", compat="override", join="override")


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
        labels = _labels(arr)
        # Strings as a numpy string array, numbers as numbers (what elementwise processes
        # expect); only labels of mixed kinds need an object array.
        mixed = len({isinstance(v, str) for v in labels}) > 1
        label = xr.DataArray(np.array(labels, dtype=object if mixed else None), dims=[dim],
                             coords=coords)
    return {"x": numbers(arr), "index": index, "label": label}


def _call_each(arr: ArrayValue, callback: Any, context: Any) -> list:
    labels = _labels(arr) if is_labeled(arr) else [None] * arr.size
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
        if _is_lazy(data) and not _is_lazy(result):
            result = result.chunk(dict(data.chunksizes))
    return result


def _is_true(values: Any) -> Any:
    """Where a condition's result is `true` (null and NaN count as false)."""
    if isinstance(values, xr.DataArray) and values.dtype == bool:
        return values
    return values == True  # noqa: E712 - elementwise comparison with the boolean true


# --- element access ----------------------------------------------------------------------------


@process()
def array_element(data: Any, index: int | None = None, label: Any = None,
                  return_nodata: bool = False) -> Any:
    if index is None and label is None:
        raise ArrayElementParameterMissing(
            "array_element needs either 'index' or 'label'.")
    if index is not None and label is not None:
        raise ArrayElementParameterConflict(
            "array_element takes 'index' or 'label', not both.")
    arr = exact_array(data)
    if label is not None:
        if not is_labeled(arr):
            raise ArrayNotLabeled("The array has no labels; use 'index' instead of 'label'.")
        pos = _label_position(arr, label)
        what = f"label {label!r}"
    else:
        index = _whole_number(index, "index")
        pos = index if 0 <= index < arr.size else None
        what = f"index {index}"
    if pos is None:
        if return_nodata:
            return None if arr.is_list else _plane(arr, None).astype(float)
        raise ArrayElementNotAvailable(
            f"The array has no element with {what}; set return_nodata to get null instead.")
    if arr.is_list:
        return to_python(np.asarray(arr.data.values)[pos])
    return arr.data.isel({arr.dim: pos}, drop=True)


def _end(data: Any, ignore_nodata: bool, last: bool) -> Any:
    arr = exact_array(data)
    if arr.is_list:
        if arr.size == 0:
            return None
        raw = np.asarray(arr.data.values)
        if not ignore_nodata:
            return to_python(raw[-1 if last else 0])
        null = nodata_mask(arr)
        valid = np.arange(arr.size) if null is None else np.flatnonzero(~null.values)
        if valid.size == 0:
            return None
        return to_python(raw[valid[-1] if last else valid[0]])
    null = nodata_mask(arr)
    if arr.size == 0:
        return _plane(arr, None)
    if not ignore_nodata or null is None:
        return arr.data.isel({arr.dim: -1 if last else 0}, drop=True)
    # The first (last) valid value: the one whose running count of valid values is 1 (all).
    valid = ~null
    seen = valid.cumsum(arr.dim)
    target = valid.sum(arr.dim) if last else 1
    return arr.data.where(valid & (seen == target)).max(arr.dim)


@process()
def first(data: Any, ignore_nodata: bool = True) -> Any:
    return _end(data, ignore_nodata, last=False)


@process()
def last(data: Any, ignore_nodata: bool = True) -> Any:
    return _end(data, ignore_nodata, last=True)


@process()
def array_labels(data: Any) -> list:
    arr = exact_array(data)
    if is_labeled(arr):
        return _labels(arr)
    return list(range(arr.size))


@process()
def array_find_label(data: Any, label: Any) -> int | None:
    arr = exact_array(data)
    if not is_labeled(arr):
        return None
    return _label_position(arr, label)


# --- searching -----------------------------------------------------------------------------------


def _strictly_equal(v: Any, value: Any) -> bool:
    # eq() semantics: no type juggling (a string "1" is not the number 1, true is not 1).
    if v is None:
        return False
    if isinstance(value, (bool, np.bool_)):
        return isinstance(v, (bool, np.bool_)) and bool(v) == bool(value)
    if is_number(value):
        return is_number(v) and v == value
    if isinstance(value, str):
        return isinstance(v, str) and v == value
    return False


_strictly_equal_each = np.frompyfunc(_strictly_equal, 2, 1)


def _matches(arr: ArrayValue, value: Any) -> xr.DataArray:
    """Where the array holds `value` (as eq() would say true), along the whole data."""
    data = arr.data
    nothing = xr.zeros_like(data, dtype=bool)
    if isinstance(value, xr.DataArray):  # one value per pixel/element: compare vectorised
        kinds = {data.dtype.kind, value.dtype.kind}
        if kinds <= set("iuf") or kinds <= set("US") or kinds == {"b"}:
            return data == value
        return (nothing & xr.zeros_like(value, dtype=bool))
    if value is None or not (is_number(value) or isinstance(value, (str, bool, np.bool_))):
        return nothing  # null, arrays and objects never match
    kind = data.dtype.kind
    if kind == "O":
        raw = np.asarray(data.values)
        return data.copy(data=_strictly_equal_each(raw, value).astype(bool))
    if kind == "b":
        return data == bool(value) if isinstance(value, (bool, np.bool_)) else nothing
    if kind in "iuf":
        return data == value if is_number(value) else nothing
    if kind in "US":
        return data == value if isinstance(value, str) else nothing
    return nothing


@process()
def array_contains(data: Any, value: Any) -> Any:
    arr = exact_array(data)
    found = _matches(arr, value).any(arr.dim)
    return arr.finish(found)


@process()
def array_find(data: Any, value: Any, reverse: bool = False) -> Any:
    arr = exact_array(data)
    hits = _matches(arr, value)
    if arr.is_list and hits.ndim == 1:
        positions = np.flatnonzero(hits.values)
        if positions.size == 0:
            return None
        return int(positions[-1] if reverse else positions[0])
    if arr.size == 0:
        return _plane(arr, None).astype(float)
    found = hits.any(arr.dim)
    if reverse:
        index = (arr.size - 1) - hits.isel({arr.dim: slice(None, None, -1)}).argmax(arr.dim)
    else:
        index = hits.argmax(arr.dim)
    return index.where(found)


# --- building arrays -----------------------------------------------------------------------------


@process()
def array_create(data: Any = None, repeat: int = 1) -> Any:
    repeat = _whole_number(repeat, "repeat")
    if repeat < 1:
        raise ValueError(f"'repeat' must be at least 1, got {repeat}")
    if data is None:
        data = []
    if isinstance(data, (list, tuple)) and any(
            isinstance(v, (xr.DataArray, ArrayValue)) for v in data):
        data = _flattened(data)
    if isinstance(data, (list, tuple)) and not any(isinstance(v, xr.DataArray) for v in data):
        return list(data) * int(repeat)
    arr = exact_array(data)
    if arr.is_list:
        return to_list(arr) * int(repeat)
    if repeat == 1:
        return arr
    return _cube_result(arr, _concat([arr.data] * int(repeat), arr.dim), keep_labels=False)


def _flattened(items: list | tuple) -> list[Any]:
    """The elements of `items` with arrays among them spliced in, as CDSE builds arrays of
    cube values: `[mean(x), quantiles(x, [0.25, 0.75])]` gives three values per pixel, a
    one-element array one. (Only where cube values are involved: a JSON array of arrays
    stays nested.)"""
    flat: list[Any] = []
    for v in items:
        if isinstance(v, (list, tuple)):
            flat.extend(_flattened(v))
        elif isinstance(v, ArrayValue) and v.is_list and v.data.ndim == 1:
            flat.extend(to_list(v))
        elif isinstance(v, ArrayValue):
            values = v.data.drop_vars([c for c in v.data.coords if v.dim in v.data[c].dims])
            flat.extend(values.isel({v.dim: i}) for i in range(v.size))
        else:
            flat.append(v)
    return flat


@process()
def array_create_labeled(data: Any, labels: list) -> Any:
    arr = exact_array(data)
    labels = list_argument(labels, "labels")
    if len(labels) != arr.size:
        raise ArrayLengthMismatch(
            f"{arr.size} values but {len(labels)} labels; both arrays need the same length.")
    if len(set(map(_label_key, labels))) != len(labels):
        raise ValueError("the labels must be unique")
    if arr.is_list:
        return labeled_array(to_list(arr), labels)
    data_ = arr.data.assign_coords({arr.dim: label_index(labels)})
    return ArrayValue(data_, arr.dim, labeled=True)


def _label_key(label: Any) -> tuple:
    # "1" and 1 are different labels; 1 and 1.0 are the same.
    return ("s", label) if isinstance(label, str) else ("n", label)


@process()
def array_append(data: Any, value: Any, label: Any = None) -> Any:
    arr = exact_array(data)
    labeled = is_labeled(arr)
    label_argument(label, "label")
    if label is not None and not labeled:
        raise ArrayNotLabeled("'label' can only be given for a labeled array.")
    new_label = label if label is not None else arr.size
    labels = _labels(arr) if labeled else None
    if labeled and _label_key(new_label) in set(map(_label_key, labels)):
        raise LabelExists(f"The array already has the label {new_label!r}.")
    if arr.is_list:
        values = to_list(arr) + [value]
        if isinstance(value, xr.DataArray):
            return stack_list(values)
        return _list_result(values, labels + [new_label] if labeled else None)
    plane = _plane(arr, value).expand_dims(arr.dim).transpose(*arr.data.dims)
    appended = _concat([_drop_dim_coords(arr.data, arr.dim), plane], arr.dim)
    if labeled:
        appended = appended.assign_coords({arr.dim: _extend_labels(arr, [new_label])})
        return ArrayValue(appended, arr.dim, arr.labeled)
    return ArrayValue(appended, arr.dim)


def _extend_labels(arr: ArrayValue, more: list) -> np.ndarray:
    labels = _label_axis(arr)
    if labels.dtype.kind == "M":
        extra = [np.datetime64(pd.Timestamp(v).tz_localize(None)) if isinstance(v, str) else v
                 for v in more]
        return np.concatenate([labels, np.array(extra, dtype=labels.dtype)])
    return label_index([to_python(v) for v in labels.tolist()] + list(more))


def _check_label_conflict(first_labels: list, second_labels: list) -> None:
    common = set(map(_label_key, first_labels)) & set(map(_label_key, second_labels))
    if common:
        names = ", ".join(repr(v) for _, v in sorted(common, key=repr))
        raise ArrayLabelConflict(f"The label(s) {names} are present in both arrays.")


def _concat_operands(first: Any, second: Any) -> tuple[ArrayValue, ArrayValue]:
    """The operands of array_concat as ArrayValues.

    Inside a callback a DataArray that is not an ArrayValue is a value per pixel (e.g. an NDVI
    computed from two array_element calls in apply_dimension over bands): it counts as a
    one-element array, so `array_concat(data, ndvi)` appends one value per pixel, vectorised.
    A DataArray that has the other operand's cube dimension is an array along it, and a
    one-dimensional DataArray beside no cube dimension is still read as an array.
    """
    cube_dims = [v.dim for v in (first, second) if isinstance(v, ArrayValue) and not v.is_list]

    def operand(value: Any, argument: str) -> ArrayValue:
        if not isinstance(value, xr.DataArray):
            return exact_array(value, argument)
        along = [d for d in cube_dims if d in value.dims]
        if along:  # values along the other operand's cube dimension: an array along it
            return ArrayValue(value, along[0])
        if cube_dims or value.ndim != 1:
            return stack_list([value], argument)
        return exact_array(value, argument)

    return operand(first, "array1"), operand(second, "array2")


@process()
def array_concat(array1: Any, array2: Any) -> Any:
    a, b = _concat_operands(array1, array2)
    keep_labels = is_labeled(a) and is_labeled(b)
    if keep_labels:
        _check_label_conflict(_labels(a), _labels(b))
    if a.is_list and b.is_list:
        labels = _labels(a) + _labels(b) if keep_labels else None
        return _list_result(to_list(a) + to_list(b), labels)
    cube = a if not a.is_list else b
    parts = [p.data if p is cube else _slices(cube, p) for p in (a, b)]
    parts = [_drop_dim_coords(p, cube.dim).transpose(*cube.data.dims) for p in parts]
    joined = _concat(parts, cube.dim)
    if keep_labels:
        labels = _labels(a) + _labels(b)
        joined = joined.assign_coords({cube.dim: label_index(labels)})
        return ArrayValue(joined, cube.dim, labeled=True)
    return ArrayValue(joined, cube.dim)


@process()
def array_modify(data: Any, values: Any, index: int, length: int = 0) -> Any:
    arr = exact_array(data)
    new = exact_array(values, "values")
    index, length = _whole_number(index, "index"), _whole_number(length, "length")
    if index < 0 or length < 0:
        raise ValueError("'index' and 'length' must not be negative")
    if index > arr.size:
        raise ArrayElementNotAvailable(
            f"index {index} is beyond the end of the array ({arr.size} elements).")
    end = min(arr.size, index + length)
    # Labels survive if both arrays are labeled or one of them is empty (spec).
    keep_labels = (is_labeled(arr) or arr.size == 0) and (is_labeled(new) or new.size == 0) \
        and (is_labeled(arr) or is_labeled(new))
    labels = None
    if keep_labels:
        old = _labels(arr) if is_labeled(arr) else []
        kept_old = old[:index] + old[end:]
        added = _labels(new) if is_labeled(new) else []
        # Replaced elements are gone, so only the remaining labels can clash with the new ones.
        _check_label_conflict(kept_old, added)
        labels = old[:index] + added + old[end:]
    if arr.is_list and new.is_list:
        old_values = to_list(arr)
        return _list_result(old_values[:index] + to_list(new) + old_values[end:], labels)
    cube = arr if not arr.is_list else new
    if arr.is_list:  # a JSON list modified with cube values
        head = _slices(cube, exact_array(to_list(arr)[:index]))
        tail = _slices(cube, exact_array(to_list(arr)[end:]))
        middle = new.data
    else:
        head = arr.data.isel({arr.dim: slice(0, index)})
        tail = arr.data.isel({arr.dim: slice(end, None)})
        middle = _slices(arr, new)
    parts = [_drop_dim_coords(p, cube.dim).transpose(*cube.data.dims)
             for p in (head, middle, tail)]
    joined = _concat(parts, cube.dim)
    if labels is not None:
        return ArrayValue(joined.assign_coords({cube.dim: label_index(labels)}), cube.dim,
                          labeled=True)
    return ArrayValue(joined, cube.dim)


# --- callbacks over arrays -----------------------------------------------------------------------


@process()
def array_apply(data: Any, process: Any, context: Any = None) -> Any:
    _require_callback(process, "process")
    arr = exact_array(data)
    labels = _labels(arr) if is_labeled(arr) else None
    if arr.is_list and not _vectorisable(arr):
        return _list_result(_call_each(arr, process, context), labels)
    if arr.is_list and arr.size == 0:
        return _list_result([], labels)
    result = _full(process(**_callback_arguments(arr), context=context), arr, "process")
    if not arr.is_list:
        return _cube_result(arr, result)
    out = [to_python(v) for v in np.asarray(result.values).tolist()]
    null = nodata_mask(arr)
    if null is not None:  # null in, NaN out: the element stays no-data
        for i in np.flatnonzero(null.values):
            if isinstance(out[i], float) and math.isnan(out[i]):
                out[i] = None
    return _list_result(out, labels)


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
            return _list_result([], [] if labeled else None)
        if _vectorisable(arr):
            res = condition(**_callback_arguments(arr), context=context)
            keep = np.asarray(_is_true(_full(res, arr, "condition")).values, dtype=bool)
        else:
            keep = np.array([r is True for r in _call_each(arr, condition, context)], dtype=bool)
        return _pick_list(arr, np.flatnonzero(keep))
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
    return _cube_result(arr, compacted, keep_labels=False)


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
    return _cube_result(arr, result, keep_labels=False)


@process()
def sort(data: Any, asc: bool = True, nodata: bool | None = None) -> Any:
    _check_nodata_flag(nodata)
    arr = exact_array(data)
    if arr.is_list:
        if arr.size == 0:
            return _list_result([], [] if is_labeled(arr) else None)
        return _pick_list(arr, _list_order(arr, asc, nodata))
    keys, null = _sort_keys(arr)
    result = apply_along(_sorted_kernel, arr.data, arr.dim, keys, null, asc=asc, nodata=nodata)
    return _cube_result(arr, result, keep_labels=False)


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
            return _pick_list(arr, positions)
        return ArrayValue(arr.data.isel({arr.dim: positions}), arr.dim, arr.labeled)
    perm = exact_array(order, "order")
    if arr.is_list:
        raise errors.ProcessParameterInvalid(
            "A per-pixel 'order' needs cube values in 'data'.", argument="order")
    positions = perm.data.astype(float)
    if perm.dim != arr.dim:
        positions = positions.rename({perm.dim: arr.dim})
    positions = _drop_dim_coords(positions, arr.dim)
    values = _drop_dim_coords(arr.data, arr.dim)
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
    labels = _label_axis(arr)
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
        return _list_result([], [] if is_labeled(arr) else None) if arr.is_list else arr
    values = numbers(arr).astype(float)
    result = apply_along(_interpolate_kernel, values, arr.dim, x=_positions(arr))
    if not arr.is_list:
        return _cube_result(arr, result)
    null = nodata_mask(arr)
    still = None if null is None else null.values & np.isnan(result.values)
    out = _values_with_nodata(result.values, still, keep_int=int_valued(arr))
    return _list_result(out, _labels(arr) if is_labeled(arr) else None)


# --- cumulative processes ------------------------------------------------------------------------


def _accumulate(ufunc: np.ufunc, data: xr.DataArray, dim: str) -> xr.DataArray:
    axis = data.get_axis_num(dim)
    if _is_lazy(data):
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
        return _list_result([], [] if is_labeled(arr) else None)
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
        return _cube_result(arr, result)
    out = _values_with_nodata(result.values, None if out_null is None else out_null.values,
                              keep_int=int_valued(arr))
    return _list_result(out, _labels(arr) if is_labeled(arr) else None)


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

