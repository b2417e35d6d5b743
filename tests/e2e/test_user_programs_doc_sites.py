"""Real users' programs from three documentation sites, swept page by page: CDSE's openEO
pages (eu-cdse/documentation APIs/openEO: Python client, FAIR re-run from job metadata, job
configuration), openeo.org's documentation 1.0 (cookbook parts the earlier sweep left out) and
the openEO Platform documentation (use cases: vessel detection, NO2 monitoring, federation).
Each is adapted only in URL, login, collection, bands, extent and dates to the built-in
samples, run through the official client against the shared server; values are checked with
numpy/rasterio on the sample files. Programs that need data or processes terracube does not
have are checked to get a clear openEO error (docs/user-guide/cdse-processes.md lists them).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import rasterio.features
import shapely
import xarray as xr
from pyproj import Transformer
from shapely.geometry import shape
from tests.support.data import sample_series

openeo = pytest.importorskip("openeo")
pytestmark = pytest.mark.e2e

# 30 x 30 pixels of 10 m on the pixel edges of the Sentinel-2 sample's grid.
BOX = {"west": 680000, "south": 5151200, "east": 680300, "north": 5151500, "crs": 32632}


def box_polygon() -> dict:
    """BOX as a longitude/latitude polygon whose pixels (centres inside) are exactly BOX's."""
    to_ll = Transformer.from_crs(32632, 4326, always_xy=True)
    corners = [(BOX["west"], BOX["north"]), (BOX["west"], BOX["south"]),
               (BOX["east"], BOX["south"]), (BOX["east"], BOX["north"])]
    ring = [list(to_ll.transform(x, y)) for x, y in corners]
    return {"type": "Polygon", "coordinates": [[*ring, ring[0]]]}


def items(sample_data_dir: Path) -> dict[str, float]:
    doc = json.loads((sample_data_dir / "samples" / "sentinel2_l2a" / "items.json").read_text())
    return {i["datetime"][:10]: i["eo:cloud_cover"] for i in doc["items"]}


def only_var(ds: xr.Dataset) -> xr.DataArray:
    (name,) = [v for v in ds.data_vars if v != "crs"]
    return ds[name]


# --- CDSE: APIs/openEO/Python_Client/Python.qmd, job_config.qmd, federation --------------------
def test_cdse_python_client_page(con, sample_data_dir: Path, tmp_path: Path) -> None:
    """The page's step-by-step program: load with max_cloud_cover=85, filter_bbox,
    filter_temporal and filter_bands again, max_time, execute_batch; then the job options of
    job_config.qmd and of the federation page (Spark memory settings, tile_grid) are accepted
    as on CDSE (they tune CDSE's cluster; here they change nothing)."""
    con.list_collection_ids()
    assert con.describe_collection("SENTINEL2_L2A")["id"] == "SENTINEL2_L2A"
    when = ["2022-02-01", "2022-04-30"]
    w, s, e, n = BOX["west"], BOX["south"], BOX["east"], BOX["north"]
    datacube = con.load_collection("SENTINEL2_L2A", spatial_extent=BOX, temporal_extent=when,
                                   bands=["B02", "B04", "B08"], max_cloud_cover=85)
    datacube = datacube.filter_bbox(west=w, south=s, east=e, north=n, crs=32632)
    datacube = datacube.filter_temporal(start_date=when[0], end_date=when[1])
    datacube = datacube.filter_bands(["B02", "B04", "B08"])
    datacube = datacube.max_time()
    job_options = {"executor-memory": "2G", "executor-memoryOverhead": "1800m",
                   "python-memory": None, "executor-cores": 1, "task-cpus": 1,
                   "max-executors": 20, "driver-memory": "2G", "driver-memoryOverhead": "1G",
                   "driver-cores": 1, "udf-dependency-archives": [], "logging-threshold": "info"}
    datacube.execute_batch(tmp_path / "max.tif", job_options=job_options)
    job = datacube.create_job(job_options={"tile_grid": "utm-20km",
                                           "executor-request-cores": "400m",
                                           "max-executors": "100"})
    job.start_and_wait()
    job.get_results().download_files(tmp_path / "tiled")

    cover = items(sample_data_dir)
    for band_index, band in enumerate(("B02", "B04", "B08"), start=1):
        series = sample_series(sample_data_dir, band, BOX, when[0], when[1])
        kept = [v for d, v in series.items() if cover[d] <= 85]
        assert 0 < len(kept) < len(series)  # the filter keeps some scenes, not all
        expected = np.nanmax(np.stack(kept), axis=0)
        for tif in (tmp_path / "max.tif", next((tmp_path / "tiled").glob("*.tif"))):
            with rasterio.open(tif) as src:
                np.testing.assert_allclose(src.read(band_index), expected, rtol=1e-6)


def test_cdse_fair_rerun_from_job_metadata(con, sample_data_dir: Path, tmp_path: Path) -> None:
    """fair.qmd: the process graph of a finished job, read from its STAC metadata
    (providers[0]["processing:expression"]["expression"]), rebuilt with
    datacube_from_flat_graph and run again; and the page's CDSE graph verbatim (save_result
    "netcdf" with the options format/output_format that CDSE's own graphs carry)."""
    when = ["2022-08-01", "2022-08-15"]
    cube = con.load_collection("SENTINEL2_L2A", spatial_extent=BOX, temporal_extent=when,
                               bands=["B02", "B03", "B04"], max_cloud_cover=85)
    job = cube.execute_batch(tmp_path / "first.nc", title="fair", out_format="netCDF")
    metadata = job.get_results().get_metadata()
    assert metadata["providers"][0]["processing:expression"]["format"] == "openeo"
    graph = metadata["providers"][0]["processing:expression"]["expression"]
    con.datacube_from_flat_graph(graph).download(tmp_path / "again.nc")

    page_graph = {
        "loadcollection1": {"process_id": "load_collection", "arguments": {
            "bands": ["B02", "B03", "B04"], "id": "SENTINEL2_L2A",
            "properties": {"eo:cloud_cover": {"process_graph": {"lte1": {
                "process_id": "lte", "result": True,
                "arguments": {"x": {"from_parameter": "value"}, "y": 85}}}}},
            "spatial_extent": BOX,
            "temporal_extent": ["2022-08-01T00:00:00Z", "2022-08-15T00:00:00Z"]}},
        "saveresult1": {"process_id": "save_result", "result": True, "arguments": {
            "data": {"from_node": "loadcollection1"}, "format": "netcdf",
            "options": {"format": "netcdf", "output_format": "netcdf"}}}}
    con.datacube_from_flat_graph(page_graph).execute_batch(tmp_path / "page.nc")

    cover = items(sample_data_dir)
    b03 = {d: v for d, v in sample_series(sample_data_dir, "B03", BOX, *when).items()
           if cover[d] <= 85}
    for name in ("first.nc", "again.nc", "page.nc"):
        with xr.open_dataset(tmp_path / name) as ds:
            assert [str(t)[:10] for t in ds.t.values] == list(b03)
            np.testing.assert_allclose(ds.B03.values, np.stack(list(b03.values())), rtol=1e-6)


def test_cdse_plaza_service_by_its_process_url(server, con, sample_data_dir: Path,
                                               tmp_path: Path) -> None:
    """CDSE Applications/PlazaDetails/ExecuteService.qmd: a published service run with
    datacube_from_process(id, namespace=<its URL>, aoi=..., date=...) and download. CDSE's
    process URLs say /openeo/1.0/ (CDSE serves the API under 1.0, 1.1 and 1.2); here too they
    once answered 404. Also connecting with an API URL that names 1.1.0, as the EODC pages
    do."""
    from openeo.api.process import Parameter

    aoi = Parameter(name="aoi", description="area", schema={"type": "object"})
    date = Parameter(name="date", description="day", schema={"type": "string"})
    service = con.load_collection("SENTINEL2_L2A", spatial_extent=aoi,
                                  temporal_extent=[date, date], bands=["B04", "B08"]).ndvi()
    con.save_user_defined_process("taskmap_generate_docs", service, parameters=[aoi, date],
                                  public=True)

    eoconn = openeo.connect(f"{server.url}/openeo/1.1.0/").authenticate_basic("demo", "demo")
    assert eoconn.capabilities().api_version() == "1.2.0"
    namespace = f"{server.url}/openeo/1.0/processes/u:demo/taskmap_generate_docs"
    taskmap = eoconn.datacube_from_process("taskmap_generate_docs", namespace=namespace,
                                           aoi=box_polygon(), date="2022-06-02")
    taskmap.download(tmp_path / "task.nc")

    one = {b: sample_series(sample_data_dir, b, BOX, "2022-06-02", "2022-06-03")["2022-06-02"]
           for b in ("B04", "B08")}
    with xr.open_dataset(tmp_path / "task.nc") as ds:  # the polygon's box, NaN outside it
        got = only_var(ds).isel(t=0).sel(x=slice(BOX["west"], BOX["east"]),
                                         y=slice(BOX["north"], BOX["south"])).values
    expected = (one["B08"] - one["B04"]) / (one["B08"] + one["B04"])
    np.testing.assert_allclose(got, expected, rtol=1e-5)


# --- openeo.org documentation/1.0/cookbook: what test_openeo_org_cookbook leaves out -------------
def test_openeo_org_cookbook_rest(con, sample_data_dir: Path, tmp_path: Path) -> None:
    """reduce_dimension(t, "mean") by name, polygonal_mean_timeseries, the EVI band math with
    band(), apply("sqrt"), the SAR log transform 10 * log(x, 10), and the Sobel kernels and
    high-pass merged into one RGB cube (the page's figure)."""
    from openeo.processes import log

    t = ["2022-06-01", "2022-06-15"]
    cube_s2_b8 = con.load_collection("SENTINEL2_L2A", spatial_extent=BOX, temporal_extent=t,
                                     bands=["B08"])
    cube_s2_b8.reduce_dimension(dimension="t", reducer="mean").download(tmp_path / "mean.tif")
    polygons = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {}, "geometry": box_polygon()}]}
    with pytest.warns(Warning, match="deprecated method polygonal_mean_timeseries"):
        agg = cube_s2_b8.polygonal_mean_timeseries(polygon=polygons)
    series = agg.execute()
    b08 = sample_series(sample_data_dir, "B08", BOX, *t)
    with rasterio.open(tmp_path / "mean.tif") as src:
        np.testing.assert_allclose(src.read(1), np.nanmean(np.stack(list(b08.values())), 0),
                                   rtol=1e-6)
    assert sorted(k[:10] for k in series) == list(b08)
    for key, value in series.items():
        assert value[0][0] == pytest.approx(np.nanmean(b08[key[:10]]), rel=1e-6)

    day = ["2022-06-02", "2022-06-02"]
    cube_s2 = con.load_collection("SENTINEL2_L2A", spatial_extent=BOX, temporal_extent=day,
                                  bands=["B02", "B04", "B08", "SCL"])
    B02, B04, B08 = (cube_s2.band(b) for b in ("B02", "B04", "B08"))  # noqa: N806 - as written
    cube_s2_evi = (2.5 * (B08 - B04)) / ((B08 + 6.0 * B04 - 7.5 * B02) + 1.0)
    cube_s2_evi.download(tmp_path / "evi.nc")
    cube_s2.filter_bands(["B04"]).apply("sqrt").download(tmp_path / "sqrt.nc")
    cube_s2_b8 = cube_s2.filter_bands(["B08"])
    kernels = {"R": [[1, 2, 1], [0, 0, 0], [-1, -2, -1]],
               "G": [[1, 0, -1], [2, 0, -2], [1, 0, -1]],
               "B": [[-1] * 5, [-1] * 5, [-1, -1, 24, -1, -1], [-1] * 5, [-1] * 5]}
    r, g, b = (cube_s2_b8.apply_kernel(k).rename_labels("bands", [n])
               for n, k in kernels.items())
    r.merge_cubes(g).merge_cubes(b).download(tmp_path / "edges.nc")

    one = {band: sample_series(sample_data_dir, band, BOX, "2022-06-02",
                               "2022-06-03")["2022-06-02"] for band in ("B02", "B04", "B08")}
    with xr.open_dataset(tmp_path / "evi.nc") as ds:
        expected = (2.5 * (one["B08"] - one["B04"])) / (
            (one["B08"] + 6.0 * one["B04"] - 7.5 * one["B02"]) + 1.0)
        np.testing.assert_allclose(only_var(ds).isel(t=0).values, expected, rtol=1e-5)
    with xr.open_dataset(tmp_path / "sqrt.nc") as ds:
        np.testing.assert_allclose(ds.B04.isel(t=0).values, np.sqrt(one["B04"]), rtol=1e-6)
    with xr.open_dataset(tmp_path / "edges.nc") as ds:
        assert list(ds.data_vars)[-3:] == ["R", "G", "B"]
        v = one["B08"]
        for name, k in kernels.items():
            k = np.asarray(k, dtype=float)
            h = k.shape[0] // 2
            inner = sum(k[dy + h, dx + h] * v[2 + dy:28 + dy, 2 + dx:28 + dx]
                        for dy in range(-h, h + 1) for dx in range(-h, h + 1))
            np.testing.assert_allclose(ds[name].isel(t=0).values[2:28, 2:28], inner,
                                       rtol=1e-5, atol=1e-6)

    cube_s1 = con.load_collection("SENTINEL1_GRD", spatial_extent=BOX,
                                  temporal_extent=["2022-06-01", "2022-06-15"], bands=["VV"])

    def log_(x):
        return 10 * log(x, 10)

    cube_s1.apply(log_).download(tmp_path / "s1log.nc")
    cube_s1.download(tmp_path / "s1.nc")
    with xr.open_dataset(tmp_path / "s1log.nc") as logged, \
            xr.open_dataset(tmp_path / "s1.nc") as raw:
        assert np.isfinite(raw.VV.values).any()
        np.testing.assert_allclose(logged.VV.values, 10 * np.log10(raw.VV.values), rtol=1e-5)


# --- openEO Platform documentation: use cases ----------------------------------------------------
def test_platform_vessel_detection(con, tmp_path: Path) -> None:
    """usecases/vessel-detection: Sentinel-1 VV/VH masked with a polygon (the page's
    load_vector_cube of a sea mask is EODC's; a GeoJSON polygon here), a 31 x 31 mean kernel
    with factor 5, merge_cubes with overlap_resolver "lt", raster_to_vector (missing here
    before: "Process 'raster_to_vector' is not available") and save_result GeoJSON. The
    polygons, burnt back onto the grid of the raster they came from, give that raster."""
    s1 = con.load_collection("SENTINEL1_GRD", spatial_extent=BOX, bands=["VV", "VH"],
                             temporal_extent=["2022-06-01", "2022-06-09"])
    masked_data = s1.mask_polygon(box_polygon())
    kernel_value = 0.00104
    kernel = [[kernel_value for y in range(0, 31)] for x in range(0, 31)]
    applied_kernel = masked_data.apply_kernel(kernel=kernel, factor=5)
    lt_comparison = applied_kernel.merge_cubes(masked_data, overlap_resolver="lt")
    output_data = lt_comparison.raster_to_vector()
    vessel_detection = output_data.save_result(format="GeoJSON")
    job = vessel_detection.create_job()
    job.start_and_wait()
    job.get_results().download_files(tmp_path / "vessels")
    lt_comparison.download(tmp_path / "lt.nc")

    features = json.loads(next((tmp_path / "vessels").glob("*.geojson")).read_text())["features"]
    to_utm = Transformer.from_crs(4326, 32632, always_xy=True)

    def utm(geom):
        return shapely.transform(geom, lambda xy: np.column_stack(
            to_utm.transform(xy[:, 0], xy[:, 1])))
    with xr.open_dataset(tmp_path / "lt.nc") as ds:
        x, y = ds.x.values, ds.y.values
        res = float(x[1] - x[0])
        transform = rasterio.transform.from_origin(x[0] - res / 2, y[0] + res / 2, res, res)
        for ti, stamp in enumerate(ds.t.values):
            day = np.datetime_as_string(stamp, "D").replace("-", "")
            for band in ("VV", "VH"):
                raster = ds[band].isel(t=ti).values
                mine = [f for f in features if f["properties"]["id"].startswith(f"{day}_{band}_")]
                assert mine, (day, band)
                key = next(k for k in mine[0]["properties"] if k.endswith(f"_{band}")
                           and k.startswith(np.datetime_as_string(stamp, "D")))
                shapes = [(utm(shape(f["geometry"])),
                           f["properties"][key]) for f in mine]
                burnt = rasterio.features.rasterize(shapes, out_shape=raster.shape,
                                                    transform=transform, fill=np.nan,
                                                    dtype="float64")
                np.testing.assert_array_equal(burnt, raster)


def test_platform_no2_monitoring_program(con, sample_data_dir: Path) -> None:
    """usecases/no2-monitoring with B04 for TERRASCOPE_S5P_L3_NO2_TD_V1 (not here): gaps
    filled with array_interpolate_linear, a 31-date moving average as a UDF
    (apply_timeseries, np.convolve), the polygon's mean per date as JSON by
    connection.execute."""
    extent = box_polygon()
    year = 2022
    datacube = con.load_collection("SENTINEL2_L2A", spatial_extent=extent,
                                   temporal_extent=[f"{year}-01-01", f"{year}-12-31"],
                                   bands=["B04"])
    datacube = datacube.apply_dimension(dimension="t", process="array_interpolate_linear")
    moving_average_window = 31
    udf = openeo.UDF("""
from pandas import Series
import numpy as np

def apply_timeseries(series: Series, context: dict) -> Series:
    return np.convolve(series, np.ones({n})/{n}, mode='same')
""".format(n=moving_average_window))  # noqa: UP032 - as written
    datacube = datacube.apply_dimension(dimension="t", process=udf)
    datacube = datacube.aggregate_spatial(geometries=extent, reducer="mean")
    datacube = datacube.save_result(format="JSON")
    results = con.execute(datacube)

    series = sample_series(sample_data_dir, "B04", BOX, f"{year}-01-01", f"{year}-12-31")
    stack = np.stack(list(series.values()))  # t, y, x
    days = np.arange(len(stack))
    filled = np.empty_like(stack)
    for iy in range(stack.shape[1]):
        for ix in range(stack.shape[2]):
            v = stack[:, iy, ix]
            ok = ~np.isnan(v)
            f = np.interp(days, days[ok], v[ok])
            f[days < days[ok][0]] = np.nan
            f[days > days[ok][-1]] = np.nan
            filled[:, iy, ix] = np.convolve(f, np.ones(31) / 31, mode="same")
    expected = np.nanmean(filled, axis=(1, 2))
    assert sorted(k[:10] for k in results) == list(series)
    got = np.array([results[k][0][0] if results[k][0][0] is not None else np.nan
                    for k in sorted(results)], dtype=float)
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert np.isfinite(got).sum() > len(got) // 2


def test_programs_needing_what_is_not_here_get_clear_errors(con) -> None:
    """The pages' programs for data or processes terracube does not have: an openEO error
    that names what is missing and what is there (CollectionNotFound with the list,
    ProcessUnsupported, the tile_grid option, the federation's backend property)."""
    box = box_polygon()
    for collection in ("SENTINEL2_L1C", "GFM", "TERRASCOPE_S5P_L3_NO2_TD_V1"):
        with pytest.raises(openeo.rest.OpenEoApiError) as err:
            con.load_collection(collection, spatial_extent=box,
                                temporal_extent=["2022-06-01", "2022-06-10"]).download()
        assert err.value.code == "CollectionNotFound"
        assert "SENTINEL2_L2A" in err.value.message and "SENTINEL1_GRD" in err.value.message
    s2 = con.load_collection("SENTINEL2_L2A", spatial_extent=box,
                             temporal_extent=["2022-06-01", "2022-06-10"], bands=["B04"])
    for name in ("sen2like", "lai", "ard_surface_reflectance", "atmospheric_correction",
                 "load_vector_cube"):
        with pytest.raises(openeo.rest.OpenEoApiError) as err:
            s2.process(name, data=s2).download(format="netCDF")
        assert err.value.code == "ProcessUnsupported" and name in err.value.message
        if name == "load_vector_cube":  # the message says what to use instead
            assert "load_url" in err.value.message
    with pytest.raises(openeo.rest.OpenEoApiError) as err:
        s2.max_time().save_result(format="GTiff",
                                  options={"tile_grid": "wgs84-1degree"}).download()
    assert "tile_grid" in err.value.message
    with pytest.raises(openeo.rest.OpenEoApiError) as err, pytest.warns(UserWarning):
        con.load_collection("SENTINEL2_L2A", spatial_extent=box,
                            temporal_extent=["2022-06-01", "2022-06-10"], bands=["B04"],
                            properties={"federation:backends": lambda v: v == "sentinelhub"}
                            ).download(format="netCDF")
    assert "federation:backends" in err.value.message
