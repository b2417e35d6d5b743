"""More users' programs on the SENTINEL1_GRD, COPERNICUS_30 and WorldCover samples: the
Sentinel-1 part of openEO Platform's SRR2 "UC3 - Crop type feature engineering" (S1 ratio
features resampled onto and merged with monthly Sentinel-2 features), a Sentinel-1 load
without `bands` whose band names come from the client's metadata, the ids of other back-ends'
collections for these data, and the DEM's single time label.
Run through the official client against the shared server; values checked with numpy and
rasterio on the samples' files (tests/e2e/test_user_programs_sentinel1.py has the oracle of
the radar sample)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import xarray as xr
from tests.e2e.test_user_programs_notebooks_audit import compute_indices, lin_scale_range
from tests.e2e.test_user_programs_sentinel1 import LONLAT_BOX, Sample, window

openeo = pytest.importorskip("openeo")
pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def connection(server):
    return openeo.connect(server.url).authenticate_basic("demo", "demo")


@pytest.fixture(scope="module")
def sample(connection, sample_data_dir: Path) -> Sample:
    return Sample(sample_data_dir, connection.describe_collection("SENTINEL1_GRD"))


def load_nc(path: Path) -> xr.Dataset:
    with xr.open_dataset(path) as ds:
        return ds.load()


def months_of(ds: xr.Dataset) -> list[str]:
    return [str(t)[:7] for t in ds.t.values.astype("datetime64[D]")]


# --- the band listing agrees with the load ---------------------------------------------------


def test_load_without_bands_matches_the_listed_bands(connection, sample: Sample,
                                                     tmp_path: Path) -> None:
    """A program that loads SENTINEL1_GRD without `bands` and takes the band names from the
    client's metadata (`cube.metadata.band_names`, as SRR2's UC3 does): they are the loaded
    ones (CDSE lists HV and HH too, which a load over Europe cannot give)."""
    s1 = connection.load_collection("SENTINEL1_GRD", spatial_extent=LONLAT_BOX,
                                    temporal_extent=["2022-06-01", "2022-06-10"])
    assert s1.metadata.band_names == ["VV", "VH"]
    renamed = s1.rename_labels("bands", [f"{b}_linear" for b in s1.metadata.band_names],
                               source=s1.metadata.band_names)
    renamed.download(tmp_path / "s1.nc")
    ds = load_nc(tmp_path / "s1.nc")
    assert set(ds.data_vars) >= {"VV_linear", "VH_linear"}
    dates = sample.dates("2022-06-01", "2022-06-10")
    assert len(ds.t) == len(dates)
    for band in ("VV", "VH"):
        np.testing.assert_allclose(ds[f"{band}_linear"][0].values,
                                   window(sample.stored(dates[0], band), ds), rtol=1e-6)


# --- other back-ends' collection ids ---------------------------------------------------------


@pytest.mark.parametrize(("collection_id", "ours"), [
    ("S1_GRD_SIGMA0_ASCENDING", "sat:orbit_state"),   # Terrascope / openEO Platform
    ("SENTINEL1_GRD_SIGMA0", "sigma0-ellipsoid"),      # openEO Platform
    ("SENTINEL1_GAMMA0_SENTINELHUB", "gamma0-terrain"),
    ("COP_DEM", "COPERNICUS_30"),                      # CDSE's data catalogue
    ("SENTINEL1_SLC", "no single look complex"),
])
def test_other_backends_collection_ids_say_what_to_load(connection, collection_id: str,
                                                        ours: str) -> None:
    with pytest.raises(openeo.rest.OpenEoApiError) as info:
        connection.describe_collection(collection_id)
    assert info.value.http_status_code == 404 and info.value.code == "CollectionNotFound"
    assert ours in info.value.message and "GET /collections" in info.value.message
    cube = connection.load_collection(collection_id, fetch_metadata=False)
    with pytest.raises(openeo.rest.OpenEoApiError) as info:
        cube.download(format="netCDF")
    assert info.value.code == "CollectionNotFound" and ours in info.value.message


# --- openEOPlatform/SRR2_notebooks: UC3 crop type feature engineering ------------------------
# (its helper.py's compute_indices and lin_scale_range: test_user_programs_notebooks_audit.py,
# which runs the notebook's Sentinel-2 part)


def test_srr2_uc3_sentinel1_ratio_features(connection, sample: Sample, tmp_path: Path) -> None:
    """UC3 (rule-based and random forest notebooks): monthly Sentinel-2 NDVI/B08/B11 features
    and Sentinel-1 VH/VV ratio features, the S1 cube resampled onto the S2 cube and merged.
    Adapted: the valley and 2022 (April-September, the radar sample's months), and Terrascope's
    `S1_GRD_SIGMA0_ASCENDING` as what it is here: SENTINEL1_GRD's ascending passes with
    sigma0 on the ellipsoid (the error for that id says so). Its last `rename_labels` needs
    `source` here (below)."""
    from openeo.processes import array_modify

    temp_ext = ["2022-04-01", "2022-10-01"]
    s2 = connection.load_collection("SENTINEL2_L2A", spatial_extent=LONLAT_BOX,
                                    temporal_extent=temp_ext, bands=["B04", "B08", "B11", "SCL"])
    s2_masked = s2.process("mask_scl_dilation", data=s2, scl_band_name="SCL").filter_bands(
        ["B04", "B08", "B11"])
    ndvi = compute_indices(s2_masked, ["NDVI"], 250).filter_bands(["NDVI"])
    s2_scaled = s2_masked.filter_bands(["B08", "B11"]).apply_dimension(
        dimension="bands", process=lambda x: lin_scale_range(x, 0, 8000, 0, 250))
    ndvi_comp = ndvi.merge_cubes(s2_scaled).rename_labels(
        "bands", ndvi.metadata.band_names + s2_scaled.metadata.band_names)
    ndvi_month = ndvi_comp.aggregate_temporal_period(period="month", reducer="mean")
    ndvi_month = ndvi_month.apply_dimension(dimension="t", process="array_interpolate_linear")

    s1 = connection.load_collection(
        "SENTINEL1_GRD", spatial_extent=LONLAT_BOX, temporal_extent=temp_ext,
        bands=["VH", "VV"], properties={"sat:orbit_state": lambda s: s == "ascending"},
    ).sar_backscatter(coefficient="sigma0-ellipsoid")
    composite_s1 = s1.apply_dimension(dimension="bands", process=lambda x: array_modify(
        data=x, values=x.array_element(0) / x.array_element(1), index=0))
    composite_s1 = composite_s1.rename_labels("bands",
                                              ["ratio"] + composite_s1.metadata.band_names)
    composite_s1 = composite_s1.apply_dimension(
        dimension="bands", process=lambda x: lin_scale_range(x, 0, 1, 0, 250))
    s1_month = composite_s1.aggregate_temporal_period(period="month", reducer="mean")
    s1_month = s1_month.apply_dimension(dimension="t", process="array_interpolate_linear")
    s1_month = s1_month.resample_cube_spatial(ndvi_comp)

    ndvi_comp_sar = ndvi_month.merge_cubes(s1_month).rename_labels(
        "bands", ndvi_month.metadata.band_names + ["ratio", "VV", "VH"]).filter_bands(
        ndvi_month.metadata.band_names + ["ratio"]).filter_temporal(["2022-01-01", "2022-12-31"])
    # The merged bands are NDVI, B08, B11, ratio, VH, VV: renaming them in order to "..., VV,
    # VH" (CDSE renames by position) would swap VV and VH. Refused (decision 0011), with the
    # labels to pass as `source`; the program then runs with that one edit.
    with pytest.raises(openeo.rest.OpenEoApiError) as info:
        ndvi_comp_sar.download(tmp_path / "features.nc")
    assert info.value.code == "LabelsNotEnumerated"
    assert '"ratio", "VH", "VV"]' in info.value.message
    ndvi_comp_sar = ndvi_month.merge_cubes(s1_month).rename_labels(
        "bands", ndvi_month.metadata.band_names + ["ratio", "VV", "VH"],
        source=["NDVI", "B08", "B11", "ratio", "VV", "VH"]).filter_bands(
        ndvi_month.metadata.band_names + ["ratio"]).filter_temporal(["2022-01-01", "2022-12-31"])
    ndvi_comp_sar.download(tmp_path / "features.nc")
    ds = load_nc(tmp_path / "features.nc")

    assert set(ds.data_vars) >= {"NDVI", "B08", "B11", "ratio"}
    assert "VV" not in ds.data_vars
    months = ["2022-04", "2022-05", "2022-06", "2022-07", "2022-08", "2022-09"]
    assert months_of(ds) == months
    # the ratio: sigma0 VH / VV (the angles cancel: the stored values' ratio), scaled by 250,
    # the month's mean of the ascending passes
    for k, month in enumerate(months):
        dates = sample.dates(f"{month}-01", f"{month}-32", "ascending")
        assert dates
        ratios = [window(sample.stored(d, "VH") / sample.stored(d, "VV"), ds) * 250
                  for d in dates]
        with np.errstate(invalid="ignore"):
            expected = np.nanmean(np.stack(ratios), axis=0)
        np.testing.assert_allclose(ds["ratio"][k].values, expected, rtol=1e-4)
    ndvi_values = ds["NDVI"].values
    assert np.nanmin(ndvi_values) >= 0 and np.nanmax(ndvi_values) <= 250
    assert np.isfinite(ndvi_values).mean() > 0.9


# --- COPERNICUS_30: one time label, merged with Sentinel-2 dates -----------------------------


def test_dem_has_one_time_label_whatever_the_extent(connection, sample_data_dir: Path,
                                                    tmp_path: Path) -> None:
    """The DEM has one time label, 2010-12-12 (the start of the TanDEM-X acquisitions, as
    Terrascope's COPERNICUS_30 extent begins), whatever temporal extent a program gives:
    LoadBiomassSTAC relies on "only one timestep" before its mean_time()."""
    dem = connection.load_collection("COPERNICUS_30", spatial_extent=LONLAT_BOX,
                                     temporal_extent=["2022-06-01", "2022-07-01"])
    dem.download(tmp_path / "dem.nc")
    ds = load_nc(tmp_path / "dem.nc")
    assert [str(t)[:10] for t in ds.t.values.astype("datetime64[D]")] == ["2010-12-12"]
    with rasterio.open(sample_data_dir / "samples" / "dem_landcover" / "copernicus_30.tif") as src:
        rows, cols = rasterio.transform.rowcol(src.transform, ds.x.values[[0, -1]],
                                               ds.y.values[[0, -1]])
        stored = src.read(1)[rows[0]:rows[1] + 1, cols[0]:cols[1] + 1]
    np.testing.assert_allclose(ds["DEM"][0].values, stored)
