"""vector_to_raster and raster_to_vector (CDSE's processes): the values of a vector cube burnt
onto the pixel grid of a target raster cube, lazily chunk by chunk; and the regions of equal
value of a raster cube as polygons.

Every pixel takes the values of the geometry it belongs to (a polygon: pixel centre inside;
points and lines: the pixels they touch; where geometries overlap the later one wins, as
rasterio burns them in order); other pixels are no-data. As on CDSE the result has the target's
x/y grid, the vector cube's time dimension if it has one, and its other dimension (bands,
properties) as a dimension `bands`.

raster_to_vector follows CDSE's (openeo-geopyspark-driver): every region of four-connected
pixels with the same value, per date and band, becomes a polygon; no-data pixels make none.
The vector cube has the geometries of all dates and bands together and their values on
(t, bands): a polygon has its value at its own date and band and no-data elsewhere; its
feature id `<YYYYMMDD>_<band>_<n>` names them, as CDSE's does.
"""

from __future__ import annotations

from typing import Any

import dask.array as da
import numpy as np
import rasterio.features
import shapely.geometry
import xarray as xr
from affine import Affine
from shapely.geometry.base import BaseGeometry

from terracube import errors, executor
from terracube.datacube.cube import BANDS, GEOMETRY, SPATIAL, TEMPORAL, Dimension, RasterCube
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


MAX_POLYGONS = 1_000_000  # per raster_to_vector call: beyond, a continuous raster was meant


def _regions(plane: np.ndarray, grid: Grid) -> list[tuple[BaseGeometry, float]]:
    """The polygons of the four-connected regions of equal value of one 2-D plane (y, x)."""
    finite = np.isfinite(plane)
    if not finite.any():
        return []
    # rasterio traces int32 or float32 planes: trace the index of each distinct value, so
    # float64 values that float32 would round together stay apart
    distinct, codes = np.unique(plane[finite], return_inverse=True)
    coded = np.zeros(plane.shape, dtype=np.int32)
    coded[finite] = codes
    shapes = rasterio.features.shapes(coded, mask=finite, connectivity=4,
                                      transform=grid.transform)
    return [(shapely.geometry.shape(geom), float(distinct[int(code)]))
            for geom, code in shapes]


@process("raster_to_vector")
def raster_to_vector(data: RasterCube) -> VectorCube:
    if not isinstance(data, RasterCube):
        raise errors.ProcessParameterInvalid("'data' must be a raster data cube.",
                                             argument="data")
    ydim, xdim = spatial_dims(data)
    grid = grid_of(data)
    times = data.dims_of_type(TEMPORAL)
    bands = data.dims_of_type(BANDS)
    extra = [d.name for d in data.dimensions
             if d.name not in (ydim, xdim) and d not in (*times, *bands)]
    if len(times) > 1 or len(bands) > 1 or extra:
        raise errors.ProcessParameterInvalid(
            "'data' may have a temporal and a bands dimension besides x and y; it has "
            f"{', '.join(d.name for d in data.dimensions if d.name not in (ydim, xdim))}.",
            argument="data")
    arr = data.data
    if arr.dtype.kind not in "iufb":
        raise errors.ProcessParameterInvalid(
            f"'data' must hold numbers to turn into polygons, got values of type {arr.dtype}.",
            argument="data")
    t = times[0].name if times else None
    b = bands[0].name if bands else None
    arr = arr.transpose(*([t] if t else []), *([b] if b else []), ydim, xdim)
    (computed,) = executor.current().compute(arr.data, progress=lambda _: None)
    planes = np.asarray(computed).reshape(
        (arr.sizes[t] if t else 1, arr.sizes[b] if b else 1, arr.sizes[ydim], arr.sizes[xdim]))
    t_labels = list(arr.coords[t].values) if t else [None]
    b_labels = ([str(v) for v in arr.coords[b].values] if b and b in arr.coords
                else [f"band{i}" for i in range(planes.shape[1])])
    geoms: list[BaseGeometry] = []
    where: list[tuple[int, int, float]] = []
    props: list[dict[str, Any]] = []
    for ti in range(planes.shape[0]):
        stamp = (np.datetime_as_string(np.datetime64(t_labels[ti], "D")).replace("-", "")
                 if t else None)
        for bi in range(planes.shape[1]):
            for n, (geom, value) in enumerate(_regions(planes[ti, bi], grid)):
                if len(geoms) >= MAX_POLYGONS:
                    raise errors.ProcessParameterInvalid(
                        f"raster_to_vector would create more than {MAX_POLYGONS} polygons: "
                        "it makes one per region of equal value, so classify or threshold a "
                        "continuous raster first (e.g. apply with gt or linear_scale_range "
                        "and int).", argument="data")
                geoms.append(geom)
                where.append((ti, bi, value))
                label = "_".join(p for p in (stamp, b_labels[bi], str(n)) if p is not None)
                props.append({"id": label})
    table = np.full((len(geoms), planes.shape[0], planes.shape[1]), np.nan)
    for gi, (ti, bi, value) in enumerate(where):
        table[gi, ti, bi] = value
    dims: list[Dimension] = [Dimension(GEOMETRY_DIM, GEOMETRY, reference_system=grid.crs)]
    coords: dict[str, Any] = {GEOMETRY_DIM: np.arange(len(geoms))}
    names = [GEOMETRY_DIM]
    if t:
        dims.append(Dimension(t, TEMPORAL))
        coords[t] = arr.coords[t].values
        names.append(t)
    else:
        table = table[:, 0]
    dims.append(Dimension(b or "bands", BANDS))
    coords[b or "bands"] = np.array(b_labels, dtype=object)
    names.append(b or "bands")
    values = xr.DataArray(table, dims=names, coords=coords)
    return VectorCube(tuple(geoms), grid.crs, values, tuple(dims), tuple(props))
