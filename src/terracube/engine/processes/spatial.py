"""Spatial processes: resampling and reprojection, kernels, neighbourhoods, zonal statistics.

Everything stays lazy: reprojection and masks are dask graphs built block by block from the
grid (coordinates), never from cube values; callbacks get whole lazy (sub-)cubes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import dask.array as da
import numpy as np
import pandas as pd
import pyproj
import rasterio.crs
import rasterio.features
import rasterio.warp
import scipy.ndimage
import shapely
import shapely.geometry
import xarray as xr
from affine import Affine
from shapely.geometry.base import BaseGeometry

from terracube import errors
from terracube.datacube.cube import GEOMETRY, OTHER, SPATIAL, TEMPORAL, Dimension, RasterCube
from terracube.datacube.grid import (
    GRID_READER,
    Grid,
    as_dask,
    assemble_blocks,
    covering_window,
    grid_of,
    resampling_method,
    spatial_dims,
    splits,
    warp,
    with_grid,
)
from terracube.datacube.values import ArrayValue
from terracube.datacube.vector import GEOMETRY_DIM, VectorCube, reproject_geometries
from terracube.engine.evaluate import Callback
from terracube.engine.processes.temporal import (
    drop_dim_coords,
    is_valid_mask,
    reducer_output,
    unwrap_data,
)
from terracube.engine.registry import process
from terracube.process_errors import (
    DataCubePropertiesImmutable,
    DimensionNotAvailable,
    GeometriesOverlap,
    KernelDimensionsUneven,
    TargetDimensionExists,
)


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
        if not isinstance(r, (int, float)) or isinstance(r, bool) or r < 0:
            raise errors.ProcessParameterInvalid(
                "'resolution' must be non-negative numbers.", argument="resolution")
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


# --- apply_kernel -----------------------------------------------------------------------------
_PAD_MODES = {"replicate": "edge", "reflect": "symmetric", "reflect_pixel": "reflect",
              "wrap": "wrap"}


def _kernel_array(kernel: Any) -> np.ndarray:
    if not isinstance(kernel, list) or not kernel or not all(
            isinstance(row, list) for row in kernel):
        raise errors.ProcessParameterInvalid(
            "'kernel' must be a two-dimensional array of numbers.", argument="kernel")
    if len({len(row) for row in kernel}) != 1:
        raise errors.ProcessParameterInvalid(
            "All rows of 'kernel' must have the same number of elements.", argument="kernel")
    try:
        weights = np.array(kernel, dtype=float)
    except (TypeError, ValueError):
        raise errors.ProcessParameterInvalid(
            "'kernel' must contain numbers only.", argument="kernel") from None
    if weights.shape[0] % 2 == 0 or weights.shape[1] % 2 == 0:
        raise KernelDimensionsUneven(
            f"Each dimension of the kernel must have an uneven number of elements; it is "
            f"{weights.shape[0]}x{weights.shape[1]}.", argument="kernel")
    return weights


def _kernel_block(block: np.ndarray, weights: np.ndarray, factor: float, invalid: float,
                  nodata: float | None) -> np.ndarray:
    """apply_kernel on one chunk with its halo: NaN, infinities and no-data become
    `invalid` (spec), then the weighted sum, times the factor (in float, so 1/9 is kept)."""
    bad = ~np.isfinite(block)
    if nodata is not None:
        bad |= block == nodata
    if bad.any():
        block = np.where(bad, block.dtype.type(invalid), block)
    out = scipy.ndimage.correlate(block, weights, mode="constant", cval=0.0)
    if factor != 1:
        out *= out.dtype.type(factor)
    return out


@process("apply_kernel")
def apply_kernel(data: RasterCube, kernel: list, factor: float = 1, border: Any = 0,
                 replace_invalid: float = 0) -> RasterCube:
    ydim, xdim = spatial_dims(data)
    weights = _kernel_array(kernel)
    if isinstance(border, str):
        if border not in _PAD_MODES:
            raise errors.ProcessParameterInvalid(
                f"Unknown border {border!r}; use a number, replicate, reflect, reflect_pixel "
                "or wrap.", argument="border")
        pad_kw: dict[str, Any] = {"mode": _PAD_MODES[border]}
    elif isinstance(border, (int, float)) and not isinstance(border, bool):
        pad_kw = {"mode": "constant", "constant_values": float(border)}
    else:
        raise errors.ProcessParameterInvalid("'border' must be a number or a mode name.",
                                             argument="border")
    if not isinstance(factor, (int, float)) or isinstance(factor, bool):
        raise errors.ProcessParameterInvalid("'factor' must be a number.", argument="factor")
    order = [d for d in data.data.dims if d not in (ydim, xdim)] + [ydim, xdim]
    values = data.data.transpose(*order)
    if values.dtype == bool:
        values = values.astype(np.int8)
    if not np.issubdtype(values.dtype, np.number):
        raise errors.ProcessParameterInvalid("apply_kernel needs numerical data.",
                                             argument="data")
    # float32 data (and integers up to 16 bit) stay float32: no float64 copy of the cube
    work = np.result_type(values.dtype, np.float32) if values.dtype.itemsize <= 4 else \
        np.dtype(np.float64)
    arr = as_dask(values).astype(work)
    nodata = data.nodata if data.nodata is not None and np.issubdtype(
        data.data.dtype, np.integer) else None
    hy, hx = weights.shape[0] // 2, weights.shape[1] // 2
    lead = arr.ndim - 2
    full = np.reshape(weights, (1,) * lead + weights.shape)
    block = {"weights": full, "factor": float(factor), "invalid": float(replace_invalid),
             "nodata": nodata}
    small = any(c < h for i, h in ((lead, hy), (lead + 1, hx)) for c in arr.chunks[i])
    if pad_kw["mode"] == "constant" and not small:
        # One pass per chunk: neighbours from the adjacent chunks, the border value beyond
        # the edges of the cube.
        depth = {i: (hy if i == lead else hx if i == lead + 1 else 0) for i in range(arr.ndim)}
        core = arr.map_overlap(_kernel_block, depth=depth, dtype=work,
                               boundary=pad_kw["constant_values"], **block)
    else:
        # Border modes other than a constant: pad the cube, then cut the padded rim off.
        padded = da.pad(arr, [(0, 0)] * lead + [(hy, hy), (hx, hx)], **pad_kw)
        chunks = tuple(c if i < lead else max(c, 2 * (hy if i == lead else hx) + 1)
                       for i, c in enumerate(padded.chunksize))
        padded = padded.rechunk(chunks)
        convolved = padded.map_overlap(_kernel_block, depth={lead: hy, lead + 1: hx},
                                       boundary="none", dtype=work, **block)
        core = convolved[(Ellipsis, slice(hy, hy + arr.shape[-2]),
                          slice(hx, hx + arr.shape[-1]))]
    out = xr.DataArray(core, dims=order, coords=values.coords).transpose(*data.data.dims)
    return data.with_data(out, nodata=None)


# --- apply_neighborhood -----------------------------------------------------------------------
_DURATION = re.compile(
    r"^P(?!$)(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?"
    r"(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$")


def _duration(value: str, argument: str) -> pd.DateOffset:
    m = _DURATION.match(value)
    if not m:
        raise errors.ProcessParameterInvalid(
            f"{value!r} is not an ISO 8601 duration such as P10D.", argument=argument)
    y, mo, w, d, h, mi, s = m.groups()
    seconds = float(s or 0)
    return pd.DateOffset(years=int(y or 0), months=int(mo or 0), weeks=int(w or 0),
                         days=int(d or 0), hours=int(h or 0), minutes=int(mi or 0),
                         seconds=int(seconds),
                         microseconds=int(round((seconds - int(seconds)) * 1e6)))


def _pixels(cube: RasterCube, dim: Dimension, value: Any, unit: str | None,
            argument: str) -> int:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
        raise errors.ProcessParameterInvalid(
            f"The {argument} of dimension '{dim.name}' must be a non-negative number.",
            argument=argument)
    if dim.type == SPATIAL and unit != "px" and dim.axis in ("x", "y"):
        grid = grid_of(cube)
        if unit == "m" and grid.crs.is_geographic:
            raise errors.ProcessParameterInvalid(
                f"The {argument} of '{dim.name}' is in metres but the data is in a geographic "
                "reference system; give pixels (unit 'px').", argument=argument)
        res = grid.resolution[0 if dim.axis == "x" else 1]
        value = value / res
    if abs(value - round(value)) > 1e-6:
        raise errors.ProcessParameterInvalid(
            f"The {argument} of dimension '{dim.name}' is not a whole number of pixels "
            f"({value:g}).", argument=argument)
    return int(round(value))


def _neighbourhood_chunks(cube: RasterCube, size: Any, overlap: Any) -> tuple[
        list[tuple[int, ...]], list[int]]:
    """Per dimension: the sizes of the windows along it, and the overlap (both in pixels)."""
    sizes: dict[str, Any] = {}
    overlaps: dict[str, int] = {}
    for argument, items in (("size", size), ("overlap", overlap or [])):
        if not isinstance(items, list):
            raise errors.ProcessParameterInvalid(
                f"'{argument}' must be a list of {{dimension, value, unit}} objects.",
                argument=argument)
        for item in items:
            if not isinstance(item, dict) or "dimension" not in item:
                raise errors.ProcessParameterInvalid(
                    f"Every element of '{argument}' needs a 'dimension'.", argument=argument)
            dim = cube.dim(item["dimension"])
            if dim is None:
                raise DimensionNotAvailable(
                    f"Dimension '{item['dimension']}' given in '{argument}' does not exist.",
                    argument=argument)
            value, unit = item.get("value"), item.get("unit")
            if unit not in (None, "px", "m"):
                raise errors.ProcessParameterInvalid(
                    f"Unknown unit {unit!r}; use 'px' or 'm'.", argument=argument)
            if argument == "size":
                if value is None:
                    sizes[dim.name] = None
                elif isinstance(value, str):
                    if dim.type != TEMPORAL:
                        raise errors.ProcessParameterInvalid(
                            f"A duration is only valid for temporal dimensions, not "
                            f"'{dim.name}'.", argument=argument)
                    sizes[dim.name] = _duration(value, argument)
                else:
                    sizes[dim.name] = _pixels(cube, dim, value, unit, argument)
                    if sizes[dim.name] < 1:
                        raise errors.ProcessParameterInvalid(
                            f"The size of '{dim.name}' must be at least one pixel.",
                            argument=argument)
            else:
                if value is None:
                    overlaps[dim.name] = 0
                elif isinstance(value, str):
                    raise errors.ProcessParameterInvalid(
                        f"Overlaps given as durations are not supported; give the overlap of "
                        f"'{dim.name}' as a number of labels.", argument=argument)
                else:
                    overlaps[dim.name] = _pixels(cube, dim, value, unit, argument)
    chunks, depth = [], []
    for d in cube.dimensions:
        n = cube.data.sizes[d.name]
        spec = sizes.get(d.name)
        if isinstance(spec, pd.DateOffset):
            times = pd.DatetimeIndex(cube.data.coords[d.name].values)
            edges, start = [], times.min()
            while start <= times.max():
                edges.append(start)
                start = start + spec
            bins = np.searchsorted(np.array(edges, dtype="datetime64[ns]"),
                                   times.to_numpy(), side="right")
            if (np.diff(bins) < 0).any():
                raise errors.ProcessParameterInvalid(
                    f"Durations need sorted labels along '{d.name}'.", argument="size")
            counts = tuple(int(c) for c in np.bincount(bins)[1:] if c)
            chunks.append(counts or (n,))
        else:
            step = n if spec is None else min(spec, max(n, 1))
            chunks.append(tuple(b - a for a, b in splits(n, step)))
        depth.append(overlaps.get(d.name, 0))
    return chunks, depth


def _extended_labels(labels: np.ndarray, start: int, stop: int) -> np.ndarray:
    """Labels for positions start..stop-1, extrapolated beyond the ends (overlap rims)."""
    n = len(labels)
    if 0 <= start and stop <= n:
        return labels[start:stop]
    positions = np.arange(start, stop)
    if np.issubdtype(labels.dtype, np.number) or np.issubdtype(labels.dtype, np.datetime64):
        if n >= 2:
            step, first_step = labels[-1] - labels[-2], labels[1] - labels[0]
        else:
            step = first_step = (np.timedelta64(1, "D") if np.issubdtype(
                labels.dtype, np.datetime64) else 1)
        inside = labels[np.clip(positions, 0, n - 1)]
        below, above = positions < 0, positions >= n
        out = inside.copy()
        out[below] = labels[0] + positions[below] * first_step
        out[above] = labels[-1] + (positions[above] - (n - 1)) * step
        return out
    out = np.empty(len(positions), dtype=object)
    inside = (positions >= 0) & (positions < n)
    out[inside] = labels[positions[inside]]
    out[~inside] = None
    return out


def _cube_result(value: Any, expected: xr.DataArray, argument: str = "process") -> xr.DataArray:
    value = unwrap_data(value)
    if not isinstance(value, xr.DataArray):
        raise DataCubePropertiesImmutable(
            f"The {argument} must return a data cube, not {type(value).__name__}.",
            argument=argument)
    if set(value.dims) != set(expected.dims):
        raise DataCubePropertiesImmutable(
            f"The {argument} changed the dimensions from {list(expected.dims)} to "
            f"{list(value.dims)}.", argument=argument)
    value = value.transpose(*expected.dims)
    if value.shape != expected.shape:
        raise DataCubePropertiesImmutable(
            f"The {argument} changed the number of labels from {dict(expected.sizes)} to "
            f"{dict(value.sizes)}.", argument=argument)
    return value


@process("apply_neighborhood")
def apply_neighborhood(data: RasterCube, process: Callback, size: list,
                       overlap: list | None = None, context: Any = None) -> RasterCube:
    spatial_dims(data)
    chunks, depth = _neighbourhood_chunks(data, size, overlap)
    dims = list(data.data.dims)
    sizes = [data.data.sizes[d] for d in dims]
    whole = [len(c) == 1 for c in chunks]
    if all(whole) and not any(depth):
        # One neighbourhood holds everything: a single call on the whole lazy cube.
        out = _cube_result(process(data=data, context=context), data.data)
        return data.with_data(out.assign_coords(data.data.coords))
    long = [i for i, c in enumerate(chunks) if max(c) > 1 or depth[i]]
    one_dimensional = len(long) == 1 and len(dims) > 1
    if one_dimensional:
        # Neighbourhoods of one pixel along all other dimensions are labelled arrays along
        # the remaining one: each window of it is one vectorised call over all pixels.
        chunks = [c if i == long[0] else (sizes[i],) for i, c in enumerate(chunks)]

    values = data.data
    fill: Any = np.nan
    if any(depth) and not np.issubdtype(values.dtype, np.floating):
        if data.nodata is not None and np.issubdtype(values.dtype, np.integer):
            fill = data.nodata
        else:
            values = values.astype(np.float64)
    arr = as_dask(values)
    padded = da.pad(arr, [(p, p) for p in depth], mode="constant", constant_values=fill) \
        if any(depth) else arr
    label_arrays = {d: np.asarray(values.coords[d].values) for d in dims if d in values.coords}
    starts = [np.cumsum((0, *c)) for c in chunks]
    blocks: dict[tuple[int, ...], da.Array] = {}
    for idx in np.ndindex(*[len(c) for c in chunks]):
        lo = [int(starts[a][i]) for a, i in enumerate(idx)]
        hi = [lo[a] + chunks[a][i] for a, i in enumerate(idx)]
        window = tuple(slice(lo[a], hi[a] + 2 * depth[a]) for a in range(len(dims)))
        coords = {d: _extended_labels(label_arrays[d], lo[a] - depth[a], hi[a] + depth[a])
                  for a, d in enumerate(dims) if d in label_arrays}
        piece = xr.DataArray(padded[window], dims=dims, coords=coords)
        argument = ArrayValue(piece, dims[long[0]], labeled=True) if one_dimensional \
            else data.with_data(piece)
        result = _cube_result(process(data=argument, context=context), piece)
        core = tuple(slice(depth[a], depth[a] + hi[a] - lo[a]) for a in range(len(dims)))
        blocks[idx] = as_dask(result)[core]
    dtypes = {b.dtype for b in blocks.values()}
    if len(dtypes) > 1:
        common = np.result_type(*dtypes)
        blocks = {k: b.astype(common) for k, b in blocks.items()}
    out = assemble_blocks(blocks, [len(c) for c in chunks])
    assert tuple(out.shape) == tuple(sizes)
    return data.with_data(xr.DataArray(out, dims=dims, coords=values.coords,
                                       attrs=dict(data.data.attrs)))


# --- spatial reductions -----------------------------------------------------------------------
_PIXELS = "__pixels__"


def _stack_pixels(values: xr.DataArray, ydim: str, xdim: str) -> xr.DataArray:
    others = [d for d in values.dims if d not in (ydim, xdim)]
    stacked = values.transpose(*others, ydim, xdim).stack({_PIXELS: (ydim, xdim)},
                                                            create_index=False)
    return stacked.drop_vars([c for c in (ydim, xdim) if c in stacked.coords])


@process("reduce_spatial")
def reduce_spatial(data: RasterCube, reducer: Callback, context: Any = None) -> RasterCube:
    ydim, xdim = spatial_dims(data)
    stacked = _stack_pixels(data.data, ydim, xdim)
    template = xr.zeros_like(stacked.isel({_PIXELS: 0}, drop=True)) if stacked.sizes[_PIXELS] \
        else stacked.sum(_PIXELS)
    value = reducer(data=ArrayValue(stacked, _PIXELS), context=context)
    out = reducer_output(value, drop_dim_coords(template, _PIXELS), _PIXELS)
    others = [d for d in data.data.dims if d not in (ydim, xdim)]
    return data.with_data(out.transpose(*others))


def _window_centres(coords: np.ndarray, step: float, size: int, offset: int,
                    count: int) -> np.ndarray:
    first = coords[0] if len(coords) else 0.0
    return first + (offset + np.arange(count) * size + (size - 1) / 2) * step


@process("aggregate_spatial_window")
def aggregate_spatial_window(data: RasterCube, reducer: Callback, size: list,
                             boundary: str = "pad", align: str = "upper-left",
                             context: Any = None) -> RasterCube:
    ydim, xdim = spatial_dims(data)
    if (not isinstance(size, list) or len(size) != 2
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in size)):
        raise errors.ProcessParameterInvalid(
            "'size' must be two positive integers [x, y].", argument="size")
    if boundary not in ("pad", "trim"):
        raise errors.ProcessParameterInvalid("'boundary' must be 'pad' or 'trim'.",
                                             argument="boundary")
    if align not in ("upper-left", "lower-left", "upper-right", "lower-right"):
        raise errors.ProcessParameterInvalid(
            "'align' must be upper-left, lower-left, upper-right or lower-right.",
            argument="align")
    sx, sy = size
    grid = grid_of(data)
    nx, ny = data.data.sizes[xdim], data.data.sizes[ydim]
    # Windows start at the aligned corner; padding/trimming happens at the opposite side.
    x_from_start = align.endswith("left") == (grid.transform.a > 0)
    y_from_start = align.startswith("upper") == (grid.transform.e < 0)
    values = data.data
    if boundary == "pad" and (nx % sx or ny % sy) and not np.issubdtype(values.dtype,
                                                                          np.floating):
        values = values.astype(np.float64)
    coarse = values.coarsen({xdim: sx, ydim: sy}, boundary=boundary,
                            side={xdim: "left" if x_from_start else "right",
                                  ydim: "left" if y_from_start else "right"},
                            coord_func="mean")
    windows = coarse.construct({xdim: (xdim, "__wx__"), ydim: (ydim, "__wy__")},
                               keep_attrs=True)
    windows = windows.drop_vars([c for c in windows.coords if c in (xdim, ydim)])
    others = [d for d in data.data.dims if d not in (ydim, xdim)]
    windows = windows.transpose(*others, ydim, xdim, "__wy__", "__wx__")
    stacked = windows.stack({_PIXELS: ("__wy__", "__wx__")}, create_index=False)
    template = xr.zeros_like(stacked.isel({_PIXELS: 0}, drop=True))
    value = reducer(data=ArrayValue(stacked, _PIXELS), context=context)
    out = reducer_output(value, drop_dim_coords(template, _PIXELS), _PIXELS)
    cx, cy = out.sizes[xdim], out.sizes[ydim]
    x_offset = 0 if x_from_start else nx - cx * sx
    y_offset = 0 if y_from_start else ny - cy * sy
    xs = _window_centres(grid.x_coords(), grid.transform.a, sx, x_offset, cx)
    ys = _window_centres(grid.y_coords(), grid.transform.e, sy, y_offset, cy)
    out = out.assign_coords({xdim: xs, ydim: ys}).transpose(*data.data.dims)
    return data.with_data(out)


# --- geometries -------------------------------------------------------------------------------
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


def _parts(geom: BaseGeometry) -> tuple[list, list, list]:
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
            p, line, pt = _parts(part)
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
        p, line, pt = _parts(g)
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


def geometry_pixels(geom: BaseGeometry, grid: Grid,
                    polygons_only: bool = False) -> tuple[slice, slice, np.ndarray] | None:
    """The smallest grid window around a geometry and its selected pixels (None if none)."""
    if geom is None or geom.is_empty:
        return None
    window = _pixel_window(grid, geom.bounds)
    if window is None:
        return None
    rows, cols = window
    mask = burn([geom], grid, rows, cols, polygons_only)
    if not mask.any():
        return None
    r_any, c_any = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    mask = mask[r_any[0]:r_any[-1] + 1, c_any[0]:c_any[-1] + 1]
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


def _spatial_chunks(cube: RasterCube) -> tuple[tuple[int, ...], tuple[int, ...]]:
    ydim, xdim = spatial_dims(cube)
    arr = cube.data.data
    if isinstance(arr, da.Array):
        return (arr.chunks[cube.data.dims.index(ydim)], arr.chunks[cube.data.dims.index(xdim)])
    return ((cube.data.sizes[ydim],), (cube.data.sizes[xdim],))


def _fill_value(cube: RasterCube, value: Any) -> tuple[Any, xr.DataArray]:
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
    if not any(_parts(g)[0] for g in geoms) and vc.geometries and any(
            not g.is_empty for g in vc.geometries):
        raise errors.ProcessParameterInvalid(
            "'mask' must contain polygons (Polygon or MultiPolygon).", argument="mask")
    selected = _mask_array(lazy_mask(geoms, grid, _spatial_chunks(data), polygons_only=True),
                           data)
    fill, values = _fill_value(data, replacement)
    replace = selected if inside else ~selected
    replace = replace & ~_is_nodata(data, values)
    out = values.where(~replace, fill).transpose(*data.data.dims)
    return data.with_data(out)


@process("filter_spatial")
def filter_spatial(data: RasterCube, geometries: Any) -> RasterCube:
    grid = grid_of(data)
    ydim, xdim = spatial_dims(data)
    vc = vector_input(geometries, "geometries")
    geoms = [g for g in vc.geometries_in(grid.crs) if not g.is_empty]
    xs, ys = grid.x_coords(), grid.y_coords()
    keep_x = np.zeros(len(xs), dtype=bool)
    keep_y = np.zeros(len(ys), dtype=bool)
    if geoms:
        x0, y0, x1, y1 = shapely.GeometryCollection(geoms).bounds
        keep_x |= (xs >= x0) & (xs <= x1)
        keep_y |= (ys >= y0) & (ys <= y1)
        for g in geoms:  # points and lines also keep the pixels they select
            if _parts(g)[0]:
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
    attrs = {**data.attrs, "resolution": list(grid.resolution)}
    cropped = data.with_data(data.data.isel({ydim: row_sl, xdim: col_sl}), attrs=attrs)
    if not cropped.data.sizes[ydim] or not cropped.data.sizes[xdim]:
        values = cropped.data
        if not np.issubdtype(values.dtype, np.floating):
            values = values.astype(np.float64)
        return cropped.with_data(values)
    sub_grid = Grid(grid.crs, grid.transform @ Affine.translation(col_sl.start, row_sl.start),
                    col_sl.stop - col_sl.start, row_sl.stop - row_sl.start,
                    grid.reference_system)
    selected = _mask_array(lazy_mask(geoms, sub_grid, _spatial_chunks(cropped)), cropped)
    fill, values = _fill_value(cropped, None)
    out = values.where(selected | _is_nodata(cropped, values), fill)
    return cropped.with_data(out.transpose(*data.data.dims))


@process("aggregate_spatial")
def aggregate_spatial(data: RasterCube, geometries: Any, reducer: Callback,
                      target_dimension: str | None = None, context: Any = None) -> VectorCube:
    grid = grid_of(data)
    ydim, xdim = spatial_dims(data)
    vc = vector_input(geometries, "geometries")
    if target_dimension is not None and data.dim(target_dimension) is not None:
        raise TargetDimensionExists(
            f"The data cube already has a dimension '{target_dimension}'.",
            argument="target_dimension")
    others = [d for d in data.data.dims if d not in (ydim, xdim)]
    values = data.data.transpose(*others, ydim, xdim)
    template = drop_dim_coords(drop_dim_coords(
        xr.zeros_like(values.isel({ydim: 0, xdim: 0}, drop=True)) if grid.width and grid.height
        else values.sum([ydim, xdim]), ydim), xdim).astype(np.float64)
    geoms = reproject_geometries(vc.geometries, vc.crs, grid.crs)
    fast = _streaming_statistic(reducer, values)
    if fast is not None:
        windows = [geometry_pixels(geom, grid) for geom in geoms]
        out, valid = _zonal_statistic(values, windows, fast, template)
        total = xr.DataArray([0 if w is None else int(w[2].sum()) for w in windows],
                             dims=[GEOMETRY_DIM]).broadcast_like(out)
        return _zonal_vector_cube(vc, data, others, out, total, valid, target_dimension)
    results, totals, valids = [], [], []
    for geom in geoms:
        found = geometry_pixels(geom, grid)
        if found is None:  # empty or outside the data: no-data
            results.append(xr.full_like(template, np.nan))
            totals.append(xr.zeros_like(template))
            valids.append(xr.zeros_like(template))
            continue
        rows, cols, mask = found
        pixels = _stack_pixels(values.isel({ydim: rows, xdim: cols}), ydim, xdim)
        if not mask.all():
            pixels = pixels.isel({_PIXELS: np.flatnonzero(mask.ravel())})
        value = reducer(data=ArrayValue(pixels, _PIXELS), context=context)
        results.append(reducer_output(value, template, _PIXELS))
        if target_dimension is not None:
            totals.append(xr.full_like(template, int(mask.sum())))
            valids.append(is_valid_mask(pixels).sum(_PIXELS).astype(np.float64))
    def stack(items: list) -> xr.DataArray:
        return xr.concat(items, dim=GEOMETRY_DIM, coords="minimal", compat="override",
                         join="override") if items else template.expand_dims({GEOMETRY_DIM: 0})

    out = stack(results)
    return _zonal_vector_cube(vc, data, others, out, stack(totals) if totals else out,
                              stack(valids) if valids else out, target_dimension)


def _zonal_vector_cube(vc: VectorCube, data: RasterCube, others: list[str], out: xr.DataArray,
                       total: xr.DataArray, valid: xr.DataArray,
                       target_dimension: str | None) -> VectorCube:
    """The vector cube of aggregate_spatial: one value per geometry (and per other label);
    with a target dimension also the geometry's pixel count and its valid pixels."""
    n = len(vc.geometries)
    dims = [Dimension(GEOMETRY_DIM, GEOMETRY, reference_system=vc.crs)] + [
        data.dim(d) for d in others]
    if target_dimension is not None:
        out = xr.concat([x.astype(np.float64) for x in (out, total, valid)], dim=target_dimension,
                        coords="minimal", compat="override", join="override")
        out = out.assign_coords({target_dimension: ["value", "total_count", "valid_count"]})
        dims.append(Dimension(target_dimension, OTHER))
    out = out.assign_coords({GEOMETRY_DIM: np.arange(n)})
    out = out.transpose(*[d.name for d in dims])
    return VectorCube(vc.geometries, vc.crs, out, tuple(dims), vc.properties)


# Reducers that combine from per-chunk partial results (sum, count, min, max of the pixels).
_STREAMING_REDUCERS = ("mean", "sum", "min", "max", "count")


def _streaming_statistic(reducer: Callback, values: xr.DataArray) -> str | None:
    """The reducer's name when it is a plain mean/sum/min/max/count of the pixels of float
    data, which aggregate_spatial computes in one pass over the chunks."""
    name = getattr(reducer, "single_process", None)
    if name not in _STREAMING_REDUCERS or values.dtype.kind != "f":
        return None
    args = reducer.single_process_arguments()
    if args.get("data") != {"from_parameter": "data"}:
        return None
    rest = {k: v for k, v in args.items() if k != "data"}
    if name == "count":
        return name if rest.get("condition") is None and set(rest) <= {"condition"} else None
    if set(rest) <= {"ignore_nodata"} and rest.get("ignore_nodata", True) is True:
        return name
    return None


_SUM, _COUNT, _MIN, _MAX = range(4)


def _zonal_partials(block: np.ndarray, bounds: np.ndarray, masks: list[np.ndarray | None],
                    block_info: dict | None = None) -> np.ndarray:
    """Sum, count, min and max of the valid pixels of every geometry in one spatial chunk:
    shape (*leading, 1, 1, geometries, 4)."""
    (r0, r1), (c0, c1) = block_info[0]["array-location"][-2:]
    lead = block.shape[:-2]
    out = np.zeros((*lead, 1, 1, len(masks), 4))
    out[..., _MIN] = np.inf
    out[..., _MAX] = -np.inf
    rs, re_, cs, ce = bounds.T
    hits = np.flatnonzero((rs < r1) & (re_ > r0) & (cs < c1) & (ce > c0))
    for i in hits:
        mask = masks[i]
        a0, a1 = max(rs[i], r0), min(re_[i], r1)
        b0, b1 = max(cs[i], c0), min(ce[i], c1)
        inside = mask[a0 - rs[i]:a1 - rs[i], b0 - cs[i]:b1 - cs[i]]
        if not inside.any():
            continue
        pixels = block[..., a0 - r0:a1 - r0, b0 - c0:b1 - c0][..., inside]
        valid = ~np.isnan(pixels)
        target = out[..., 0, 0, i, :]
        target[..., _COUNT] = valid.sum(axis=-1)
        target[..., _SUM] = np.where(valid, pixels, 0).sum(axis=-1, dtype=np.float64)
        if pixels.shape[-1]:
            target[..., _MIN] = np.where(valid, pixels, np.inf).min(axis=-1)
            target[..., _MAX] = np.where(valid, pixels, -np.inf).max(axis=-1)
    return out


def _zonal_statistic(values: xr.DataArray, windows: list, statistic: str,
                     template: xr.DataArray) -> tuple[xr.DataArray, xr.DataArray]:
    """(statistic, valid-pixel count) per geometry in one pass over the chunks of `values`
    (dims: others…, y, x): every chunk contributes partial sums/counts/extremes for the
    geometries it touches, instead of one sub-graph per geometry."""
    arr = as_dask(values)
    n = len(windows)
    bounds = np.array([(w[0].start, w[0].stop, w[1].start, w[1].stop) if w is not None
                       else (0, 0, 0, 0) for w in windows], dtype=np.int64).reshape(n, 4)
    masks = [None if w is None else w[2] for w in windows]
    chunks = (*arr.chunks[:-2], (1,) * len(arr.chunks[-2]), (1,) * len(arr.chunks[-1]),
              (n,), (4,))
    parts = da.map_blocks(_zonal_partials, arr, bounds, masks, chunks=chunks,
                          new_axis=[arr.ndim, arr.ndim + 1], dtype=np.float64,
                          meta=np.array((), dtype=np.float64))
    spatial = (arr.ndim - 2, arr.ndim - 1)
    count = parts[..., _COUNT].sum(axis=spatial)
    found = count > 0
    if statistic == "count":
        result = count
    elif statistic == "sum":
        result = da.where(found, parts[..., _SUM].sum(axis=spatial), np.nan)
    elif statistic == "mean":
        result = da.where(found, parts[..., _SUM].sum(axis=spatial) / da.maximum(count, 1),
                          np.nan)
    elif statistic == "min":
        result = da.where(found, parts[..., _MIN].min(axis=spatial), np.nan)
    else:
        result = da.where(found, parts[..., _MAX].max(axis=spatial), np.nan)
    outside = np.array([w is None for w in windows])
    if outside.any():  # geometries without pixels: no-data, whatever the statistic
        result = da.where(outside, np.nan, result)
    dims = [*template.dims, GEOMETRY_DIM]
    coords = {k: c for k, c in template.coords.items() if set(c.dims) <= set(template.dims)}
    as_array = (lambda a: xr.DataArray(a, dims=dims, coords=coords)  # noqa: E731
                .transpose(GEOMETRY_DIM, *template.dims))
    return as_array(result), as_array(count)


@process("apply_polygon")
def apply_polygon(data: RasterCube, geometries: Any, process: Callback, mask_value: Any = None,
                  context: Any = None) -> RasterCube:
    grid = grid_of(data)
    ydim, xdim = spatial_dims(data)
    vc = vector_input(geometries, "geometries")
    geoms = vc.geometries_in(grid.crs)
    for g in geoms:
        if not g.is_empty and g.geom_type not in ("Polygon", "MultiPolygon"):
            raise errors.ProcessParameterInvalid(
                f"'geometries' may only contain polygons, found a {g.geom_type}.",
                argument="geometries")
    found = [(i, w) for i, w in enumerate(
        geometry_pixels(g, grid, polygons_only=True) for g in geoms) if w is not None]
    _check_overlaps([w for _, w in found])
    fill, values = _fill_value(data, None)
    inner_fill = fill if mask_value is None else mask_value
    dims = list(data.data.dims)
    zones = xr.DataArray(da.map_blocks(
        _zone_block, geoms, grid, dtype=np.int32, chunks=_spatial_chunks(data),
        meta=np.array((), dtype=np.int32)), dims=[ydim, xdim])
    result = xr.DataArray(da.full(values.shape, fill, dtype=values.dtype,
                                  chunks=as_dask(values).chunks), dims=dims,
                          coords=values.coords)
    height, width = values.sizes[ydim], values.sizes[xdim]
    for index, (rows, cols, mask) in found:
        piece = values.isel({ydim: rows, xdim: cols})
        inside = xr.DataArray(mask, dims=[ydim, xdim])
        sub = data.with_data(piece.where(inside, inner_fill))
        processed = _cube_result(process(data=sub, context=context), piece)
        pad = [(0, 0) if d not in (ydim, xdim) else
               ((rows.start, height - rows.stop) if d == ydim else
                (cols.start, width - cols.stop)) for d in dims]
        padded = da.pad(as_dask(processed), pad, mode="constant", constant_values=0)
        result = xr.where(zones == index, xr.DataArray(padded, dims=dims, coords=values.coords),
                          result)
    return data.with_data(result.transpose(*dims))


def _zone_block(geoms: list[BaseGeometry], grid: Grid,
                block_info: dict | None = None) -> np.ndarray:
    """The index of the polygon each pixel centre of a chunk lies in (-1: none)."""
    (r0, r1), (c0, c1) = block_info[None]["array-location"]
    shapes = [(g, i) for i, g in enumerate(geoms) if not g.is_empty]
    if not shapes or r1 <= r0 or c1 <= c0:
        return np.full((r1 - r0, c1 - c0), -1, dtype=np.int32)
    return rasterio.features.rasterize(
        shapes, out_shape=(r1 - r0, c1 - c0), fill=-1, dtype="int32", all_touched=False,
        transform=grid.transform @ Affine.translation(c0, r0))


def _check_overlaps(windows: list[tuple[slice, slice, np.ndarray]]) -> None:
    boxes = [shapely.box(c.start, r.start, c.stop - 0.5, r.stop - 0.5) for r, c, _ in windows]
    tree = shapely.STRtree(boxes)
    for i, j in zip(*tree.query(boxes, predicate="intersects")):
        if i >= j:
            continue
        (ri, ci, mi), (rj, cj, mj) = windows[i], windows[j]
        r0, r1 = max(ri.start, rj.start), min(ri.stop, rj.stop)
        c0, c1 = max(ci.start, cj.start), min(ci.stop, cj.stop)
        if r0 >= r1 or c0 >= c1:
            continue
        a = mi[r0 - ri.start:r1 - ri.start, c0 - ci.start:c1 - ci.start]
        b = mj[r0 - rj.start:r1 - rj.start, c0 - cj.start:c1 - cj.start]
        if (a & b).any():
            raise GeometriesOverlap(
                f"Polygons #{i} and #{j} share pixels; apply_polygon needs polygons that do "
                "not overlap.", argument="geometries")

