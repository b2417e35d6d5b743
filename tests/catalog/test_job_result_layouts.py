"""The layouts our batch jobs write (results/writers.py) read back as STAC items by load_stac's
canonicalisation: a GeoTIFF per date, and a GeoTIFF per date and band (separate_asset_per_band,
whose asset keys are file names that change from date to date)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import pystac
import pytest
import xarray as xr

from terracube.catalog.stac import StacSource, normalise_items
from terracube.datacube.cube import BANDS, SPATIAL, TEMPORAL, Dimension, RasterCube
from terracube.datacube.request import LoadRequest
from terracube.jobs.results_stac import describe_asset, stac_asset
from terracube.results.writers import write_result

TIMES = np.array(["2022-06-02T10:20:00", "2022-06-07T10:20:00"], dtype="datetime64[ns]")


@pytest.fixture
def cube() -> RasterCube:
    values = np.random.default_rng(1).random((2, 2, 4, 5)).astype("float32")
    da = xr.DataArray(values, dims=["t", "bands", "y", "x"],
                      coords={"t": TIMES, "bands": ["B04", "B08"],
                              "y": 5151000 - 10 * np.arange(4) - 5.0,
                              "x": 680000 + 10 * np.arange(5) + 5.0})
    dims = (Dimension("t", TEMPORAL), Dimension("bands", BANDS),
            Dimension("y", SPATIAL, axis="y", reference_system=32632),
            Dimension("x", SPATIAL, axis="x", reference_system=32632))
    return RasterCube(da.chunk(), dims)


def results_item(cube: RasterCube, folder: Path, options: dict) -> pystac.Item:
    """A job's results item as GET /jobs/{id}/results describes the written files."""
    item = pystac.Item("job", None, None, datetime(2022, 6, 2), {})
    for f in write_result(cube, "GTiff", options, folder, "openEO", per_date=True):
        info = describe_asset(f.path, f.media_type, f.data)
        item.add_asset(f.filename, pystac.Asset.from_dict(stac_asset(info, str(f.path))))
    return item


@pytest.mark.parametrize("options", [{}, {"separate_asset_per_band": True}])
def test_job_gtiff_results_load_back_as_the_cube(cube, tmp_path: Path, options: dict) -> None:
    item = results_item(cube, tmp_path, options)
    assert len(item.assets) == (4 if options else 2)
    assert {a.extra_fields["datetime"] for a in item.assets.values()} == \
        {"2022-06-02T10:20:00Z", "2022-06-07T10:20:00Z"}
    items, bands, crs = normalise_items([item], "results")
    source = StacSource("results", items, bands, crs, "job results")
    loaded = source.load(LoadRequest()).data.transpose("t", "bands", "y", "x")
    assert list(loaded.bands.values) == ["B04", "B08"] and crs == "EPSG:32632"
    np.testing.assert_array_equal(loaded.values, cube.data.values)
    np.testing.assert_array_equal(loaded.x.values, cube.data.x.values)
