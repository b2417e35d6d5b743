"""Neighbourhood processes: apply_kernel, apply_neighborhood, aggregate_spatial_window,
reduce_spatial.

Kernels and windows run lazily chunk by chunk (dask overlap); callbacks get whole lazy
(sub-)cubes or labelled arrays, never single pixels.
"""

from __future__ import annotations

import operator
import re
from fractions import Fraction
from typing import Any

import dask.array as da
import numpy as np
import pandas as pd
import scipy.ndimage
import scipy.signal
import xarray as xr
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph

from terracube import errors
from terracube.datacube.cube import BANDS, SPATIAL, TEMPORAL, Dimension, RasterCube
from terracube.datacube.grid import (
    as_dask,
    assemble_blocks,
    grid_of,
    spatial_dims,
    splits,
    with_scaled_grid,
)
from terracube.datacube.values import ArrayValue
from terracube.engine.evaluate import Callback
from terracube.engine.processes._arguments import number_argument
from terracube.engine.processes._reducing import drop_dim_coords, reducer_output, unwrap_data
from terracube.engine.processes.cube_filters import with_bands
from terracube.engine.processes.udf import size_change, udf_whole_pieces
from terracube.engine.registry import process
from terracube.process_errors import (
    DataCubePropertiesImmutable,
    DimensionNotAvailable,
    KernelDimensionsUneven,
)

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


# Large kernels are not correlated weight by weight (cost: weights per pixel): a separable
# kernel (rank 1: Gaussian, box, Sobel...) of at least _SEPARABLE weights as two 1-D passes,
# any other of at least _FFT weights by FFT. The community BAP composite example's 151x151
# Gaussian took ~8 s of CPU per date and chunk weight by weight, 0.01 s in two passes.
_SEPARABLE = 49
_FFT = 225


def _kernel_method(weights: np.ndarray) -> tuple[str, Any]:
    """How to correlate with `weights`: ("box", weight) for a kernel whose weights are all the
    same whole number (mean filters: W4's 3x3 ones), ("separable", (column, row)) for a large
    kernel that is the outer product of two vectors, ("fft", None) for another very large
    one, else ("direct", None): weight by weight, exactly as scipy.ndimage correlates."""
    first = float(weights.flat[0])
    if weights.size > 1 and np.isfinite(first) and first == int(first) and first != 0 and \
            bool(np.all(weights == first)):
        return "box", first
    return _general_method(weights)


def _general_method(weights: np.ndarray) -> tuple[str, Any]:
    """_kernel_method without the box sums: also what a box kernel falls back to where the
    box sums cannot be exact (a 601 x 601 mean of float data, OilSpill: separable, not
    361,201 weights one by one)."""
    if weights.size < _SEPARABLE:
        return "direct", None
    # rank 1 <=> every row is a multiple of the row through the largest weight (no SVD:
    # LAPACK's threads took over a second on a loaded machine for 151x151)
    i, j = np.unravel_index(np.argmax(np.abs(weights)), weights.shape)
    scale = float(abs(weights[i, j]))
    if scale == 0:
        return "separable", (np.zeros(weights.shape[0]), np.zeros(weights.shape[1]))
    column, row = weights[:, j], weights[i, :] / weights[i, j]
    if np.abs(np.outer(column, row) - weights).max() <= 1e-12 * scale:
        return "separable", (column, row)
    return ("fft", None) if weights.size >= _FFT else ("direct", None)


_BOX_STRIP = 64  # rows per step of the box sums: a step's arrays stay in the CPU's cache


def _box_block(block: np.ndarray, shape: tuple[int, int], weight: float, factor: float,
               invalid: float, nodata: float | None) -> np.ndarray | None:
    """apply_kernel with a ky x kx kernel of equal whole-number weights on one block with its
    halo, as `_kernel_block` computes it (the rim, the halo, left 0: the caller cuts it off),
    or None where `_box_sums` cannot be exact."""
    ky, kx = shape
    height, width = block.shape[-2:]
    if height < ky or width < kx:
        return None
    out = np.zeros_like(block)
    hy, hx = ky // 2, kx // 2

    def rows(target: np.ndarray, first: int, stop: int) -> None:
        np.copyto(target, block[..., first:stop + 2 * hy, :])

    inner = out[..., hy:height - hy, hx:width - hx]
    return out if _box_sums(rows, inner, shape, weight, factor, invalid, nodata) else None


def _box_sums(rows: Any, out: np.ndarray, shape: tuple[int, int], weight: float,
              factor: float, invalid: float, nodata: float | None) -> bool:
    """apply_kernel with a ky x kx kernel of equal whole-number weights into `out`
    (..., h, w); `rows(target, a, b)` writes the rows a - hy .. b + hy of the padded input
    (row 0 = out's first, w + 2 hx wide) into `target`. False (out unfinished) where this
    is not exactly scipy's correlation.

    scipy multiplies and adds in float64 and rounds once to the block's dtype. For whole
    numbers whose sums stay below 2**(mantissa bits), every partial sum is exact in the
    block's own dtype, in any order: then (ky - 1) + (kx - 1) additions of shifted views
    (W4's 3x3: four) give the values of ky * kx multiply-adds per pixel in double. Done in
    strips of rows so that each step's arrays stay in the cache: the input copied in,
    invalid values replaced, the whole-number and range checks, the sums and the factor are
    one pass over the block (W4's 2048² float32 blocks: 8 ms instead of 48 ms)."""
    ky, kx = shape
    dtype = out.dtype.type
    if out.dtype.kind != "f" or out.size == 0:
        return False
    limit = 2.0 ** (np.finfo(out.dtype).nmant + 1) / (ky * kx * abs(weight))
    height, width = out.shape[-2:]
    lead = out.shape[:-2]
    values = np.empty(lead + (_BOX_STRIP + ky - 1, width + kx - 1), out.dtype)
    whole = np.empty_like(values)
    column = np.empty(lead + (_BOX_STRIP, width + kx - 1), out.dtype)
    for top in range(0, height, _BOX_STRIP):
        n = min(_BOX_STRIP, height - top)
        source = values[..., :n + ky - 1, :]
        rows(source, top, top + n)
        bad = ~np.isfinite(source)
        if nodata is not None:
            bad |= source == nodata
        np.copyto(source, dtype(invalid), where=bad)
        check = whole[..., :n + ky - 1, :]
        np.floor(source, out=check)
        if not np.array_equal(check, source) or \
                max(abs(float(source.max())), abs(float(source.min()))) >= limit:
            return False  # fractions, or sums too large to be exact in this dtype
        sums = column[..., :n, :]
        _shifted_sum(source, ky, n, -2, sums)
        strip = out[..., top:top + n, :]
        _shifted_sum(sums, kx, width, -1, strip)
        if weight != 1:
            strip *= dtype(weight)
        if factor != 1:
            strip *= dtype(factor)
    return True


def _box_map(arr: da.Array, weights: np.ndarray, border: float, block: dict[str, Any]
             ) -> da.Array:
    """apply_kernel with a box kernel and a constant border over a dask array whose chunks are
    at least the halo: one task per chunk, given the chunk and the edges of its neighbours
    (the border value beyond the array), whose strips are copied straight from those pieces
    (map_overlap first concatenated each chunk with its halo: a copy of the whole chunk)."""
    hy, hx = weights.shape[0] // 2, weights.shape[1] // 2
    ny, nx = arr.numblocks[-2:]
    name = "apply_kernel-" + tokenize(arr.name, weights, border, block)
    halo = name + "-halo"
    dsk: dict[Any, Any] = {}
    for index in np.ndindex(*arr.numblocks):
        lead, iy, ix = index[:-2], index[-2], index[-1]
        pieces: list[list[Any]] = []
        for dy in (-1, 0, 1):
            row: list[Any] = []
            for dx in (-1, 0, 1):
                jy, jx = iy + dy, ix + dx
                if not (0 <= jy < ny and 0 <= jx < nx) or (dy and not hy) or (dx and not hx):
                    row.append(None)
                    continue
                source = (arr.name, *lead, jy, jx)
                if dy == dx == 0:
                    row.append(source)
                    continue
                ys = slice(-hy, None) if dy < 0 else slice(0, hy) if dy > 0 else slice(None)
                xs = slice(-hx, None) if dx < 0 else slice(0, hx) if dx > 0 else slice(None)
                key = (halo, *index, dy, dx)
                dsk[key] = (operator.getitem, source, (Ellipsis, ys, xs))
                row.append(key)
            pieces.append(row)
        dsk[(name, *index)] = (_box_task, pieces, weights, border, block)
    graph = HighLevelGraph.from_collections(name, dsk, dependencies=[arr])
    return da.Array(graph, name, arr.chunks, dtype=arr.dtype)


def _box_task(pieces: list[list[np.ndarray | None]], weights: np.ndarray, border: float,
              block: dict[str, Any]) -> np.ndarray:
    """One chunk of `_box_map`: by `_box_sums`, else (fractions) by `_kernel_block` on the
    chunk with its halo, as map_overlap gives it."""
    core = pieces[1][1]
    assert core is not None
    hy, hx = weights.shape[0] // 2, weights.shape[1] // 2
    height, width = core.shape[-2:]
    bands = ((pieces[0], -hy, 0, hy), (pieces[1], 0, height, 0), (pieces[2], height,
                                                                   height + hy, -height))
    columns = ((0, hx), (hx, hx + width), (hx + width, width + 2 * hx))

    def rows(target: np.ndarray, first: int, stop: int) -> None:
        """Rows first - hy .. stop + hy of the padded chunk into target."""
        first, stop = first - hy, stop + hy
        for row, low, high, offset in bands:
            a, b = max(first, low), min(stop, high)
            if a >= b:
                continue
            for piece, (left, right) in zip(row, columns):
                if left == right:
                    continue
                part = target[..., a - first:b - first, left:right]
                if piece is None:
                    part[...] = border
                else:
                    part[...] = piece[..., a + offset:b + offset, :]

    out = np.empty_like(core)
    if block["method"] == "box" and _box_sums(rows, out, weights.shape, block["parts"],
                                                block["factor"], block["invalid"],
                                                block["nodata"]):
        return out
    padded = np.empty(core.shape[:-2] + (height + 2 * hy, width + 2 * hx), core.dtype)
    rows(padded, 0, height)
    return _kernel_block(padded, weights, block["factor"], block["invalid"], block["nodata"],
                         *_general_method(weights))[..., hy:hy + height, hx:hx + width]


def _shifted_sum(values: np.ndarray, k: int, n: int, axis: int, out: np.ndarray) -> None:
    """out = the sum of the k views of `values` shifted by 0 .. k-1 along `axis` (n long)."""
    def view(i: int) -> np.ndarray:
        index: list[Any] = [slice(None)] * values.ndim
        index[axis] = slice(i, i + n)
        return values[tuple(index)]

    if k == 1:
        np.copyto(out, view(0))
        return
    np.add(view(0), view(1), out=out)
    for i in range(2, k):
        out += view(i)


def _correlate(block: np.ndarray, weights: np.ndarray, method: str, parts: Any) -> np.ndarray:
    """The zero-padded correlation of the last two axes of `block` with the 2-D `weights`
    (any leading axes are correlated one by one), in the block's dtype."""
    if method == "box":
        method, parts = _general_method(weights)
    if method == "direct":
        full = np.reshape(weights, (1,) * (block.ndim - 2) + weights.shape)
        return scipy.ndimage.correlate(block, full, mode="constant", cval=0.0)
    if method == "separable":
        column, row = parts
        # zero padding in each 1-D pass is the zero padding of the 2-D correlation
        out = scipy.ndimage.correlate1d(block, row, axis=-1, mode="constant", cval=0.0)
        return scipy.ndimage.correlate1d(out, column, axis=-2, mode="constant", cval=0.0)
    # correlation = convolution with the flipped kernel; float64 keeps the FFT's rounding
    # far below float32's
    flipped = np.reshape(weights[::-1, ::-1], (1,) * (block.ndim - 2) + weights.shape)
    out = scipy.signal.fftconvolve(block.astype(np.float64, copy=False), flipped,
                                   mode="same", axes=(-2, -1))
    return out.astype(block.dtype, copy=False)


def _kernel_block(block: np.ndarray, weights: np.ndarray, factor: float, invalid: float,
                  nodata: float | None, method: str = "direct", parts: Any = None
                  ) -> np.ndarray:
    """apply_kernel on one chunk with its halo: NaN, infinities and no-data become
    `invalid` (spec), then the weighted sum, times the factor (in float, so 1/9 is kept)."""
    if method == "box":
        boxed = _box_block(block, weights.shape, parts, factor, invalid, nodata)
        if boxed is not None:
            return boxed
    bad = ~np.isfinite(block)
    if nodata is not None:
        bad |= block == nodata
    if bad.any():
        block = np.where(bad, block.dtype.type(invalid), block)
    out = _correlate(block, weights, method, parts)
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
    number_argument(replace_invalid, "replace_invalid")
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
    method, parts = _kernel_method(weights)
    block = {"weights": weights, "factor": float(factor), "invalid": float(replace_invalid),
             "nodata": nodata, "method": method, "parts": parts}
    small = any(c < h for i, h in ((lead, hy), (lead + 1, hx)) for c in arr.chunks[i])
    if method == "box" and pad_kw["mode"] == "constant" and not small and \
            np.issubdtype(work, np.floating):
        core = _box_map(arr, weights, pad_kw["constant_values"], block)
    elif pad_kw["mode"] == "constant" and not small:
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


# Period names some CDSE notebooks give as a temporal window size (e.g. the rank-composites
# example's {"dimension": "t", "value": "month"}); read as the one-unit duration.
_PERIOD_NAMES = {"day": "P1D", "week": "P1W", "month": "P1M", "year": "P1Y"}


def _duration(value: str, argument: str) -> pd.DateOffset:
    m = _DURATION.match(_PERIOD_NAMES.get(value, value))
    if not m:
        raise errors.ProcessParameterInvalid(
            f"{value!r} is not an ISO 8601 duration such as P10D (or one of "
            f"{', '.join(_PERIOD_NAMES)}).", argument=argument)
    y, mo, w, d, h, mi, s = m.groups()
    seconds = float(s or 0)
    return pd.DateOffset(years=int(y or 0), months=int(mo or 0), weeks=int(w or 0),
                         days=int(d or 0), hours=int(h or 0), minutes=int(mi or 0),
                         seconds=int(seconds),
                         microseconds=int(round((seconds - int(seconds)) * 1e6)))


def _period_start(first: pd.Timestamp, name: str | None) -> pd.Timestamp:
    """Where the windows of a period name begin: the calendar day, month or year (a week on
    the Sunday) that holds the first label, as CDSE's windows do (its rank-composites example
    loads from 2022-06-04 and compares the dates of each calendar month); a duration (P1M)
    starts at the first label."""
    day = first.normalize()
    if name == "month":
        return day.replace(day=1)
    if name == "year":
        return day.replace(month=1, day=1)
    if name == "week":
        return day - pd.Timedelta(days=(day.dayofweek + 1) % 7)
    return day if name == "day" else first


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
        list[tuple[int, ...]], list[int], list[int | None]]:
    """Per dimension: the sizes of the windows along it, the overlap (both in pixels) and the
    size asked for in pixels (None where not given as a number)."""
    sizes: dict[str, Any] = {}
    period_names: dict[str, str] = {}
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
                    if value in _PERIOD_NAMES:
                        period_names[dim.name] = value
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
            edges, start = [], _period_start(times.min(), period_names.get(d.name))
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
    asked = [sizes.get(d.name) if isinstance(sizes.get(d.name), int) else None
             for d in cube.dimensions]
    return chunks, depth, asked


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


def callback_cube(value: Any, expected: xr.DataArray, argument: str = "process") -> xr.DataArray:
    value = unwrap_data(value)
    if not isinstance(value, xr.DataArray):
        raise DataCubePropertiesImmutable(
            f"The {argument} must return a data cube, not {type(value).__name__}.",
            argument=argument)
    if set(value.dims) != set(expected.dims):
        shown = [("an array" if str(d).startswith("__") else str(d)) for d in value.dims]
        raise DataCubePropertiesImmutable(
            f"The {argument} changed the dimensions from {list(map(str, expected.dims))} to "
            f"{shown}.", argument=argument)
    value = value.transpose(*expected.dims)
    if value.shape != expected.shape:
        raise DataCubePropertiesImmutable(
            f"The {argument} changed the number of labels from {dict(expected.sizes)} to "
            f"{dict(value.sizes)}.", argument=argument)
    return value


def _neighbourhood_result(value: Any, piece: xr.DataArray,
                          spatial: set[str]) -> tuple[xr.DataArray, dict[str, Fraction]]:
    """The callback's result for one neighbourhood, in the piece's dimension order, and how
    many times the piece's pixels it has along each spatial dimension that changed. Only a
    cube a UDF returned (another resolution or other bands, declared by its apply_metadata or
    seen in its first result) may differ from the piece in size; a process graph keeps the
    sizes (callback_cube)."""
    if not isinstance(value, RasterCube) or set(value.data.dims) != set(piece.dims):
        return callback_cube(value, piece), {}
    out = value.data.transpose(*piece.dims)
    scale, relabelled = size_change(piece, out, spatial)
    if any(labels is None for labels in relabelled.values()):  # other sizes, no labels
        return callback_cube(value, piece), {}
    return out, scale


def _labels_after(first: xr.DataArray, scale: dict[str, Fraction], values: xr.DataArray,
                  whole: set[Any]) -> tuple[dict[Any, Any], list[Any]]:
    """Coordinates of apply_neighborhood's result but those of scaled dimensions: of the
    dimensions every neighbourhood has `whole` that the callback relabelled, from its first
    result; the others from the input. And the dimensions whose labels changed."""
    coords, changed = {}, []
    for d in values.dims:
        if d in scale or d not in values.coords:
            continue
        if d in whole and d in first.coords and (
                first.sizes[d] != values.sizes[d] or not np.array_equal(
                np.asarray(first.coords[d].values), np.asarray(values.coords[d].values))):
            coords[d] = first.coords[d].values
            changed.append(d)
        else:
            coords[d] = values.coords[d].values
    return coords, changed


def _finished(data: RasterCube, out: xr.DataArray, scale: dict[str, Fraction],
              changed: list[Any]) -> RasterCube:
    """apply_neighborhood's result cube: the grid scaled where the callback changed the
    resolution, the band metadata of relabelled bands."""
    cube = with_scaled_grid(data, out, dict(scale)) if scale else data.with_data(out)
    for d in changed:
        if (dim := data.dim(str(d))) is not None and dim.type == BANDS:
            cube = with_bands(cube, [str(v) for v in out.coords[d].values])
    return cube


@process("apply_neighborhood")
def apply_neighborhood(data: RasterCube, process: Callback, size: list,
                       overlap: list | None = None, context: Any = None) -> RasterCube:
    spatial_dims(data)
    chunks, depth, asked = _neighbourhood_chunks(data, size, overlap)
    dims = list(data.data.dims)
    sizes = [data.data.sizes[d] for d in dims]
    whole = [len(c) == 1 for c in chunks]
    spatial = {d.name for d in data.dimensions if d.type == SPATIAL}
    # A UDF gets every neighbourhood at the full size asked for, the part beyond the cube
    # no-data (as CDSE cuts the cube into tiles of that size): models with a fixed input
    # size, and UDFs such as the client docs' example that assume square pieces, work at
    # the edges too. The padding is cut off the result.
    full = [0] * len(dims)
    if getattr(process, "single_process", None) == "run_udf":
        full = [max(0, n - c[-1]) if n is not None and dims[a] in spatial else 0
                for a, (n, c) in enumerate(zip(asked, chunks, strict=True))]
    if all(whole) and not any(depth) and not any(full):
        # One neighbourhood holds everything: a single call on the whole lazy cube.
        with udf_whole_pieces():
            out, scale = _neighbourhood_result(process(data=data, context=context), data.data,
                                               spatial)
        coords, changed = _labels_after(out, scale, data.data, set(data.data.dims))
        if not scale and not changed:
            return data.with_data(out.assign_coords(data.data.coords))
        out = out.drop_vars(list(out.coords)).assign_coords(coords)
        return _finished(data, out, scale, changed)
    long = [i for i, c in enumerate(chunks) if max(c) > 1 or depth[i]]
    one_dimensional = len(long) == 1 and len(dims) > 1
    if one_dimensional:
        # Neighbourhoods of one pixel along all other dimensions are labelled arrays along
        # the remaining one: each window of it is one vectorised call over all pixels.
        chunks = [c if i == long[0] else (sizes[i],) for i, c in enumerate(chunks)]

    values = data.data
    fill: Any = np.nan
    if (any(depth) or any(full)) and not np.issubdtype(values.dtype, np.floating):
        if data.nodata is not None and np.issubdtype(values.dtype, np.integer):
            fill = data.nodata
        else:
            values = values.astype(np.float64)
    arr = as_dask(values)
    padded = da.pad(arr, [(p, p + e) for p, e in zip(depth, full, strict=True)],
                    mode="constant", constant_values=fill) if any(depth) or any(full) else arr
    label_arrays = {d: np.asarray(values.coords[d].values) for d in dims if d in values.coords}
    starts = [np.cumsum((0, *c)) for c in chunks]
    blocks: dict[tuple[int, ...], da.Array] = {}
    first: xr.DataArray | None = None
    scale: dict[str, Fraction] = {}
    relabelled: set[Any] = set()  # dimensions whose labels the callback changed
    for idx in np.ndindex(*[len(c) for c in chunks]):
        lo = [int(starts[a][i]) for a, i in enumerate(idx)]
        hi = [lo[a] + chunks[a][i] for a, i in enumerate(idx)]
        # the window at its full size where the edge of the cube cuts it (see `full`)
        end = [max(hi[a], lo[a] + (asked[a] or 0)) if full[a] else hi[a]
               for a in range(len(dims))]
        window = tuple(slice(lo[a], end[a] + 2 * depth[a]) for a in range(len(dims)))
        coords = {d: _extended_labels(label_arrays[d], lo[a] - depth[a], end[a] + depth[a])
                  for a, d in enumerate(dims) if d in label_arrays}
        piece = xr.DataArray(padded[window], dims=dims, coords=coords)
        argument = ArrayValue(piece, dims[long[0]], labeled=True) if one_dimensional \
            else data.with_data(piece)
        with udf_whole_pieces():  # a UDF gets the neighbourhood with its overlap in one call
            value = process(data=argument, context=context)
        result, piece_scale = _neighbourhood_result(value, piece, spatial) \
            if not one_dimensional else (callback_cube(value, piece), {})
        if first is None:
            first, scale = result, piece_scale
            relabelled = {d for d in dims if d not in spatial
                          and result.sizes[d] != piece.sizes[d]}
        if piece_scale != scale or any(
                result.sizes[d] != (first.sizes[d] if d in relabelled else piece.sizes[d])
                for d in dims if d not in spatial):
            raise DataCubePropertiesImmutable(
                f"The process returned {dict(result.sizes)} for a neighbourhood of "
                f"{dict(piece.sizes)}, where the first neighbourhood gave "
                f"{dict(first.sizes)}: every neighbourhood must change the same way.",
                argument="process")
        core = tuple(slice(None) if dims[a] in relabelled
                     else _core(dims[a], depth[a], hi[a] - lo[a], scale)
                     for a in range(len(dims)))
        blocks[idx] = as_dask(result)[core]
    dtypes = {b.dtype for b in blocks.values()}
    if len(dtypes) > 1:
        common = np.result_type(*dtypes)
        blocks = {k: b.astype(common) for k, b in blocks.items()}
    out = assemble_blocks(blocks, [len(c) for c in chunks])
    whole_dims = {d for d, c, p in zip(dims, chunks, depth, strict=True)
                  if len(c) == 1 and not p and d not in spatial}
    coords, changed = _labels_after(first, scale, values, whole_dims) if first is not None \
        else ({}, [])
    if not scale and not changed:
        assert tuple(out.shape) == tuple(sizes)
        return data.with_data(xr.DataArray(out, dims=dims, coords=values.coords,
                                           attrs=dict(data.data.attrs)))
    return _finished(data, xr.DataArray(out, dims=dims, coords=coords,
                                        attrs=dict(data.data.attrs)), scale, changed)


def _core(dim: Any, depth: int, length: int, scale: dict[str, Fraction]) -> slice:
    """The part of a neighbourhood's result without its overlap (and the padding of a window
    cut by the cube's edge): the overlap and the neighbourhood's length scaled like the
    result's pixels (a UDF that doubles the resolution returns 2 x overlap on each side)."""
    factor = scale.get(str(dim), Fraction(1))
    start, stop = depth * factor, (depth + length) * factor
    if start.denominator != 1 or stop.denominator != 1:
        raise DataCubePropertiesImmutable(
            f"The process returned {factor} times the pixels of the neighbourhood along "
            f"'{dim}': its overlap of {depth} and size of {length} pixels do not become whole "
            f"pixels; choose sizes and overlaps that do.", argument="process")
    return slice(int(start), int(stop))


# --- spatial reductions -----------------------------------------------------------------------
PIXELS = "__pixels__"


def stack_pixels(values: xr.DataArray, ydim: str, xdim: str) -> xr.DataArray:
    others = [d for d in values.dims if d not in (ydim, xdim)]
    stacked = values.transpose(*others, ydim, xdim).stack({PIXELS: (ydim, xdim)},
                                                            create_index=False)
    return stacked.drop_vars([c for c in (ydim, xdim) if c in stacked.coords])


@process("reduce_spatial")
def reduce_spatial(data: RasterCube, reducer: Callback, context: Any = None) -> RasterCube:
    ydim, xdim = spatial_dims(data)
    stacked = stack_pixels(data.data, ydim, xdim)
    template = xr.zeros_like(stacked.isel({PIXELS: 0}, drop=True)) if stacked.sizes[PIXELS] \
        else stacked.sum(PIXELS)
    value = reducer(data=ArrayValue(stacked, PIXELS), context=context)
    out = reducer_output(value, drop_dim_coords(template, PIXELS), PIXELS)
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
    stacked = windows.stack({PIXELS: ("__wy__", "__wx__")}, create_index=False)
    template = xr.zeros_like(stacked.isel({PIXELS: 0}, drop=True))
    value = reducer(data=ArrayValue(stacked, PIXELS), context=context)
    out = reducer_output(value, drop_dim_coords(template, PIXELS), PIXELS)
    cx, cy = out.sizes[xdim], out.sizes[ydim]
    x_offset = 0 if x_from_start else nx - cx * sx
    y_offset = 0 if y_from_start else ny - cy * sy
    xs = _window_centres(grid.x_coords(), grid.transform.a, sx, x_offset, cx)
    ys = _window_centres(grid.y_coords(), grid.transform.e, sy, y_offset, cy)
    out = out.assign_coords({xdim: xs, ydim: ys}).transpose(*data.data.dims)
    return data.with_data(out)
