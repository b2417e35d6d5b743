"""Windows of local tiled GeoTIFFs decoded without GDAL, for the common layout of EO files.

Sentinel-2-like COGs are tiles of 8-32-bit integers compressed with deflate, most with the
horizontal-difference predictor. Read through GDAL, a 4096² uint16 file took ~100 ms of CPU:
~70 ms inflating (libdeflate) and ~30 ms undoing the predictor one value at a time and
copying the tiles out of GDAL's block cache. Here a window is inflated with libdeflate too
(the `deflate` package, without the GIL) and the predictor is undone by a compiled loop
straight into the window, ~76 ms per such file: decoding is most of a large load's CPU (W1
large: 72 files, 7.2 of 10 CPU-s).

Only what is bit for bit the same as GDAL's read of band 1: tiled, one sample per pixel,
little-endian, no compression or deflate, no predictor or the horizontal one (integers),
whole bytes per value. Anything else (strips, LZW, ZSTD, JPEG, the floating-point predictor,
several bands per pixel...) returns None and the caller reads through GDAL.
`TERRACUBE_TIFF_DECODER=gdal` turns this reader off.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np

_NONE, _DEFLATE, _DEFLATE_OLD = 1, 8, 32946  # TIFF Compression
_NO_PREDICTOR, _HORIZONTAL = 1, 2  # TIFF Predictor
_GDAL_NODATA = 42113
_SUPPORTED_TYPES = {np.dtype(t) for t in ("uint8", "int8", "uint16", "int16", "uint32",
                                          "int32", "float32", "float64")}
_MAX_LAYOUTS = 4096  # parsed headers kept, least recently used dropped first
_layouts: OrderedDict[tuple, TiledFile | None] = OrderedDict()
_lock = threading.Lock()


class TiledFile:
    """Where the tiles of a file's first image are, and how to decode them."""

    def __init__(self, path: str, page: Any) -> None:
        self.path = path
        self.width, self.height = int(page.imagewidth), int(page.imagelength)
        self.tile_width, self.tile_length = int(page.tilewidth), int(page.tilelength)
        self.dtype = np.dtype(page.dtype)
        self.compression = int(page.compression)
        self.predictor = int(page.predictor)
        self.offsets = np.asarray(page.dataoffsets, dtype=np.int64)
        self.byte_counts = np.asarray(page.databytecounts, dtype=np.int64)
        self.tiles_across = -(-self.width // self.tile_width)
        # GDAL fills a tile that is not in the file (sparse) with the no-data value, else 0
        nodata = page.tags.get(_GDAL_NODATA)
        self.fill = _fill_value(nodata.value if nodata is not None else None, self.dtype)

    def read(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        """Rows r0..r1 and columns c0..c1 (inside the image) as the file's type."""
        out = np.empty((r1 - r0, c1 - c0), self.dtype)
        tw, tl = self.tile_width, self.tile_length
        tile_bytes = tw * tl * self.dtype.itemsize
        place = _kernels()[self.predictor == _HORIZONTAL]
        fd = os.open(self.path, os.O_RDONLY)
        try:
            for ty in range(r0 // tl, -(-r1 // tl)):
                for tx in range(c0 // tw, -(-c1 // tw)):
                    # the part of this tile in the window, in tile and in window pixels
                    y0, y1 = max(r0 - ty * tl, 0), min(r1 - ty * tl, tl)
                    x0, x1 = max(c0 - tx * tw, 0), min(c1 - tx * tw, tw)
                    oy, ox = ty * tl + y0 - r0, tx * tw + x0 - c0
                    index = ty * self.tiles_across + tx
                    size = int(self.byte_counts[index])
                    if size == 0:
                        out[oy:oy + y1 - y0, ox:ox + x1 - x0] = self.fill
                        continue
                    data: bytes | bytearray = os.pread(fd, size, int(self.offsets[index]))
                    if len(data) != size:
                        raise OSError(f"{self.path}: tile {index} is cut short")
                    if self.compression != _NONE:
                        import deflate

                        data = deflate.zlib_decompress(data, tile_bytes)
                    tile = np.frombuffer(data, self.dtype, tw * tl).reshape(tl, tw)
                    place(tile, out, y0, y1, x0, x1, oy, ox)
        finally:
            os.close(fd)
        return out


def open_tiled(path: str) -> TiledFile | None:
    """The file's tile layout if this module decodes it exactly as GDAL would, else None
    (also for a file tifffile cannot parse: GDAL then says what is wrong with it)."""
    if os.environ.get("TERRACUBE_TIFF_DECODER", "").lower() == "gdal":
        return None
    try:
        stat = os.stat(path)
    except OSError:
        return None
    key = (path, stat.st_mtime_ns, stat.st_size)  # a replaced file is parsed again
    with _lock:
        if key in _layouts:
            _layouts.move_to_end(key)
            return _layouts[key]
    layout = _parse(path)
    with _lock:
        _layouts[key] = layout
        while len(_layouts) > _MAX_LAYOUTS:
            _layouts.popitem(last=False)
    return layout


def _parse(path: str) -> TiledFile | None:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages.first
            if tif.byteorder != "<" or not _decodable(page):
                return None
            return TiledFile(path, page)
    except Exception:  # not a TIFF tifffile reads: let GDAL open it (and explain)
        return None


def _decodable(page: Any) -> bool:
    try:
        dtype = np.dtype(page.dtype)
    except TypeError:  # e.g. 12-bit values: no numpy type
        return False
    return bool(page.is_tiled and int(page.samplesperpixel) == 1 and
                int(page.imagedepth) == 1 and int(page.fillorder) == 1 and
                dtype in _SUPPORTED_TYPES and
                dtype.itemsize * 8 == int(page.bitspersample) and
                int(page.compression) in (_NONE, _DEFLATE, _DEFLATE_OLD) and
                (int(page.predictor) == _NO_PREDICTOR or
                 (int(page.predictor) == _HORIZONTAL and dtype.kind in "iu")) and
                len(page.dataoffsets) == len(page.databytecounts) ==
                -(-int(page.imagewidth) // int(page.tilewidth)) *
                -(-int(page.imagelength) // int(page.tilelength)))


def _fill_value(text: str | None, dtype: np.dtype) -> Any:
    if text is None:
        return 0
    try:
        value = float(str(text).strip("\x00 "))
    except ValueError:
        return 0
    if dtype.kind == "f":
        return value
    info = np.iinfo(dtype)
    return int(value) if value.is_integer() and info.min <= value <= info.max else 0


_compiled: list[Callable[..., None]] = []


def warm_up() -> None:
    """Load the compiled loops now (~0.75 s once per process: numba's import and runtime;
    each further type a few ms from numba's cache), so no request waits for them."""
    tile = np.frombuffer(bytes(8), np.uint16).reshape(2, 2)  # read-only, as inflated tiles
    out = np.empty((2, 2), np.uint16)
    for place in _kernels():
        place(tile, out, 0, 2, 0, 2, 0, 0)


def _kernels() -> list[Callable[..., None]]:
    """[copy, undo the horizontal predictor] of a tile's rows y0..y1, columns x0..x1 into
    `out` at (oy, ox): compiled on first use (numba; cached on disk where it may write)."""
    if _compiled:
        return _compiled
    import numba

    @numba.njit(nogil=True, cache=True)
    def copy(tile, out, y0, y1, x0, x1, oy, ox):  # type: ignore[no-untyped-def]
        for i in range(y0, y1):
            for j in range(x0, x1):
                out[oy + i - y0, ox + j - x0] = tile[i, j]

    @numba.njit(nogil=True, cache=True)
    def undo_horizontal(tile, out, y0, y1, x0, x1, oy, ox):  # type: ignore[no-untyped-def]
        # Each row holds differences to its left neighbour: the sums run from the row's
        # first value, wrapping around in the file's type as libtiff's do.
        for i in range(y0, y1):
            total = tile[i, 0]
            if x0 == 0:
                out[oy + i - y0, ox] = total
            for j in range(1, x1):
                total = total + tile[i, j]
                if j >= x0:
                    out[oy + i - y0, ox + j - x0] = total

    with _lock:
        if not _compiled:
            _compiled.extend([copy, undo_horizontal])
    return _compiled
