"""Issue 11, defect 5: save_result options are honoured or refused, never ignored — CDSE's
documented options (filename_prefix, separate_asset_per_band, colormap, compression,
overviews, tile_size) through the official client, an unknown option as an openEO error naming
the option and the format (sync and batch), and /file_formats listing every parameter with a
schema that the API's process_json_schema accepts unambiguously."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import yaml
from tests.support.data import sample_band
from tests.support.paths import SHARED

openeo = pytest.importorskip("openeo")
jsonschema = pytest.importorskip("jsonschema")
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

BOX = {"west": 679720, "south": 5151080, "east": 680680, "north": 5151920, "crs": 32632}
JUNE = ["2022-06-01", "2022-06-10"]  # 2022-06-02 and 2022-06-07
DATES = ["2022-06-02T10:20:00Z", "2022-06-07T10:20:00Z"]
ONE_DAY = ["2022-06-07", "2022-06-08"]


def sample(sample_data_dir: Path, date: str, band: str) -> np.ndarray:
    """One band of one date of the sample collection in BOX, as stored (raw integers)."""
    return sample_band(sample_data_dir, date, band, BOX)


def s2(con, bands=("B04", "B08"), extent=JUNE):
    return con.load_collection("SENTINEL2_L2A", spatial_extent=BOX, temporal_extent=extent,
                               bands=list(bands))


# --- refused, not ignored ---------------------------------------------------------------------
def test_unknown_option_is_an_error_naming_option_and_format(con, tmp_path: Path) -> None:
    with pytest.raises(openeo.rest.OpenEoApiError) as info:
        s2(con).save_result("GTiff", options={"tiling": True}).download(tmp_path / "x.tif")
    assert info.value.code == "ProcessParameterInvalid" and info.value.http_status_code == 400
    assert "'tiling'" in info.value.message and "GTiff" in info.value.message
    with pytest.raises(openeo.rest.OpenEoApiError, match="compression.*GTiff"):
        s2(con).save_result("GTiff", options={"compression": "xz"}).download(tmp_path / "y.tif")


def test_unknown_option_fails_a_batch_job_before_computing(con) -> None:
    job = s2(con).create_job(out_format="netCDF", tile_grid="wgs84-1degree")
    job.start()
    with pytest.raises(openeo.rest.JobFailedException):
        job.start_and_wait(max_poll_interval=0.2)
    assert job.status() == "error"
    errors = [e for e in job.logs() if e["level"] == "error"]
    assert "'tile_grid'" in errors[-1]["message"] and "netCDF" in errors[-1]["message"]


# --- honoured ----------------------------------------------------------------------------------
def test_filename_prefix_and_separate_asset_per_band(con, sample_data_dir: Path,
                                                     tmp_path: Path) -> None:
    job = s2(con).create_job(out_format="GTiff", filename_prefix="s2",
                             separate_asset_per_band=True)
    job.start_and_wait(max_poll_interval=0.2)
    results = job.get_results()
    paths = results.download_files(tmp_path)
    names = sorted(p.name for p in paths if p.suffix == ".tif")
    assert names == ["s2_2022-06-02Z_B04.tif", "s2_2022-06-02Z_B08.tif",
                     "s2_2022-06-07Z_B04.tif", "s2_2022-06-07Z_B08.tif"]
    assets = results.get_metadata()["assets"]
    for name in names:
        date = DATES[0] if "06-02" in name else DATES[1]
        band = name[-7:-4]
        with rasterio.open(tmp_path / name) as ds:
            assert ds.count == 1 and ds.descriptions == (band,)
            np.testing.assert_array_equal(ds.read(1), sample(sample_data_dir, date, band))
        assert assets[name]["datetime"] == date
        assert [b["name"] for b in assets[name]["eo:bands"]] == [band]


def test_gtiff_colormap_compression_tiles_and_overviews(con, sample_data_dir: Path,
                                                       tmp_path: Path) -> None:
    bright = s2(con, ["B08"], ONE_DAY).band("B08") > 2500
    colormap = {"0": [0, 0, 0, 0], "1": 0x00FF00FF}
    bright.save_result("GTiff", options={"colormap": colormap, "compression": "zstd",
                                         "ZLEVEL": 9, "tile_size": 256,
                                         "overviews": "OFF"}).download(tmp_path / "c.tif")
    with rasterio.open(tmp_path / "c.tif") as ds:
        assert ds.dtypes == ("uint8",) and ds.compression.name.lower() == "zstd"
        # a TIFF colour table holds red, green and blue (no alpha: GDAL reports 255)
        assert ds.colormap(1)[1][:3] == (0, 255, 0) and ds.colormap(1)[0][:3] == (0, 0, 0)
        assert ds.block_shapes == [(256, 256)] and ds.overviews(1) == []
        expected = sample(sample_data_dir, DATES[1], "B08")
        np.testing.assert_array_equal(ds.read(1), (expected > 2500).astype("uint8"))


def test_png_colormap(con, sample_data_dir: Path, tmp_path: Path) -> None:
    bright = s2(con, ["B08"], ONE_DAY).band("B08") > 2500
    bright.save_result("PNG", options={"colormap": {"0": [1, 0, 0, 1], "1": [0, 0, 1, 1]}}) \
        .download(tmp_path / "c.png")
    with rasterio.open(tmp_path / "c.png") as png:
        rgba = png.read()
    expected = sample(sample_data_dir, DATES[1], "B08") > 2500
    assert rgba.shape[0] == 4
    np.testing.assert_array_equal(rgba[0], np.where(expected, 0, 255))
    np.testing.assert_array_equal(rgba[2], np.where(expected, 255, 0))
    assert (rgba[3] == 255).all()


# --- /file_formats -----------------------------------------------------------------------------
def _schemas() -> tuple[dict, list[dict]]:
    api = yaml.safe_load((SHARED / "openeo-api" / "openapi.yaml").read_text())
    components = api["components"]["schemas"]
    return api, [components["process_json_schema"]["oneOf"][0],
                 components["process_graph_json_schema"],
                 components["datacube_json_schema"]]


def test_file_formats_list_every_option_unambiguously(con) -> None:
    if not (SHARED / "openeo-api").is_dir():
        pytest.skip(f"reference material not found at {SHARED}")
    formats = con.list_file_formats()
    gtiff = formats["output"]["GTiff"]["parameters"]
    assert {"filename_prefix", "separate_asset_per_band", "colormap", "compression",
            "overviews", "tile_size", "ZLEVEL", "predictor"} <= set(gtiff)
    assert {"sample_by_feature", "feature_id_property", "filename_prefix"} <= \
        set(formats["output"]["netCDF"]["parameters"])
    assert "colormap" in formats["output"]["PNG"]["parameters"]
    api, branches = _schemas()
    resolver = jsonschema.RefResolver("", api)
    for kind in ("input", "output"):
        for name, fmt in formats[kind].items():
            for option, schema in fmt["parameters"].items():
                assert schema["description"]
                # the oneOf of process_json_schema: exactly one branch must match
                matches = [jsonschema.Draft7Validator(b, resolver=resolver).is_valid(schema)
                           for b in branches]
                assert matches == [True, False, False], (name, option)
