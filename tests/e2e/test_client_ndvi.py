"""The README's client example, run with the official openeo client against a real server."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from tests.support.data import cloud_free_ndvi_median

openeo = pytest.importorskip("openeo")

BBOX = {"west": 679720, "south": 5151080, "east": 680680, "north": 5151920, "crs": "EPSG:32632"}
JUNE = ["2022-06-01", "2022-07-01"]


@pytest.mark.e2e
def test_readme_example_cloud_free_ndvi(con, sample_data_dir: Path, tmp_path: Path) -> None:
    s2 = con.load_collection("SENTINEL2_L2A", spatial_extent=BBOX, temporal_extent=JUNE,
                             bands=["B04", "B08", "SCL"])
    scl = s2.band("SCL")
    cloud = (scl == 3) | (scl == 8) | (scl == 9) | (scl == 10)
    ndvi = s2.ndvi(nir="B08", red="B04").mask(cloud)
    out = tmp_path / "ndvi.tif"
    ndvi.reduce_dimension(dimension="t", reducer="median").download(out)

    expected = cloud_free_ndvi_median(sample_data_dir, BBOX, *JUNE, min_dates=5)
    with rasterio.open(out) as ds:
        assert ds.crs.to_epsg() == 32632
        assert ds.count == 1
        assert (ds.width, ds.height) == (96, 84)
        assert ds.transform == rasterio.Affine(10, 0, 679720, 0, -10, 5151920)
        assert np.isnan(ds.nodata)
        got = ds.read(1)
        # A COG: tiled with overviews is not needed at this size, but tiling is.
        assert ds.profile["tiled"]
    assert np.isnan(expected).sum() < expected.size  # the composite is not empty
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    np.testing.assert_allclose(got, expected, rtol=1e-6, equal_nan=True)
    assert 0.0 < np.nanmean(got) < 1.0


@pytest.mark.e2e
def test_netcdf_download_keeps_dimensions(server, tmp_path: Path) -> None:
    import rioxarray  # noqa: F401  (the .rio accessor)
    import xarray as xr

    con = openeo.connect(server.url).authenticate_basic("demo", "demo")
    cube = con.load_collection("SENTINEL2_L2A", spatial_extent=BBOX, temporal_extent=JUNE,
                               bands=["B04", "B08"])
    out = tmp_path / "cube.nc"
    cube.download(out, format="netCDF")
    ds = xr.open_dataset(out, decode_coords="all")
    assert set(ds.data_vars) == {"B04", "B08"}
    assert ds["B04"].dims == ("t", "y", "x")
    assert ds.sizes["x"] == 96 and ds.sizes["y"] == 84
    assert ds.rio.crs.to_epsg() == 32632
    assert ds.sizes["t"] >= 5
