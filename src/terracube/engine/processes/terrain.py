"""Terrain processes on elevation cubes: `slope` and `aspect` (CDSE's elevation processes),
Horn's 3x3 method computed lazily chunk by chunk with a one-pixel halo.

As on CDSE (GeoTrellis' Slope and Aspect) both are in degrees: slope from the horizontal
(0-90), aspect as the compass direction the slope faces, clockwise from north (0-360, no-data
on flat ground). A neighbour that is no-data or beyond the edge counts as the centre
pixel's elevation. Pixel sizes are the grid's in metres; on a geographic grid (degrees) they
are converted to metres per row on the WGS 84 ellipsoid, so that elevations in metres give
true slopes. Bands keep their order and get the suffix `_slope` / `_aspect`, like CDSE's.
"""

from __future__ import annotations

from functools import partial

import numpy as np
import xarray as xr

from terracube.datacube.cube import BANDS, RasterCube
from terracube.datacube.grid import as_dask, grid_of, spatial_dims
from terracube.engine.processes.cube_filters import with_bands
from terracube.engine.registry import process

# WGS 84 semi-major axis (m) and squared eccentricity.
_A = 6378137.0
_E2 = 6.69437999014e-3


def pixel_size_m(cube: RasterCube) -> tuple[np.ndarray, np.ndarray]:
    """(width, height) of the pixels of every row in metres (arrays over the y labels)."""
    grid = grid_of(cube)
    ydim, _ = spatial_dims(cube)
    rows = len(cube.data.coords[ydim])
    dx, dy = grid.resolution
    if not grid.crs.is_geographic:
        factor = grid.crs.axis_info[0].unit_conversion_factor if grid.crs.axis_info else 1.0
        return np.full(rows, dx * factor), np.full(rows, dy * factor)
    lat = np.radians(np.asarray(cube.data.coords[ydim].values, dtype=np.float64))
    w = np.sqrt(1 - _E2 * np.sin(lat) ** 2)
    east = _A / w * np.cos(lat) * np.radians(dx)  # prime vertical radius x cos(lat)
    north = _A * (1 - _E2) / w**3 * np.radians(dy)  # meridional radius
    return east, north


def _gradients(block: np.ndarray, widths: np.ndarray, heights: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(dz/d east, dz/d north, valid) of the inner pixels of a block with a 1-pixel halo,
    rows running north to south (Horn 1981)."""
    z = block.astype(np.float64)
    centre = z[..., 1:-1, 1:-1]

    def at(dr: int, dc: int) -> np.ndarray:
        rows = slice(1 + dr, z.shape[-2] - 1 + dr)
        cols = slice(1 + dc, z.shape[-1] - 1 + dc)
        nb = z[..., rows, cols]
        return np.where(np.isnan(nb), centre, nb)

    a, b, c = at(-1, -1), at(-1, 0), at(-1, 1)
    d, f = at(0, -1), at(0, 1)
    g, h, i = at(1, -1), at(1, 0), at(1, 1)
    w = widths[1:-1, None]
    hgt = heights[1:-1, None]
    east = ((c + 2 * f + i) - (a + 2 * d + g)) / (8 * w)
    north = ((a + 2 * b + c) - (g + 2 * h + i)) / (8 * hgt)
    return east, north, ~np.isnan(centre)


def _slope_block(block: np.ndarray, widths: np.ndarray, heights: np.ndarray,
                 starts: np.ndarray, block_info: dict | None = None) -> np.ndarray:
    east, north, valid = _gradients(block, *_rows(widths, heights, starts, block_info))
    slope = np.degrees(np.arctan(np.hypot(east, north)))
    return _padded(np.where(valid, slope, np.nan), block)


def _aspect_block(block: np.ndarray, widths: np.ndarray, heights: np.ndarray,
                  starts: np.ndarray, block_info: dict | None = None) -> np.ndarray:
    east, north, valid = _gradients(block, *_rows(widths, heights, starts, block_info))
    # the direction of steepest descent (-east, -north) as an azimuth from north
    aspect = np.degrees(np.arctan2(-east, -north)) % 360.0
    flat = (east == 0) & (north == 0)
    return _padded(np.where(valid & ~flat, aspect, np.nan), block)


def _rows(widths: np.ndarray, heights: np.ndarray, starts: np.ndarray,
          block_info: dict | None) -> tuple[np.ndarray, np.ndarray]:
    """The pixel sizes of the block's rows, halo included (edge rows repeated). The chunk's
    index, not its location, is used: map_overlap locates blocks in the grown array."""
    k = block_info[0]["chunk-location"][-2]
    r0, r1 = int(starts[k]), int(starts[k + 1])
    index = np.clip(np.arange(r0 - 1, r1 + 1), 0, len(widths) - 1)
    return widths[index], heights[index]


def _padded(inner: np.ndarray, block: np.ndarray) -> np.ndarray:
    """The inner result back in the block's shape (map_overlap trims the halo)."""
    out = np.full(block.shape, np.nan, dtype=np.float64)
    out[..., 1:-1, 1:-1] = inner
    return out


def _terrain(data: RasterCube, block_function, suffix: str) -> RasterCube:
    ydim, xdim = spatial_dims(data)
    widths, heights = pixel_size_m(data)
    order = [d for d in data.data.dims if d not in (ydim, xdim)] + [ydim, xdim]
    values = data.data.transpose(*order)
    if data.nodata is not None and values.dtype.kind in "iu":
        values = values.where(values != data.nodata)
    arr = as_dask(values).astype(np.float64)
    lead = arr.ndim - 2
    depth = {i: (1 if i >= lead else 0) for i in range(arr.ndim)}
    starts = np.cumsum((0, *arr.chunks[-2]))
    out = arr.map_overlap(partial(block_function, widths=widths, heights=heights,
                                  starts=starts),
                          depth=depth, boundary=np.nan, dtype=np.float64)
    result = xr.DataArray(out, dims=order, coords=values.coords).transpose(*data.data.dims)
    bands = data.first_dim_of_type(BANDS)
    if bands is None:
        return data.with_data(result, nodata=None)
    labels = [f"{label}{suffix}" for label in data.labels(bands.name)]
    result = result.assign_coords({bands.name: np.array(labels, dtype=object)})
    return with_bands(data.with_data(result, nodata=None), labels)


@process("slope")
def slope(data: RasterCube) -> RasterCube:
    return _terrain(data, _slope_block, "_slope")


@process("aspect")
def aspect(data: RasterCube) -> RasterCube:
    return _terrain(data, _aspect_block, "_aspect")
