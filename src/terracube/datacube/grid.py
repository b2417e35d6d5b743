"""The horizontal pixel grid of a raster cube and lazy reprojection onto another grid.

Reprojection is a dask graph built block by block from the grids (coordinates), never from
cube values: each target block warps only the source window it needs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import dask
import dask.array as da
import numpy as np
import pyproj
import rasterio.crs
import rasterio.warp
import xarray as xr
from affine import Affine
from rasterio.enums import Resampling

from terracube import errors
from terracube.datacube.cube import Dimension, RasterCube
from terracube.datacube.dryrun import is_dry_run, placeholder
from terracube.process_errors import DimensionNotAvailable

# Key in RasterCube.attrs of a reader that can read the cube's source files again onto another
# grid (set by collection sources; used to read overviews for coarse resampling).
GRID_READER = "grid_reader"


# --- the pixel grid of a cube -----------------------------------------------------------------
@dataclass(frozen=True)
class Grid:
    """The horizontal pixel grid of a raster cube: CRS, affine transform (of corners), size."""

    crs: pyproj.CRS
    transform: Affine
    width: int
    height: int
    reference_system: Any  # as given in Dimension.reference_system (EPSG int, WKT2, PROJJSON)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) in CRS units."""
        x0, y0 = self.transform @ (0, 0)
        x1, y1 = self.transform @ (self.width, self.height)
        return min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)

    @property
    def resolution(self) -> tuple[float, float]:
        return abs(self.transform.a), abs(self.transform.e)

    def x_coords(self) -> np.ndarray:
        return self.transform.c + (np.arange(self.width) + 0.5) * self.transform.a

    def y_coords(self) -> np.ndarray:
        return self.transform.f + (np.arange(self.height) + 0.5) * self.transform.e

    def scaled(self, fx: Any, fy: Any) -> Grid:
        """The same area in `fx` times as many columns and `fy` times as many rows (pixels
        1/fx and 1/fy of the size; the counts must come out whole)."""
        width, height = self.width * fx, self.height * fy
        if int(width) != width or int(height) != height:
            raise ValueError(f"{self.width} x {self.height} pixels cannot be scaled by "
                             f"{fx} x {fy}")
        t = self.transform
        return Grid(self.crs, Affine(t.a / float(fx), t.b, t.c, t.d, t.e / float(fy), t.f),
                    int(width), int(height), self.reference_system)

    def same_as(self, other: Grid) -> bool:
        return (self.crs == other.crs and self.width == other.width
                and self.height == other.height
                and self.transform.almost_equals(other.transform, precision=1e-9))


def spatial_dims(cube: RasterCube, argument: str = "data") -> tuple[str, str]:
    """The names of the (y, x) dimensions of a raster cube."""
    if not isinstance(cube, RasterCube):
        raise errors.ProcessParameterInvalid(
            f"'{argument}' must be a raster data cube, got {type(cube).__name__}.",
            argument=argument)
    y, x = cube.y_dim, cube.x_dim
    if y is None or x is None:
        raise DimensionNotAvailable(
            f"'{argument}' needs two horizontal spatial dimensions (x and y).", argument=argument)
    return y.name, x.name


def _step(values: np.ndarray, name: str, argument: str) -> float | None:
    if len(values) < 2:
        return None
    step = (values[-1] - values[0]) / (len(values) - 1)
    if step == 0 or not np.allclose(np.diff(values), step, rtol=0, atol=abs(step) * 1e-3):
        raise errors.ProcessParameterInvalid(
            f"The labels of dimension '{name}' in '{argument}' are not a regular grid.",
            argument=argument)
    return float(step)


def grid_of(cube: RasterCube, argument: str = "data") -> Grid:
    """The pixel grid described by the x/y labels (pixel centres) and the reference system."""
    ydim, xdim = spatial_dims(cube, argument)
    xd, yd = cube.dim(xdim), cube.dim(ydim)  # both exist: spatial_dims found them
    ref = (xd and xd.reference_system) or (yd and yd.reference_system)
    if ref is None:
        raise errors.ProcessParameterInvalid(
            f"'{argument}' has no spatial reference system.", argument=argument)
    try:
        crs = pyproj.CRS.from_user_input(ref)
    except pyproj.exceptions.CRSError:
        raise errors.ProcessParameterInvalid(
            f"Unknown reference system {ref!r} in '{argument}'.", argument=argument) from None
    xs = np.asarray(cube.data.coords[xdim].values, dtype=float) if xdim in cube.data.coords \
        else np.array([])
    ys = np.asarray(cube.data.coords[ydim].values, dtype=float) if ydim in cube.data.coords \
        else np.array([])
    dx, dy = _step(xs, xdim, argument), _step(ys, ydim, argument)
    # One label gives no spacing: use the recorded resolution, else square pixels.
    known = cube.attrs.get("resolution")
    rx, ry = (known if isinstance(known, (list, tuple)) else (known, known)) if known \
        else (None, None)
    if dx is None:
        dx = float(rx) if rx else abs(dy) if dy is not None else 1.0
    if dy is None:
        dy = -float(ry) if ry else -abs(dx)
    x0 = xs[0] - dx / 2 if len(xs) else 0.0
    y0 = ys[0] - dy / 2 if len(ys) else 0.0
    return Grid(crs, Affine(dx, 0.0, x0, 0.0, dy, y0), len(xs), len(ys), ref)


def with_grid(cube: RasterCube, data: xr.DataArray, grid: Grid) -> RasterCube:
    """A cube with new values on another grid (new x/y labels and reference system)."""
    ydim, xdim = spatial_dims(cube)
    data = data.assign_coords({ydim: grid.y_coords(), xdim: grid.x_coords()})
    dims = tuple(replace_dim(d, reference_system=grid.reference_system)
                 if d.name in (xdim, ydim) else d for d in cube.dimensions)
    return RasterCube(data, dims, cube.nodata, dict(cube.attrs))


def with_scaled_grid(cube: RasterCube, data: xr.DataArray, scale: dict[str, Any]) -> RasterCube:
    """A cube with values `data` on the grid of `cube` with `scale[name]` times as many pixels
    along its spatial dimensions (same area, smaller pixels for a factor above one: what a
    UDF that upsamples gives); dimensions missing from `scale` keep their pixels."""
    ydim, xdim = spatial_dims(cube)
    grid = grid_of(cube).scaled(scale.get(xdim, 1), scale.get(ydim, 1))
    out = with_grid(cube, data, grid)
    if cube.attrs.get("resolution") is not None:
        rx, ry = grid.resolution
        out.attrs["resolution"] = rx if rx == ry else [rx, ry]
    return out


def replace_dim(dim: Dimension, **changes: Any) -> Dimension:
    return Dimension(**{**dim.__dict__, **changes})


# --- lazy reprojection ------------------------------------------------------------------------
_RESAMPLING = {
    "near": Resampling.nearest, "bilinear": Resampling.bilinear, "cubic": Resampling.cubic,
    "cubicspline": Resampling.cubic_spline, "lanczos": Resampling.lanczos,
    "average": Resampling.average, "mode": Resampling.mode, "max": Resampling.max,
    "min": Resampling.min, "med": Resampling.med, "q1": Resampling.q1, "q3": Resampling.q3,
    "sum": Resampling.sum, "rms": Resampling.rms,
}
# Source pixels a method reads around a target pixel (at scale 1); GDAL widens the kernel by
# the downsampling factor, aggregating methods read the target pixel's footprint.
_KERNEL_RADIUS = {"near": 1, "bilinear": 1, "cubic": 2, "cubicspline": 2, "lanczos": 3}
# Target blocks span whole rows (up to _MAX_BLOCK_WIDTH): GDAL approximates the coordinate
# transformation along each row, so full rows give the same result as one warp of the array.
_MAX_BLOCK_WIDTH = 8192
_BLOCK_PIXELS = 2**21


def resampling_method(method: str) -> Resampling:
    if method not in _RESAMPLING:
        raise errors.ProcessParameterInvalid(
            f"Unknown resampling method {method!r}; use one of {', '.join(_RESAMPLING)}.",
            argument="method")
    return _RESAMPLING[method]


def _work_dtype(cube: RasterCube) -> tuple[np.dtype, float | None]:
    """The dtype values are warped in and the no-data value used for them."""
    dtype = cube.data.dtype
    if np.issubdtype(dtype, np.floating):
        return dtype, float("nan")
    if np.issubdtype(dtype, np.bool_):
        return np.dtype(np.uint8), None
    if np.issubdtype(dtype, np.integer):
        if cube.nodata is not None and not (isinstance(cube.nodata, float)
                                            and math.isnan(cube.nodata)):
            return dtype, cube.nodata
        return np.dtype(np.float32 if dtype.itemsize <= 2 else np.float64), float("nan")
    raise errors.ProcessParameterInvalid(
        f"Cannot resample values of type {dtype}.", argument="data")


def covering_window(grid: Grid, cols: np.ndarray, rows: np.ndarray,
                     margin: int) -> tuple[slice, slice] | None:
    """The (rows, cols) window of the grid around fractional pixel positions, widened by
    `margin` pixels and clipped to the grid; None if nothing of the grid is left."""
    c0 = max(int(math.floor(cols.min())) - margin, 0)
    c1 = min(int(math.ceil(cols.max())) + margin, grid.width)
    r0 = max(int(math.floor(rows.min())) - margin, 0)
    r1 = min(int(math.ceil(rows.max())) + margin, grid.height)
    if c0 >= c1 or r0 >= r1:
        return None
    return slice(r0, r1), slice(c0, c1)


def _sample_points(r0: int, r1: int, c0: int, c1: int, n: int = 17) -> tuple[np.ndarray, ...]:
    rows = np.linspace(r0, r1, n)
    cols = np.linspace(c0, c1, n)
    cc, rr = np.meshgrid(cols, rows)
    return cc.ravel(), rr.ravel()


def _source_window(src: Grid, dst: Grid, transformer: pyproj.Transformer | None,
                   rows: tuple[int, int], cols: tuple[int, int],
                   radius: int) -> tuple[slice, slice] | None:
    """The source pixel window a target block reads from (with a margin for the kernel)."""
    cc, rr = _sample_points(rows[0], rows[1], cols[0], cols[1])
    # affine applies to arrays of coordinates; its type hints only admit scalars
    x, y = dst.transform @ (cc, rr)  # type: ignore[operator]
    if transformer is not None:
        x, y = transformer.transform(x, y)
    ok = np.isfinite(x) & np.isfinite(y)
    if not ok.any():
        return None
    sc, sr = ~src.transform @ (np.asarray(x)[ok], np.asarray(y)[ok])
    scale = max((sc.max() - sc.min()) / max(cols[1] - cols[0], 1),
                (sr.max() - sr.min()) / max(rows[1] - rows[0], 1), 1.0)
    return covering_window(src, sc, sr, margin=int(math.ceil(radius * scale)) + 1)


def _warp_block(src: np.ndarray, src_transform: Affine, src_crs: str, dst_transform: Affine,
                dst_crs: str, shape: tuple[int, int], resampling: Resampling,
                nodata: float | None, dtype: np.dtype) -> np.ndarray:
    lead = src.shape[:-2]
    planes = np.ascontiguousarray(src.reshape((-1, *src.shape[-2:])).astype(dtype, copy=False))
    out = np.full((planes.shape[0], *shape), 0 if nodata is None else nodata, dtype=dtype)
    if planes.shape[0] and planes.shape[-1] and planes.shape[-2]:
        rasterio.warp.reproject(
            planes, out, src_transform=src_transform,
            src_crs=rasterio.crs.CRS.from_wkt(src_crs), src_nodata=nodata,
            dst_transform=dst_transform, dst_crs=rasterio.crs.CRS.from_wkt(dst_crs),
            dst_nodata=nodata, resampling=resampling)
    return out.reshape((*lead, *shape))


def assemble_blocks(blocks: dict[tuple[int, ...], da.Array], counts: Sequence[int]) -> da.Array:
    """One dask array from a grid of blocks keyed by block index."""
    def nest(prefix: tuple[int, ...]) -> Any:
        if len(prefix) == len(counts):
            return blocks[prefix]
        return [nest((*prefix, i)) for i in range(counts[len(prefix)])]

    out: da.Array = da.block(nest(()))
    return out


def splits(size: int, step: int) -> list[tuple[int, int]]:
    step = max(int(step), 1)
    return [(i, min(i + step, size)) for i in range(0, size, step)] or [(0, 0)]


def as_dask(data: xr.DataArray) -> da.Array:
    arr = data.data
    if isinstance(arr, da.Array):
        return arr
    out: da.Array = da.from_array(np.asarray(arr), chunks=-1)
    return out


def warp(cube: RasterCube, dst: Grid, method: str) -> RasterCube:
    """The cube resampled/reprojected onto another grid, block by block and lazily."""
    resampling = resampling_method(method)
    src = grid_of(cube)
    if src.same_as(dst):
        return with_grid(cube, cube.data, dst)
    ydim, xdim = spatial_dims(cube)
    dtype, nodata = _work_dtype(cube)
    order = [d for d in cube.data.dims if d not in (ydim, xdim)] + [ydim, xdim]
    arr = as_dask(cube.data.transpose(*order))
    transformer = None if src.crs == dst.crs else pyproj.Transformer.from_crs(
        dst.crs, src.crs, always_xy=True)
    radius = _KERNEL_RADIUS.get(method, 1)
    src_wkt, dst_wkt = src.crs.to_wkt(), dst.crs.to_wkt()
    lead_chunks = arr.chunks[:-2]
    lead_bounds = [np.cumsum((0, *c)) for c in lead_chunks]
    if is_dry_run():  # shapes only: one task, not one per block (datacube/dryrun.py)
        lead_shape = tuple(int(n) for n in arr.shape[:-2])
        return _warped(cube, placeholder((*lead_shape, dst.height, dst.width),
                                         np.dtype(dtype)), order, dst)
    col_splits = splits(dst.width, _MAX_BLOCK_WIDTH)
    row_splits = splits(dst.height, max(_BLOCK_PIXELS // max(col_splits[0][1], 1), 1))
    windows = {(i, j): _source_window(src, dst, transformer, rows, cols, radius)
               for i, rows in enumerate(row_splits) for j, cols in enumerate(col_splits)}
    blocks: dict[tuple[int, ...], da.Array] = {}
    for lead_idx in np.ndindex(*[len(c) for c in lead_chunks]):
        lead_sl = tuple(slice(int(b[k]), int(b[k + 1])) for b, k in zip(lead_bounds, lead_idx))
        lead_shape = tuple(s.stop - s.start for s in lead_sl)
        for (i, j), window in windows.items():
            rows, cols = row_splits[i], col_splits[j]
            shape = (rows[1] - rows[0], cols[1] - cols[0])
            if window is None or 0 in shape:
                fill = 0 if nodata is None else nodata
                blocks[(*lead_idx, i, j)] = da.full((*lead_shape, *shape), fill, dtype=dtype)
                continue
            wr, wc = window
            piece = arr[(*lead_sl, wr, wc)]
            src_t = src.transform @ Affine.translation(wc.start, wr.start)
            dst_t = dst.transform @ Affine.translation(cols[0], rows[0])
            task = dask.delayed(_warp_block, pure=True)(
                piece, src_t, src_wkt, dst_t, dst_wkt, shape, resampling, nodata, dtype)
            blocks[(*lead_idx, i, j)] = da.from_delayed(task, (*lead_shape, *shape), dtype=dtype)
    counts = [len(c) for c in lead_chunks] + [len(row_splits), len(col_splits)]
    return _warped(cube, assemble_blocks(blocks, counts), order, dst)


def _warped(cube: RasterCube, out: da.Array, order: list[Any], dst: Grid) -> RasterCube:
    """The cube with the warped values `out` (dimensions in `order`, spatial ones last)."""
    if cube.data.dtype == bool:
        out = out.astype(bool)
    coords = {d: cube.data.coords[d] for d in order[:-2] if d in cube.data.coords}
    result = xr.DataArray(out, dims=order, coords=coords, attrs=dict(cube.data.attrs))
    result = result.transpose(*cube.data.dims)
    return with_grid(cube, result, dst)


