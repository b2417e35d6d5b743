"""load_stac of a finished batch job's results, end to end: a job writes GeoTIFFs, and a new
graph loads them through the signed STAC link of GET /jobs/{id}/results (no Authorization),
against a real `terracube serve` with its workers (the session's server)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import xarray as xr

openeo = pytest.importorskip("openeo")
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

BBOX = {"west": 679720, "south": 5151080, "east": 680680, "north": 5151920, "crs": "EPSG:32632"}
JUNE = ["2022-06-01", "2022-07-01"]
SMALL = {"west": 680000, "south": 5151200, "east": 680300, "north": 5151500, "crs": 32632}


def finished_job(con, cube, fmt: str = "GTiff"):
    job = con.create_job(cube.save_result(fmt))
    job.start_and_wait(max_poll_interval=0.2)
    metadata = job.get_results().get_metadata()
    (url,) = [link["href"] for link in metadata["links"] if link["rel"] == "canonical"]
    assert "signature=" in url
    return job, url


def test_gtiff_results_with_a_time_dimension(con, tmp_path: Path) -> None:
    s2 = con.load_collection("SENTINEL2_L2A", spatial_extent=BBOX, temporal_extent=JUNE,
                             bands=["B04", "B08"])
    job, url = finished_job(con, s2)
    # one file per date (issue 11, defect 3), as CDSE writes them
    tifs = sorted(p for p in job.get_results().download_files(tmp_path / "job")
                  if p.suffix == ".tif")
    assert len(tifs) == 6

    again = con.load_stac(url, spatial_extent=SMALL, temporal_extent=["2022-06-10",
                                                                      "2022-06-23"],
                          bands=["B08"])
    again.download(tmp_path / "again.nc", format="netCDF")
    chosen = [t for t in tifs if "2022-06-10" <= t.name[7:17] < "2022-06-23"]
    with xr.open_dataset(tmp_path / "again.nc") as ds:
        assert [str(t)[:10] for t in ds.t.values] == [t.name[7:17] for t in chosen]
        assert len(chosen) == 3
        for i, tif in enumerate(chosen):
            with rasterio.open(tif) as src:
                window = rasterio.windows.from_bounds(SMALL["west"], SMALL["south"],
                                                      SMALL["east"], SMALL["north"],
                                                      src.transform)
                expected = src.read(src.descriptions.index("B08") + 1, window=window)
            np.testing.assert_array_equal(ds["B08"].values[i], expected)
        assert ds.sizes["x"] == 30 and ds.sizes["y"] == 30

    # The same as loading the collection itself.
    direct = con.load_collection("SENTINEL2_L2A", spatial_extent=SMALL,
                                 temporal_extent=["2022-06-10", "2022-06-23"], bands=["B08"])
    direct.download(tmp_path / "direct.nc", format="netCDF")
    with xr.open_dataset(tmp_path / "direct.nc") as want, \
            xr.open_dataset(tmp_path / "again.nc") as got:
        np.testing.assert_array_equal(got["B08"].values, want["B08"].values)
        np.testing.assert_array_equal(got.x.values, want.x.values)


def test_gtiff_composite_results(con, tmp_path: Path) -> None:
    s2 = con.load_collection("SENTINEL2_L2A", spatial_extent=BBOX, temporal_extent=JUNE,
                             bands=["B04", "B08"])
    job, url = finished_job(con, s2.reduce_dimension(dimension="t", reducer="max"))
    (tif,) = [p for p in job.get_results().download_files(tmp_path / "job")
              if p.suffix == ".tif"]
    ndvi = con.load_stac(url).ndvi(nir="B08", red="B04")
    ndvi.download(tmp_path / "ndvi.nc", format="netCDF")
    with xr.open_dataset(tmp_path / "ndvi.nc") as ds, rasterio.open(tif) as src:
        red, nir = (src.read(src.descriptions.index(b) + 1).astype("float64")
                    for b in ("B04", "B08"))
        var = [v for v in ds.data_vars if ds[v].ndim >= 2][0]
        np.testing.assert_allclose(ds[var].values.reshape(red.shape), (nir - red) / (nir + red),
                                   rtol=1e-6)
