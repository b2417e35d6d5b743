"""Notebooks of the openEO Platform (sample-notebooks, SRR2_notebooks), the CDSE notebook samples
(openeo/) and the Cubes & Clouds MOOC that no other test ran yet, cell by cell as a user runs
them through the official client against the shared server; adapted only in URL, login,
collection, extent and dates to the Sentinel-2 sample (April-September 2022). Values checked
with numpy/rasterio on the sample files or on the cube the same server wrote, where the check
is of another step (filter_spatial against the downloaded cube, the crop rules against the
monthly bands). The audit's list of every notebook and where it stands is in
docs/user-guide/cdse-processes.md ("Notebook audit").
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import xarray as xr
from pyproj import Transformer
from tests.support.data import sample_series

openeo = pytest.importorskip("openeo")
pd = pytest.importorskip("pandas")
gpd = pytest.importorskip("geopandas")
shapely_geometry = pytest.importorskip("shapely.geometry")
shapely = pytest.importorskip("shapely")
pytestmark = pytest.mark.e2e

# 30 x 30 pixels of 10 m on the sample's grid (origin 678000, 5153520), in the valley.
BOX = {"west": 680000, "south": 5151200, "east": 680300, "north": 5151500, "crs": 32632}
TO_LONLAT = Transformer.from_crs(32632, 4326, always_xy=True)


def lonlat_box(west: float, south: float, east: float, north: float) -> tuple[float, ...]:
    """A UTM rectangle's bounds in longitude/latitude (the notebooks' `bbox` tuples), inset
    1 m so that it snaps out to the same pixels."""
    xs, ys = TO_LONLAT.transform([west + 1, east - 1, west + 1, east - 1],
                                 [south + 1, south + 1, north - 1, north - 1])
    return min(xs), min(ys), max(xs), max(ys)


@pytest.fixture(scope="module")
def connection(server):
    return openeo.connect(server.url).authenticate_basic("demo", "demo")


# --- SRR2_notebooks "UC3 - Crop type feature engineering (rule-based)", Sentinel-2 part ------
# The notebook's helper.py (compute_indices, lin_scale_range), as it builds the graph.
def ndvi_index(B04, B08):  # noqa: N803 - helper.py's band names
    return (B08 - B04) / (B08 + B04)


def compute_indices(datacube, index_list: list, scaling_factor: int | None = None):
    from openeo.processes import array_modify

    def callback(x):
        values = []
        for name in index_list:
            fun, index_range = {"NDVI": (ndvi_index, (0, 1))}[name]
            positions = [datacube.metadata.get_band_index(b)
                         for b in fun.__code__.co_varnames[:fun.__code__.co_argcount]]
            result = fun(*[x.array_element(i) for i in positions])
            if scaling_factor is not None:
                result = result.linear_scale_range(*index_range, 0, scaling_factor)
            values.append(result)
        x_res = x.linear_scale_range(0, 8000, 0, scaling_factor) if scaling_factor else x
        return array_modify(data=x_res, values=values,
                            index=len(datacube.metadata._band_dimension.bands))

    return datacube.apply_dimension(dimension="bands", process=callback).rename_labels(
        "bands", target=datacube.metadata.band_names + index_list)


def lin_scale_range(x, inputMin, inputMax, outputMin, outputMax):  # noqa: N803
    from openeo.processes import add, divide, multiply, subtract

    return add(multiply(divide(subtract(x, inputMin), subtract(inputMax, inputMin)),
                        subtract(outputMax, outputMin)), outputMin)


def buffered_points(points: list[tuple[float, float]]) -> dict:
    """helper.py's point_sample_fields: points buffered by 1 m in UTM, as GeoJSON in WGS 84."""
    features = []
    for x, y in points:
        circle = shapely_geometry.Point(x, y).buffer(1)
        lonlat = shapely.transform(circle, lambda xy: np.column_stack(
            TO_LONLAT.transform(xy[:, 0], xy[:, 1])))
        features.append({"type": "Feature", "properties": {"name": "maize"},
                         "geometry": shapely_geometry.mapping(lonlat)})
    return {"type": "FeatureCollection", "features": features}


def test_uc3_rule_based_crop_types(connection, tmp_path: Path) -> None:
    """UC3 rule-based: dekad means of the masked NDVI (mask_scl_dilation, compute_indices of
    helper.py), linearly interpolated, then `filter_temporal` to the year (once "unconverted
    data remains when parsing with format %Y-%m": dekad labels are no dates; they are read by
    their first day now, as CDSE labels them); `merge_cubes(...).rename_labels("bands",
    a_names + b_names)` (once LabelsNotEnumerated; renaming to the names it has is a no-op);
    points buffered by 1 m sampled with filter_spatial + sample_by_feature (once 0 pixels per
    file; CDSE keeps the pixels such a circle touches, the notebook reads 1 x 1 to 2 x 2);
    monthly bands to `bands` and the crop rules as band math, saved as a GTiff with a colormap.
    """
    from openeo.processes import ProcessBuilder
    from openeo.rest.conversions import timeseries_json_to_pandas

    year = 2022
    temp_ext = [str(year - 1) + "-11-01", str(year + 1) + "-02-01"]
    s2 = connection.load_collection("SENTINEL2_L2A", temporal_extent=temp_ext,
                                    bands=["B04", "B08", "B11", "SCL"])
    s2_masked = s2.process("mask_scl_dilation", data=s2, scl_band_name="SCL").filter_bands(
        ["B04", "B08", "B11"])
    ndvi = compute_indices(s2_masked, ["NDVI"], 250).filter_bands(["NDVI"])

    field = (680100, 5151300, 680200, 5151400)  # 10 x 10 pixels
    bbox_potatofield = lonlat_box(*field)
    box = shapely_geometry.box
    agg_dekad = ndvi.aggregate_temporal_period(period="dekad", reducer="mean")
    ndvi_dekad = agg_dekad.apply_dimension(dimension="t", process="array_interpolate_linear") \
        .filter_temporal([str(year) + "-01-01", str(year) + "-12-31"])
    ndvi_bbox = ndvi_dekad.filter_spatial(geometries=box(*bbox_potatofield))
    timeseries = ndvi_bbox.aggregate_spatial(reducer="mean",
                                             geometries=box(*bbox_potatofield)).execute()
    timeseries_sd = ndvi_bbox.aggregate_spatial(reducer="sd",
                                                geometries=box(*bbox_potatofield)).execute()
    timeser = pd.concat([timeseries_json_to_pandas(timeseries),
                         timeseries_json_to_pandas(timeseries_sd)], axis=1).dropna() / 250
    timeser.columns = ["Mean NDVI", "SD"]
    timeser.index = pd.to_datetime(timeser.index)
    timeser = timeser.sort_index()
    # dekads by their first day (1, 11, 21), only those of 2022; the sample starts 3 April
    assert set(timeser.index.day) <= {1, 11, 21}
    assert timeser.index[0] == pd.Timestamp("2022-04-01", tz="UTC")
    assert (timeser.index.year == 2022).all()
    # the same dekads written by the server, averaged over the field with numpy
    ndvi_bbox.download(tmp_path / "dekads.nc")
    dekads = xr.load_dataset(tmp_path / "dekads.nc")["NDVI"]
    assert dekads.sizes["x"] == dekads.sizes["y"] == 10
    means = dekads.mean(dim=["x", "y"]).to_series().dropna() / 250
    np.testing.assert_allclose(timeser["Mean NDVI"].to_numpy(), means.to_numpy(), rtol=1e-5)
    np.testing.assert_allclose(
        timeser["SD"].to_numpy(),
        (dekads.std(dim=["x", "y"], ddof=1).to_series().dropna() / 250).to_numpy(), rtol=1e-4)

    s2_scaled = s2_masked.filter_bands(["B08", "B11"]).apply_dimension(
        dimension="bands", process=lambda x: lin_scale_range(x, 0, 8000, 0, 250))
    ndvi_comp = ndvi.merge_cubes(s2_scaled).rename_labels(
        "bands", ndvi.metadata.band_names + s2_scaled.metadata.band_names)
    ndvi_month = ndvi_comp.aggregate_temporal_period(period="month", reducer="mean")
    ndvi_month = ndvi_month.apply_dimension(dimension="t", process="array_interpolate_linear")
    # (the notebook merges Sentinel-1 here; its rules run without it: run_with_SAR = False)
    ndvi_comp_sar = ndvi_month.filter_temporal([str(year) + "-01-01", str(year) + "-12-31"])

    # one pixel's centre, a point 0.3 m from a column edge, one 0.3 m from a corner
    points = [(680105, 5151305), (680110.3, 5151325), (680130.3, 5151340.3)]
    job = ndvi_comp_sar.filter_spatial(buffered_points(points)).execute_batch(
        title="Point feature extraction", out_format="netCDF", sample_by_feature=True,
        job_options={"executor-memory": "5G", "max-executors": "100"})
    job.get_results().download_files(tmp_path / "300_maize")
    ndvi_comp_sar.filter_bbox(dict(zip(("west", "south", "east", "north"),
                                       lonlat_box(*field), strict=True))).download(
        tmp_path / "months.nc")
    months = xr.load_dataset(tmp_path / "months.nc")
    assert list(months.data_vars)[-3:] == ["NDVI", "B08", "B11"]
    shapes = []
    for i, (x, y) in enumerate(points):
        ds = xr.load_dataset(tmp_path / "300_maize" / f"openEO_{i}.nc")
        shapes.append(ds["NDVI"].shape[1:])
        # the pixels whose cells the 2 m circle touches, with the cube's values
        cols = [c for c in months.x.values if abs(c - x) < 5 + 1]
        rows = [r for r in months.y.values if abs(r - y) < 5 + 1]
        np.testing.assert_array_equal(ds.x.values, cols)
        np.testing.assert_array_equal(ds.y.values, rows)
        for band in ("NDVI", "B08", "B11"):
            expected = months[band].sel(x=cols, y=rows).values
            np.testing.assert_allclose(ds[band].values, expected, rtol=1e-6)
            assert np.isfinite(ds[band].values).all()
    assert shapes == [(1, 1), (1, 2), (2, 2)]

    all_bands = ndvi_comp_sar.apply_dimension(dimension="t", target_dimension="bands",
                                              process=lambda x: x * 1)
    names = ["apr", "may", "jun", "jul", "aug", "sep"]  # the sample's months
    bandnames = [band + "_" + stat for band in all_bands.metadata.band_names for stat in names]
    all_bands = all_bands.rename_labels("bands", target=bandnames)
    ndvi_apr, ndvi_may, ndvi_jun, ndvi_jul, ndvi_aug, ndvi_sep = (
        all_bands.band("NDVI_" + m) for m in names)
    nir_may, nir_jun = all_bands.band("B08_may"), all_bands.band("B08_jun")
    swir_apr, swir_may = all_bands.band("B11_apr"), all_bands.band("B11_may")
    corn = (((ndvi_may < ndvi_jun) + (((ndvi_jul + ndvi_aug + ndvi_sep) / 3) > 175)) == 2) * 1
    barley = (((ndvi_apr < ndvi_may) + ((ndvi_jun / ndvi_jul) > 1.4)
               + (swir_apr > swir_may)) == 2) * 1
    potato = ((((swir_may / nir_may) > 0.8) + ((nir_jun / nir_may) > 1.4)) == 2) * 1
    total = (1 * corn + 2 * barley + 8 * potato).linear_scale_range(0, 32, 0, 32)
    colors = {x: (x / 32, 0.5, 1.0, 1.0) for x in range(32)}  # matplotlib's RGBA, as there
    job = total.filter_bbox(dict(zip(("west", "south", "east", "north"), lonlat_box(*field),
                                     strict=True))).execute_batch(
        out_format="GTiff", colormap=colors, title="Rule-based crop classification",
        job_options={"executor-cores": "3"})
    job.get_results().download_file(tmp_path / "total.tif")
    with rasterio.open(tmp_path / "total.tif") as src:
        got = src.read(1)
        assert np.allclose(src.colormap(1)[3], [255 * c for c in colors[3]], atol=1)

    m = {name: {b: months[b].isel(t=i).values for b in ("NDVI", "B08", "B11")}
         for i, name in enumerate(names)}
    with np.errstate(invalid="ignore", divide="ignore"):
        e_corn = ((m["may"]["NDVI"] < m["jun"]["NDVI"]).astype(int)
                  + ((m["jul"]["NDVI"] + m["aug"]["NDVI"] + m["sep"]["NDVI"]) / 3 > 175)) == 2
        e_barley = ((m["apr"]["NDVI"] < m["may"]["NDVI"]).astype(int)
                    + (m["jun"]["NDVI"] / m["jul"]["NDVI"] > 1.4)
                    + (m["apr"]["B11"] > m["may"]["B11"])) == 2
        e_potato = ((m["may"]["B11"] / m["may"]["B08"] > 0.8).astype(int)
                    + (m["jun"]["B08"] / m["may"]["B08"] > 1.4)) == 2
    expected = 1 * e_corn + 2 * e_barley + 8 * e_potato
    known = np.all([np.isfinite(v) for month in m.values() for v in month.values()], axis=0)
    assert known.mean() > 0.5
    np.testing.assert_array_equal(got[known], expected[known])
    assert len(np.unique(got)) > 1  # the rules tell fields apart here

    # the notebook's last cell: quantiles over t as bands, renamed, in netCDF
    def compute_stats(input_timeseries: ProcessBuilder):
        return input_timeseries.quantiles(probabilities=[0.1, 0.5, 0.9])

    features = ndvi.apply_dimension(dimension="t", target_dimension="bands",
                                    process=compute_stats)
    features = features.rename_labels("bands", [band + "_" + stat for band in
                                                ndvi.metadata.band_names
                                                for stat in ["p10", "p50", "p90"]])
    assert json.dumps(features.flat_graph())  # built as the notebook builds it


# --- CDSE notebook-samples openeo/: Batch_job, Load_Collection, UDF -------------------------
MAY = ("2022-05-01", "2022-05-30")


def clear_dates(sample_data_dir: Path, below: float) -> list[str]:
    """The days of MAY whose item has eo:cloud_cover <= `below` (max_cloud_cover's rule)."""
    items = json.loads((sample_data_dir / "samples" / "sentinel2_l2a" / "items.json")
                       .read_text())["items"]
    return sorted(i["datetime"][:10] for i in items
                  if MAY[0] <= i["datetime"][:10] < MAY[1] and i["eo:cloud_cover"] <= below)


def stored(sample_data_dir: Path, band: str, days: list[str]) -> np.ndarray:
    series = sample_series(sample_data_dir, band, BOX, *MAY)
    return np.stack([series[d] for d in days])


def test_cdse_batch_job_notebook(connection, sample_data_dir: Path, tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Batch_job.ipynb: a GTiff batch job of three bands with max_cloud_cover=50, its status,
    logs and results, downloaded to output/batch_job and read per date with rasterio."""
    import pathlib

    monkeypatch.chdir(tmp_path)  # the notebook's relative paths
    cube = connection.load_collection("SENTINEL2_L2A", bands=["B04", "B03", "B02"],
                                      temporal_extent=MAY, spatial_extent=BOX,
                                      max_cloud_cover=50)
    cube = cube.save_result(format="GTiff")
    job = cube.execute_batch(title="Slice of S2 data")
    assert job.job_id and job.status() == "finished"
    assert any("Finished" in entry["message"] for entry in job.logs())
    results = job.get_results()
    results.download_files("output/batch_job")
    paths = sorted(pathlib.Path("output/batch_job/").glob("*tif"))
    days = clear_dates(sample_data_dir, 50)
    assert [p.name for p in paths] == [f"openEO_{d}Z.tif" for d in days]
    expected = {b: stored(sample_data_dir, b, days) for b in ("B04", "B03", "B02")}
    for i, path in enumerate(paths[:4]):
        data = rasterio.open(path).read()
        assert data.shape == (3, 30, 30)
        for k, band in enumerate(("B04", "B03", "B02")):
            np.testing.assert_array_equal(data[k], expected[band][i])
        assert (data.transpose(1, 2, 0) / 3000).clip(0, 1).shape == (30, 30, 3)  # the plot


def test_cdse_load_collection_notebook(connection, sample_data_dir: Path,
                                       tmp_path: Path) -> None:
    """Load_Collection.ipynb: the raw cube and its max composite as netCDF read with xarray
    (`ds[[...]].to_array(dim="bands")`, `data[{"t": 0}]`), the SCL mask with the notebook's
    "offset workaround" (SCL == 3 - 1000 ...: masks nothing here as on CDSE today) resampled
    onto the cube, the masked composite."""
    s2_cube = connection.load_collection("SENTINEL2_L2A", temporal_extent=MAY,
                                         spatial_extent=BOX, bands=["B04", "B03", "B02", "SCL"],
                                         max_cloud_cover=50)
    s2_cube.download(tmp_path / "load-raw.nc")
    ds = xr.load_dataset(tmp_path / "load-raw.nc")
    data = ds[["B04", "B03", "B02"]].to_array(dim="bands")
    days = clear_dates(sample_data_dir, 50)
    assert data[{"t": 0}].dims == ("bands", "y", "x")
    np.testing.assert_array_equal(data[{"t": -1}].sel(bands="B04").values,
                                  stored(sample_data_dir, "B04", days)[-1])

    composite = s2_cube.max_time()
    composite.download(tmp_path / "load-composite.nc")
    ds = xr.load_dataset(tmp_path / "load-composite.nc")
    data = ds[["B04", "B03", "B02"]].to_array(dim="bands")
    assert data.dims == ("bands", "y", "x")
    np.testing.assert_array_equal(data.sel(bands="B03").values,
                                  np.nanmax(stored(sample_data_dir, "B03", days), axis=0))

    scl_band = s2_cube.band("SCL")
    cloud_mask = (scl_band == 3 - 1000) | (scl_band == 8 - 1000) | (scl_band == 9 - 1000)
    cloud_mask = cloud_mask.resample_cube_spatial(s2_cube)
    composite_masked = s2_cube.mask(cloud_mask).max_time()
    composite_masked.download(tmp_path / "load-composite-masked.nc")
    masked = xr.load_dataset(tmp_path / "load-composite-masked.nc")
    np.testing.assert_array_equal(masked["B02"].values, ds["B02"].values)


def test_cdse_udf_notebook(connection, sample_data_dir: Path, tmp_path: Path) -> None:
    """UDF.ipynb: the max over t, then an inline UDF that rescales `array.values` by 0.0001
    (XarrayDataCube API), downloaded as GeoTIFF."""
    cube = connection.load_collection("SENTINEL2_L2A", bands=["B04", "B03", "B02"],
                                      temporal_extent=MAY, spatial_extent=BOX,
                                      max_cloud_cover=50)
    cube = cube.reduce_dimension(dimension="t", reducer="max")
    udf = openeo.UDF("""
from openeo.udf import XarrayDataCube

def apply_datacube(cube: XarrayDataCube, context: dict) -> XarrayDataCube:
    array = cube.get_array()
    array.values = 0.0001 * array.values
    return cube
""")
    rescaled_cube = cube.apply(process=udf)
    rescaled_cube.download(tmp_path / "rescale_s2.tiff")
    img = rasterio.open(tmp_path / "rescale_s2.tiff").read()
    days = clear_dates(sample_data_dir, 50)
    for k, band in enumerate(("B04", "B03", "B02")):
        np.testing.assert_allclose(img[k], 0.0001 * np.nanmax(stored(sample_data_dir, band,
                                                                      days), axis=0),
                                   rtol=1e-6)


def test_uc3_benchmark_feature_engineering(connection, tmp_path: Path) -> None:
    """SRR2_notebooks UC3-Benchmark, its Sentinel-2 feature engineering: load_collection with
    CDSE's `featureflags` set on the node (`s2._pg.arguments['featureflags'] = ...`; once
    ProcessParameterUnsupported, now ignored as tuning hints), dekad medians interpolated,
    NDVI and NDMI appended by helper.py's compute_indices, then per band the quartiles
    (`quantiles(q=4)`) with mean and sd (array_concat) as bands, a GTiff job with ZLEVEL=9 and
    the job's result metadata. The statistics are checked with numpy against the interpolated
    cube the server writes."""
    from openeo.processes import ProcessBuilder, array_concat

    west, south, east, north = lonlat_box(680100, 5151300, 680200, 5151400)
    s2 = connection.load_collection(
        "SENTINEL2_L2A", spatial_extent={"west": west, "east": east, "south": south,
                                         "north": north},
        temporal_extent=["2022-01-01", "2023-01-01"], bands=["B04", "B08", "B11", "SCL"])
    s2._pg.arguments["featureflags"] = {"indexreduction": 0, "temporalresolution": "None",
                                        "tilesize": 512}
    s2_masked = s2.process("mask_scl_dilation", data=s2, scl_band_name="SCL").filter_bands(
        ["B04", "B08", "B11"])
    composite = s2_masked.aggregate_temporal_period(period="dekad", reducer="median")
    interpolated = composite.apply_dimension(dimension="t", process="array_interpolate_linear")
    indices = compute_indices(interpolated, ["NDVI"])
    indices.download(tmp_path / "indices.nc")

    def computeStats(input_timeseries: ProcessBuilder):  # noqa: N802 - the notebook's name
        return array_concat(input_timeseries.quantiles(q=4),
                            [input_timeseries.mean(), input_timeseries.sd()]
                            ).linear_scale_range(0, 2000, 0, 250)

    features = indices.apply_dimension(dimension="t", target_dimension="bands",
                                       process=computeStats)
    features = features.rename_labels("bands", [
        band + "_" + stat for band in indices.metadata.band_names
        for stat in ["p10", "p50", "p90", "mean", "sd"]])
    job = features.execute_batch(str(tmp_path / "fulltile.tiff"),
                                 title="benchmark feature engineering", out_format="GTiff",
                                 ZLEVEL=9)
    metadata = job.get_results().get_metadata()
    assert metadata["assets"] and metadata["openeo:status"] == "finished"

    cube = xr.load_dataset(tmp_path / "indices.nc")
    with rasterio.open(tmp_path / "fulltile.tiff") as src:
        assert src.count == 20 and src.descriptions[:5] == (
            "B04_p10", "B04_p50", "B04_p90", "B04_mean", "B04_sd")
        assert src.descriptions[15] == "NDVI_p10"
        got = {name: src.read(i + 1) for i, name in enumerate(src.descriptions)}
    for band in ("B04", "NDVI"):
        series = cube[band].values  # (t, y, x)
        with np.errstate(all="ignore"):
            stats = {"p10": np.nanquantile(series, 0.25, axis=0),  # q=4: the quartiles
                     "p50": np.nanquantile(series, 0.5, axis=0),
                     "p90": np.nanquantile(series, 0.75, axis=0),
                     "mean": np.nanmean(series, axis=0), "sd": np.nanstd(series, axis=0, ddof=1)}
        for stat, values in stats.items():
            np.testing.assert_allclose(got[f"{band}_{stat}"], values / 2000 * 250, rtol=1e-4,
                                       atol=1e-6, err_msg=f"{band}_{stat}")


def test_platform_ethiopia_cgls_basics(connection, sample_data_dir: Path, tmp_path: Path) -> None:
    """sample-notebooks ethiopia-CGLS-basics.ipynb (CGLS_NDVI300_V1_GLOBAL's `ndvi` DN ->
    the sample's B08): describe_collection, a quarter downloaded as netCDF and read with
    `engine="h5netcdf"`, the DN rescaled by `apply(lambda x: x / 250 - 0.08)`, the image with
    the fewest gaps picked by `notnull().sum(dim=["x", "y"]).argmax()`, then the mean of two
    MultiPolygons (no spatial extent) over a year as JSON, read with timeseries_json_to_pandas
    and `ts.columns = ["forest", "urban"]`."""
    from openeo.rest.conversions import timeseries_json_to_pandas

    pytest.importorskip("h5netcdf")
    collection_id = "SENTINEL2_L2A"
    assert connection.describe_collection(collection_id)["id"] == collection_id
    temporal_extent = ["2022-04-01", "2022-06-30"]
    cube = connection.load_collection(collection_id, temporal_extent=temporal_extent,
                                      spatial_extent=BOX, bands=["B08"])
    cube = cube.apply(lambda x: x / 250 - 0.08)
    cube.download(tmp_path / "AddisAbaba.nc")
    data = xr.load_dataset(tmp_path / "AddisAbaba.nc", engine="h5netcdf")
    ndvi = data["B08"]
    expected = sample_series(sample_data_dir, "B08", BOX, *temporal_extent)
    assert [str(t)[:10] for t in ndvi.t.values] == list(expected)
    np.testing.assert_allclose(ndvi.values, np.stack(list(expected.values())) / 250 - 0.08,
                               rtol=1e-6)
    least_no_data = ndvi.notnull().sum(dim=["x", "y"]).argmax().item()
    assert np.datetime_as_string(ndvi.isel(t=least_no_data).t, unit="D") in expected

    forest = (680000, 5151200, 680100, 5151300)
    urban = (680200, 5151400, 680300, 5151500)

    def feature(name: str, rect: tuple) -> dict:
        w, s, e, n = lonlat_box(*rect)
        ring = [[w, s], [e, s], [e, n], [w, n], [w, s]]
        return {"type": "Feature", "properties": {"name": name},
                "geometry": {"type": "MultiPolygon", "coordinates": [[ring]]}}

    geometries = {"type": "FeatureCollection",
                  "features": [feature("forest", forest), feature("urban", urban)]}
    cube = connection.load_collection(collection_id, temporal_extent=["2022-01-01",
                                                                      "2022-12-31"],
                                      bands=["B08"]).apply(lambda x: x / 250 - 0.08)
    cube.aggregate_spatial(geometries=geometries, reducer="mean").download(
        tmp_path / "mean-ndvi-timeseries.json")
    with open(tmp_path / "mean-ndvi-timeseries.json") as f:
        ts = timeseries_json_to_pandas(json.load(f))
    ts = ts.dropna()
    ts.columns = ["forest", "urban"]
    ts.index = pd.to_datetime(ts.index)
    for name, rect in (("forest", forest), ("urban", urban)):
        box = dict(zip(("west", "south", "east", "north"), rect, strict=True), crs=32632)
        stored_means = {day: np.nanmean(v) / 250 - 0.08 for day, v in
                        sample_series(sample_data_dir, "B08", box, "2022-01-01",
                                      "2022-12-31").items()}
        got = {t.strftime("%Y-%m-%d"): v for t, v in ts[name].items()}
        assert got and set(got) <= set(stored_means)
        np.testing.assert_allclose([got[d] for d in got], [stored_means[d] for d in got],
                                   rtol=1e-5)


def test_cdse_ndvi_timeseries_notebook(connection, sample_data_dir: Path, tmp_path: Path) -> None:
    """NDVI_Timeseries.ipynb, its first part: NDVI band math with no spatial extent, the mean
    over fields (a FeatureCollection) as a CSV batch job, `download_file` of the one asset,
    and the notebook's plot_timeseries reading (index the dates, `groupby("feature_index")`
    of the column `band_unnamed`). Its smoothing UDF fails as on CDSE (see
    test_user_programs_cdse_more.py for the corrected one)."""
    fields_utm = [(680000, 5151200, 680100, 5151300), (680150, 5151350, 680300, 5151500)]

    def polygon(rect: tuple) -> dict:
        w, s, e, n = lonlat_box(*rect)
        return {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}

    fields = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {}, "geometry": polygon(r)} for r in fields_utm]}
    s2cube = connection.load_collection("SENTINEL2_L2A",
                                        temporal_extent=["2022-06-01", "2022-07-01"],
                                        bands=["B04", "B08"])
    red = s2cube.band("B04")
    nir = s2cube.band("B08")
    ndvi = (nir - red) / (nir + red)
    timeseries = ndvi.aggregate_spatial(geometries=fields, reducer="mean")
    job = timeseries.execute_batch(out_format="CSV", title="NDVI timeseries")
    job.get_results().download_file(tmp_path / "ndvi-results" / "timeseries-basic.csv")

    df = pd.read_csv(tmp_path / "ndvi-results" / "timeseries-basic.csv", index_col=0)
    df.index = pd.to_datetime(df.index)
    df = df.sort_index()
    per_field = dict(iter(df.groupby("feature_index")["band_unnamed"]))
    assert sorted(per_field) == [0, 1]
    for i, rect in enumerate(fields_utm):
        box = dict(zip(("west", "south", "east", "north"), rect, strict=True), crs=32632)
        b04 = sample_series(sample_data_dir, "B04", box, "2022-06-01", "2022-07-01")
        b08 = sample_series(sample_data_dir, "B08", box, "2022-06-01", "2022-07-01")
        with np.errstate(all="ignore"):
            expected = {d: np.nanmean((b08[d] - b04[d]) / (b08[d] + b04[d])) for d in b04}
        got = per_field[i]
        assert [t.strftime("%Y-%m-%d") for t in got.index] == list(expected)
        np.testing.assert_allclose(got.to_numpy(), list(expected.values()), rtol=1e-5)
