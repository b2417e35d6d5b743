"""Issue 11, defect 6: a one-band mask masks every band (CDSE), and cube arithmetic of the
client (merge_cubes with an overlap resolver) pairs bands with other names as CDSE does —
through the official client against a real server, checked with numpy on the sample files."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from openeo.processes import apply
from tests.support.data import sample_band

openeo = pytest.importorskip("openeo")
pytestmark = pytest.mark.e2e

BOX = {"west": 679720, "south": 5151080, "east": 680680, "north": 5151920, "crs": 32632}
DAY = ["2022-06-17", "2022-06-18"]


def band(sample_data_dir: Path, name: str) -> np.ndarray:
    """The band of the sample date on the 10 m grid of BOX (20 m bands repeated), no-data NaN."""
    values = sample_band(sample_data_dir, DAY[0], name, BOX, resolution=10).astype("float32")
    if name != "SCL":
        values[values == 0] = np.nan
    return values


def download(cube, path: Path) -> xr.Dataset:
    cube.download(path, format="netCDF")
    with xr.open_dataset(path) as ds:
        return ds.drop_vars(["crs", "spatial_ref"], errors="ignore").load()


def test_a_mask_with_the_band_scl_masks_every_band(con, sample_data_dir: Path,
                                                   tmp_path: Path) -> None:
    s2 = con.load_collection("SENTINEL2_L2A", spatial_extent=BOX, temporal_extent=DAY,
                             bands=["B04", "B08"])
    scl = con.load_collection("SENTINEL2_L2A", spatial_extent=BOX, temporal_extent=DAY,
                              bands=["SCL"])
    cloud = (scl == 3) | (scl == 8) | (scl == 9)  # a one-band cube, its band is SCL
    ds = download(s2.mask(cloud), tmp_path / "masked.nc")

    scl_values = band(sample_data_dir, "SCL")
    cloudy = np.isin(scl_values, (3, 8, 9))
    assert 0 < cloudy.sum() < cloudy.size
    assert sorted(ds.data_vars) == ["B04", "B08"]
    for name in ("B04", "B08"):
        expected = np.where(cloudy, np.nan, band(sample_data_dir, name))
        np.testing.assert_array_equal(ds[name].values[0], expected)


def test_a_mask_with_as_many_bands_masks_band_by_band(con, sample_data_dir: Path,
                                                      tmp_path: Path) -> None:
    s2 = con.load_collection("SENTINEL2_L2A", spatial_extent=BOX, temporal_extent=DAY,
                             bands=["B04", "B08"])
    dark = con.load_collection("SENTINEL2_L2A", spatial_extent=BOX, temporal_extent=DAY,
                               bands=["B02", "B03"]) < 500
    ds = download(s2.mask(dark), tmp_path / "masked.nc")
    for name, other in (("B04", "B02"), ("B08", "B03")):
        expected = band(sample_data_dir, name)
        expected[band(sample_data_dir, other) < 500] = np.nan
        np.testing.assert_array_equal(ds[name].values[0], expected)


def test_cube_arithmetic_pairs_bands_with_other_names(con, sample_data_dir: Path,
                                                      tmp_path: Path) -> None:
    def load(*bands: str):
        return con.load_collection("SENTINEL2_L2A", spatial_extent=BOX, temporal_extent=DAY,
                                   bands=list(bands))

    # one band each, other names: one band (cube1's name) holding the difference
    ds = download(load("B08") - load("B04"), tmp_path / "diff.nc")
    assert list(ds.data_vars) == ["B08"]
    np.testing.assert_allclose(ds["B08"].values[0],
                               band(sample_data_dir, "B08") - band(sample_data_dir, "B04"))

    # a one-band cube combines with every band of the other cube
    clear = load("SCL") == 4  # vegetation: 1, else 0
    ds = download(load("B04", "B08") * clear, tmp_path / "product.nc")
    assert sorted(ds.data_vars) == ["B04", "B08"]
    veg = (band(sample_data_dir, "SCL") == 4).astype("float32")
    for name in ("B04", "B08"):
        np.testing.assert_allclose(ds[name].values[0], band(sample_data_dir, name) * veg)

    # merge_cubes without a resolver still concatenates the bands (official process tests)
    ds = download(load("B04").merge_cubes(load("B08")), tmp_path / "merged.nc")
    assert sorted(ds.data_vars) == ["B04", "B08"]


def test_chunk_polygon_is_apply_polygon(con, sample_data_dir: Path, tmp_path: Path) -> None:
    # CDSE's older name, still in UDF examples; a square of 30 x 40 pixels in UTM
    square = {"type": "Polygon", "coordinates": [[[679800, 5151200], [680100, 5151200],
                                                  [680100, 5151600], [679800, 5151600],
                                                  [679800, 5151200]]],
              "crs": {"type": "name", "properties": {"name": "EPSG:32632"}}}
    s2 = con.load_collection("SENTINEL2_L2A", spatial_extent=BOX, temporal_extent=DAY,
                             bands=["B04"])
    with warnings.catch_warnings():  # the client deprecates the name too
        warnings.simplefilter("ignore")
        cube = s2.chunk_polygon(chunks=square,
                                process=lambda data: apply(data, process=lambda x: x * 2))
    ds = download(cube, tmp_path / "chunks.nc")
    xs = BOX["west"] + 5 + 10 * np.arange(96)
    ys = BOX["north"] - 5 - 10 * np.arange(84)
    inside = ((ys >= 5151200) & (ys <= 5151600))[:, None] & \
        ((xs >= 679800) & (xs <= 680100))[None, :]
    expected = np.where(inside, band(sample_data_dir, "B04") * 2, np.nan)
    np.testing.assert_allclose(ds["B04"].values[0], expected)
