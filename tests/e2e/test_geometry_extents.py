"""Programs written for CDSE that load without a spatial extent and then use geometries
(mask_polygon, apply_polygon / chunk_polygon, aggregate_spatial on polygons and points,
filter_spatial, a filter_bbox later in the graph) read only the geometries' bounding box, as
CDSE's dry run makes them do: through the official client against a real server, values equal
to the same program with the box written out and checked against the files with
rasterio/numpy; the dry run (POST /explain) and the synchronous size limit show the smaller
read."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import rasterio.features
import xarray as xr
from pyproj import Transformer
from shapely.geometry import Point, Polygon, mapping
from tests.support.data import sample_series

openeo = pytest.importorskip("openeo")
pytestmark = pytest.mark.e2e

DAY = ["2022-06-02", "2022-06-03"]
# A triangle inside the sample (lon/lat), its bounding box, and two points.
TRIANGLE = Polygon([(11.332, 46.501), (11.344, 46.5015), (11.338, 46.509), (11.332, 46.501)])
TRIANGLE_BOX = dict(zip(("west", "south", "east", "north"), TRIANGLE.bounds, strict=True))
POINTS = [Point(11.3351, 46.5043), Point(11.3612, 46.4987)]
TO_UTM = Transformer.from_crs(4326, 32632, always_xy=True)


def download(cube, path: Path, **kwargs) -> xr.Dataset:
    cube.download(path, format="netCDF", **kwargs)
    with xr.open_dataset(path) as ds:
        return ds.load()


def utm_box(box: dict) -> dict:
    """The lon/lat box's envelope in the sample's CRS (what the load reads of it)."""
    w, s, e, n = TO_UTM.transform_bounds(box["west"], box["south"], box["east"], box["north"],
                                         densify_pts=21)
    return {"west": w, "south": s, "east": e, "north": n}


def b04_file(sample_data_dir: Path) -> Path:
    import json

    folder = sample_data_dir / "samples" / "sentinel2_l2a"
    items = json.loads((folder / "items.json").read_text())["items"]
    item = next(i for i in items if i["datetime"].startswith(DAY[0]))
    return folder / item["assets"]["B04"]


def centre_inside(sample_data_dir: Path, box: dict, polygon: Polygon | None = None
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x centres, y centres, B04) of the pixels whose centre is in `box` (UTM), NaN where the
    centre is outside `polygon` (lon/lat) or the value is no-data — read with rasterio."""
    with rasterio.open(b04_file(sample_data_dir)) as ds:
        t = ds.transform
        xs = t.c + (np.arange(ds.width) + 0.5) * t.a
        ys = t.f + (np.arange(ds.height) + 0.5) * t.e
        cols = np.flatnonzero((xs >= box["west"]) & (xs <= box["east"]))
        rows = np.flatnonzero((ys >= box["south"]) & (ys <= box["north"]))
        values = ds.read(1).astype("float64")
        outside = np.zeros(values.shape, bool) if polygon is None else \
            rasterio.features.geometry_mask(
                [Polygon(np.column_stack(TO_UTM.transform(*polygon.exterior.xy)))],
                out_shape=values.shape, transform=t)
    values[outside | (values == 0)] = np.nan
    return xs[cols], ys[rows], values[np.ix_(rows, cols)]


def expected_masked(sample_data_dir: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The triangle's box (its envelope in UTM) masked outside the triangle."""
    return centre_inside(sample_data_dir, utm_box(TRIANGLE_BOX), TRIANGLE)


def test_mask_polygon_without_extent_reads_the_polygons_box(
        con, sample_data_dir: Path, tmp_path: Path) -> None:
    xs, ys, b04 = expected_masked(sample_data_dir)
    implicit = download(con.load_collection("SENTINEL2_L2A", temporal_extent=DAY,
                                            bands=["B04"]).mask_polygon(TRIANGLE),
                        tmp_path / "implicit.nc")
    explicit = download(con.load_collection("SENTINEL2_L2A", spatial_extent=TRIANGLE_BOX,
                                            temporal_extent=DAY, bands=["B04"])
                        .mask_polygon(TRIANGLE), tmp_path / "explicit.nc")
    for ds in (implicit, explicit):
        np.testing.assert_allclose(ds.x.values, xs)
        np.testing.assert_allclose(ds.y.values, ys)
        np.testing.assert_array_equal(ds["B04"].values[0], b04)
    assert np.isfinite(b04).sum() > 1000 and np.isnan(b04).sum() > 1000


def test_load_stac_without_extent_is_bounded_too(con, sample_data_dir: Path,
                                                 tmp_path: Path) -> None:
    xs, ys, b04 = expected_masked(sample_data_dir)
    url = f"{con.root_url.rstrip('/')}/collections/SENTINEL2_L2A"
    masked = download(con.load_stac(url, temporal_extent=DAY, bands=["B04"])
                      .mask_polygon(TRIANGLE), tmp_path / "stac.nc")
    np.testing.assert_allclose(masked.x.values, xs)
    np.testing.assert_allclose(masked.y.values, ys)
    np.testing.assert_array_equal(masked["B04"].values[0], b04)


@pytest.mark.parametrize("pid", ["apply_polygon", "chunk_polygon"])
def test_apply_polygon_without_extent_equals_the_explicit_extent(
        con, sample_data_dir: Path, tmp_path: Path, pid: str) -> None:
    xs, ys, b04 = expected_masked(sample_data_dir)

    def program(**extent):
        cube = con.load_collection("SENTINEL2_L2A", temporal_extent=DAY, bands=["B04"],
                                   **extent)
        double = {"process_graph": {"a": {"process_id": "apply", "arguments": {
            "data": {"from_parameter": "data"}, "process": {"process_graph": {"m": {
                "process_id": "multiply", "arguments": {"x": {"from_parameter": "x"}, "y": 2},
                "result": True}}}}, "result": True}}}
        name = "chunks" if pid == "chunk_polygon" else "geometries"
        return cube.process(pid, {"data": cube, name: mapping(TRIANGLE), "process": double})

    implicit = download(program(), tmp_path / "implicit.nc")
    explicit = download(program(spatial_extent=TRIANGLE_BOX), tmp_path / "explicit.nc")
    for ds in (implicit, explicit):
        np.testing.assert_allclose(ds.x.values, xs)
        np.testing.assert_allclose(ds.y.values, ys)
        np.testing.assert_array_equal(ds["B04"].values[0], 2 * b04)


def test_points_and_polygons_of_aggregate_spatial_and_filter_spatial(
        con, sample_data_dir: Path, tmp_path: Path) -> None:
    # sample_by_feature-style: values at points, the load bounded by the points (widened
    # by a pixel), each point's pixel read from the file
    s2 = con.load_collection("SENTINEL2_L2A", temporal_extent=DAY, bands=["B04"])
    points = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {}, "geometry": mapping(p)} for p in POINTS]}
    values = s2.aggregate_spatial(geometries=points, reducer="mean").execute()
    with rasterio.open(b04_file(sample_data_dir)) as ds:
        band = ds.read(1)
        expected = [float(band[ds.index(*TO_UTM.transform(p.x, p.y))]) for p in POINTS]
    assert [v[0] for v in values[next(iter(values))]] == pytest.approx(expected)
    # filter_spatial, then a filter_bbox later in the graph, on a load without extent
    box = utm_box(TRIANGLE_BOX)
    cropped = download(s2.filter_spatial(mapping(TRIANGLE)), tmp_path / "spatial.nc")
    written = download(con.load_collection("SENTINEL2_L2A", spatial_extent=TRIANGLE_BOX,
                                           temporal_extent=DAY, bands=["B04"])
                       .filter_spatial(mapping(TRIANGLE)), tmp_path / "written.nc")
    xs, ys, b04 = expected_masked(sample_data_dir)
    for ds in (cropped, written):  # the triangle's own box in UTM: inside the load's
        assert set(ds.x.values) <= set(xs) and set(ds.y.values) <= set(ys)
        np.testing.assert_array_equal(ds.x.values, written.x.values)
        np.testing.assert_array_equal(ds.y.values, written.y.values)
        np.testing.assert_array_equal(ds["B04"].values, written["B04"].values)
    assert np.isfinite(written["B04"].values).sum() == np.isfinite(b04).sum()
    later = download(s2.apply(lambda x: x * 1).filter_bbox(**box, crs=32632),
                     tmp_path / "later.nc")
    xs, ys, b04 = centre_inside(sample_data_dir, box)
    np.testing.assert_allclose(later.x.values, xs)
    np.testing.assert_allclose(later.y.values, ys)
    np.testing.assert_array_equal(later["B04"].values[0], b04)


def test_geometries_in_the_clients_crs_bound_the_load(con, tmp_path: Path) -> None:
    # aggregate_spatial(..., crs=...): the client names the CRS in the GeoJSON (legacy `crs`)
    utm = Polygon(np.column_stack(TO_UTM.transform(*TRIANGLE.exterior.xy)))
    s2 = con.load_collection("SENTINEL2_L2A", temporal_extent=DAY, bands=["B04"])
    implicit = s2.aggregate_spatial(geometries=utm, reducer="mean", crs="EPSG:32632")
    written = con.load_collection("SENTINEL2_L2A", temporal_extent=DAY, bands=["B04"],
                                  spatial_extent=TRIANGLE_BOX) \
        .aggregate_spatial(geometries=utm, reducer="mean", crs="EPSG:32632")
    assert implicit.execute() == written.execute()
    assert explain(con, implicit)["bytes_to_read"] <= explain(con, written)["bytes_to_read"]


def test_a_kernel_before_aggregate_spatial_reads_the_polygons_box_and_its_reach(
        con, sample_data_dir: Path) -> None:
    # smoothing, then field means (CDSE programs do this on loads without extent): the field
    # means equal those computed with numpy/scipy from the file smoothed as a whole
    from scipy.ndimage import convolve

    kernel = np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]]) / 16
    s2 = con.load_collection("SENTINEL2_L2A", temporal_extent=DAY, bands=["B04"])
    smoothed = s2.apply_kernel(kernel.tolist())
    means = smoothed.aggregate_spatial(geometries=mapping(TRIANGLE), reducer="mean")
    got = means.execute()
    with rasterio.open(b04_file(sample_data_dir)) as ds:
        band = ds.read(1).astype("float64")
        inside = ~rasterio.features.geometry_mask(
            [Polygon(np.column_stack(TO_UTM.transform(*TRIANGLE.exterior.xy)))],
            out_shape=band.shape, transform=ds.transform)
    assert (band > 0).all()  # no no-data in the sample's window: a plain convolution
    expected = convolve(band, kernel, mode="constant", cval=0.0)[inside].mean()
    assert got[next(iter(got))][0][0] == pytest.approx(expected, rel=1e-5)
    assert explain(con, means)["bytes_to_read"] * 10 < explain(con, smoothed)["bytes_to_read"]


def test_a_vector_cube_of_load_geojson_bounds_the_load(con) -> None:
    s2 = con.load_collection("SENTINEL2_L2A", temporal_extent=DAY, bands=["B04"])
    inline = s2.aggregate_spatial(geometries=mapping(TRIANGLE), reducer="mean")
    vector = s2.aggregate_spatial(geometries=con.load_geojson(mapping(TRIANGLE)), reducer="mean")
    assert explain(con, vector)["bytes_to_read"] == explain(con, inline)["bytes_to_read"]
    assert vector.execute() == inline.execute()


def explain(con, cube) -> dict:
    return con.post("/explain", json={"process": {"process_graph": cube.flat_graph()}},
                    expected_status=200).json()


def test_the_dry_run_reads_the_box_and_the_sync_limit_lets_it_run(con, tmp_path: Path) -> None:
    s2 = con.load_collection("SENTINEL2_L2A", temporal_extent=DAY, bands=["B04"])
    masked = s2.mask_polygon(TRIANGLE)
    whole = s2.mask_polygon(TRIANGLE, inside=True)  # keeps the outside: needs everything
    explicit = con.load_collection("SENTINEL2_L2A", spatial_extent=TRIANGLE_BOX,
                                   temporal_extent=DAY, bands=["B04"]).mask_polygon(TRIANGLE)
    read = {name: explain(con, cube)["bytes_to_read"]
            for name, cube in (("masked", masked), ("whole", whole), ("explicit", explicit))}
    assert read["masked"] == read["explicit"]
    assert read["masked"] * 10 < read["whole"], read
    # a request limited to 5 times the box's pixels: the whole collection is refused, the
    # program without extent runs (before, it read all of the collection and was refused too)
    limit = {"max-bytes": 5 * read["masked"]}
    with pytest.raises(openeo.rest.OpenEoApiError) as refused:
        whole.download(tmp_path / "whole.nc", format="netCDF", job_options=limit)
    assert refused.value.code == "ProcessGraphComplexity"
    assert download(masked, tmp_path / "masked.nc", job_options=limit)["B04"].size > 0


def test_aggregate_temporal_period_spans_the_data_dates_not_the_load_extent(
        con, sample_data_dir: Path, tmp_path: Path) -> None:
    # decision 0016: periods from the first to the last date of the data (the definition),
    # every period between them, no-data where a period has no date; ISO weeks (Monday)
    box = {"west": 679720, "south": 5151080, "east": 679820, "north": 5151180, "crs": 32632}
    s2 = con.load_collection("SENTINEL2_L2A", spatial_extent=box, bands=["B04"],
                             temporal_extent=["2022-05-28", "2022-06-30"])
    series = sample_series(sample_data_dir, "B04", box, "2022-05-28", "2022-06-30")
    days = sorted(series)
    daily = download(s2.aggregate_temporal_period("day", reducer="mean"), tmp_path / "d.nc")
    expected_days = np.arange(np.datetime64(days[0]), np.datetime64(days[-1]) + 1)
    np.testing.assert_array_equal(daily.t.values.astype("datetime64[D]"), expected_days)
    for i, day in enumerate(expected_days):
        values = daily["B04"].values[i]
        if str(day) in series:
            np.testing.assert_allclose(values, series[str(day)], rtol=1e-6)
        else:
            assert np.isnan(values).all()
    weekly = download(s2.aggregate_temporal_period("week", reducer="mean"), tmp_path / "w.nc")
    mondays = weekly.t.values.astype("datetime64[D]")
    assert all(d.astype(object).weekday() == 0 for d in mondays)
    first, last = (np.datetime64(d) for d in (days[0], days[-1]))
    assert mondays[0] <= first < mondays[0] + 7 and mondays[-1] <= last < mondays[-1] + 7
    np.testing.assert_array_equal(np.diff(mondays), np.full(len(mondays) - 1, 7))


def test_load_stac_cube_on_another_crs_grid_covers_it_like_load_collection(
        con, tmp_path: Path) -> None:
    # A DEM (EPSG:4326) merged onto Sentinel-2 (UTM) of a lon/lat box: the DEM is read over
    # the UTM envelope of the box (decision 0014), from load_stac as from load_collection.
    box = {"west": 11.335, "south": 46.49, "east": 11.35, "north": 46.50}
    s2 = con.load_collection("SENTINEL2_L2A", spatial_extent=box, temporal_extent=DAY,
                             bands=["B04"]).reduce_dimension(dimension="t", reducer="max")
    url = f"{con.root_url.rstrip('/')}/collections/COPERNICUS_30"
    cubes = {"collection": con.load_collection("COPERNICUS_30", spatial_extent=box),
             "stac": con.load_stac(url, spatial_extent=box)}
    got = {}
    for name, dem in cubes.items():
        merged = s2.merge_cubes(dem.max_time().resample_cube_spatial(s2, method="near"))
        got[name] = download(merged, tmp_path / f"{name}.nc")
    assert not np.isnan(got["collection"]["DEM"].values).any()
    np.testing.assert_array_equal(got["stac"]["DEM"].values, got["collection"]["DEM"].values)


def test_geometries_off_the_collection_say_why_nothing_is_read(con, tmp_path: Path) -> None:
    far = Polygon([(12.0, 47.0), (12.01, 47.0), (12.01, 47.01), (12.0, 47.0)])
    s2 = con.load_collection("SENTINEL2_L2A", temporal_extent=DAY, bands=["B04"])
    with pytest.raises(openeo.rest.OpenEoApiError) as refused:
        s2.mask_polygon(far).download(tmp_path / "far.nc", format="netCDF")
    assert refused.value.http_status_code == 400
    assert "does not intersect" in refused.value.message
    assert "bounding box of the geometries" in refused.value.message
