"""Reading local raster files that already lie on the grid of a load, chunk by chunk.

The common case on a server next to its data: a load in the files' own CRS and resolution
(any bbox), one file per band and date. Then no warping is needed and a chunk is one
windowed read. This reader does that with the dataset kept open per thread (opening a COG and
setting up GDAL costs about as much as decoding a 512² tile), casts to float32 and marks
no-data as NaN in the same task, so the band math that follows fuses into it. Everything
else (other CRS or resolution, several files per date, remote files, multi-band assets) goes
through odc-stac.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import unquote, urlparse

import dask.array as da
import numpy as np
import pandas as pd
import pystac
import rasterio
from dask.base import tokenize
from rasterio.windows import Window

from terracube.catalog.tiff_tiles import open_tiled
from terracube.datacube.band_reads import (
    BAND_READS,
    BandReads,
    Block,
    IntBand,
    typed_nodata,
)

# Idle open datasets, shared by the threads of a process: a thread takes one for a read and
# gives it back (a rasterio dataset must not be used by two threads at once). Bounded in
# number, least recently used paths closed first; a graph reading chunk by chunk across many
# dates cycles through all its files, so the bound is generous (file descriptors are cheap).
_MAX_IDLE = 512
_idle: OrderedDict[tuple, list] = OrderedDict()
_idle_count = 0
_lock = threading.Lock()
# GDAL keeps decoded blocks of open datasets in its block cache (default 5 % of the RAM);
# every block is read once here, so a large cache only holds memory. GDAL_CACHEMAX in the
# environment wins.
_GDAL_CACHE_MB = 256
_cache_limited = threading.Event()


def _limit_gdal_cache() -> None:
    if not _cache_limited.is_set():
        if "GDAL_CACHEMAX" not in os.environ:
            from rasterio.env import set_gdal_config

            set_gdal_config("GDAL_CACHEMAX", _GDAL_CACHE_MB)
        _cache_limited.set()


@contextmanager
def _dataset(path: str) -> Iterator[rasterio.io.DatasetReader]:
    global _idle_count
    _limit_gdal_cache()
    stat = os.stat(path)
    key = (path, stat.st_mtime_ns, stat.st_size)  # a replaced file is opened again
    with _lock:
        free = _idle.get(key)
        ds = free.pop() if free else None
        if ds is not None:
            _idle_count -= 1
    if ds is None:
        ds = rasterio.open(path)
    try:
        yield ds
    finally:
        closing = []
        with _lock:
            _idle.setdefault(key, []).append(ds)
            _idle.move_to_end(key)
            _idle_count += 1
            while _idle_count > _MAX_IDLE:
                _, old = _idle.popitem(last=False)
                _idle_count -= len(old)
                closing += old
        for old in closing:
            old.close()


def _read_part(path: str, rows: tuple[int, int], cols: tuple[int, int],
               factor: int) -> tuple[np.ndarray, tuple[slice, slice]] | None:
    """The file's values in a window of the load's pixels: the part inside the file and
    where it lies in the window (None: the window is outside the file). The load's pixels
    are `factor` times finer than the file's (nearest neighbour: each file pixel repeated)."""
    # the window in file pixels
    fr0, fr1 = rows[0] // factor, -(-rows[1] // factor)
    fc0, fc1 = cols[0] // factor, -(-cols[1] // factor)
    tiled = open_tiled(path)
    if tiled is not None:  # decoded here, the same values as GDAL's (tiff_tiles.py)
        r0, r1 = max(fr0, 0), min(fr1, tiled.height)
        c0, c1 = max(fc0, 0), min(fc1, tiled.width)
        if r0 >= r1 or c0 >= c1:
            return None
        raw = tiled.read(r0, r1, c0, c1)
    else:
        with _dataset(path) as ds:
            r0, r1 = max(fr0, 0), min(fr1, ds.height)
            c0, c1 = max(fc0, 0), min(fc1, ds.width)
            if r0 >= r1 or c0 >= c1:
                return None
            raw = ds.read(1, window=Window(c0, r0, c1 - c0, r1 - r0))
    if factor > 1:
        raw = np.repeat(np.repeat(raw, factor, axis=0), factor, axis=1)
    # where the file's part starts and ends, in the load's pixels
    y0, x0 = r0 * factor - rows[0], c0 * factor - cols[0]
    sy, sx = max(-y0, 0), max(-x0, 0)
    h = min(raw.shape[0] - sy, rows[1] - rows[0] - max(y0, 0))
    w = min(raw.shape[1] - sx, cols[1] - cols[0] - max(x0, 0))
    target = (slice(max(y0, 0), max(y0, 0) + h), slice(max(x0, 0), max(x0, 0) + w))
    return raw[sy:sy + h, sx:sx + w], target


def nodata_where(part: np.ndarray, nodata: float | None) -> np.ndarray | None:
    """Where `part` holds the no-data value; None where it holds none (most blocks).

    Compared in the block's own type (`band_reads.typed_nodata`), and for integers only
    when the value lies between the block's minimum and maximum (0.1 ms each): files
    without no-data pixels, like most reflectance tiles, then cost no comparison at all."""
    value = typed_nodata(part.dtype, nodata)
    if value is None or part.size == 0:
        return None
    if part.dtype.kind in "iu":
        low, high = part.min(), part.max()
        if not low <= value <= high:
            return None
        invalid = part == value
        return invalid if value in (low, high) or invalid.any() else None
    invalid = part == value
    return invalid if invalid.any() else None


def read_window(path: str, rows: tuple[int, int], cols: tuple[int, int],
                nodata: float | None, factor: int = 1) -> np.ndarray:
    """Band 1 of a file in a window of the load's pixels, as float32 with no-data as NaN,
    shape (1, 1, rows, cols). The load's pixels are `factor` times finer than the file's
    (nearest neighbour: each file pixel repeated); the window may reach beyond the file
    (NaN there)."""
    shape = (1, 1, rows[1] - rows[0], cols[1] - cols[0])
    found = _read_part(path, rows, cols, factor)
    if found is None:
        return np.full(shape, np.nan, dtype=np.float32)
    part, (ys, xs) = found
    inside = part.shape == shape[2:]
    out = np.empty(shape, np.float32) if inside else np.full(shape, np.nan, np.float32)
    target = out[0, 0, ys, xs]
    np.copyto(target, part, casting="unsafe")  # cast in place: no float copy of the block
    invalid = nodata_where(part, nodata)
    if invalid is not None:  # putmask costs 3 ms per 2048² block even with nothing to set
        np.putmask(target, invalid, np.nan)
    return out


def read_band(path: str, rows: tuple[int, int], cols: tuple[int, int],
              nodata: float | None, factor: int = 1) -> Block:
    """The same window as `read_window`, shape (rows, cols): for files of integers of at
    most 16 bits their values with where they are invalid (no-data, outside the file), for
    others float32 with NaN (read_window's)."""
    shape = (rows[1] - rows[0], cols[1] - cols[0])
    found = _read_part(path, rows, cols, factor)
    if found is None or found[0].dtype.kind not in "iu" or found[0].dtype.itemsize > 2:
        return read_window(path, rows, cols, nodata, factor)[0, 0]
    part, (ys, xs) = found
    found_invalid = nodata_where(part, nodata)
    if part.shape == shape:
        return IntBand(part, found_invalid)
    values = np.zeros(shape, part.dtype)
    values[ys, xs] = part
    invalid = np.ones(shape, bool)
    invalid[ys, xs] = False if found_invalid is None else found_invalid
    return IntBand(values, invalid)


class _AlignedReads:
    """`BandReads.read` of an aligned load: block (t, band, yi, xi) by `read_band`."""

    def __init__(self, reads: list[list[tuple[str, int, int, int]]], bands: Sequence[str],
                 nodata: dict[str, float | None], ysplits: list[tuple[int, int]],
                 xsplits: list[tuple[int, int]]) -> None:
        self.reads, self.bands, self.nodata = reads, list(bands), nodata
        self.ysplits, self.xsplits = ysplits, xsplits

    def __call__(self, t: int, band: int, yi: int, xi: int) -> Block:
        path, r_off, c_off, factor = self.reads[t][band]
        (y0, y1), (x0, x1) = self.ysplits[yi], self.xsplits[xi]
        return read_band(path, (r_off + y0, r_off + y1), (c_off + x0, c_off + x1),
                         self.nodata[self.bands[band]], factor)


def _local_path(asset: pystac.Asset) -> str | None:
    href = asset.get_absolute_href() or asset.href
    parsed = urlparse(href)
    if parsed.scheme == "file":
        href = unquote(parsed.path)
    elif parsed.scheme and len(parsed.scheme) > 1:  # http(s), s3, … (a drive letter is 1)
        return None
    return href if os.path.isfile(href) else None


def _proj(item: pystac.Item, asset: pystac.Asset, key: str) -> Any:
    return asset.extra_fields.get(key, item.properties.get(key))


def _offset(item: pystac.Item, asset: pystac.Asset,
            geobox: Any) -> tuple[int, int, int] | None:
    """(row, col, factor): the geobox's first pixel in the file's grid refined `factor` times,
    when the geobox's pixels subdivide the file's (same CRS, file resolution an integer
    multiple of the load's, lattices aligned)."""
    tr = _proj(item, asset, "proj:transform")
    shape = _proj(item, asset, "proj:shape")
    epsg = _proj(item, asset, "proj:epsg")
    code = _proj(item, asset, "proj:code")  # projection extension v2 (pystac migrates to it)
    if epsg is None and isinstance(code, str) and code.upper().startswith("EPSG:"):
        epsg = code[5:]
    bands = asset.extra_fields.get("raster:bands")
    if not tr or not shape or (bands and len(bands) > 1):
        return None
    if epsg is None or geobox.crs.epsg != int(epsg):
        return None
    g = geobox.transform
    if tr[1] or tr[3] or g.b or g.d or g.a <= 0 or g.e >= 0 or tr[0] <= 0 or tr[4] >= 0:
        return None
    factor = round(tr[0] / g.a)
    if factor < 1 or not np.isclose(tr[0], factor * g.a, rtol=1e-9) or \
            not np.isclose(tr[4], factor * g.e, rtol=1e-9):
        return None
    col = (g.c - tr[2]) / g.a
    row = (g.f - tr[5]) / g.e
    if abs(col - round(col)) > 1e-6 or abs(row - round(row)) > 1e-6:
        return None
    return round(row), round(col), factor


def _splits(size: int, step: int) -> list[tuple[int, int]]:
    return [(i, min(i + step, size)) for i in range(0, size, step)]


def load_aligned(items: Sequence[pystac.Item], bands: Sequence[str],
                 nodata: dict[str, float | None], geobox: Any, chunk: int) -> Any:
    """A lazy (t, bands, y, x) float32 DataArray read straight from local files, or None
    when the items do not qualify (then odc-stac loads them). Its attrs hold the
    `BandReads` of its blocks (under BAND_READS), for the cube's attrs."""
    import xarray as xr
    from odc.geo.xr import xr_coords

    times = pd.DatetimeIndex([pd.Timestamp(it.datetime) for it in items])
    if times.tz is not None:
        times = times.tz_convert("UTC").tz_localize(None)
    if times.has_duplicates:  # several items per date are fused by odc-stac
        return None
    reads: list[list[tuple[str, int, int, int]]] = []
    for item in items:
        row = []
        for band in bands:
            asset = item.assets.get(band)
            if asset is None:
                return None
            path = _local_path(asset)
            offset = _offset(item, asset, geobox) if path else None
            if offset is None:
                return None
            row.append((path, *offset))
        reads.append(row)
    height, width = geobox.shape.y, geobox.shape.x
    ysplits, xsplits = _splits(height, chunk), _splits(width, chunk)
    name = "read-aligned-" + tokenize(reads, list(bands), nodata, height, width, chunk)
    graph: dict = {}
    for ti, row in enumerate(reads):
        for bi, (path, r_off, c_off, factor) in enumerate(row):
            for yi, (y0, y1) in enumerate(ysplits):
                for xi, (x0, x1) in enumerate(xsplits):
                    graph[(name, ti, bi, yi, xi)] = (
                        read_window, path, (r_off + y0, r_off + y1), (c_off + x0, c_off + x1),
                        nodata[bands[bi]], factor)
    chunks = ((1,) * len(items), (1,) * len(bands), tuple(b - a for a, b in ysplits),
              tuple(b - a for a, b in xsplits))
    arr = da.Array(graph, name, chunks=chunks, dtype=np.float32)
    reads_of_bands = BandReads(name, arr.chunks,
                               _AlignedReads(reads, bands, nodata, ysplits, xsplits))
    coords = xr_coords(geobox)
    # odc-geo names the axes of a geographic grid latitude/longitude; the cube's are y/x.
    ydim, xdim = geobox.dimensions
    return xr.DataArray(arr, dims=("t", "bands", "y", "x"),
                        coords={"t": times.values, "bands": list(bands),
                                "y": coords[ydim].values, "x": coords[xdim].values},
                        attrs={BAND_READS: reads_of_bands})
