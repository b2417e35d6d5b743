"""Programs of the openeo client's documentation not covered elsewhere (cookbook pages
spectral_indices, job_manager, tricks; the auth page; batch job results and logs), run through
the official client against the shared server, adapted only in URL, login, collection extent;
values checked with numpy on the sample files."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import rasterio
import xarray as xr
from tests.support.data import sample_series

openeo = pytest.importorskip("openeo")
pytestmark = pytest.mark.e2e

BOX = {"west": 680000, "south": 5151200, "east": 680300, "north": 5151500, "crs": 32632}
DAY = ["2022-07-02", "2022-07-03"]


@pytest.fixture(scope="module")
def con(server):
    return openeo.connect(server.url).authenticate_basic("demo", "demo")


def bands(sample_data_dir: Path, *names: str, span: list[str] = DAY) -> dict[str, np.ndarray]:
    """Each band of the first date of `span` on BOX, as stored (no-data NaN)."""
    out = {}
    for name in names:
        series = sample_series(sample_data_dir, name, BOX, *span)
        out[name] = series[sorted(series)[0]]
    return out


def scaled(x: np.ndarray, lo: float, hi: float, out_lo: float, out_hi: float) -> np.ndarray:
    """linear_scale_range as the spec defines it (input clipped to [lo, hi])."""
    return (np.clip(x, lo, hi) - lo) / (hi - lo) * (out_hi - out_lo) + out_lo


def test_spectral_indices_computed_and_appended(con, sample_data_dir: Path,
                                                tmp_path: Path) -> None:
    """cookbook/spectral_indices: compute_indices with the automatic band mapping, and
    append_and_rescale_indices, whose graph scales every band with linear_scale_range on the
    whole array of an apply_dimension callback (once 'x must be a number, got a ArrayValue')."""
    from openeo.extra.spectral_indices import append_and_rescale_indices, compute_indices

    cube = con.load_collection("SENTINEL2_L2A", spatial_extent=BOX, temporal_extent=DAY,
                               bands=["B03", "B04", "B08"])
    compute_indices(cube, indices=["NDVI", "NDWI"]).download(tmp_path / "indices.nc")
    b = bands(sample_data_dir, "B03", "B04", "B08")
    ndvi = (b["B08"] - b["B04"]) / (b["B08"] + b["B04"])
    ndwi = (b["B03"] - b["B08"]) / (b["B03"] + b["B08"])
    with xr.open_dataset(tmp_path / "indices.nc") as ds:
        assert sorted(ds.data_vars) == ["NDVI", "NDWI", "crs"]
        np.testing.assert_allclose(ds["NDVI"].isel(t=0).values, ndvi, rtol=1e-5, equal_nan=True)
        np.testing.assert_allclose(ds["NDWI"].isel(t=0).values, ndwi, rtol=1e-5, equal_nan=True)

    index_dict = {"collection": {"input_range": [0, 8000], "output_range": [0, 250]},
                  "indices": {"NDVI": {"input_range": [-1, 1], "output_range": [0, 250]}}}
    append_and_rescale_indices(cube, index_dict=index_dict).download(tmp_path / "rescaled.nc")
    with xr.open_dataset(tmp_path / "rescaled.nc") as ds:
        assert [v for v in ds.data_vars if v != "crs"] == ["B03", "B04", "B08", "NDVI"]
        for name in ("B03", "B04", "B08"):
            np.testing.assert_allclose(ds[name].isel(t=0).values,
                                       scaled(b[name], 0, 8000, 0, 250), rtol=1e-5,
                                       equal_nan=True)
        np.testing.assert_allclose(ds["NDVI"].isel(t=0).values, scaled(ndvi, -1, 1, 0, 250),
                                   rtol=1e-5, equal_nan=True)


def test_math_on_the_array_of_apply_dimension(con, sample_data_dir: Path,
                                              tmp_path: Path) -> None:
    """`apply_dimension(lambda x: x * 0.0001)` and linear_scale_range/clip on the values along
    a dimension work elementwise, as on CDSE; a mean of the array broadcasts over it."""
    from openeo.processes import clip, mean

    span = ["2022-06-01", "2022-06-15"]
    cube = con.load_collection("SENTINEL2_L2A", spatial_extent=BOX, temporal_extent=span,
                               bands=["B04"])
    cube.apply_dimension(dimension="t", process=lambda x: clip(x * 2, 0, 1500) - mean(x)
                         ).download(tmp_path / "t.nc")
    series = sample_series(sample_data_dir, "B04", BOX, *span)
    stack = np.stack([series[d] for d in sorted(series)])
    want = np.clip(stack * 2, 0, 1500) - np.nanmean(stack, axis=0)
    with xr.open_dataset(tmp_path / "t.nc") as ds:
        got = ds["B04"].transpose("t", "y", "x").values
        assert [str(t)[:10] for t in ds.t.values] == sorted(series)
    valid = ~np.isnan(stack)
    np.testing.assert_allclose(got[valid], want[valid], rtol=1e-5, atol=1e-3)  # float32


def test_job_manager_runs_jobs_from_a_csv_database(con, sample_data_dir: Path,
                                                   tmp_path: Path) -> None:
    """cookbook/job_manager 'Getting Started': MultiBackendJobManager with a CSV job database,
    a start_job callback creating NDVI jobs per row, results downloaded per job; the
    bookkeeping columns (status, id, costs, duration from the job's usage) filled in."""
    import pandas as pd
    from openeo.extra.job_management import MultiBackendJobManager, create_job_db

    halves = [{"west": 680000, "south": 5151200, "east": 680300, "north": 5151350, "crs": 32632},
              {"west": 680000, "south": 5151350, "east": 680300, "north": 5151500, "crs": 32632}]
    manager = MultiBackendJobManager(root_dir=tmp_path, poll_sleep=1)
    manager.add_backend("terracube", connection=con)
    df = pd.DataFrame({"spatial_extent": halves, "year": [2022, 2022]})
    job_db = create_job_db(tmp_path / "jobs.csv", df=df)

    def start_job(row, connection, **kwargs):
        cube = connection.load_collection(
            "SENTINEL2_L2A", spatial_extent=row["spatial_extent"],
            temporal_extent=[f"{row['year']}-07-02", f"{row['year']}-07-03"],
            bands=["B04", "B08"])
        cube = cube.ndvi(nir="B08", red="B04")
        return cube.create_job(title=f"NDVI {row['year']}", out_format="GTiff")

    logging.getLogger("openeo.extra.job_management").setLevel(logging.WARNING)
    manager.run_jobs(job_db=job_db, start_job=start_job)

    table = pd.read_csv(tmp_path / "jobs.csv")
    assert list(table["status"]) == ["finished", "finished"]
    assert list(table["costs"]) == [0.0, 0.0]
    assert all(str(d).endswith(" seconds") for d in table["duration"])
    b = bands(sample_data_dir, "B04", "B08")
    ndvi = (b["B08"] - b["B04"]) / (b["B08"] + b["B04"])
    for job_id, rows in zip(table["id"], (slice(15, 30), slice(0, 15)), strict=True):
        (tif,) = (tmp_path / f"job_{job_id}").glob("*.tif")
        with rasterio.open(tif) as ds:
            np.testing.assert_allclose(ds.read(1), ndvi[rows], rtol=1e-5, equal_nan=True)


def test_job_manager_with_a_process_based_job_creator(con, sample_data_dir: Path,
                                                      tmp_path: Path) -> None:
    """cookbook/job_manager 'Job creation based on parameterized processes': a UDP published
    as JSON at a URL, ProcessBasedJobCreator filling `temporal_extent` from a Parquet job
    database and the other parameters from `parameter_defaults`."""
    import pandas as pd
    from openeo.api.process import Parameter
    from openeo.extra.job_management import MultiBackendJobManager, create_job_db
    from openeo.extra.job_management.process_based import ProcessBasedJobCreator
    from openeo.rest.udp import build_process_dict
    from tests.support.processes import StaticHttpServer

    band_names = Parameter.array("bands", description="The bands.")
    extent = Parameter.spatial_extent(description="The area.")
    dates = Parameter.temporal_interval(description="The dates.")
    cube = con.load_collection("SENTINEL2_L2A", spatial_extent=extent, temporal_extent=dates,
                               bands=band_names)
    graph = cube.ndvi(nir="B08", red="B04").max_time()
    (tmp_path / "ndvi_process.json").write_text(json.dumps(build_process_dict(
        process_graph=graph, process_id="ndvi_process",
        parameters=[band_names, extent, dates])))
    span = ["2022-06-01", "2022-06-10"]
    with StaticHttpServer(tmp_path) as http:
        job_starter = ProcessBasedJobCreator(
            namespace=f"{http.url}/ndvi_process.json",
            parameter_defaults={"bands": ["B04", "B08"], "spatial_extent": BOX})
        job_db = create_job_db(tmp_path / "jobs.parquet",
                               df=pd.DataFrame({"temporal_extent": [span]}))
        manager = MultiBackendJobManager(root_dir=tmp_path, poll_sleep=1)
        manager.add_backend("terracube", connection=con)
        logging.getLogger("openeo.extra.job_management").setLevel(logging.WARNING)
        manager.run_jobs(job_db=job_db, start_job=job_starter)

    table = pd.read_parquet(tmp_path / "jobs.parquet")
    assert list(table["status"]) == ["finished"]
    red = sample_series(sample_data_dir, "B04", BOX, *span)
    nir = sample_series(sample_data_dir, "B08", BOX, *span)
    want = np.nanmax(np.stack([(nir[d] - red[d]) / (nir[d] + red[d]) for d in red]), axis=0)
    (tif,) = (tmp_path / f"job_{table['id'][0]}").glob("*.tif")
    with rasterio.open(tif) as ds:
        np.testing.assert_allclose(ds.read(1), want, rtol=1e-5, equal_nan=True)


def test_batch_job_results_metadata_assets_and_log_levels(con, sample_data_dir: Path,
                                                          tmp_path: Path) -> None:
    """batch_jobs page: `job.get_results().get_metadata()`, `get_assets()`,
    `download_files()`, `job.logs(level=...)` keeping that level and above, the usage and
    costs of `job.describe()`, the job in `connection.list_jobs()`."""
    cube = con.load_collection("SENTINEL2_L2A", spatial_extent=BOX, temporal_extent=DAY,
                               bands=["B04", "B08"]).ndvi()
    cube = cube.process("inspect", data=cube, message="looked at it", level="warning")
    cube = cube.process("inspect", data=cube, message="an info line", level="info")
    job = cube.create_job(title="NDVI of a day", out_format="GTiff")
    job.start_and_wait()
    results = job.get_results()
    metadata = results.get_metadata()
    assert metadata["id"] == job.job_id and metadata["title"] == "NDVI of a day"
    (asset,) = results.get_assets()
    assert asset.metadata["type"].startswith("image/tiff")
    assert asset.key in metadata["assets"]
    files = results.download_files(tmp_path)
    assert sorted(p.name for p in files) == sorted([asset.key, "job-results.json"])
    b = bands(sample_data_dir, "B04", "B08")
    with rasterio.open(tmp_path / asset.key) as ds:
        np.testing.assert_allclose(ds.read(1), (b["B08"] - b["B04"]) / (b["B08"] + b["B04"]),
                                   rtol=1e-5, equal_nan=True)

    everything = [e["message"] for e in job.logs()]
    warnings = job.logs(level="warning")
    assert any("an info line" in m for m in everything)
    assert any("looked at it" in e["message"] for e in warnings)
    assert all(e["level"] in ("warning", "error") for e in warnings)
    assert job.logs(level=logging.ERROR) == []

    described = job.describe()
    assert described["costs"] == 0.0
    assert described["usage"]["duration"]["unit"] == "seconds"
    assert job.job_id in [j["id"] for j in con.list_jobs()]


def test_process_graph_json_round_trips(con, sample_data_dir: Path, tmp_path: Path) -> None:
    """cookbook/tricks: `to_json()` written to a file, then `connection.download(path)`,
    `datacube_from_json` (text and file), `datacube_from_flat_graph`, and
    `connection.execute` of raw JSON text; plus the discovery calls users print first."""
    cube = con.load_collection("SENTINEL2_L2A", spatial_extent=BOX, temporal_extent=DAY,
                               bands=["B04", "B08"]).ndvi()
    dump = cube.to_json()
    export_path = tmp_path / "export.json"
    export_path.write_text(dump, encoding="utf8")
    con.download(str(export_path), outputfile=tmp_path / "a.tiff")
    con.datacube_from_json(dump).download(tmp_path / "b.tiff")
    con.datacube_from_json(str(export_path)).download(tmp_path / "c.tiff")
    con.datacube_from_flat_graph(cube.flat_graph()).download(tmp_path / "d.tiff")
    b = bands(sample_data_dir, "B04", "B08")
    want = (b["B08"] - b["B04"]) / (b["B08"] + b["B04"])
    for name in "abcd":
        with rasterio.open(tmp_path / f"{name}.tiff") as ds:
            np.testing.assert_allclose(ds.read(1), want, rtol=1e-5, equal_nan=True)
    assert con.execute('{"add": {"process_id": "add", "arguments": {"x": 3, "y": 5}, '
                       '"result": true}}') == 8

    formats = con.list_file_formats()
    assert {"GTiff", "netCDF", "JSON", "CSV", "Parquet"} <= set(formats["output"])
    assert {"GeoJSON", "Parquet"} <= set(formats["input"])
    assert "Python" in con.list_udf_runtimes()
    assert con.describe_account()["user_id"] == "demo"


def test_authenticate_oidc_without_providers_says_to_use_basic(server) -> None:
    """The auth page's `connection.authenticate_oidc()` on a server without OpenID Connect
    providers: the error says to sign in with user name and password (once a bare 'no
    endpoint /openeo/1.2/credentials/oidc')."""
    connection = openeo.connect(server.url)
    with pytest.raises(openeo.rest.OpenEoApiError) as info:
        connection.authenticate_oidc()
    assert info.value.http_status_code == 404
    assert "authenticate_basic" in info.value.message


def test_aggregate_spatial_with_a_quantiles_reducer(con, sample_data_dir: Path,
                                                    tmp_path: Path) -> None:
    """processes page, 'callback' reducers of aggregate_spatial: `reducer=lambda x:
    quantiles(x, probabilities=[0.25, 0.75])` gives both statistics per band (once 'must
    return a single value per group'), named by percent in CSV; `q=4` names quartiles too."""
    from openeo.processes import quantiles
    from shapely.geometry import box, mapping

    fields = {"type": "FeatureCollection",  # the GeoJSON 2008 "crs" member: UTM 32N
              "crs": {"type": "name", "properties": {"name": "EPSG:32632"}},
              "features": [{"type": "Feature", "properties": {},
                            "geometry": mapping(box(680000, 5151200, 680100, 5151300))}]}
    cube = con.load_collection("SENTINEL2_L2A", temporal_extent=DAY, bands=["B04", "B08"])
    spread = cube.aggregate_spatial(
        geometries=fields, reducer=lambda x: quantiles(x, probabilities=[0.25, 0.75]))
    b = bands(sample_data_dir, "B04", "B08")  # BOX: rows from north, 10 m pixels
    want = [q for name in ("B04", "B08")
            for q in np.nanquantile(b[name][20:30, 0:10], [0.25, 0.75])]
    (values,) = spread.execute().values()
    np.testing.assert_allclose(values[0], want, rtol=1e-6)
    cube.aggregate_spatial(geometries=fields, reducer=lambda x: quantiles(x, q=4)).download(
        tmp_path / "quartiles.csv")
    header = (tmp_path / "quartiles.csv").read_text().splitlines()[0].split(",")
    assert header[2:] == [f"{band}_p{p}" for band in ("B04", "B08") for p in (25, 50, 75)]


def test_vector_cube_methods_of_the_client(con, sample_data_dir: Path) -> None:
    """The client's VectorCube methods on aggregate_spatial's statistics (processes 2.0 take
    any data cube; once 'must be a raster data cube'): filter_bands, filter_labels,
    apply_dimension, filter_bbox (the geometries fully within the box), filter_labels on the
    geometry dimension, and reduce_dimension through `process`."""
    from openeo.processes import date_between
    from shapely.geometry import box, mapping

    cells = [box(680000, 5151200, 680100, 5151300), box(680150, 5151350, 680300, 5151500)]
    fields = {"type": "FeatureCollection",
              "crs": {"type": "name", "properties": {"name": "EPSG:32632"}},
              "features": [{"type": "Feature", "properties": {"name": n},
                            "geometry": mapping(g)} for n, g in zip("ab", cells, strict=True)]}
    span = ["2022-06-01", "2022-06-10"]  # two dates
    cube = con.load_collection("SENTINEL2_L2A", spatial_extent=BOX, temporal_extent=span,
                               bands=["B04", "B08"])
    stats = cube.aggregate_spatial(geometries=fields, reducer="mean")
    windows = [(slice(20, 30), slice(0, 10)), (slice(0, 15), slice(15, 30))]
    means = {band: {d: [float(np.nanmean(v[w])) for w in windows] for d, v in
                    sample_series(sample_data_dir, band, BOX, *span).items()}
             for band in ("B04", "B08")}
    dates = sorted(means["B04"])

    def by_date(result: dict) -> dict[str, list]:
        return {k[:10]: v for k, v in result.items()}

    nir = by_date(stats.filter_bands(["B08"]).execute())
    for d in dates:
        np.testing.assert_allclose([row[0] for row in nir[d]], means["B08"][d], rtol=1e-6)
    first = by_date(stats.filter_labels(
        lambda t: date_between(t, "2022-06-01", "2022-06-05"), dimension="t").execute())
    assert list(first) == dates[:1]
    difference = by_date(stats.apply_dimension(
        dimension="bands", process=lambda x: x.array_element(1) - x.array_element(0)).execute())
    for d in dates:
        np.testing.assert_allclose(
            [row[0] for row in difference[d]],
            np.subtract(means["B08"][d], means["B04"][d]), rtol=1e-6)
    north = by_date(stats.filter_bbox(west=680140, south=5151340, east=680310, north=5151510,
                                      crs=32632).execute())
    for d in dates:
        np.testing.assert_allclose(north[d], [[means["B04"][d][1], means["B08"][d][1]]],
                                   rtol=1e-6)
    mean = {"process_graph": {"mean1": {"process_id": "mean", "result": True,
                                        "arguments": {"data": {"from_parameter": "data"}}}}}
    second = by_date(stats.filter_labels(lambda g: g > 0, dimension="geometry").execute())
    for d in dates:
        np.testing.assert_allclose(second[d], north[d], rtol=1e-6)
    over_time = stats.process("reduce_dimension", data=stats, dimension="t",
                              reducer=mean).execute()
    np.testing.assert_allclose(
        over_time, [[np.mean([means[b][d][i] for d in dates]) for b in ("B04", "B08")]
                    for i in range(2)], rtol=1e-6)
