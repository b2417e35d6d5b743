"""CDSE's cloud-mask processes `to_scl_dilation_mask` (a dilated mask from the Sen2Cor scene
classification, SCL) and `mask_scl_dilation` (the older form: a cube masked with the mask of its
own SCL band), computed lazily chunk by chunk with overlapping halos.

The algorithm is the one CDSE documents and runs (openeo-geotrellis-extensions,
`SCLConvolutionFilter`), written anew here:

1. `bad1`: pixels whose SCL is *not* one of `mask1_values` (no-data included); `bad2`: pixels
   whose SCL is one of `mask2_values` (clouds, shadows, cirrus, snow).
2. With `erosion_kernel_size` > 0 both are eroded with a disk of that diameter first (a pixel
   stays flagged only if no unflagged pixel lies in the disk), which drops isolated pixels.
3. Each is convolved with a normalised Gaussian kernel (`kernel1_size` resp. `kernel2_size`
   pixels wide, sigma = size / 6, weights truncated to integers of amplitude 10000 as CDSE
   builds them) and thresholded: > 0.057 for the first, > 0.025 for the second.
4. The mask is their union: 1 (true) masks a pixel, 0 keeps it.

Beyond the edges of the cube nothing is flagged (CDSE reads beyond a request's box; we only
have the cube), so pixels near an edge see fewer flagged neighbours.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import dask.array as da
import numpy as np
import scipy.ndimage
import scipy.signal
import xarray as xr

from terracube import errors
from terracube.datacube.cube import BANDS, RasterCube
from terracube.datacube.grid import as_dask, spatial_dims
from terracube.engine.processes.cubes import mask as mask_cube
from terracube.engine.registry import process

_AMPLITUDE = 10000.0
_THRESHOLD1 = 0.057
_THRESHOLD2 = 0.025


def gaussian_kernel(size: int) -> np.ndarray:
    """The normalised size x size Gaussian of CDSE's dilation (sigma = size / 6, integer
    weights of amplitude 10000 before normalising)."""
    r = size // 2
    offsets = np.arange(-r, r + 1, dtype=np.float64)
    squared = offsets[:, None] ** 2 + offsets[None, :] ** 2
    weights = np.trunc(_AMPLITUDE * np.exp(-squared / (2 * (size / 6.0) ** 2)))
    return weights / weights.sum()


def disk(size: int) -> np.ndarray:
    """A boolean disk of diameter `size` pixels (radius size // 2)."""
    r = size // 2
    offsets = np.arange(-r, r + 1)
    return offsets[:, None] ** 2 + offsets[None, :] ** 2 <= r * r


def _integer(value: Any, name: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value) \
            or value < minimum:
        raise errors.ProcessParameterInvalid(
            f"'{name}' must be a whole number of pixels, at least {minimum}; got {value!r}.",
            argument=name)
    return int(value)


def _values(value: Any, name: str) -> list[float]:
    if not isinstance(value, list) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        raise errors.ProcessParameterInvalid(
            f"'{name}' must be an array of SCL class numbers.", argument=name)
    return [float(v) for v in value]


def _smooth_block(block: np.ndarray, kernel: np.ndarray, threshold: float) -> np.ndarray:
    """Gaussian-weighted share of flagged pixels above the threshold, for the last two axes."""
    weights = kernel.reshape((1,) * (block.ndim - 2) + kernel.shape)
    share = scipy.signal.fftconvolve(block.astype(np.float64), weights, mode="same",
                                     axes=(-2, -1))
    return share > threshold


def _erode_block(block: np.ndarray, structure: np.ndarray) -> np.ndarray:
    full = structure.reshape((1,) * (block.ndim - 2) + structure.shape)
    return scipy.ndimage.binary_erosion(block, structure=full, border_value=1)


def _dilated(flags: da.Array, erosion: int, size: int, threshold: float) -> da.Array:
    """One flagged mask eroded (optional), smoothed and thresholded, chunk by chunk."""
    if erosion > 0:
        depth = _depth(flags, erosion // 2)
        flags = flags.map_overlap(partial(_erode_block, structure=disk(erosion)), depth=depth,
                                  boundary=True, dtype=bool)
    if size <= 0:
        return flags
    depth = _depth(flags, size // 2)
    return flags.map_overlap(
        partial(_smooth_block, kernel=gaussian_kernel(size), threshold=threshold),
        depth=depth, boundary=False, dtype=bool)


def _depth(arr: da.Array, half: int) -> dict[int, int]:
    """The halo of a kernel's half width on the two spatial (last) axes. An axis in one chunk
    needs none (beyond the cube nothing is flagged), nor more than the axis is long."""
    lead = arr.ndim - 2
    return {i: (0 if i < lead or len(arr.chunks[i]) == 1 else min(half, arr.shape[i] - 1))
            for i in range(arr.ndim)}


@process("to_scl_dilation_mask")
def to_scl_dilation_mask(data: RasterCube, erosion_kernel_size: int = 0,
                         mask1_values: list | None = None, mask2_values: list | None = None,
                         kernel1_size: int = 17, kernel2_size: int = 201) -> RasterCube:
    ydim, xdim = spatial_dims(data)
    erosion = _integer(erosion_kernel_size, "erosion_kernel_size")
    size1 = _integer(kernel1_size, "kernel1_size")
    size2 = _integer(kernel2_size, "kernel2_size")
    good = _values([2, 4, 5, 6, 7] if mask1_values is None else mask1_values, "mask1_values")
    cloudy = _values([3, 8, 9, 10, 11] if mask2_values is None else mask2_values,
                     "mask2_values")
    scl = data.data
    dims = data.dimensions
    bands = data.first_dim_of_type(BANDS)
    if bands is not None and scl.sizes[bands.name] > 1:
        # CDSE reads the first band; a cube that still holds the band SCL uses that one.
        labels = [str(v) for v in data.labels(bands.name)]
        index = labels.index("SCL") if "SCL" in labels else 0
        scl = scl.isel({bands.name: [index]})
    if scl.dtype.kind not in "iuf":
        raise errors.ProcessParameterInvalid(
            f"'data' must hold SCL class numbers, got values of type {scl.dtype}.",
            argument="data")
    order = [d for d in scl.dims if d not in (ydim, xdim)] + [ydim, xdim]
    values = as_dask(scl.transpose(*order))
    bad1 = da.map_blocks(lambda b: ~np.isin(b, good), values, dtype=bool)
    bad2 = da.map_blocks(lambda b: np.isin(b, cloudy), values, dtype=bool)
    mask = _dilated(bad1, erosion, size1, _THRESHOLD1) | _dilated(
        bad2, erosion, size2, _THRESHOLD2)
    out = xr.DataArray(mask, dims=order, coords=scl.coords).transpose(*data.data.dims)
    return data.with_data(out, dims, nodata=None)


@process("mask_scl_dilation")
def mask_scl_dilation(data: RasterCube, scl_band_name: str | None = None,
                      erosion_kernel_size: int = 0, mask1_values: list | None = None,
                      mask2_values: list | None = None, kernel1_size: int = 17,
                      kernel2_size: int = 201) -> RasterCube:
    """Every band of `data` masked (no-data) where the dilation mask of its SCL band is set."""
    bands = data.first_dim_of_type(BANDS)
    labels = [str(v) for v in data.labels(bands.name)] if bands is not None else []
    wanted = scl_band_name or next((b for b in ("SCL", "SCENECLASSIFICATION_20M")
                                    if b in labels), None)
    if bands is None or wanted not in labels:
        raise errors.ProcessParameterInvalid(
            f"mask_scl_dilation needs the scene classification band "
            f"{wanted or 'SCL'!r} in 'data' (bands: {', '.join(labels) or 'none'}); name it "
            "in 'scl_band_name'.", argument="scl_band_name" if scl_band_name else "data")
    scl = data.with_data(data.data.isel({bands.name: [labels.index(wanted)]}))
    flags = to_scl_dilation_mask(scl, erosion_kernel_size, mask1_values, mask2_values,
                                 kernel1_size, kernel2_size)
    return mask_cube(data, flags)
