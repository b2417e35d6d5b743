"""PNG / JPEG quicklooks: a raster cube stretched to 8 bits for a look, not for analysis."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.io import MemoryFile

from terracube import errors, executor
from terracube.datacube.cube import BANDS, RasterCube


def write_quicklook(cube: RasterCube, path: Path, driver: str, options: dict) -> None:
    """One (grey) or three (RGB) bands, each stretched linearly between `min`/`max` from the
    options or its own 2nd/98th percentiles; no-data becomes transparent (PNG) or black."""
    xd, yd = cube.x_dim, cube.y_dim
    if xd is None or yd is None:
        raise errors.ProcessParameterInvalid(
            f"{driver} needs a cube with x and y dimensions.", argument="data")
    cube = _rgb_bands(cube, driver, options)
    other = [d for d in cube.data.dims if d not in (xd.name, yd.name)]
    arr = cube.data.transpose(*other, yd.name, xd.name)
    layers = int(np.prod([arr.sizes[d] for d in other])) if other else 1
    if layers not in (1, 3):
        raise errors.ProcessParameterInvalid(
            f"A {driver} quicklook shows 1 (grey) or 3 (RGB) layers, but this cube has "
            f"{layers} ({', '.join(f'{d}: {arr.sizes[d]}' for d in other)}); reduce or filter "
            "the other dimensions first, e.g. filter_bands to three bands and one date.",
            argument="data")
    # Through the executor, as every writer: its cluster, and the job's progress.
    (computed,) = executor.current().compute(arr.data)
    values = np.asarray(computed, dtype="float64").reshape(layers, *arr.shape[-2:])
    if options.get("colormap") is not None and driver == "PNG":
        _write_coloured(values, parse_colormap(options["colormap"], driver), path)
        return
    valid = np.isfinite(values).all(axis=0)
    out = np.zeros(values.shape, dtype="uint8")
    for i, band in enumerate(values):
        lo, hi = _range(band[valid], options)
        scaled = (band - lo) / (hi - lo) if hi > lo else np.zeros_like(band)
        out[i] = np.where(valid, np.clip(np.round(scaled * 254) + 1, 1, 255), 0)
    count = layers + (1 if driver == "PNG" else 0)
    profile = dict(driver="GTiff", width=out.shape[2], height=out.shape[1], count=count,
                   dtype="uint8")
    with MemoryFile() as mem:
        with mem.open(**profile) as ds:
            ds.write(out, indexes=list(range(1, layers + 1)))
            if driver == "PNG":  # alpha: no-data is transparent
                ds.write((valid * 255).astype("uint8"), count)
        with mem.open() as src:
            rasterio.shutil.copy(src, path, driver=driver)
    for aux in path.parent.glob(path.name + ".aux.xml"):
        aux.unlink()


_RGB = ("red", "green", "blue")


def _rgb_bands(cube: RasterCube, driver: str, options: dict[str, Any]) -> RasterCube:
    """The bands the options red/green/blue name, in that order (all three or none)."""
    named = {c: options.get(c) for c in _RGB if options.get(c) is not None}
    if not named:
        return cube
    bands = cube.first_dim_of_type(BANDS)
    if len(named) != 3 or bands is None:
        raise errors.ProcessParameterInvalid(
            f"The {driver} options red, green and blue name three bands of the cube together"
            + ("" if bands is not None else "; this cube has no bands dimension") + ".",
            argument="options")
    have = [str(v) for v in cube.labels(bands.name)]
    missing = [f"{c} '{b}'" for c, b in named.items() if str(b) not in have]
    if missing:
        raise errors.ProcessParameterInvalid(
            f"The {driver} option(s) {', '.join(missing)} name no band of the cube; its bands: "
            f"{', '.join(have)}.", argument="options")
    picked = [have.index(str(named[c])) for c in _RGB]
    return cube.with_data(cube.data.isel({bands.name: picked}), cube.dimensions)


def _range(values: np.ndarray, options: dict[str, Any]) -> tuple[float, float]:
    if "min" in options and "max" in options:
        return float(options["min"]), float(options["max"])
    if values.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(values, [2, 98])
    return float(lo), float(hi)


def parse_colormap(colormap: dict, fmt: str) -> dict[int, tuple[int, int, int, int]]:
    """A CDSE colormap ({value: 0xRRGGBBAA integer or [r, g, b, a] in 0..1}) as
    {value: (r, g, b, a) in 0..255}; keys may be text, as JSON objects have them."""
    table: dict[int, tuple[int, int, int, int]] = {}
    for key, color in colormap.items():
        try:
            value = float(key)
        except (TypeError, ValueError):
            value = float("nan")
        if not value.is_integer():
            raise errors.ProcessParameterInvalid(
                f"The option 'colormap' of format {fmt} maps whole numbers to colours; got "
                f"the key {key!r}.", argument="options")
        if isinstance(color, int):
            rgba = tuple((color >> shift) & 0xFF for shift in (24, 16, 8, 0))
        else:
            rgba = tuple(int(round(float(c) * 255)) for c in color)
        table[int(value)] = (rgba[0], rgba[1], rgba[2], rgba[3])
    return table


def _write_coloured(values: np.ndarray, table: dict[int, tuple[int, int, int, int]],
                    path: Path) -> None:
    """One layer through a colour map into an RGBA PNG; other values are transparent."""
    if values.shape[0] != 1:
        raise errors.ProcessParameterInvalid(
            "The option 'colormap' of format PNG is for a single layer; this cube has "
            f"{values.shape[0]}.", argument="options")
    layer = values[0]
    rgba = np.zeros((4, *layer.shape), dtype="uint8")
    for value, color in table.items():
        hit = layer == value
        for i in range(4):
            rgba[i][hit] = color[i]
    profile = dict(driver="GTiff", width=layer.shape[1], height=layer.shape[0], count=4,
                   dtype="uint8")
    with MemoryFile() as mem:
        with mem.open(**profile) as ds:
            ds.write(rgba)
        with mem.open() as src:
            rasterio.shutil.copy(src, path, driver="PNG")
    for aux in path.parent.glob(path.name + ".aux.xml"):
        aux.unlink()
