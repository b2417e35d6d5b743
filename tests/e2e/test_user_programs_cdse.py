"""Patterns of real user programs that failed on terracube, found by sweeping the CDSE notebook
samples, the openEO community examples and the openeo client's documentation (each adapted only
in URL, login, collection extent): run through the official client against the shared server,
values checked with numpy/rasterio on the sample files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import xarray as xr
from tests.support.data import sample_series

openeo = pytest.importorskip("openeo")
pytestmark = pytest.mark.e2e

BOX = {"west": 680000, "south": 5151200, "east": 680300, "north": 5151500, "crs": 32632}


@pytest.fixture(scope="module")
def con(server):
    return openeo.connect(server.url).authenticate_basic("demo", "demo")


def stored(sample_data_dir: Path, band: str, start: str, end: str) -> dict[str, np.ndarray]:
    """The band per date in [start, end) on BOX as stored (no-data NaN)."""
    return sample_series(sample_data_dir, band, BOX, start, end)


def cloud_cover(sample_data_dir: Path) -> dict[str, float]:
    folder = sample_data_dir / "samples" / "sentinel2_l2a"
    return {i["datetime"][:10]: i["eo:cloud_cover"]
            for i in json.loads((folder / "items.json").read_text())["items"]}


def test_udp_with_max_cloud_cover_and_one_day_range(con, sample_data_dir: Path,
                                                    tmp_path: Path) -> None:
    """CDSE notebook-samples openeo/UDP.ipynb: a stored process whose load_collection has the
    parameters as extents and `max_cloud_cover` (a `properties` callback with its own parameter
    `value`, once refused as an unknown parameter), called with the date range [d, d]
    (CDSE loads that day; once refused as an empty extent)."""
    from openeo.api.process import Parameter

    temporal = Parameter(name="date_range", description="The date range to load.",
                         schema={"type": "array", "subtype": "temporal-interval"})
    spatial = Parameter(name="bbox", description="The bounding box to load.",
                        schema={"type": "object", "subtype": "geojson"})
    cube = con.load_collection("SENTINEL2_L2A", temporal_extent=temporal,
                               spatial_extent=spatial, bands=["B03", "B08"], max_cloud_cover=80)
    green, nir = cube.band("B03"), cube.band("B08")
    ndwi = ((green - nir) / (green + nir)).max_time()
    con.save_user_defined_process(user_defined_process_id="NDWI_sweep", process_graph=ndwi,
                                  parameters=[temporal, spatial])

    def expected(start: str, end: str) -> np.ndarray:
        covers = cloud_cover(sample_data_dir)
        g, n = stored(sample_data_dir, "B03", start, end), stored(sample_data_dir, "B08",
                                                                  start, end)
        days = [d for d in sorted(g) if covers[d] <= 80]
        stack = np.stack([(g[d] - n[d]) / (g[d] + n[d]) for d in days])
        return np.nanmax(stack, axis=0)

    for rng, end in ((["2022-07-02", "2022-07-02"], "2022-07-03"),
                     (["2022-04-18", "2022-04-28"], "2022-04-28")):
        out = tmp_path / f"ndwi-{rng[0]}.tiff"
        con.datacube_from_process(process_id="NDWI_sweep", date_range=rng,
                                  bbox=BOX).download(out)
        with rasterio.open(out) as ds:
            got = ds.read(1).astype("float64")
        want = expected(rng[0], end)
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-5, equal_nan=True)


def test_same_date_twice_is_that_day(con, sample_data_dir: Path, tmp_path: Path) -> None:
    """Users' CDSE programs load one day as ["2023-09-09", "2023-09-09"], in load_collection
    and filter_temporal alike; an equal date-time is still an empty extent."""
    cube = con.load_collection("SENTINEL2_L2A", spatial_extent=BOX,
                               temporal_extent=["2022-07-02", "2022-07-02"], bands=["B04"])
    cube.download(tmp_path / "day.nc")
    later = con.load_collection("SENTINEL2_L2A", spatial_extent=BOX,
                                temporal_extent=["2022-06-01", "2022-08-01"], bands=["B04"])
    later.filter_temporal("2022-07-12", "2022-07-12").download(tmp_path / "filtered.nc")
    for name, day in (("day.nc", "2022-07-02"), ("filtered.nc", "2022-07-12")):
        with xr.open_dataset(tmp_path / name) as ds:
            assert [str(t)[:10] for t in ds.t.values] == [day]
            want = stored(sample_data_dir, "B04", day, day + "T99")[day]
            np.testing.assert_allclose(ds["B04"].isel(t=0).values, want, equal_nan=True)
    with pytest.raises(openeo.rest.OpenEoApiError) as info:
        con.load_collection("SENTINEL2_L2A", spatial_extent=BOX, bands=["B04"],
                            temporal_extent=["2022-07-02T10:20:00Z",
                                             "2022-07-02T10:20:00Z"]).download(tmp_path / "x.nc")
    assert info.value.code == "TemporalExtentEmpty"


def test_rename_the_one_band_without_source(con, sample_data_dir: Path, tmp_path: Path) -> None:
    """community-examples OilSpill (and RankComposites' `rename_labels('bands', ['score'])`):
    a one-band cube renamed without `source`, as CDSE does; several named bands still need
    `source` (the process definition; its official test) and the error says what to pass."""
    day = ["2022-07-02", "2022-07-03"]
    image = con.load_collection("SENTINEL2_L2A", spatial_extent=BOX, temporal_extent=day,
                                bands=["B04"])
    kernel = np.ones((3, 3))
    thresholds = image.apply_kernel(kernel=kernel, factor=1 / 9) - 3.5
    thresholds = thresholds.rename_labels(dimension="bands", target=["threshold"])
    image = image.rename_labels(dimension="bands", target=["amplitude"])
    image.merge_cubes(thresholds).download(tmp_path / "oil.nc")
    red = stored(sample_data_dir, "B04", *day)[day[0]]
    with xr.open_dataset(tmp_path / "oil.nc") as ds:
        np.testing.assert_allclose(ds["amplitude"].isel(t=0).values, red, equal_nan=True)
        inner = ds["threshold"].isel(t=0).values[1:-1, 1:-1]
        windows = np.lib.stride_tricks.sliding_window_view(red, (3, 3)).mean(axis=(-1, -2))
        np.testing.assert_allclose(inner, windows - 3.5, rtol=1e-5, equal_nan=True)
    two = con.load_collection("SENTINEL2_L2A", spatial_extent=BOX, temporal_extent=day,
                              bands=["B04", "B08"])
    with pytest.raises(openeo.rest.OpenEoApiError) as info:
        two.rename_labels("bands", ["red", "nir"]).download(tmp_path / "two.nc")
    assert info.value.code == "LabelsNotEnumerated"
    assert 'source=["B04", "B08"]' in info.value.message


def test_vector_data_from_a_url(con, sample_data_dir: Path, tmp_path: Path) -> None:
    """The client's guide 'Handling large vector data sets' (data_access.rst):
    `vectorcube_from_paths([url], format="parquet")` sends the URL to load_uploaded_files (once
    'it contains ":"'); `load_url` of a host the administrator allows (once refused as not
    public whatever TERRACUBE_FETCH_ALLOWED_HOSTS said). Means checked with numpy."""
    import geopandas as gpd
    from shapely.geometry import box
    from tests.support.processes import StaticHttpServer

    cells = [box(680000, 5151200, 680100, 5151300), box(680150, 5151350, 680300, 5151500)]
    frame = gpd.GeoDataFrame({"name": ["a", "b"]}, geometry=cells, crs=32632)
    frame.to_parquet(tmp_path / "parcels.pq")
    frame.to_file(tmp_path / "parcels.geojson", driver="GeoJSON")
    day = ["2022-07-02", "2022-07-03"]
    red = stored(sample_data_dir, "B04", *day)[day[0]]  # rows from north, 10 m pixels
    want = [np.nanmean(red[20:30, 0:10]), np.nanmean(red[0:15, 15:30])]
    with StaticHttpServer(tmp_path) as http:
        parcels = con.vectorcube_from_paths([f"{http.url}/parcels.pq"], format="parquet")
        cube = con.load_collection("SENTINEL2_L2A", bands=["B04"], temporal_extent=day)
        cube.aggregate_spatial(geometries=parcels, reducer="mean").download(tmp_path / "a.json")
        geojson = con.load_url(f"{http.url}/parcels.geojson", format="GeoJSON")
        cube.aggregate_spatial(geometries=geojson, reducer="mean").download(tmp_path / "b.json")
    for name in ("a.json", "b.json"):
        (values,) = json.loads((tmp_path / name).read_text()).values()
        np.testing.assert_allclose([v[0] for v in values], want, rtol=1e-5)


def test_python_jep_runtime_runs_python_udfs(con, sample_data_dir: Path, tmp_path: Path) -> None:
    """The client's UDF guide names CDSE's runtime "Python-Jep" (`openeo.UDF.from_file(...,
    runtime="Python-Jep")`): the same Python code runs here (once InvalidRuntime)."""
    day = ["2022-07-02", "2022-07-03"]
    cube = con.load_collection("SENTINEL2_L2A", spatial_extent=BOX, temporal_extent=day,
                               bands=["B04"])
    udf = openeo.UDF("import xarray\n\ndef apply_datacube(cube: xarray.DataArray, context: dict)"
                     " -> xarray.DataArray:\n    return cube * 0.0001\n", runtime="Python-Jep")
    cube.apply(process=udf).download(tmp_path / "jep.nc")
    with xr.open_dataset(tmp_path / "jep.nc") as ds:
        np.testing.assert_allclose(ds["B04"].isel(t=0).values,
                                   stored(sample_data_dir, "B04", *day)[day[0]] * 0.0001,
                                   rtol=1e-5, equal_nan=True)


def test_sampling_polygons_as_rasters(con, sample_data_dir: Path, tmp_path: Path) -> None:
    """The client's cookbook 'Sampling polygons as rasters': filter_spatial, then a batch job
    with `sample_by_feature=True` in netCDF writes one file per polygon cropped to it, as CDSE
    does (once: 'the result is a RasterCube'); `feature_id_property` names the files."""
    from shapely.geometry import box, mapping

    cells = {"north": box(680150, 5151350, 680300, 5151500),
             "south": box(680000, 5151200, 680100, 5151300)}
    fields = {"type": "FeatureCollection",  # the GeoJSON 2008 "crs" member: UTM 32N
              "crs": {"type": "name", "properties": {"name": "EPSG:32632"}},
              "features": [{"type": "Feature", "properties": {"name": k},
                            "geometry": mapping(g)} for k, g in cells.items()]}
    day = ["2022-07-02", "2022-07-03"]
    cube = con.load_collection("SENTINEL2_L2A", bands=["B04"], temporal_extent=day)
    cube = cube.filter_spatial(fields)
    job = cube.create_job(title="Sentinel2", out_format="netCDF", sample_by_feature=True,
                          feature_id_property="name")
    job.start_and_wait()
    results = job.get_results()
    assert sorted(a.key for a in results.get_assets()) == ["openEO_north.nc", "openEO_south.nc"]
    results.download_files(tmp_path)
    red = stored(sample_data_dir, "B04", *day)[day[0]]  # BOX: rows from north, 10 m pixels
    expected = {"north": red[0:15, 15:30], "south": red[20:30, 0:10]}
    for name, want in expected.items():
        with xr.open_dataset(tmp_path / f"openEO_{name}.nc") as ds:
            np.testing.assert_allclose(ds["B04"].isel(t=0).values, want, equal_nan=True)
