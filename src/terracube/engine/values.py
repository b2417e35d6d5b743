"""openEO arrays as process functions see them: plain lists, labeled arrays, or a cube dimension.

Inside a callback (the reducer of reduce_dimension, the process of apply_dimension) the
`data` parameter is the whole cube with the reduced dimension kept as an axis: an
ArrayValue whose `dim` names that axis. Array processes (mean, array_element, sort, ...)
work along `dim` and so serve both a JSON list of five numbers and a 10000×10000 cube
dimension with the same code, vectorised.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

LIST_DIM = "__array__"


@dataclass(frozen=True)
class ArrayValue:
    """An openEO array: the values along `dim` of `data`, optionally with labels (coords)."""

    data: xr.DataArray
    dim: str
    labeled: bool = False  # True for labeled arrays (dimension labels are meaningful)

    @property
    def is_list(self) -> bool:
        """True for a plain JSON array (one-dimensional, no cube behind it)."""
        return self.dim == LIST_DIM and self.data.ndim == 1

    @property
    def size(self) -> int:
        return int(self.data.sizes[self.dim])

    def labels(self) -> list:
        if self.dim in self.data.coords:
            return list(self.data.coords[self.dim].values)
        return []

    def finish(self, value: Any) -> Any:
        """Turn the result of an operation along `dim` back into what the caller expects:
        a Python value for plain lists, the DataArray for cube dimensions."""
        if self.is_list and isinstance(value, xr.DataArray) and value.ndim == 0:
            return to_python(value.values)
        return value

    def with_data(self, data: xr.DataArray) -> "ArrayValue":
        return ArrayValue(data, self.dim, self.labeled)


def to_python(v: Any) -> Any:
    """numpy scalar / 0-d array -> Python scalar; NaN in object arrays stays NaN, None stays None."""
    if isinstance(v, np.ndarray) and v.ndim == 0:
        v = v[()]
    if isinstance(v, np.generic):
        if isinstance(v, np.datetime64):
            return v
        return v.item()
    return v


def as_array(value: Any) -> ArrayValue:
    """An ArrayValue for a JSON list, an ArrayValue already, or a 1-d DataArray."""
    if isinstance(value, ArrayValue):
        return value
    if isinstance(value, (list, tuple)):
        return ArrayValue(xr.DataArray(list_to_numpy(list(value)), dims=[LIST_DIM]), LIST_DIM)
    if isinstance(value, xr.DataArray) and value.ndim == 1:
        return ArrayValue(value, value.dims[0])
    raise TypeError(f"expected an array, got {type(value).__name__}")


def list_to_numpy(values: list) -> np.ndarray:
    """A numpy array for a JSON list: float for numbers (null -> NaN is NOT done here: object
    dtype keeps None so that null and NaN stay distinguishable), bool for booleans."""
    if values and all(isinstance(v, bool) for v in values):
        return np.array(values, dtype=bool)
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return np.array(values, dtype=float)
    arr = np.empty(len(values), dtype=object)
    for i, v in enumerate(values):
        arr[i] = v
    return arr
