"""Rasterisation of geometries: which pixels a geometry selects (the spec's rules), lazy
geometry masks, and the processes built on them (mask_polygon, filter_spatial).

Masks are dask graphs rasterised chunk by chunk from the grid, never from cube values.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import dask.array as da
import numpy as np
import rasterio.features
import shapely
import xarray as xr
from affine import Affine
from shapely.geometry.base import BaseGeometry

from terracube import errors
from terracube.datacube.cube import SAMPLE_FEATURES, RasterCube
from terracube.datacube.grid import Grid, covering_window, grid_of, spatial_dims
from terracube.datacube.vector import VectorCube
from terracube.engine.registry import process


def vector_input(value: Any, argument: str) -> VectorCube:
    """A VectorCube for a vector data cube or (deprecated) GeoJSON argument."""
    if isinstance(value, VectorCube):
        return value
    if isinstance(value, dict):
        try:
            return VectorCube.from_geojson(value)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise errors.ProcessParameterInvalid(
                f"Invalid GeoJSON in '{argument}': {exc}", argument=argument) from None
    raise errors.ProcessParameterInvalid(
        f"'{argument}' must be a vector data cube or GeoJSON, got {type(value).__name__}.",
        argument=argument)


def geometry_parts(geom: BaseGeometry) -> tuple[list, list, list]:
    """(polygons, lines, points) of a geometry."""
    polys: list = []
    lines: list = []
    points: list = []
    if geom is None or geom.is_empty:
        return polys, lines, points
    kind = geom.geom_type
    if kind in ("Polygon", "MultiPolygon"):
        polys.append(geom)
    elif kind in ("LineString", "MultiLineString", "LinearRing"):
        lines.append(geom)
    elif kind in ("Point", "MultiPoint"):
        points.append(geom)
    else:
        for part in getattr(geom, "geoms", []):
            p, line, pt = geometry_parts(part)
            polys += p
            lines += line
            points += pt
    return polys, lines, points


def _pixel_window(grid: Grid, bounds: tuple[float, float, float, float],
                  margin: int = 1) -> tuple[slice, slice] | None:
    x0, y0, x1, y1 = bounds
    cols, rows = ~grid.transform @ (np.array([x0, x0, x1, x1]), np.array([y0, y1, y0, y1]))
    return covering_window(grid, cols, rows, margin)


def burn(geoms: Sequence[BaseGeometry], grid: Grid, rows: slice, cols: slice,
         polygons_only: bool = False) -> np.ndarray:
    """Which pixels of a grid window the geometries select (spec rules): polygons by pixel
    centre, lines by every pixel they pass through, points by the pixel whose centre is
    closest."""
    shape = (rows.stop - rows.start, cols.stop - cols.start)
    out = np.zeros(shape, dtype=bool)
    if 0 in shape:
        return out
    transform = grid.transform @ Affine.translation(cols.start, rows.start)
    polys: list = []
    lines: list = []
    points: list = []
    for g in geoms:
        p, line, pt = geometry_parts(g)
        polys += p
        lines += line
        points += pt
    if polygons_only:
        lines, points = [], []
    if polys:
        out |= rasterio.features.geometry_mask(polys, shape, transform, all_touched=False,
                                               invert=True)
    if lines:
        out |= rasterio.features.geometry_mask(lines, shape, transform, all_touched=True,
                                               invert=True)
    for pt in points:
        coords = np.array([(q.x, q.y) for q in getattr(pt, "geoms", [pt])])
        c, r = ~transform @ (coords[:, 0], coords[:, 1])
        c, r = np.floor(c).astype(int), np.floor(r).astype(int)
        ok = (r >= 0) & (r < shape[0]) & (c >= 0) & (c < shape[1])
        out[r[ok], c[ok]] = True
    return out


# geometry_pixels remembers its answers for the same geometry on the same grid: a synchronous
# request rasterises its geometries in the dry run (the size check before /result) and again
# in the run (W3 medium: 50 polygons, ~35 ms CPU each time), and repeated requests or a
# service's tiles ask again. Bounded by the bytes of the masks and keys kept.
_PIXELS_MAX_BYTES = 64 * 2**20
_pixels: OrderedDict[tuple, tuple[slice, slice, np.ndarray] | None] = OrderedDict()
_pixels_bytes = 0
_pixels_lock = threading.Lock()


def geometry_pixels(geom: BaseGeometry, grid: Grid,
                    polygons_only: bool = False) -> tuple[slice, slice, np.ndarray] | None:
    """The smallest grid window around a geometry and its selected pixels (None if none).

    The mask is read-only: answers are shared between calls with the same geometry (its
    exact coordinates) and grid (transform and size; the geometry is in the grid's CRS)."""
    global _pixels_bytes
    if geom is None or geom.is_empty:
        return None
    key = (shapely.to_wkb(geom), tuple(grid.transform)[:6], grid.width, grid.height,
           polygons_only)
    with _pixels_lock:
        if key in _pixels:
            _pixels.move_to_end(key)
            return _pixels[key]
    found = _geometry_pixels(geom, grid, polygons_only)
    size = len(key[0]) + (found[2].nbytes if found is not None else 0)
    if found is not None:
        found[2].flags.writeable = False
    if size <= _PIXELS_MAX_BYTES // 4:
        with _pixels_lock:
            if key not in _pixels:
                _pixels[key] = found
                _pixels_bytes += size
            while _pixels_bytes > _PIXELS_MAX_BYTES:
                old_key, old = _pixels.popitem(last=False)
                _pixels_bytes -= len(old_key[0]) + (old[2].nbytes if old is not None else 0)
    return found


def _geometry_pixels(geom: BaseGeometry, grid: Grid,
                     polygons_only: bool) -> tuple[slice, slice, np.ndarray] | None:
    window = _pixel_window(grid, geom.bounds)
    if window is None:
        return None
    rows, cols = window
    mask = burn([geom], grid, rows, cols, polygons_only)
    if not mask.any():
        return None
    r_any, c_any = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    mask = mask[r_any[0]:r_any[-1] + 1, c_any[0]:c_any[-1] + 1].copy()  # kept: not a view
    rows = slice(rows.start + int(r_any[0]), rows.start + int(r_any[-1]) + 1)
    cols = slice(cols.start + int(c_any[0]), cols.start + int(c_any[-1]) + 1)
    return rows, cols, mask


def _mask_block(geoms: list[BaseGeometry], tree: shapely.STRtree, grid: Grid,
                polygons_only: bool, block_info: dict | None = None) -> np.ndarray:
    (r0, r1), (c0, c1) = block_info[None]["array-location"]
    rows, cols = slice(r0, r1), slice(c0, c1)
    transform = grid.transform @ Affine.translation(c0, r0)
    x0, y0 = transform @ (0, 0)
    x1, y1 = transform @ (c1 - c0, r1 - r0)
    hits = tree.query(shapely.box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)))
    return burn([geoms[i] for i in hits], grid, rows, cols, polygons_only)


def lazy_mask(geoms: list[BaseGeometry], grid: Grid, chunks: tuple[tuple[int, ...], ...],
              polygons_only: bool = False) -> da.Array:
    """A lazy (y, x) boolean mask of the pixels the geometries select, rasterised per chunk."""
    geoms = [g for g in geoms if g is not None and not g.is_empty]
    # Points and lines select pixels just outside their own bounds too, hence the buffer.
    buffered = [g.buffer(max(grid.resolution)) if g.geom_type not in (
        "Polygon", "MultiPolygon") else g for g in geoms]
    tree = shapely.STRtree(buffered)
    return da.map_blocks(_mask_block, geoms, tree, grid, polygons_only, dtype=bool,
                         chunks=chunks, meta=np.array((), dtype=bool))


def spatial_chunks(cube: RasterCube) -> tuple[tuple[int, ...], tuple[int, ...]]:
    ydim, xdim = spatial_dims(cube)
    arr = cube.data.data
    if isinstance(arr, da.Array):
        return (arr.chunks[cube.data.dims.index(ydim)], arr.chunks[cube.data.dims.index(xdim)])
    return ((cube.data.sizes[ydim],), (cube.data.sizes[xdim],))


def fill_value(cube: RasterCube, value: Any) -> tuple[Any, xr.DataArray]:
    """The replacement for masked pixels (None: the cube's no-data) and the values to use."""
    values = cube.data
    if value is None:
        if np.issubdtype(values.dtype, np.floating):
            return np.nan, values
        if cube.nodata is not None and np.issubdtype(values.dtype, np.integer):
            return cube.nodata, values
        return np.nan, values.astype(np.float64)
    return value, values


def _mask_array(mask: da.Array, cube: RasterCube) -> xr.DataArray:
    ydim, xdim = spatial_dims(cube)
    return xr.DataArray(mask, dims=[ydim, xdim])


def _is_nodata(cube: RasterCube, values: xr.DataArray) -> xr.DataArray:
    missing = values.isnull()
    if cube.nodata is not None and np.issubdtype(values.dtype, np.integer):
        missing = missing | (values == cube.nodata)
    return missing


@process("mask_polygon")
def mask_polygon(data: RasterCube, mask: Any, replacement: Any = None,
                 inside: bool = False) -> RasterCube:
    grid = grid_of(data)
    vc = vector_input(mask, "mask")
    geoms = [g for g in vc.geometries_in(grid.crs) if not g.is_empty]
    if not any(geometry_parts(g)[0] for g in geoms) and vc.geometries and any(
            not g.is_empty for g in vc.geometries):
        raise errors.ProcessParameterInvalid(
            "'mask' must contain polygons (Polygon or MultiPolygon).", argument="mask")
    selected = _mask_array(lazy_mask(geoms, grid, spatial_chunks(data), polygons_only=True),
                           data)
    fill, values = fill_value(data, replacement)
    replace = selected if inside else ~selected
    replace = replace & ~_is_nodata(data, values)
    out = values.where(~replace, fill).transpose(*data.data.dims)
    return data.with_data(out)


def _touched_centres(geom: BaseGeometry, grid: Grid) -> BaseGeometry:
    """A polygon smaller than a pixel that holds no pixel centre (the openEO Platform's UC3
    samples points buffered by 1 m) as the centres of the pixels it touches: CDSE's
    filter_spatial keeps those pixels with their values (the notebook's sample files have 1 x 1
    to 2 x 2 pixels), where the spec's centre rule would keep none. Other geometries as given."""
    if not geometry_parts(geom)[0] or geometry_pixels(geom, grid, polygons_only=True):
        return geom
    x0, y0, x1, y1 = geom.bounds
    cols, rows = ~grid.transform @ (np.array([x0, x1]), np.array([y1, y0]))
    c0, c1 = sorted(cols)
    r0, r1 = sorted(rows)
    cs = np.arange(max(int(np.floor(c0)), 0), min(int(np.ceil(c1)), grid.width))
    rs = np.arange(max(int(np.floor(r0)), 0), min(int(np.ceil(r1)), grid.height))
    if not len(cs) or not len(rs):
        return geom
    cc, rr = np.meshgrid(cs + 0.5, rs + 0.5)
    xs, ys = grid.transform @ (cc.ravel(), rr.ravel())
    return shapely.MultiPoint(np.column_stack([xs, ys]))


@process("filter_spatial")
def filter_spatial(data: RasterCube, geometries: Any) -> RasterCube:
    grid = grid_of(data)
    ydim, xdim = spatial_dims(data)
    vc = vector_input(geometries, "geometries")
    in_grid = tuple(_touched_centres(g, grid) if not g.is_empty else g
                    for g in vc.geometries_in(grid.crs))
    geoms = [g for g in in_grid if not g.is_empty]
    xs, ys = grid.x_coords(), grid.y_coords()
    keep_x = np.zeros(len(xs), dtype=bool)
    keep_y = np.zeros(len(ys), dtype=bool)
    if geoms:
        x0, y0, x1, y1 = shapely.GeometryCollection(geoms).bounds
        keep_x |= (xs >= x0) & (xs <= x1)
        keep_y |= (ys >= y0) & (ys <= y1)
        for g in geoms:  # points and lines also keep the pixels they select
            if geometry_parts(g)[0]:
                continue
            found = geometry_pixels(g, grid)
            if found is not None:
                keep_x[found[1]] = True
                keep_y[found[0]] = True
    cols, rows = np.flatnonzero(keep_x), np.flatnonzero(keep_y)
    col_sl = slice(int(cols[0]), int(cols[-1]) + 1) if len(cols) else slice(0, 0)
    row_sl = slice(int(rows[0]), int(rows[-1]) + 1) if len(rows) else slice(0, 0)
    if not len(cols) or not len(rows):
        col_sl = row_sl = slice(0, 0)
    attrs = {**data.attrs, "resolution": list(grid.resolution),
             SAMPLE_FEATURES: VectorCube(in_grid, grid.crs,
                                         properties=vc.properties)}
    cropped = data.with_data(data.data.isel({ydim: row_sl, xdim: col_sl}), attrs=attrs)
    if not cropped.data.sizes[ydim] or not cropped.data.sizes[xdim]:
        values = cropped.data
        if not np.issubdtype(values.dtype, np.floating):
            values = values.astype(np.float64)
        return cropped.with_data(values)
    sub_grid = Grid(grid.crs, grid.transform @ Affine.translation(col_sl.start, row_sl.start),
                    col_sl.stop - col_sl.start, row_sl.stop - row_sl.start,
                    grid.reference_system)
    selected = _mask_array(lazy_mask(geoms, sub_grid, spatial_chunks(cropped)), cropped)
    fill, values = fill_value(cropped, None)
    out = values.where(selected | _is_nodata(cropped, values), fill)
    return cropped.with_data(out.transpose(*data.data.dims))
