"""Data folders for tests that run the server or workers: each test gets its own folder
(collections, jobs, users, database) that shares the session's generated sample data; and the
sample files read directly (rasterio), to compare results with."""

from __future__ import annotations

import json
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


def sample_band(sample_data_dir: Path, date: str, band: str, box: dict) -> np.ndarray:
    """One band of one date (the item's `datetime`) of the generated Sentinel-2 sample in
    `box` (west/south/east/north in the files' CRS), as stored (raw integers)."""
    folder = sample_data_dir / "samples" / "sentinel2_l2a"
    (item,) = [i for i in json.loads((folder / "items.json").read_text())["items"]
               if i["datetime"] == date]
    with rasterio.open(folder / item["assets"][band]) as ds:
        window = rasterio.windows.from_bounds(box["west"], box["south"], box["east"],
                                              box["north"], ds.transform)
        return ds.read(1, window=window.round_offsets().round_lengths())


def sample_series(sample_data_dir: Path, band: str, box: dict, start: str, end: str, *,
                  times: bool = False) -> dict[str, np.ndarray]:
    """One band of the generated Sentinel-2 sample in `box` for each date in [start, end), in
    time order, as float64 with the no-data value as NaN. Keys: the day (YYYY-MM-DD), or with
    `times` the item's date and time (YYYY-MM-DDTHH:MM:SS)."""
    folder = sample_data_dir / "samples" / "sentinel2_l2a"
    out = {}
    items = json.loads((folder / "items.json").read_text())["items"]
    for item in sorted(items, key=lambda i: i["datetime"]):
        day = item["datetime"][:10]
        if not start <= day < end:
            continue
        with rasterio.open(folder / item["assets"][band]) as ds:
            window = rasterio.windows.from_bounds(box["west"], box["south"], box["east"],
                                                  box["north"], ds.transform)
            values = ds.read(1, window=window.round_offsets().round_lengths()).astype("float64")
            if ds.nodata is not None:
                values[values == ds.nodata] = np.nan
        out[item["datetime"][:19] if times else day] = values
    return out
