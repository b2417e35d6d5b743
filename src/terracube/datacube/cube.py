"""The raster data cube: a lazy xarray.DataArray plus the openEO role of every dimension."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import xarray as xr

from terracube import process_errors

SPATIAL = "spatial"
TEMPORAL = "temporal"
BANDS = "bands"
OTHER = "other"
GEOMETRY = "geometry"


@dataclass(frozen=True)
class Dimension:
    """One dimension of a data cube, as in the STAC datacube extension."""

    name: str
    type: str  # spatial | temporal | bands | other | geometry
    axis: str | None = None  # x | y | z for spatial dimensions
    reference_system: Any = None  # EPSG code (int), WKT2 or PROJJSON for spatial dimensions
    # aggregate_temporal_period: the period ("month", "dekad", ...) and, per label it gave
    # ("2022-06"), the first instant of that period. The labels stay as the definition says;
    # outputs show the starts as dates, as CDSE does (docs/decisions/0013-period-labels.md).
    period: str | None = None
    period_starts: tuple[tuple[str, np.datetime64], ...] = ()


# RasterCube.attrs key: the features a cube was cut to by filter_spatial (a VectorCube), so
# that `sample_by_feature` can write one file per feature as CDSE does.
SAMPLE_FEATURES = "sample_features"


@dataclass(frozen=True)
class RasterCube:
    """A raster data cube.

    `data` holds the values (dask-backed outside of tests) with one xarray dimension per
    openEO dimension, in the same order as `dimensions`. Labels are the xarray coordinates:
    strings for bands, numpy datetime64 for temporal, floats (pixel centres) for spatial.
    Missing values are NaN for float data; `nodata` records the value that integer data uses.
    """

    data: xr.DataArray
    dimensions: tuple[Dimension, ...]
    nodata: float | None = None
    attrs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        names = tuple(d.name for d in self.dimensions)
        if names != tuple(self.data.dims):
            raise ValueError(f"cube dimensions {names} do not match data dims {self.data.dims}")

    # --- dimension look-ups -------------------------------------------------------------
    def dim(self, name: str) -> Dimension | None:
        for d in self.dimensions:
            if d.name == name:
                return d
        return None

    def dims_of_type(self, type_: str) -> list[Dimension]:
        return [d for d in self.dimensions if d.type == type_]

    def first_dim_of_type(self, type_: str) -> Dimension | None:
        found = self.dims_of_type(type_)
        return found[0] if found else None

    @property
    def x_dim(self) -> Dimension | None:
        return next((d for d in self.dimensions if d.type == SPATIAL and d.axis == "x"), None)

    @property
    def y_dim(self) -> Dimension | None:
        return next((d for d in self.dimensions if d.type == SPATIAL and d.axis == "y"), None)

    @property
    def crs(self) -> Any:
        for d in self.dimensions:
            if d.type == SPATIAL and d.reference_system is not None:
                return d.reference_system
        return None

    def labels(self, name: str) -> list[Any]:
        return list(self.data.coords[name].values) if name in self.data.coords else []

    # --- constructors -------------------------------------------------------------------
    def with_data(self, data: xr.DataArray, dimensions: Iterable[Dimension] | None = None,
                  **changes: Any) -> RasterCube:
        """A new cube with other values; dimensions are kept for dims still present."""
        if dimensions is None:
            by_name = {d.name: d for d in self.dimensions}
            dimensions = tuple(by_name[n] if n in by_name else Dimension(str(n), OTHER)
                               for n in data.dims)
        return replace(self, data=data, dimensions=tuple(dimensions), **changes)


def is_lazy(cube: RasterCube) -> bool:
    """True while the cube's values are a dask graph, not computed numbers."""
    import dask.array as dsa

    return isinstance(cube.data.data, dsa.Array)


def datetime_labels_to_strings(values: np.ndarray) -> list[str]:
    """RFC 3339 strings for numpy datetime64 labels (UTC, second precision or finer)."""
    out = []
    for v in np.asarray(values).astype("datetime64[ms]"):
        s = np.datetime_as_string(v, unit="s")
        ms = int(v.astype("int64") % 1000)
        out.append(f"{s}.{ms:03d}Z" if ms else f"{s}Z")
    return out


def require_dimension(cube: RasterCube, name: str, parameter: str = "dimension") -> Dimension:
    """The cube's dimension called `name`, or DimensionNotAvailable naming the parameter."""
    dim = cube.dim(name)
    if dim is None:
        available = ", ".join(d.name for d in cube.dimensions) or "none"
        raise process_errors.DimensionNotAvailable(
            f"Dimension '{name}' does not exist; available: {available}.", argument=parameter)
    return dim
