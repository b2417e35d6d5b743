"""openEO arrays as process functions see them: plain lists, labeled arrays, or a cube dimension.

Inside a callback (the reducer of reduce_dimension, the process of apply_dimension) the
`data` parameter is the whole cube with the reduced dimension kept as an axis: an
ArrayValue whose `dim` names that axis. Array processes (mean, array_element, sort, ...)
work along `dim` and so serve both a JSON list of five numbers and a 10000×10000 cube
dimension with the same code, vectorised.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import dask.array as dsa
import numpy as np
import xarray as xr

from terracube import errors

LIST_DIM = "__array__"
# The axis of the elements of a JSON list handed to a callback (array_apply, array_filter…):
# it must differ from LIST_DIM so that a list inside the callback broadcasts against it.
ELEMENT_DIM = "__element__"
# Axes of plain JSON data (not cube dimensions): NaN there is a number, not no-data.
JSON_DIMS = frozenset({LIST_DIM, ELEMENT_DIM})


@dataclass(frozen=True)
class ArrayValue:
    """An openEO array: the values along `dim` of `data`, optionally with labels (coords)."""

    data: xr.DataArray
    dim: str
    labeled: bool = False  # True for labeled arrays (dimension labels are meaningful)
    # labels the process that made the array declared for `dim` (a UDF's apply_metadata),
    # which apply_dimension gives the target dimension instead of 0, 1, 2, ...
    declared_labels: tuple[Any, ...] | None = None

    @property
    def is_list(self) -> bool:
        """True for a plain JSON array (one-dimensional, no cube behind it)."""
        return self.dim == LIST_DIM and self.data.ndim == 1

    @property
    def size(self) -> int:
        return int(self.data.sizes[self.dim])

    def labels(self) -> list[Any]:
        if self.dim in self.data.coords:
            return list(self.data.coords[self.dim].values)
        return []

    def finish(self, value: Any) -> Any:
        """Turn the result of an operation along `dim` back into what the caller expects:
        a Python value for plain lists, the DataArray for cube dimensions."""
        if self.is_list and isinstance(value, xr.DataArray) and value.ndim == 0:
            return to_python(value.values)
        return value

    def with_data(self, data: xr.DataArray) -> ArrayValue:
        return ArrayValue(data, self.dim, self.labeled)


def to_python(v: Any, keep_int: bool = False) -> Any:
    """numpy scalar / 0-d array -> Python scalar; NaN in object arrays stays NaN, None stays
    None. With `keep_int`, a finite integral float becomes an int."""
    if isinstance(v, np.ndarray) and v.ndim == 0:
        v = v[()]
    if isinstance(v, np.generic):
        if isinstance(v, np.datetime64):
            return v
        v = v.item()
    if keep_int and isinstance(v, float) and math.isfinite(v) and v.is_integer():
        return int(v)
    return v


def as_array(value: Any, argument: str = "data") -> ArrayValue:
    """An ArrayValue for a JSON list, an ArrayValue already, or a 1-d DataArray.

    A list that holds DataArrays (e.g. `max([x, 0])` inside `apply`, where `x` is the cube)
    becomes one array along LIST_DIM stacked over the broadcast elements (see `stack_list`).
    """
    if isinstance(value, ArrayValue):
        return value
    if isinstance(value, (list, tuple)):
        if any(isinstance(v, xr.DataArray) for v in value):
            return stack_list(list(value))
        return ArrayValue(xr.DataArray(list_to_numpy(list(value)), dims=[LIST_DIM]), LIST_DIM)
    if isinstance(value, xr.DataArray) and value.ndim == 1:
        return ArrayValue(value, str(value.dims[0]))
    raise errors.ProcessParameterInvalid(
        f"'{argument}' must be an array, got {json_kind(value)}.", argument=argument)


def json_kind(value: Any) -> str:
    """What a JSON value is, in openEO words (for error messages)."""
    if value is None:
        return "null"
    for kind, words in ((bool, "a boolean"), ((int, float), "a number"), (str, "a string"),
                        ((list, tuple), "an array"), (dict, "an object")):
        if isinstance(value, kind):
            return words
    return f"a {type(value).__name__}"


def list_to_numpy(values: list[Any]) -> np.ndarray:
    """A numpy array for a JSON list: float for numbers (null -> NaN is NOT done here: object
    dtype keeps None so that null and NaN stay distinguishable), bool for booleans."""
    if values and all(isinstance(v, bool) for v in values):
        return np.array(values, dtype=bool)
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return np.array(values, dtype=float)
    return object_array(values)


# --- helpers for array processes (arrays.py, reducers.py) ---------------------------------------


def exact_values(values: list[Any]) -> np.ndarray:
    """A numpy array that gives back exactly the JSON values it was made of.

    Integers stay int64, other numbers float, booleans bool; anything else (mixed types,
    strings, nested arrays, and every list with a null) is an object array in which None
    (no-data) and NaN stay different values.
    """
    if not values:
        return np.array([], dtype=float)
    if all(isinstance(v, (bool, np.bool_)) for v in values):
        return np.array(values, dtype=bool)
    if all(is_number(v) for v in values):
        if all(isinstance(v, (int, np.integer)) for v in values):
            try:
                return np.array(values, dtype=np.int64)
            except OverflowError:
                pass
        else:
            return np.array(values, dtype=float)
    return object_array(values)


def is_number(value: Any) -> bool:
    """An openEO number: int or float, numpy ones included, never a boolean."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_))


def object_array(values: list[Any]) -> np.ndarray:
    """A one-dimensional object array holding the values as they are (lists stay elements)."""
    arr = np.empty(len(values), dtype=object)
    for i, v in enumerate(values):
        arr[i] = v
    return arr


def exact_array(value: Any, argument: str = "data") -> ArrayValue:
    """Like `as_array`, but a JSON list keeps its exact values (see `exact_values`)."""
    if isinstance(value, (list, tuple)) and not any(isinstance(v, xr.DataArray) for v in value):
        return ArrayValue(xr.DataArray(exact_values(list(value)), dims=[LIST_DIM]), LIST_DIM)
    return as_array(value, argument)


def stack_list(items: list[Any], argument: str = "data") -> ArrayValue:
    """One array along LIST_DIM from a list of DataArrays and scalars, broadcast together.

    Scalars (None -> NaN) are filled lazily like the DataArrays, so dask cubes stay lazy.
    """
    arrays = [v for v in items if isinstance(v, xr.DataArray)]
    arrays = list(xr.broadcast(*arrays))
    template = arrays[0]
    it = iter(arrays)
    parts = []
    for v in items:
        if isinstance(v, xr.DataArray):
            parts.append(next(it))
        elif v is None or is_number(v) or isinstance(v, (bool, np.bool_)):
            fill = np.nan if v is None else v
            dtype = bool if isinstance(v, (bool, np.bool_)) else None
            parts.append(xr.full_like(template, fill, dtype=dtype or np.result_type(fill)))
        else:
            raise errors.ProcessParameterInvalid(
                f"An element of '{argument}' is {json_kind(v)}, which cannot be combined with "
                "data cube values.", argument=argument)
    stacked = xr.concat(parts, dim=LIST_DIM, coords="minimal", compat="override",
                        join="override")
    return ArrayValue(stacked, LIST_DIM)


def labeled_array(values: list[Any], labels: list[Any]) -> ArrayValue:
    """A labeled JSON array (e.g. from array_create_labeled or a test case)."""
    if len(values) != len(labels):
        raise ValueError(f"{len(values)} values but {len(labels)} labels")
    data = exact_values(list(values))
    return ArrayValue(xr.DataArray(data, dims=[LIST_DIM], coords={LIST_DIM: label_index(labels)}),
                      LIST_DIM, labeled=True)


def label_index(labels: list[Any]) -> np.ndarray:
    """Labels as a numpy array: numbers or strings keep their kind; mixed ones are objects."""
    if labels and all(isinstance(v, str) for v in labels):
        return np.array(labels, dtype=object)
    if labels and all(is_number(v) for v in labels):
        return np.array(labels)
    return object_array(labels)


def is_labeled(arr: ArrayValue) -> bool:
    """True if the array's labels are meaningful: labeled lists and labeled cube dimensions."""
    return arr.labeled or (not arr.is_list and arr.dim in arr.data.coords)


def to_list(arr: ArrayValue) -> list[Any]:
    """The values of a one-dimensional ArrayValue as Python values (None stays None)."""
    return [to_python(v) for v in np.asarray(arr.data.values).tolist()]


def nodata_mask(arr: ArrayValue) -> xr.DataArray | None:
    """Where `arr` holds no-data, or None if it cannot hold any.

    In JSON lists no-data is None (NaN is a number there); along cube dimensions it is NaN.
    """
    data = arr.data
    if arr.is_list:
        if data.dtype != object:
            return None
        return data.copy(data=_is_none(np.asarray(data.values)).astype(bool))
    if data.dtype.kind in "fc":
        return data.isnull()
    return None


_is_none = np.frompyfunc(lambda v: v is None, 1, 1)


def numbers(arr: ArrayValue, argument: str = "data") -> xr.DataArray:
    """The values as numbers: no-data (None) becomes NaN; anything non-numeric is the user's
    error (ProcessParameterInvalid naming `argument`).

    Numeric and boolean arrays are returned as they are (no copy, lazy cubes stay lazy).
    """
    data = arr.data
    if data.dtype != object:
        if data.dtype.kind not in "biufc":
            raise errors.ProcessParameterInvalid(
                f"'{argument}' must hold numbers, got values of type {data.dtype}.",
                argument=argument)
        return data
    raw = np.asarray(data.values)
    filled = np.where(_is_none(raw).astype(bool), np.nan, raw)
    bad = [v for v in filled if not is_number(v)]
    if bad:
        raise errors.ProcessParameterInvalid(
            f"'{argument}' must hold numbers, got {json_kind(bad[0])}.", argument=argument)
    return data.copy(data=filled.astype(float))


def int_valued(arr: ArrayValue) -> bool:
    """True for a JSON list whose numbers are all integers (so integral results stay ints)."""
    data = arr.data
    if data.dtype.kind in "iu":
        return True
    if not arr.is_list or data.dtype != object:
        return False
    vals = [v for v in np.asarray(data.values) if v is not None]
    return bool(vals) and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                              for v in vals)


def single_chunk(data: xr.DataArray, dim: str) -> xr.DataArray:
    """`data` with `dim` in one dask chunk, for kernels that need the whole dimension at once."""
    if isinstance(data.data, dsa.Array) and len(data.chunksizes.get(dim, ())) > 1:
        return data.chunk({dim: -1})
    return data


def apply_along(kernel: Callable[..., Any], data: xr.DataArray, dim: str, *others: xr.DataArray,
                size: int | None = None, dtype: Any = float, reduce: bool = False,
                **kwargs: Any) -> xr.DataArray:
    """Run a numpy `kernel` that works along the last axis on `data` (and `others`) along `dim`.

    The output has `dim` with the same length, with length `size`, or no `dim` if `reduce`;
    the other dimensions keep their order. Dask arrays stay lazy: the kernel runs block by
    block with `dim` in one chunk. Floating-point warnings (IEEE results) are silenced.
    """
    inputs = [single_chunk(a, dim) for a in (data, *others)]
    extra: dict[str, Any] = {}
    out_dims: list[str] = [] if reduce else [dim]
    if size is not None and not reduce:
        extra = {"exclude_dims": {dim}, "dask_gufunc_kwargs": {"output_sizes": {dim: size}}}

    def run(*arrays: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"):
            out: np.ndarray = kernel(*arrays, **kwargs)
        return out

    result: xr.DataArray = xr.apply_ufunc(run, *inputs, input_core_dims=[[dim]] * len(inputs),
                            output_core_dims=[out_dims], dask="parallelized",
                            output_dtypes=[dtype], **extra)
    return result.transpose(*[d for d in data.dims if d in result.dims])
