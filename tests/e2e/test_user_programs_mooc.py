"""The openEO "Cubes & Clouds" MOOC (EO College, github.com/EO-College/cubes-and-clouds)
exercises run through the official client against the shared server, adapted only in URL,
login, collection id, band names and extent (its `LocalConnection.load_stac` lessons point
load_stac at this server's collection); values checked with numpy/rasterio on the sample files.

Lessons covered: 2.3 data access (load_stac, apply, reduce, aggregate, resample), 3.1 snow
cover (the whole notebook, its batch job's timeseries.json read as the notebook reads it),
3.3 data sharing (the snow map job, its GeoTIFF and the provenance the notebook's utilities
read). 3.2 validation is 3.1's graph plus station data (aggregate_spatial of points'
buffers, median) and is covered by the same processes.
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import rasterio
import rasterio.features
import xarray as xr

openeo = pytest.importorskip("openeo")
pd = pytest.importorskip("pandas")
shapely_geometry = pytest.importorskip("shapely.geometry")
pytestmark = pytest.mark.e2e

# 30 x 30 pixels of 10 m on the 20 m grid of the sample's 20 m bands (origin 678000, 5153520).
BOX = {"west": 680400, "south": 5151120, "east": 680700, "north": 5151420, "crs": 32632}


@pytest.fixture(scope="module")
def con(server):
    return openeo.connect(server.url).authenticate_basic("demo", "demo")


def items(sample_data_dir: Path, start: str, end: str) -> list[dict]:
    """The sample's items with start <= day < end, in time order."""
    folder = sample_data_dir / "samples" / "sentinel2_l2a"
    out = [i for i in json.loads((folder / "items.json").read_text())["items"]
           if start <= i["datetime"][:10] < end]
    return sorted(out, key=lambda i: i["datetime"])


def at_centres(sample_data_dir: Path, item: dict, band: str, xs: np.ndarray,
               ys: np.ndarray) -> np.ndarray:
    """The stored values of `band` of `item` at the UTM points (xs, ys) (2-D grids of pixel
    centres): what a nearest-neighbour read onto that grid gives, for 10 m and 20 m bands."""
    folder = sample_data_dir / "samples" / "sentinel2_l2a"
    with rasterio.open(folder / item["assets"][band]) as ds:
        data = ds.read(1).astype("float64")
        rows, cols = rasterio.transform.rowcol(ds.transform, xs.ravel(), ys.ravel())
        return data[np.asarray(rows), np.asarray(cols)].reshape(xs.shape)


def box_centres(box: dict, res: float = 10.0) -> tuple[np.ndarray, np.ndarray]:
    xs = np.arange(box["west"] + res / 2, box["east"], res)
    ys = np.arange(box["north"] - res / 2, box["south"], -res)
    return np.meshgrid(xs, ys)


def to_wgs84(ring: list[tuple[float, float]]) -> list[tuple[float, float]]:
    from pyproj import Transformer

    t = Transformer.from_crs(32632, 4326, always_xy=True)
    return [t.transform(x, y) for x, y in ring]


# --- 2.3 data access: load_stac, apply, reduce ----------------------------------------------
def test_23_load_stac_apply_reduce(con, server, sample_data_dir: Path, tmp_path: Path) -> None:
    from openeo.processes import clip

    url = f"{server.api}collections/SENTINEL2_L2A"  # the lesson's STAC collection URL
    spatial_extent = BOX
    temporal_extent = ["2022-05-28T00:00:00Z", "2022-06-30T00:00:00Z"]
    bands = ["B04", "B08"]
    datacube = con.load_stac(url=url, spatial_extent=spatial_extent,
                             temporal_extent=temporal_extent, bands=bands)
    datacube = datacube.apply(lambda x: clip(x, 0, 10000))  # Get rid of possible negative values

    def NDVI(data):  # noqa: N802 - the lesson's name
        red = data.array_element(index=0)
        nir = data.array_element(index=1)
        ndvi = (nir - red) / (nir + red)
        return ndvi

    # (the lesson's dimension names "time"/"band" are those of its local stackstac cubes)
    datacube_mean_time = datacube.reduce_dimension(dimension="t", reducer="mean")
    # (the lesson's .execute() of a raster gives its local xarray; here: a netCDF file)
    datacube_mean_time.download(tmp_path / "mean_time.nc")
    datacube_spatial_median = datacube.reduce_spatial(reducer="median")
    ndvi_spatial = datacube_spatial_median.reduce_dimension(reducer=NDVI, dimension="bands")
    ndvi_spatial_xr = ndvi_spatial.execute()

    its = items(sample_data_dir, "2022-05-28", "2022-06-30")
    xs, ys = box_centres(BOX)
    red = np.stack([np.clip(at_centres(sample_data_dir, i, "B04", xs, ys), 0, 10000)
                    for i in its])
    nir = np.stack([np.clip(at_centres(sample_data_dir, i, "B08", xs, ys), 0, 10000)
                    for i in its])
    with xr.open_dataset(tmp_path / "mean_time.nc") as ds:
        np.testing.assert_allclose(ds["B04"].values, red.mean(axis=0), rtol=1e-5)
        np.testing.assert_allclose(ds["B08"].values, nir.mean(axis=0), rtol=1e-5)

    med_red = np.median(red.reshape(len(its), -1), axis=1)
    med_nir = np.median(nir.reshape(len(its), -1), axis=1)
    assert ndvi_spatial_xr["dimensions"]["t"]["values"] == [i["datetime"] for i in its]
    np.testing.assert_allclose(ndvi_spatial_xr["data"],
                               (med_nir - med_red) / (med_nir + med_red), rtol=1e-5)


def test_23_apply_rescale_and_monthly_min(con, sample_data_dir: Path, tmp_path: Path) -> None:
    from openeo.processes import linear_scale_range

    # apply lesson: reflectance rescaled (the sample is scaled 0..10000, the lesson's 0..1)
    datacube = con.load_collection("SENTINEL2_L2A", spatial_extent=BOX,
                                   temporal_extent=["2022-07-10T00:00:00Z",
                                                    "2022-07-13T00:00:00Z"],
                                   bands=["B04", "B03", "B02"],
                                   properties={"eo:cloud_cover": lambda x: x < 50})
    input_min, input_max, output_min, output_max = -1000, 2000, 0, 1

    def rescale(x):
        return linear_scale_range(x, input_min, input_max, output_min, output_max)

    datacube.apply(rescale).download(tmp_path / "scaled.nc")
    # aggregate lesson: monthly minimum
    s2_cube = con.load_collection("SENTINEL2_L2A", spatial_extent=BOX,
                                  temporal_extent=["2022-04-01", "2022-06-01"], bands=["B04"])
    s2_monthly_min = s2_cube.aggregate_temporal_period(period="month", reducer="min")
    s2_monthly_min.download(tmp_path / "monthly.nc")

    xs, ys = box_centres(BOX)
    (item,) = [i for i in items(sample_data_dir, "2022-07-10", "2022-07-13")
               if i["eo:cloud_cover"] < 50] or [None]
    with xr.open_dataset(tmp_path / "scaled.nc") as ds:
        if item is None:
            assert ds.sizes.get("t", 0) == 0
        else:
            raw = at_centres(sample_data_dir, item, "B03", xs, ys)
            want = np.clip((raw - input_min) / (input_max - input_min), 0, 1)
            np.testing.assert_allclose(ds["B03"].isel(t=0).values, want, rtol=1e-5)
    with xr.open_dataset(tmp_path / "monthly.nc") as ds:
        for k, month in enumerate(["2022-04", "2022-05"]):
            nxt = "2022-05" if month == "2022-04" else "2022-06"
            stack = np.stack([at_centres(sample_data_dir, i, "B04", xs, ys)
                              for i in items(sample_data_dir, month, nxt)])
            np.testing.assert_allclose(ds["B04"].isel(t=k).values, stack.min(axis=0))


# --- 3.1 data processing: the snow cover notebook, as published -------------------------------
def test_31_snow_cover_notebook(con, sample_data_dir: Path, tmp_path: Path) -> None:
    from openeo.processes import lte

    # The catchment: a quadrilateral in the box (a slanted south edge), as WGS 84 GeoJSON.
    w, s, e, n = BOX["west"], BOX["south"], BOX["east"], BOX["north"]
    ring_utm = [(w, s), (e, s + 150), (e, n), (w, n), (w, s)]
    catchment = shapely_geometry.Polygon(to_wgs84(ring_utm))
    bbox = catchment.bounds
    results = tmp_path / "31_results"
    results.mkdir()

    collection = "SENTINEL2_L2A"
    spatial_extent = {"west": bbox[0], "east": bbox[2], "south": bbox[1], "north": bbox[3],
                      "crs": 4326}
    temporal_extent = ["2022-04-01", "2022-06-30"]
    bands = ["B03", "B11", "SCL"]
    properties = {"eo:cloud_cover": lambda x: lte(x, 90)}
    s2 = con.load_collection(collection, spatial_extent=spatial_extent, bands=bands,
                             temporal_extent=temporal_extent, properties=properties)
    green = s2.band("B03")
    swir = s2.band("B11")
    ndsi = (green - swir) / (green + swir)
    snowmap = (ndsi > 0.4) * 1.0
    scl_band = s2.band("SCL")
    cloud_mask = ((scl_band == 8) | (scl_band == 9) | (scl_band == 3)) * 1.0
    snowmap_cloudfree = snowmap.mask(cloud_mask, replacement=2)
    snowmap_cloudfree_masked = snowmap_cloudfree.mask_polygon(catchment)
    snowmap_cloudfree_1d = snowmap_cloudfree_masked.filter_temporal("2022-06-01", "2022-06-03")
    snowmap_cloudfree_1d.download(results / "snowmap_cloudfree_1d.nc")
    one_day = xr.open_dataarray(results / "snowmap_cloudfree_1d.nc", decode_coords="all")[0]

    n_catchment = ((snowmap_cloudfree > -1) * 1.0).add_dimension(
        name="bands", type="bands", label="n_catchment")
    n_cloud = cloud_mask.add_dimension(name="bands", type="bands", label="n_cloud")
    n_snow = ((snowmap_cloudfree == 1) * 1.0).add_dimension(name="bands", type="bands",
                                                            label="n_snow")
    n_catchment_cloud_snow = n_catchment.merge_cubes(n_cloud).merge_cubes(n_snow)
    n_pixels = n_catchment_cloud_snow.aggregate_spatial(geometries=catchment, reducer="sum")
    n_pixels_json = n_pixels.save_result(format="JSON")
    job = n_pixels_json.create_job(title="n_pixels_json")
    job.start_and_wait(max_poll_interval=0.5)
    assert job.status() == "finished"
    job.get_results().download_files(results)
    with open(results / "timeseries.json") as file:  # the name the notebook opens
        n_pixels_json = json.load(file)
    dates = [k for k in n_pixels_json]
    df = pd.DataFrame(data={
        "time": pd.to_datetime(dates),
        "n_catchment_vals": [n_pixels_json[k][0][0] for k in n_pixels_json],
        "n_cloud_vals": [n_pixels_json[k][0][1] for k in n_pixels_json],
        "n_snow_vals": [n_pixels_json[k][0][2] for k in n_pixels_json],
    }).set_index("time").sort_values(axis=0, by="time")
    df["perc_cloud"] = df["n_cloud_vals"].values / df["n_catchment_vals"].values * 100
    df["perc_snow"] = df["n_snow_vals"].values / df["n_catchment_vals"].values * 100
    df_filtered = df.loc[df["perc_cloud"] < 25]
    df_filtered.to_csv(results / "filtered_snow_perc.csv")

    # The oracle: the catchment's pixels (centres inside), on the 10 m grid of BOX.
    xs, ys = box_centres(BOX)
    from rasterio.transform import from_origin

    inside = rasterio.features.geometry_mask(
        [shapely_geometry.mapping(shapely_geometry.Polygon(ring_utm))], (30, 30),
        from_origin(w, n, 10, 10), invert=True)
    expected = {}
    its = [i for i in items(sample_data_dir, "2022-04-01", "2022-06-30")
           if i["eo:cloud_cover"] <= 90]
    for item in its:
        g = at_centres(sample_data_dir, item, "B03", xs, ys)
        sw = at_centres(sample_data_dir, item, "B11", xs, ys)
        scl = at_centres(sample_data_dir, item, "SCL", xs, ys)
        snow = (((g - sw) / (g + sw)) > 0.4) * 1.0
        cloud = np.isin(scl, (3, 8, 9))
        cloudfree = np.where(cloud, 2.0, snow)
        expected[item["datetime"][:10]] = (cloudfree, cloud)
    assert [d[:10] for d in df.index.strftime("%Y-%m-%d")] == list(expected)
    for day, row in zip(expected, df.itertuples()):
        cloudfree, cloud = expected[day]
        assert row.n_catchment_vals == inside.sum()
        assert row.n_cloud_vals == cloud[inside].sum()
        assert row.n_snow_vals == (cloudfree[inside] == 1).sum()
    assert len(df_filtered) == sum(1 for c, cl in expected.values()
                                   if cl[inside].sum() / inside.sum() * 100 < 25)

    # the one-day map: the catchment's pixels, no-data outside it
    cloudfree, _ = expected["2022-06-02"]
    sub = one_day.sel(x=slice(w, e), y=slice(n, s))
    assert sub.shape == (30, 30)
    np.testing.assert_array_equal(sub.values[inside], cloudfree[inside])
    assert np.isnan(sub.values[~inside]).all()


# --- 3.3 data sharing: the snow map job, its GeoTIFF and provenance ---------------------------
def create_bounding_box(latitude, longitude, distance_km):  # _33_cubes_utilities.py
    earth_radius_km = 6371
    lat_rad = math.radians(latitude)
    angular_distance = distance_km / earth_radius_km
    lat_offset = math.degrees(angular_distance)
    lon_offset = math.degrees(angular_distance / math.cos(lat_rad))
    sw_lat = latitude - lat_offset
    sw_lon = longitude - lon_offset
    ne_lat = latitude + lat_offset
    ne_lon = longitude + lon_offset
    return (sw_lat, sw_lon, ne_lat, ne_lon)


def calculate_sca(conn, bbox, temporal_extent):  # _33_cubes_utilities.py
    s2 = conn.load_collection(
        "SENTINEL2_L2A",
        spatial_extent={"west": bbox[0], "east": bbox[2], "south": bbox[1], "north": bbox[3],
                        "crs": 4326},
        bands=["B03", "B11", "SCL"],
        temporal_extent=temporal_extent)
    green = s2.band("B03")
    swir = s2.band("B11")
    ndsi = (green - swir) / (green + swir)
    snowmap = (ndsi > 0.4) * 1.0
    scl_band = s2.band("SCL")
    cloud_mask = ((scl_band == 8) | (scl_band == 9) | (scl_band == 3)) * 1.0
    return snowmap.mask(cloud_mask, replacement=2)


def extract_metadata_geometry(stac_collection):  # _33_cubes_utilities.py
    expression = stac_collection["providers"][0]["processing:expression"]["expression"]
    meta_bbox = expression["loadcollection1"]["arguments"]["spatial_extent"]
    bbox = [meta_bbox["west"], meta_bbox["south"], meta_bbox["east"], meta_bbox["north"]]
    min_x, min_y, max_x, max_y = bbox
    geometry = {"type": "Polygon", "coordinates": [[[min_x, min_y], [max_x, min_y],
                                                    [max_x, max_y], [min_x, max_y],
                                                    [min_x, min_y]]]}
    return bbox, geometry


def extract_metadata_time(stac_collection):  # _33_cubes_utilities.py
    expression = stac_collection["providers"][0]["processing:expression"]["expression"]
    temporal_extent = expression["loadcollection1"]["arguments"]["temporal_extent"]
    start_time = datetime.strptime(temporal_extent[0], "%Y-%m-%d").isoformat() + "Z"
    end_time = datetime.strptime(temporal_extent[1], "%Y-%m-%d").isoformat() + "Z"
    return start_time, end_time


def test_33_snow_map_sharing(con, sample_data_dir: Path, tmp_path: Path) -> None:
    # the point the lesson draws on its map (GeoJSON order: lon, lat), a 100 m box around it
    (centre,) = to_wgs84([(680550, 5151270)])
    geom = list(centre)
    bbox = create_bounding_box(geom[0], geom[1], 0.1)
    temporal_extent = ["2022-04-01", "2022-05-01"]
    snow_map_4dcube = calculate_sca(con, bbox, temporal_extent)
    snow_map_3dcube = snow_map_4dcube.reduce_dimension(reducer="median", dimension="t")
    snowmap_cog = snow_map_3dcube.save_result(format="GTiff")
    job = snowmap_cog.create_job(title="snowmap_cog")
    job.start_and_wait(max_poll_interval=0.5)
    assert job.status() == "finished"
    results = job.get_results()
    results.download_files(tmp_path / "33_results")
    tif = tmp_path / "33_results" / "openEO.tif"  # the name the lesson's gdal_translate reads

    stac_collection = results.get_metadata()
    providers = stac_collection["providers"] + [{"name": "A User", "roles": ["processor"]}]
    geometry = extract_metadata_geometry(stac_collection)[1]
    start_time, end_time = extract_metadata_time(stac_collection)
    stac_item = {"type": "Feature", "stac_version": stac_collection["stac_version"],
                 "id": "snowcover_au_openeo", "geometry": geometry, "bbox": bbox,
                 "properties": {"datetime": None, "start_datetime": start_time,
                                "end_datetime": end_time, "providers": providers},
                 "links": stac_collection["links"], "assets": {}}
    json.dumps(stac_item)
    assert geometry["coordinates"][0][0] == [bbox[0], bbox[1]]
    assert (start_time, end_time) == ("2022-04-01T00:00:00Z", "2022-05-01T00:00:00Z")

    with rasterio.open(tif) as ds:
        got = ds.read(1)
        xs, ys = np.meshgrid(
            ds.transform.c + ds.transform.a * (np.arange(ds.width) + 0.5),
            ds.transform.f + ds.transform.e * (np.arange(ds.height) + 0.5))
    assert got.shape[0] >= 10 and got.shape[1] >= 10
    stack = []
    for item in items(sample_data_dir, "2022-04-01", "2022-05-01"):
        g = at_centres(sample_data_dir, item, "B03", xs, ys)
        sw = at_centres(sample_data_dir, item, "B11", xs, ys)
        scl = at_centres(sample_data_dir, item, "SCL", xs, ys)
        stack.append(np.where(np.isin(scl, (3, 8, 9)), 2.0, (((g - sw) / (g + sw)) > 0.4) * 1.0))
    np.testing.assert_allclose(got, np.median(np.stack(stack), axis=0))


# --- openEO Platform sample notebooks (github.com/openEOPlatform/sample-notebooks) -----------
SIMPLE_UDF = '''from openeo.udf import XarrayDataCube

def apply_datacube(cube: XarrayDataCube, context: dict) -> XarrayDataCube:
    """
    A trivial UDF that scales values, can also be done without UDF!
    """
    array = cube.get_array()
    array.values = 0.0001 * array.values
    return cube
'''


def test_platform_basics_and_python_udf(server, sample_data_dir: Path, tmp_path: Path) -> None:
    # "openEO Platfrom - Basics.ipynb" (Sentinel-1 there; the sample's Sentinel-2 here)
    connection = openeo.connect(server.url)
    assert "SENTINEL2_L2A" in connection.list_collection_ids()
    assert connection.list_collections()[1]["id"]
    processes_list = connection.list_processes()
    assert processes_list[1]["id"]
    assert connection.describe_process("add")["id"] == "add"
    connection.authenticate_basic("demo", "demo")
    assert connection.describe_account()["roles"] == ["user"]
    datacube = connection.load_collection("SENTINEL2_L2A", spatial_extent=BOX,
                                          temporal_extent=["2022-06-01", "2022-06-20"],
                                          bands=["B04", "B08"])
    datacube = datacube.min_time()
    datacube.download(tmp_path / "min.nc")
    # python_udf.ipynb: simple_udf.py applied to the cube
    (tmp_path / "simple_udf.py").write_text(SIMPLE_UDF)
    s2_cube = connection.load_collection("SENTINEL2_L2A", spatial_extent=BOX,
                                         temporal_extent=["2022-06-01", "2022-06-10"],
                                         bands=["B02", "B03", "B04"])
    simple_udf = openeo.UDF.from_file(tmp_path / "simple_udf.py")
    rescaled = s2_cube.apply(simple_udf)
    rescaled.download(tmp_path / "apply-udf-scaling.nc")

    xs, ys = box_centres(BOX)
    with xr.open_dataset(tmp_path / "min.nc") as ds:
        stack = np.stack([at_centres(sample_data_dir, i, "B08", xs, ys)
                          for i in items(sample_data_dir, "2022-06-01", "2022-06-20")])
        np.testing.assert_allclose(ds["B08"].values, stack.min(axis=0))
    with xr.open_dataset(tmp_path / "apply-udf-scaling.nc") as ds:
        its = items(sample_data_dir, "2022-06-01", "2022-06-10")
        assert ds.sizes["t"] == len(its)
        for k, item in enumerate(its):
            np.testing.assert_allclose(
                ds["B03"].isel(t=k).values,
                0.0001 * at_centres(sample_data_dir, item, "B03", xs, ys), rtol=1e-5)


def test_platform_on_demand_preview(con) -> None:
    """on-demand_preview.ipynb: an XYZ service of a JPEG-saved, rescaled cube (the notebook's
    `preview()` needs Jupyter and ipyleaflet; it creates this service and shows its tiles)."""
    import requests

    datacube = con.load_collection(
        collection_id="SENTINEL2_L2A", bands=["B04", "B03", "B02"],
        spatial_extent={"west": 11.33, "south": 46.49, "east": 11.34, "north": 46.50,
                        "crs": 4326},
        temporal_extent=["2022-06-01", "2022-06-04"]).linear_scale_range(0, 0.4, 0, 255)
    datacube = datacube.save_result("jpeg")
    assert "XYZ" in con.list_service_types()
    service = con.create_service(datacube, type="XYZ")
    url = service.describe_service()["url"]
    z = 15
    lon, lat = 11.335, 46.495
    x = int((lon + 180) / 360 * 2 ** z)
    y = int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * 2 ** z)
    tile = requests.get(url.format(z=z, x=x, y=y), timeout=60)
    assert tile.status_code == 200
    assert tile.headers["content-type"].startswith("image/")
    from io import BytesIO

    from PIL import Image

    pixels = np.asarray(Image.open(BytesIO(tile.content)).convert("RGBA"))
    assert pixels[..., 3].any() and pixels[..., :3].any()  # the sample is drawn there
    service.delete_service()


# --- openeo.org "Getting started with Python" (documentation/1.0/python) ---------------------
def test_openeo_org_getting_started(con, sample_data_dir: Path, tmp_path: Path) -> None:
    """The guide's step-by-step graph (Sentinel-1 VV/VH there; B08/B04 here) and its monthly
    composite example (its GEE format "GTIFF-THUMB" is GTiff here)."""
    w, s, e, n = BOX["west"], BOX["south"], BOX["east"], BOX["north"]
    datacube = con.load_collection("SENTINEL2_L2A", spatial_extent=BOX,
                                   temporal_extent=["2022-06-01", "2022-07-01"],
                                   bands=["B08", "B04"])
    datacube = datacube.filter_bbox(west=w, south=s, east=e, north=n, crs=32632)
    datacube = datacube.filter_temporal(start_date="2022-06-01", end_date="2022-07-01")
    datacube = datacube.filter_bands(["B08", "B04"])
    datacube = datacube.min_time()
    datacube = datacube.process(process_id="ndvi",
                                arguments={"data": datacube, "nir": "B08", "red": "B04"})
    result = datacube.save_result("GTiff")
    job = result.create_job()
    job.start_and_wait(max_poll_interval=0.5)
    job.get_results().download_files(tmp_path / "output")

    datacube = con.load_collection("SENTINEL2_L2A", spatial_extent=BOX,
                                   temporal_extent=["2022-04-01", "2022-07-01"], bands=["B04"])
    march = datacube.filter_temporal("2022-04-01", "2022-05-01")
    april = datacube.filter_temporal("2022-05-01", "2022-06-01")
    may = datacube.filter_temporal("2022-06-01", "2022-07-01")
    R_band = march.mean_time().rename_labels(dimension="bands", target=["R"])  # noqa: N806
    G_band = april.mean_time().rename_labels(dimension="bands", target=["G"])  # noqa: N806
    B_band = may.mean_time().rename_labels(dimension="bands", target=["B"])  # noqa: N806
    RGB = R_band.merge_cubes(G_band).merge_cubes(B_band)  # noqa: N806
    RGB = RGB.save_result(format="GTiff")  # noqa: N806
    job = RGB.create_job()
    job.start_and_wait(max_poll_interval=0.5).download_results(tmp_path / "rgb.tif")

    xs, ys = box_centres(BOX)

    def series(band: str, start: str, end: str) -> np.ndarray:
        return np.stack([at_centres(sample_data_dir, i, band, xs, ys)
                         for i in items(sample_data_dir, start, end)])

    nir, red = series("B08", "2022-06-01", "2022-07-01"), series("B04", "2022-06-01",
                                                                 "2022-07-01")
    nir_min, red_min = nir.min(axis=0), red.min(axis=0)
    with rasterio.open(tmp_path / "output" / "openEO.tif") as ds:
        np.testing.assert_allclose(ds.read(1), (nir_min - red_min) / (nir_min + red_min),
                                   rtol=1e-5)
    with rasterio.open(tmp_path / "rgb.tif") as ds:
        assert ds.descriptions == ("R", "G", "B")
        for k, (start, end) in enumerate([("2022-04-01", "2022-05-01"),
                                          ("2022-05-01", "2022-06-01"),
                                          ("2022-06-01", "2022-07-01")]):
            np.testing.assert_allclose(ds.read(k + 1), series("B04", start, end).mean(axis=0),
                                       rtol=1e-5)
