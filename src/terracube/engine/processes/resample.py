"""Resampling processes: resample_spatial and resample_cube_spatial onto a target grid.

Reprojection stays lazy (datacube.grid.warp builds it block by block from the grid); a cube
that comes unchanged from a load is read again straight onto a coarser grid (file overviews).
"""

from __future__ import annotations

import math
from typing import Any

import pyproj
import rasterio.crs
import rasterio.warp
from affine import Affine

from terracube import errors
from terracube.datacube.cube import RasterCube
from terracube.datacube.grid import GRID_READER, Grid, grid_of, resampling_method, warp, with_grid
from terracube.engine.registry import process

# Bounds of a target grid: far beyond any real one (1e9 m is 25 times the Earth's circumference),
# and small enough that a mistyped resolution (1e308, 1e-300) is refused before warping.
MAX_SPAN = 1e9
MAX_PIXELS = 1e12


def _target_grid(src: Grid, resolution: Any, projection: Any, align: str) -> Grid | None:
    """The grid resample_spatial produces, or None when nothing changes."""
    if projection is None:
        dst_crs, reference = src.crs, src.reference_system
    else:
        try:
            dst_crs = pyproj.CRS.from_user_input(projection)
        except pyproj.exceptions.CRSError:
            raise errors.ProcessParameterInvalid(
                f"Unknown projection {projection!r}; give an EPSG code or WKT2.",
                argument="projection") from None
        epsg = dst_crs.to_epsg()
        reference = epsg if epsg is not None else projection
    if isinstance(resolution, (list, tuple)):
        if len(resolution) != 2:
            raise errors.ProcessParameterInvalid(
                "'resolution' must be one number or two numbers [x, y].", argument="resolution")
        rx, ry = resolution
    else:
        rx = ry = resolution
    for r in (rx, ry):
        if not isinstance(r, (int, float)) or isinstance(r, bool) or not 0 <= r < MAX_SPAN:
            raise errors.ProcessParameterInvalid(
                f"'resolution' must be non-negative numbers below {MAX_SPAN:g}.",
                argument="resolution")
    same_crs = dst_crs == src.crs
    if same_crs and not rx and not ry:
        return None
    left, bottom, right, top = src.bounds
    if not same_crs:
        src_rio = rasterio.crs.CRS.from_wkt(src.crs.to_wkt())
        dst_rio = rasterio.crs.CRS.from_wkt(dst_crs.to_wkt())
        left, bottom, right, top = rasterio.warp.transform_bounds(
            src_rio, dst_rio, *src.bounds, densify_pts=21)
        if not rx or not ry:
            default, _, _ = rasterio.warp.calculate_default_transform(
                src_rio, dst_rio, src.width, src.height, *src.bounds)
            rx = rx or abs(default.a)
            ry = ry or abs(default.e)
    else:
        rx = rx or src.resolution[0]
        ry = ry or src.resolution[1]
    nx = max(int(math.ceil((right - left) / rx - 1e-9)), 1)
    ny = max(int(math.ceil((top - bottom) / ry - 1e-9)), 1)
    if nx * ny > MAX_PIXELS or nx * rx > MAX_SPAN or ny * ry > MAX_SPAN:
        raise errors.ProcessParameterInvalid(
            f"The resolution {resolution!r} gives a grid of {nx} x {ny} pixels spanning "
            f"{nx * rx:g} x {ny * ry:g} CRS units; at most {MAX_PIXELS:g} pixels spanning "
            f"{MAX_SPAN:g} units are possible.", argument="resolution")
    if align not in ("upper-left", "lower-left", "upper-right", "lower-right"):
        raise errors.ProcessParameterInvalid(
            "'align' must be upper-left, lower-left, upper-right or lower-right.",
            argument="align")
    x0 = left if align.endswith("left") else right - nx * rx
    y_top = top if align.startswith("upper") else bottom + ny * ry
    if src.transform.e > 0 and same_crs:  # keep a south-up grid south-up
        transform = Affine(rx, 0.0, x0, 0.0, ry, y_top - ny * ry)
    else:
        transform = Affine(rx, 0.0, x0, 0.0, -ry, y_top)
    return Grid(dst_crs, transform, nx, ny, reference)


# Methods for which reading a coarser grid from the files' overviews is what GDAL (and other
# back-ends loading at the target resolution) do; statistics of the pixels (mode, min, max,
# quantiles, sum, rms) must see the full-resolution pixels, so they are warped from those.
_OVERVIEW_METHODS = frozenset({"near", "bilinear", "cubic", "cubicspline", "lanczos",
                               "average"})


def _read_onto(data: RasterCube, src: Grid, dst: Grid, method: str) -> RasterCube | None:
    """The cube read again from its files straight onto `dst`, when it comes unchanged from
    a load and `dst` is at least twice as coarse in the same CRS: GDAL then reads the files'
    overviews instead of every full-resolution pixel."""
    reader = data.attrs.get(GRID_READER)
    if reader is None or reader.data is not data.data or method not in _OVERVIEW_METHODS:
        return None
    if dst.crs != src.crs or src.transform.e >= 0 or dst.transform.e >= 0:
        return None
    if any(d < 2 * r for d, r in zip(dst.resolution, src.resolution)):
        return None
    values = reader.read((dst.height, dst.width), dst.transform, src.crs.to_wkt(),
                         resampling_method(method).name)
    values = values.assign_coords(y=dst.y_coords(), x=dst.x_coords())
    return with_grid(data, values, dst)


@process("resample_spatial")
def resample_spatial(data: RasterCube, resolution: Any = 0, projection: Any = None,
                     method: str = "near", align: str = "upper-left") -> RasterCube:
    resampling_method(method)
    src = grid_of(data)
    dst = _target_grid(src, resolution, projection, align)
    if dst is None:
        return data
    return _read_onto(data, src, dst, method) or warp(data, dst, method)


@process("resample_cube_spatial")
def resample_cube_spatial(data: RasterCube, target: RasterCube,
                          method: str = "near") -> RasterCube:
    resampling_method(method)
    dst = grid_of(target, "target")
    return warp(data, dst, method)
