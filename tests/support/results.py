"""Results as a test reads them back: what the official client downloaded, opened with
xarray (independently of our writers' code)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import xarray as xr


def download_netcdf(cube: Any, folder: Path, name: str = "out.nc") -> xr.Dataset:
    """`cube.download(...)` (an openeo client DataCube) as netCDF into `folder`, read into
    memory (the file is closed again)."""
    target = folder / name
    cube.download(target, format="netCDF")
    with xr.open_dataset(target) as ds:
        return ds.load()
