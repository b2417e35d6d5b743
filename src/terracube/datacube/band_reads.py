"""How the blocks of a loaded cube are read, band by band, before the float32 cast.

A load gives a (t, bands, y, x) float32 cube with no-data as NaN. When the loader reads the
blocks itself (catalog/direct_read.py), it also records here how to read one block of one
band as the file's own integers: a fused callback (engine/fusion.py) then reads the bands it
uses in its own task, compares integer bands with numbers on the integers (SCL == 3 on
uint8) and casts only the bands its arithmetic needs — one task per chunk for the read, the
cast and the band math, and no float32 copy of a band that is only compared.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

# RasterCube.attrs key: the cube's `BandReads`.
BAND_READS = "band_reads"


class IntBand:
    """One block of an integer band as read from its file: `values` (any integer dtype of
    at most 16 bits, so exactly representable in float32) and `invalid`, where the value is
    no-data or outside the file (None: nowhere). `as_float()` is the block as the loaded
    cube holds it: float32, NaN where invalid."""

    def __init__(self, values: np.ndarray, invalid: np.ndarray | None) -> None:
        self.values = values
        self.invalid = invalid
        self._float: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.values.shape)

    def as_float(self) -> np.ndarray:
        if self._float is None:
            out = self.values.astype(np.float32)
            if self.invalid is not None and self.invalid.any():
                np.putmask(out, self.invalid, np.nan)
            self._float = out
        return self._float


Block = IntBand | np.ndarray
"""A block of one band: its integers (IntBand) or float32 values with NaN as no-data."""


@dataclass(frozen=True)
class BandReads:
    """How the (t, bands, y, x) dask array named `name` is read: `read(t, band, yi, xi)` is
    the block (t, band, yi, xi) of that array without its two leading axes, shape
    (rows, cols) — an IntBand for integer files, float32 values otherwise. Valid only while
    a cube still holds that array itself (no process changed it)."""

    name: str
    chunks: tuple[tuple[int, ...], ...]
    read: Callable[[int, int, int, int], Block]

    def matches(self, data: Any) -> bool:
        return getattr(data, "name", None) == self.name and \
            tuple(getattr(data, "chunks", ())) == self.chunks


def typed_nodata(dtype: np.dtype, nodata: float | None) -> Any:
    """The no-data value as a number of `dtype`, to compare blocks of that type with, or
    None where no value of that type equals it. For integer types the comparison then runs
    on the integers: with a Python float numpy casts the block to float64 first (18 ms
    instead of 2.6 per 2048² uint16 block)."""
    if nodata is None or np.isnan(nodata):
        return None
    if np.dtype(dtype).kind not in "iu":
        return nodata
    info = np.iinfo(dtype)
    if not float(nodata).is_integer() or not info.min <= nodata <= info.max:
        return None
    return np.dtype(dtype).type(int(nodata))
