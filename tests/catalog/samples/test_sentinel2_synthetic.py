"""Tests of the synthetic SENTINEL2_L2A sample collection, on real generated files."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.windows import from_bounds

from terracube.catalog.samples import sentinel2_synthetic
from terracube.catalog.samples.sentinel2_synthetic import (
    CORE_AREA,
    SAMPLE_BANDS,
    SAMPLE_COLLECTION_ID,
    ensure_sample_data,
    sample_collection_metadata,
    sample_index,
)

ALL_BANDS = [b.name for b in SAMPLE_BANDS]
SIZE_BY_RESOLUTION = {10: 384, 20: 192, 60: 64}


@pytest.fixture(scope="session")
def data_dir(sample_data_dir: Path) -> Path:
    """The session's data folder, whose sample this generator made once for the whole run
    (tests/conftest.py); a second generation here took most of a minute."""
    return sample_data_dir


@pytest.fixture(scope="session")
def folder(data_dir: Path) -> Path:
    return ensure_sample_data(data_dir)


@pytest.fixture(scope="session")
def index(folder: Path) -> dict:
    return sample_index(folder)


def read(folder: Path, item: dict, band: str) -> np.ndarray:
    with rasterio.open(folder / item["assets"][band]) as src:
        return src.read(1).astype(np.float64)


def item_on(index: dict, day: str) -> dict:
    return next(i for i in index["items"] if i["datetime"].startswith(day))


def block_mean(a: np.ndarray, factor: int) -> np.ndarray:
    h, w = a.shape
    return a.reshape(h // factor, factor, w // factor, factor).mean(axis=(1, 3))


def is_clear(scl: np.ndarray) -> np.ndarray:
    return np.isin(scl, (4, 5, 6))


def test_folder_is_under_data_dir(data_dir: Path, folder: Path) -> None:
    assert folder == data_dir / "samples" / "sentinel2_l2a"
    assert (folder / "items.json").is_file()


def test_index_lists_every_date_and_band(index: dict, folder: Path) -> None:
    assert index["collection"] == SAMPLE_COLLECTION_ID
    assert index["crs"] == "EPSG:32632"
    assert list(index["bands"]) == ALL_BANDS
    assert index["bands"]["B8A"] == {
        "resolution": 20,
        "file_suffix": "B8A.tif",
        "wavelength_um": 0.865,
        "common_name": "nir08",
    }
    datetimes = [dt.datetime.fromisoformat(i["datetime"]) for i in index["items"]]
    assert datetimes[0] == dt.datetime(2022, 4, 3, 10, 20, tzinfo=dt.UTC)
    assert datetimes[-1] == dt.datetime(2022, 9, 30, 10, 20, tzinfo=dt.UTC)
    assert all(b - a == dt.timedelta(days=5) for a, b in zip(datetimes, datetimes[1:]))
    assert len({i["id"] for i in index["items"]}) == len(index["items"])
    for item in index["items"]:
        stamp = item["datetime"][:10].replace("-", "")
        assert item["assets"] == {b: f"{stamp}/{b}.tif" for b in ALL_BANDS}
        assert all((folder / path).is_file() for path in item["assets"].values())
        assert 0.0 <= item["eo:cloud_cover"] <= 100.0


def test_dates_fit_the_official_test_windows(index: dict) -> None:
    days = [dt.date.fromisoformat(i["datetime"][:10]) for i in index["items"]]
    in_window = [d for d in days if dt.date(2022, 6, 1) <= d < dt.date(2022, 6, 3)]
    assert in_window == [dt.date(2022, 6, 2)]
    weeks = {d.isocalendar()[1] for d in days if d.isocalendar()[0] == 2022}
    assert set(range(22, 27)) <= weeks


@pytest.mark.parametrize("band", SAMPLE_BANDS, ids=lambda b: b.name)
def test_files_are_cogs_on_the_cdse_grid(
    folder: Path, index: dict, band: sentinel2_synthetic.SampleBand
) -> None:
    size = SIZE_BY_RESOLUTION[band.resolution]
    r = band.resolution
    with rasterio.open(folder / index["items"][12]["assets"][band.name]) as src:
        assert src.crs.to_epsg() == 32632
        assert tuple(src.transform)[:6] == (r, 0.0, 678000.0, 0.0, -r, 5153520.0)
        assert src.shape == (size, size)
        assert src.bounds == (678000.0, 5149680.0, 681840.0, 5153520.0)
        assert src.dtypes == ("uint16",)
        assert src.nodata == 0
        assert src.block_shapes == [(256, 256)]
        assert src.tags(ns="IMAGE_STRUCTURE")["COMPRESSION"] == "DEFLATE"
        assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert "not real" in src.tags()["SYNTHETIC"]
        assert src.descriptions == (band.name,)


def test_reflectances_look_like_l2a(folder: Path, index: dict) -> None:
    clear = item_on(index, "2022-07-02")
    assert clear["eo:cloud_cover"] == 0.0
    red, nir = read(folder, clear, "B04"), read(folder, clear, "B08")
    scl = read(folder, clear, "SCL").repeat(2, 0).repeat(2, 1)
    assert 100 <= np.percentile(red, 1) and np.percentile(red, 99) <= 6000
    ndvi = (nir - red) / (nir + red)
    dense = (scl == 4) & (ndvi > 0.75)
    water = scl == 6
    assert dense.mean() > 0.15
    assert 200 < np.median(red[dense]) < 500 and 3000 < np.median(nir[dense]) < 4500
    assert np.median(nir[water]) < 300 and np.median(ndvi[water]) < 0
    assert np.median(ndvi[scl == 4]) > 0.6 and np.median(ndvi[scl == 5]) < 0.4


def test_coarse_bands_show_the_same_scene(folder: Path, index: dict) -> None:
    item = item_on(index, "2022-05-08")  # clouds and cirrus: plenty of structure to match
    b08_at_20 = block_mean(read(folder, item, "B08"), 2)
    b02_at_60 = block_mean(read(folder, item, "B02"), 6)
    assert np.corrcoef(b08_at_20.ravel(), read(folder, item, "B8A").ravel())[0, 1] > 0.95
    assert np.corrcoef(b02_at_60.ravel(), read(folder, item, "B01").ravel())[0, 1] > 0.95


def test_core_area_never_has_nodata_but_some_dates_do(folder: Path, index: dict) -> None:
    dates_with_nodata = 0
    for item in index["items"]:
        dates_with_nodata += bool((read(folder, item, "B02") == 0).any())
        for band in SAMPLE_BANDS:
            with rasterio.open(folder / item["assets"][band.name]) as src:
                window = from_bounds(*CORE_AREA, transform=src.transform)
                core = src.read(1, window=window.round_offsets().round_lengths())
                assert (core != 0).all(), (item["datetime"], band.name)
    assert 1 <= dates_with_nodata <= 4


def test_scene_classification_uses_cdse_classes(folder: Path, index: dict) -> None:
    seen: set[int] = set()
    for item in index["items"]:
        scl = read(folder, item, "SCL")
        seen |= set(np.unique(scl).astype(int))
        valid = scl != 0
        cloudy = np.isin(scl, (3, 8, 9, 10)) & valid
        assert item["eo:cloud_cover"] == pytest.approx(100 * cloudy.sum() / valid.sum(), abs=0.01)
    assert seen <= set(range(12))
    assert {0, 3, 4, 5, 6, 8, 9, 10, 11} <= seen
    covers = [i["eo:cloud_cover"] for i in index["items"]]
    assert sum(c == 0 for c in covers) >= 10 and max(covers) > 80


def test_cloud_pixels_are_bright_and_shadows_dark(folder: Path, index: dict) -> None:
    for day in ("2022-04-23", "2022-07-22", "2022-09-10"):
        item = item_on(index, day)
        scl = read(folder, item, "SCL")
        blue = block_mean(read(folder, item, "B02"), 2)
        nir = read(folder, item, "B8A")
        assert (scl == 9).sum() > 100
        assert np.median(blue[scl == 9]) > 3500
        assert np.median(blue[np.isin(scl, (8, 9))]) > 2 * np.median(blue[scl == 4])
        assert np.median(nir[scl == 3]) < 0.6 * np.median(nir[scl == 4])


def test_crop_ndvi_rises_and_falls_over_the_season(folder: Path, index: dict) -> None:
    landscape = sentinel2_synthetic._build_landscape()
    rows, cols = sentinel2_synthetic._pixel_window(CORE_AREA, 10)
    in_core = np.zeros(landscape.cover.shape, dtype=bool)
    in_core[rows, cols] = True
    fields = in_core & (landscape.cover == 0)

    def ndvi_series(crop: int) -> list[tuple[dt.date, float]]:
        pixels = fields & (landscape.crop[landscape.parcel] == crop)
        assert pixels.sum() > 200
        series = []
        for item in index["items"]:
            red, nir = read(folder, item, "B04"), read(folder, item, "B08")
            clear = pixels & is_clear(read(folder, item, "SCL").repeat(2, 0).repeat(2, 1))
            if clear.sum() > 0.8 * pixels.sum():
                ndvi = (nir[clear] - red[clear]) / (nir[clear] + red[clear])
                day = dt.date.fromisoformat(item["datetime"][:10])
                series.append((day, float(np.median(ndvi))))
        return series

    maize = ndvi_series(sentinel2_synthetic.MAIZE)
    peak_day, peak = max(maize, key=lambda s: s[1])
    assert maize[0][1] < 0.3 and peak > 0.7 and maize[-1][1] < peak - 0.3
    assert dt.date(2022, 7, 15) <= peak_day <= dt.date(2022, 8, 31)

    wheat = ndvi_series(sentinel2_synthetic.WHEAT)
    peak_day, peak = max(wheat, key=lambda s: s[1])
    assert wheat[0][1] < peak - 0.2 and peak > 0.7 and wheat[-1][1] < 0.3
    assert dt.date(2022, 5, 1) <= peak_day <= dt.date(2022, 6, 15)


def test_generation_is_deterministic(folder: Path, index: dict, tmp_path: Path) -> None:
    days = sentinel2_synthetic.acquisition_dates()
    for i in (12, 26):  # a clear date, and a cloudy one at the swath edge
        item = sentinel2_synthetic._write_acquisition(
            tmp_path, sentinel2_synthetic._build_landscape(), i, days[i])
        assert item == index["items"][i]
        for path in item["assets"].values():
            again = hashlib.sha256((tmp_path / path).read_bytes()).hexdigest()
            first = hashlib.sha256((folder / path).read_bytes()).hexdigest()
            assert again == first, path


def test_complete_folder_is_not_regenerated(data_dir: Path, folder: Path) -> None:
    watched = [folder / "items.json", folder / "20220602" / "B04.tif"]
    before = [p.stat().st_mtime_ns for p in watched]
    assert ensure_sample_data(data_dir) == folder
    assert [p.stat().st_mtime_ns for p in watched] == before


def test_interrupted_generation_is_redone(folder: Path, tmp_path: Path) -> None:
    copy = tmp_path / "samples" / "sentinel2_l2a"
    shutil.copytree(folder, copy)
    (copy / "20220930" / "SCL.tif").unlink()
    assert not sentinel2_synthetic._is_complete(copy)
    # An interrupted run leaves files but never the index, which is written last.
    (copy / "items.json").unlink()
    assert ensure_sample_data(tmp_path) == copy
    assert sentinel2_synthetic._is_complete(copy)
    scl = Path("20220930", "SCL.tif")
    assert (copy / scl).read_bytes() == (folder / scl).read_bytes()
    assert not list(copy.rglob("*.tmp"))


def test_index_from_another_generator_version_is_stale(folder: Path, tmp_path: Path) -> None:
    index = json.loads((folder / "items.json").read_text())
    index["generator_version"] = -1
    (tmp_path / "items.json").write_text(json.dumps(index))
    for item in index["items"]:
        for path in item["assets"].values():
            (tmp_path / path).parent.mkdir(exist_ok=True)
            (tmp_path / path).touch()
    assert not sentinel2_synthetic._is_complete(tmp_path)


def test_collection_metadata_is_plain_about_being_synthetic(folder: Path) -> None:
    meta = sample_collection_metadata(folder)
    assert meta["id"] == SAMPLE_COLLECTION_ID
    assert "synthetic" in meta["description"].lower() and "not real" in meta["description"]
    assert list(meta["bands"]) == ALL_BANDS
    common = {name: b["common_name"] for name, b in meta["bands"].items()}
    assert common == {
        "B01": "coastal", "B02": "blue", "B03": "green", "B04": "red", "B05": "rededge",
        "B06": "rededge", "B07": "rededge", "B08": "nir", "B8A": "nir08", "B09": "nir09",
        "B11": "swir16", "B12": "swir22", "SCL": None,
    }  # fmt: skip
    b04 = meta["bands"]["B04"]
    assert b04 == {
        "common_name": "red",
        "center_wavelength": 0.665,
        "gsd": 10,
        "nodata": 0,
        "scale": 0.0001,
        "offset": 0,
        "data_type": "uint16",
    }
    assert [c["value"] for c in meta["bands"]["SCL"]["classes"]] == list(range(12))
    west, south, east, north = meta["extent"]["spatial"]["bbox"][0]
    assert 11.3 < west < east < 11.4 and 46.4 < south < north < 46.6
    interval = meta["extent"]["temporal"]["interval"]
    assert interval == [["2022-04-03T10:20:00Z", "2022-09-30T10:20:00Z"]]
