"""vector_to_raster (CDSE's process): the values of a vector cube burnt onto the pixel grid of
a target raster cube, lazily chunk by chunk.

Every pixel takes the values of the geometry it belongs to (a polygon: pixel centre inside;
points and lines: the pixels they touch; where geometries overlap the later one wins, as
rasterio burns them in order); other pixels are no-data. As on CDSE the result has the target's
x/y grid, the vector cube's time dimension if it has one, and its other dimension (bands,
properties) as a dimension `bands`.
"""

from __future__ import annotations

from typing import Any

import dask.array as da
import numpy as np
import rasterio.features
import xarray as xr
from affine import Affine
from shapely.geometry.base import BaseGeometry

from terracube import errors
from terracube.datacube.cube import BANDS, SPATIAL, TEMPORAL, Dimension, RasterCube
from terracube.datacube.grid import Grid, as_dask, grid_of, spatial_dims
from terracube.datacube.vector import GEOMETRY_DIM, VectorCube
from terracube.engine.processes.rasterise import spatial_chunks
from terracube.engine.registry import process


def _zones(geoms: list[BaseGeometry], grid: Grid, block_info: dict | None = None) -> np.ndarray:
    """The index of the geometry each pixel of a chunk belongs to (-1: none)."""
    (r0, r1), (c0, c1) = block_info[None]["array-location"]
    shapes = [(g, i) for i, g in enumerate(geoms) if g is not None and not g.is_empty]
    if not shapes or r1 <= r0 or c1 <= c0:
        return np.full((r1 - r0, c1 - c0), -1, dtype=np.int32)
    return rasterio.features.rasterize(
        shapes, out_shape=(r1 - r0, c1 - c0), fill=-1, dtype="int32", all_touched=False,
        transform=grid.transform @ Affine.translation(c0, r0))


def _lookup(zones: np.ndarray, table: np.ndarray) -> np.ndarray:
    """(y, x, values) of a chunk: the table row of every pixel's geometry, NaN outside."""
    rows = np.vstack([table, np.full((1, table.shape[1]), np.nan)])
    return rows[np.where(zones < 0, len(table), zones)]


@process("vector_to_raster")
def vector_to_raster(data: VectorCube, target: RasterCube) -> RasterCube:
    if not isinstance(data, VectorCube):
        raise errors.ProcessParameterInvalid("'data' must be a vector data cube.",
                                             argument="data")
    if not isinstance(target, RasterCube):
        raise errors.ProcessParameterInvalid("'target' must be a raster data cube.",
                                             argument="target")
    values = data.values
    if values is None:
        raise errors.ProcessParameterInvalid(
            "'data' holds geometries without values; vector_to_raster burns the values of a "
            "vector cube (e.g. from aggregate_spatial, or load_geojson with properties).",
            argument="data")
    if values.dtype.kind not in "iufb":
        raise errors.ProcessParameterInvalid(
            f"'data' must hold numbers to burn into a raster, got values of type "
            f"{values.dtype}.", argument="data")
    ydim, xdim = spatial_dims(target, "target")
    grid = grid_of(target, "target")
    rest = [d for d in data.dimensions if d.name != GEOMETRY_DIM]
    times = [d for d in rest if d.type == TEMPORAL]
    others = [d for d in rest if d.type != TEMPORAL]
    if len(times) > 1 or len(others) > 1:
        raise errors.ProcessParameterInvalid(
            "'data' may have a temporal and one other dimension besides its geometries; it "
            f"has {', '.join(d.name for d in rest)}.", argument="data")
    order = [*(d.name for d in times), *(d.name for d in others)]
    table = as_dask(values.transpose(GEOMETRY_DIM, *order)).astype(np.float64)
    rest_shape = table.shape[1:]
    flat = table.reshape((table.shape[0], int(np.prod(rest_shape, dtype=np.int64))))
    flat = flat.rechunk(-1)
    geoms = data.geometries_in(grid.crs)
    zones = da.map_blocks(_zones, geoms, grid, dtype=np.int32,
                          chunks=spatial_chunks(target), meta=np.array((), dtype=np.int32))
    burnt = da.blockwise(_lookup, "yxr", zones, "yx", flat, "gr", dtype=np.float64,
                         concatenate=True, meta=np.array((), dtype=np.float64))
    burnt = burnt.reshape((*zones.shape, *rest_shape))
    names = [*(d.name for d in times), *(["bands"] if others else [])]
    coords: dict[str, Any] = {ydim: target.data.coords[ydim].values,
                              xdim: target.data.coords[xdim].values}
    for d in times:
        coords[d.name] = values.coords[d.name].values
    if others:
        o = others[0].name
        coords["bands"] = (np.array([str(v) for v in values.coords[o].values], dtype=object)
                           if o in values.coords else
                           np.array([str(i) for i in range(values.sizes[o])], dtype=object))
    out = xr.DataArray(burnt, dims=[ydim, xdim, *names], coords=coords)
    out = out.transpose(*names, ydim, xdim)
    dims = (*(Dimension(d.name, TEMPORAL) for d in times),
            *([Dimension("bands", BANDS)] if others else []),
            Dimension(ydim, SPATIAL, "y", target.dim(ydim).reference_system),
            Dimension(xdim, SPATIAL, "x", target.dim(xdim).reference_system))
    return RasterCube(out, dims, nodata=None, attrs={})
