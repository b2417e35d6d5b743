"""Period labels of aggregate_temporal_period as the dates that users' outputs show.

Inside a cube the labels stay as the process definition says (`2022-06`, `2022-djf`); the
files users read (netCDF, Zarr, GeoTIFF, vector JSON/CSV/Parquet, result STAC) show each period
by its first day as a date-time, as CDSE does (docs/decisions/0013-period-labels.md).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from terracube.datacube.cube import TEMPORAL, Dimension, RasterCube
from terracube.datacube.vector import VectorCube

# The coordinate (along the temporal dimension) that keeps the openEO labels in netCDF/Zarr.
LABEL_COORD_SUFFIX = "_label"

def period_start_times(dim: Dimension, labels: np.ndarray) -> np.ndarray | None:
    """The start of each label's period (datetime64[ns]) when `dim` carries the periods of
    aggregate_temporal_period and every label is one of them; else None (labels renamed by
    rename_labels, dates, ...)."""
    if dim.type != TEMPORAL or not dim.period_starts:
        return None
    values = np.asarray(labels)
    if values.dtype.kind not in "UO" or not values.size:
        return None
    starts = dict(dim.period_starts)
    try:
        return np.array([starts[str(v)] for v in values], dtype="datetime64[ns]")
    except KeyError:
        return None


def with_period_starts(cube: RasterCube | VectorCube, *,
                       keep_labels: bool = True) -> RasterCube | VectorCube:
    """`cube` with period labels replaced by their start date-times on every temporal
    dimension that has them; with `keep_labels` the openEO labels stay as a text coordinate
    `<dim>_label` along that dimension (netCDF/Zarr keep them so)."""
    values = cube.data if isinstance(cube, RasterCube) else cube.values
    if values is None:
        return cube
    changed = values
    for dim in cube.dimensions:
        if dim.name not in values.coords:
            continue
        labels = np.asarray(values.coords[dim.name].values)
        starts = period_start_times(dim, labels)
        if starts is None:
            continue
        coords: dict[str, Any] = {dim.name: starts}
        if keep_labels:
            # variable-length text: fixed-width unicode has no Zarr v3 specification
            coords[dim.name + LABEL_COORD_SUFFIX] = (dim.name, labels.astype(str).astype(object))
        changed = changed.assign_coords(coords)
        changed.coords[dim.name].attrs["openeo_period"] = dim.period or ""
    if changed is values:
        return cube
    if isinstance(cube, RasterCube):
        return cube.with_data(changed)
    return replace(cube, values=changed)
