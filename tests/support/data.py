"""Data folders for tests that run the server or workers: each test gets its own folder
(collections, jobs, users, database) that shares the session's generated sample data; and the
sample files read directly (rasterio), to compare results with."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import rasterio
import rasterio.windows


def data_dir_with_samples(folder: Path, sample_data_dir: Path) -> Path:
    """`folder` (created if needed) as a data directory of its own whose samples/ is the
    session's generated sample collections (a symbolic link: generated once)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "samples").symlink_to(sample_data_dir / "samples", target_is_directory=True)
    return folder


def sqlite_url(folder: Path) -> str:
    """The URL of a SQLite database file in `folder`."""
    return f"sqlite:///{folder / 'terracube.db'}"


def _items(sample_data_dir: Path) -> tuple[Path, list[dict]]:
    folder = sample_data_dir / "samples" / "sentinel2_l2a"
    items = json.loads((folder / "items.json").read_text())["items"]
    return folder, sorted(items, key=lambda i: i["datetime"])


def _window(path: Path, box: dict, resolution: float | None = None) -> np.ndarray:
    """Band 1 of the file in `box` (west/south/east/north in the file's CRS), as stored; with
    `resolution`, a coarser band's pixels repeated onto that pixel size (nearest neighbour)."""
    with rasterio.open(path) as ds:
        window = rasterio.windows.from_bounds(box["west"], box["south"], box["east"],
                                              box["north"], ds.transform)
        values = ds.read(1, window=window.round_offsets().round_lengths())
        factor = int(round(ds.transform.a / resolution)) if resolution else 1
    return np.repeat(np.repeat(values, factor, axis=0), factor, axis=1)


def sample_band(sample_data_dir: Path, date: str, band: str, box: dict, *,
                resolution: float | None = None) -> np.ndarray:
    """One band of one date of the generated Sentinel-2 sample in `box` (west/south/east/north
    in the files' CRS), as stored (raw integers, no-data 0). `date`: the item's `datetime`, or
    the start of it that only one item has (e.g. its day). With `resolution` (e.g. 10), the
    20 m and 60 m bands are repeated onto that pixel size, as the server resamples them."""
    folder, items = _items(sample_data_dir)
    (item,) = [i for i in items if i["datetime"].startswith(date)]
    return _window(folder / item["assets"][band], box, resolution)


def sample_series(sample_data_dir: Path, band: str, box: dict, start: str, end: str, *,
                  times: bool = False) -> dict[str, np.ndarray]:
    """One band of the generated Sentinel-2 sample in `box` for each date in [start, end), in
    time order, as float64 with the no-data value (0) as NaN. Keys: the day (YYYY-MM-DD), or
    with `times` the item's date and time (YYYY-MM-DDTHH:MM:SS)."""
    folder, items = _items(sample_data_dir)
    out = {}
    for item in items:
        day = item["datetime"][:10]
        if start <= day < end:
            values = _window(folder / item["assets"][band], box).astype("float64")
            values[values == 0] = np.nan
            out[item["datetime"][:19] if times else day] = values
    return out


CLOUD_SCL = (3, 8, 9, 10)  # cloud shadows, clouds of medium and high probability, cirrus


def cloud_free_ndvi_median(sample_data_dir: Path, box: dict, start: str, end: str, *,
                           min_dates: int = 2) -> np.ndarray:
    """The README example's composite computed independently from the sample files: each
    date's NDVI (float32, no-data NaN) masked where the SCL band (on 10 m) says cloud or
    shadow, then the median over the dates in [start, end) (at least `min_dates` of them);
    NaN where no date is clear."""
    _, items = _items(sample_data_dir)
    stack = []
    for item in items:
        if not start <= item["datetime"][:10] < end:
            continue
        red, nir = (sample_band(sample_data_dir, item["datetime"], band, box).astype("float32")
                    for band in ("B04", "B08"))
        scl = sample_band(sample_data_dir, item["datetime"], "SCL", box, resolution=10)
        red[red == 0] = np.nan
        nir[nir == 0] = np.nan
        ndvi = (nir - red) / (nir + red)
        ndvi[np.isin(scl, CLOUD_SCL)] = np.nan
        stack.append(ndvi)
    assert len(stack) >= min_dates, f"{len(stack)} sample dates in [{start}, {end})"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels
        return np.nanmedian(np.stack(stack), axis=0)
