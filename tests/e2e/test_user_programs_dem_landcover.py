"""User programs that load a DEM or a land cover map (COPERNICUS_30, ESA_WORLDCOVER_10M_2021_V2)
run unchanged but for URL, login and extent against the built-in synthetic samples of the
Sentinel-2 sample's valley (catalog/samples/dem_landcover_synthetic.py), through the official
client on the shared server; values checked with numpy/rasterio on the sample's files.

The programs: openeo-community-examples python/Hillshade/Hillshade.ipynb, eu-cdse
notebook-samples openeo/load_ESA_WorldCover.ipynb, openeo-community-examples
python/LoadStac/LoadBiomassSTAC.ipynb (its Planetary Computer biomass replaced by this server's
Sentinel-2 collection through load_stac), and the patterns CDSE programs combine them with:
the DEM resampled onto Sentinel-2 and merged with it, Sentinel-2 masked by a land cover class,
terrain masks, the DEM's single time label dropped.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import rasterio
import rasterio.warp
import xarray as xr
from pyproj import Geod
from shapely import contains_xy
from shapely.geometry import shape
from tests.support.data import sample_band
from tests.support.terrain import horn

from terracube.catalog.samples.dem_landcover_synthetic import (
    WORLDCOVER_CLASSES,
    ensure_dem_landcover_data,
)

openeo = pytest.importorskip("openeo")
pytestmark = pytest.mark.e2e

# Inside the valley in longitude/latitude (the DEM's and WorldCover's CRS): the valley floor
# with the river, the town and the fields, and the forested mountain side in the north-east.
BBOX = {"west": 11.325, "south": 46.48, "east": 11.365, "north": 46.507}
# A smaller box for the Sentinel-2 programs (the same size of area as CDSE examples use).
SMALL = {"west": 11.335, "south": 46.485, "east": 11.36, "north": 46.503}


@pytest.fixture(scope="module")
def conn(server):
    return openeo.connect(server.url).authenticate_basic("demo", "demo")


@pytest.fixture(scope="module")
def files(sample_data_dir: Path) -> Path:
    """The folder of the generated DEM and land cover files (made with the session's samples)."""
    return ensure_dem_landcover_data(sample_data_dir)


def centres_in(path: Path, box: dict) -> tuple[np.ndarray, rasterio.Affine]:
    """The pixels of the file whose centre lies in `box` (lon/lat), and their transform."""
    with rasterio.open(path) as ds:
        t = ds.transform
        c0 = math.ceil((box["west"] - t.c) / t.a - 0.5 - 1e-9)
        c1 = math.floor((box["east"] - t.c) / t.a - 0.5 + 1e-9)
        r0 = math.ceil((t.f - box["north"]) / -t.e - 0.5 - 1e-9)
        r1 = math.floor((t.f - box["south"]) / -t.e - 0.5 + 1e-9)
        window = rasterio.windows.Window(c0, r0, c1 - c0 + 1, r1 - r0 + 1)
        return ds.read(1, window=window), ds.window_transform(window)


def whole(path: Path) -> tuple[np.ndarray, rasterio.Affine]:
    """All pixels of a file and its transform."""
    with rasterio.open(path) as ds:
        return ds.read(1), ds.transform


def pixel_metres(transform: rasterio.Affine, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Widths and heights in metres of the pixels of each row of a lon/lat grid."""
    geod = Geod(ellps="WGS84")
    lats = transform.f + (np.arange(rows) + 0.5) * transform.e
    res = transform.a
    widths = np.array([geod.inv(11.0, lat, 11.0 + res, lat)[2] for lat in lats])
    heights = np.array([geod.inv(11.0, lat - res / 2, 11.0, lat + res / 2)[2] for lat in lats])
    return widths, heights


def test_collections_are_described_as_cdse_describes_them(conn) -> None:
    """Ids, bands, grids and dimensions programs read from the metadata (load_ESA_WorldCover
    prints describe_collection; clients take band names and steps from cube:dimensions)."""
    ids = conn.list_collection_ids()
    for cid in ("COPERNICUS_30", "COPERNICUS_90", "ESA_WORLDCOVER_10M_2020_V1",
                "ESA_WORLDCOVER_10M_2021_V2", "SENTINEL2_L2A"):
        assert cid in ids
    for cid, step in (("COPERNICUS_30", 1 / 3600), ("COPERNICUS_90", 3 / 3600)):
        dims = conn.describe_collection(cid)["cube:dimensions"]
        assert dims["bands"]["values"] == ["DEM"]
        assert dims["x"]["step"] == pytest.approx(step) and dims["y"]["step"] == pytest.approx(step)
        assert dims["x"]["reference_system"] == 4326 and dims["t"]["type"] == "temporal"
    meta = conn.describe_collection("ESA_WORLDCOVER_10M_2021_V2")
    dims = meta["cube:dimensions"]
    assert dims["bands"]["values"] == ["MAP"]
    assert dims["x"]["step"] == pytest.approx(8.3333333333e-05)
    assert meta["summaries"]["eo:bands"][0]["gsd"] == 10
    classes = meta["summaries"]["classification:classes"]
    assert [c["value"] for c in classes] == [10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 100]
    assert meta["summaries"]["raster:bands"][0]["data_type"] == "uint8"


def test_hillshade_notebook(conn, files: Path, tmp_path: Path) -> None:
    """Hillshade.ipynb (openeo-community-examples): COPERNICUS_30, max over t, slope and
    aspect, the Lambert formula by cube arithmetic, clip; the bounding box moved to the valley.
    Checked against Horn's slope/aspect of the DEM file (tests/support/terrain.py) put through
    the same formula (slope and aspect in degrees, as CDSE returns them: decision 0006)."""
    import openeo.processes as eop

    bbox = dict(BBOX)
    SUN_AZIMUTH = 315  # noqa: N806 - the notebook's names
    SUN_ALTITUDE = 45  # noqa: N806
    OUTPUT = tmp_path / "hillshade.tif"  # noqa: N806
    az = math.radians(SUN_AZIMUTH)
    alt = math.radians(SUN_ALTITUDE)
    dem = conn.load_collection("COPERNICUS_30", spatial_extent=bbox)
    dem = dem.reduce_dimension(dimension="t", reducer="max")
    slope = dem.process("slope", data=dem)
    aspect = dem.process("aspect", data=dem)
    hillshade = (
        math.sin(alt) * slope.apply(eop.cos)
        + math.cos(alt)
        * slope.apply(eop.sin)
        * aspect.apply(lambda x: eop.cos(eop.subtract(az, eop.add(x, math.pi))))
    )
    hillshade = hillshade.apply(lambda x: eop.clip(x, 0.0, 1.0))
    hillshade.download(OUTPUT)
    with rasterio.open(OUTPUT) as src:
        h = src.read(1).astype(np.float32)
        got_transform = src.transform

    z, transform = centres_in(files / "copernicus_30.tif", bbox)
    assert h.shape == z.shape
    assert got_transform.almost_equals(transform, precision=1e-9)
    s, a = horn(z.astype(np.float64), *pixel_metres(transform, z.shape[0]))
    expected = np.clip(math.sin(alt) * np.cos(s)
                       + math.cos(alt) * np.sin(s) * np.cos(az - (a + math.pi)), 0.0, 1.0)
    np.testing.assert_allclose(h, expected, atol=2e-5, equal_nan=True)
    assert 0.0 <= np.nanmin(h) and np.nanmax(h) <= 1.0


def test_slope_of_the_dem_agrees_with_the_landscape(conn, files: Path, tmp_path: Path) -> None:
    """The DEM is a plausible Alpine valley that agrees with the land cover: a flat floor
    with the fields, town and water, a steep forested side; slope in degrees (Horn)."""
    dem = conn.load_collection("COPERNICUS_30", spatial_extent=BBOX,
                               temporal_extent=["2022-01-01", "2023-01-01"])
    dem = dem.drop_dimension("t")  # one label whatever the temporal extent, as on CDSE
    slope = dem.process("slope", data=dem)
    slope.download(tmp_path / "slope.nc")
    got = xr.load_dataset(tmp_path / "slope.nc")["DEM_slope"].values.squeeze()
    z, transform = centres_in(files / "copernicus_30.tif", BBOX)
    expected, _ = horn(z.astype(np.float64), *pixel_metres(transform, z.shape[0]))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)
    # GLO-90: the same terrain on 3" pixels, so gentler slopes
    dem90 = conn.load_collection("COPERNICUS_90", spatial_extent=BBOX).max_time()
    dem90.process("slope", data=dem90).download(tmp_path / "slope90.nc")
    got90 = xr.load_dataset(tmp_path / "slope90.nc")["DEM_slope"].values.squeeze()
    z90, t90 = centres_in(files / "copernicus_90.tif", BBOX)
    expected90, _ = horn(z90.astype(np.float64), *pixel_metres(t90, z90.shape[0]))
    np.testing.assert_allclose(got90, expected90, rtol=1e-5, atol=1e-4)
    assert np.percentile(expected90, 99) < np.percentile(expected, 99)

    cover, cover_t = centres_in(files / "esa_worldcover_2021_v200.tif", BBOX)
    # WorldCover pixels onto the DEM grid (nearest) to compare cover with terrain.
    on_dem = np.zeros(z.shape, dtype=np.uint8)
    rasterio.warp.reproject(cover, on_dem, src_transform=cover_t, src_crs="EPSG:4326",
                            dst_transform=transform, dst_crs="EPSG:4326",
                            resampling=rasterio.warp.Resampling.mode)
    trees, fields, water = (on_dem == 10), (on_dem == 40), (on_dem == 80)
    assert 240 < z[fields].mean() < 300 and 240 < z[water].mean() < 300
    assert z[trees].mean() > z[fields].mean() + 250
    assert np.median(expected[trees]) > 20 > 5 > np.median(expected[fields])
    assert z.max() < 1700


def test_load_esa_worldcover_notebook(conn, files: Path, tmp_path: Path) -> None:
    """load_ESA_WorldCover.ipynb (eu-cdse/notebook-samples) unchanged but for the area of
    interest (its aoi/Antwerp.geojson replaced by a polygon in the valley): GeoJSON
    spatial_extent, the 2021 temporal extent, a UDF that rescales the classes by 0.8, a batch
    job with CDSE job options to netCDF, read with xarray as the notebook does."""
    aoi = {"type": "FeatureCollection", "features": [{
        "type": "Feature", "properties": {},
        "geometry": {"type": "Polygon", "coordinates": [[
            [11.33, 46.485], [11.36, 46.483], [11.362, 46.503], [11.335, 46.505],
            [11.33, 46.485]]]}}]}
    (tmp_path / "aoi.geojson").write_text(json.dumps(aoi))

    def read_json(filename: str) -> dict:
        with open(filename) as input:
            field = json.load(input)
        return field

    dates = ["2021-01-01", "2021-12-31"]
    aoi = read_json(str(tmp_path / "aoi.geojson"))
    cube = conn.load_collection("ESA_WORLDCOVER_10M_2021_V2", temporal_extent=dates,
                                spatial_extent=aoi)
    udf = openeo.UDF(
        """
import xarray

def apply_datacube(cube: xarray.DataArray, context: dict) -> xarray.DataArray:
    cube.values = 0.8 * cube.values
    return cube
"""
    )
    rescaled_cube = cube.apply(process=udf)
    job_options = {
        "executor-memory": "2G",
        "executor-memoryOverhead": "3G",
        "python-memory": "3G",
    }
    rescaled_cube.execute_batch(title="ESA_WORLDCOVER_10M_2021_V2",
                                outputfile=tmp_path / "ESAWorldCover.nc",
                                job_options=job_options, max_poll_interval=0.2)

    ds = xr.open_dataset(tmp_path / "ESAWorldCover.nc")
    data = ds[["MAP"]].to_array(dim="bands").squeeze()
    arr = data.values
    arr[arr == 0] = np.nan
    lon, lat = np.meshgrid(data.x.values.astype(np.float64), data.y.values.astype(np.float64))
    assert [str(t)[:10] for t in ds.t.values] == ["2021-01-01"]

    polygon = shape(aoi["features"][0]["geometry"])
    lons, lats = zip(*polygon.exterior.coords, strict=True)
    box = {"west": min(lons), "south": min(lats), "east": max(lons), "north": max(lats)}
    classes, _ = centres_in(files / "esa_worldcover_2021_v200.tif", box)
    assert arr.shape == classes.shape
    inside = contains_xy(polygon, lon, lat)
    np.testing.assert_allclose(arr[inside], 0.8 * classes[inside], rtol=1e-6)
    assert np.isnan(arr[~inside]).all() and (~inside).any()
    assert set(np.unique(classes[inside])) <= {c for c, _, _ in WORLDCOVER_CLASSES}


def test_worldcover_years_and_temporal_extents(conn, files: Path, tmp_path: Path) -> None:
    """A land cover map is found by any temporal extent overlapping its year, and only
    then; 2020 (V1) and 2021 (V2) differ where the fallow fields were grassland."""
    box = SMALL
    c2021 = conn.load_collection("ESA_WORLDCOVER_10M_2021_V2", spatial_extent=box,
                                 temporal_extent=["2021-06-01", "2021-07-01"])
    c2020 = conn.load_collection("ESA_WORLDCOVER_10M_2020_V1", spatial_extent=box)
    change = c2021.max_time().merge_cubes(
        c2020.max_time().rename_labels("bands", ["MAP_2020"]))
    change.download(tmp_path / "change.nc")
    got = xr.load_dataset(tmp_path / "change.nc")
    old, _ = centres_in(files / "esa_worldcover_2020_v100.tif", box)
    new, _ = centres_in(files / "esa_worldcover_2021_v200.tif", box)
    np.testing.assert_array_equal(got["MAP"].values, new)
    np.testing.assert_array_equal(got["MAP_2020"].values, old)
    changed = old != new
    assert changed.any() and set(old[changed]) == {30} and set(new[changed]) == {40}

    none = conn.load_collection("ESA_WORLDCOVER_10M_2021_V2", spatial_extent=box,
                                temporal_extent=["2022-01-01", "2023-01-01"])
    with pytest.raises(openeo.rest.OpenEoApiError) as caught:
        none.download(tmp_path / "none.nc")
    assert caught.value.http_status_code == 400
    assert "ESA_WORLDCOVER_10M_2021_V2" in caught.value.message


def s2_grid(sample_data_dir: Path, box: dict) -> tuple[rasterio.Affine, int, int, dict]:
    """The 10 m grid of the Sentinel-2 sample a lon/lat box loads (the pixels whose centre
    lies in the box's envelope in UTM), and that envelope."""
    west, south, east, north = rasterio.warp.transform_bounds(
        "EPSG:4326", "EPSG:32632", box["west"], box["south"], box["east"], box["north"],
        densify_pts=21)
    c0, c1 = math.ceil(west / 10 - 0.5), math.floor(east / 10 - 0.5)
    r0, r1 = math.ceil(south / 10 - 0.5), math.floor(north / 10 - 0.5)
    transform = rasterio.Affine(10, 0, c0 * 10, 0, -10, (r1 + 1) * 10)
    utm = {"west": c0 * 10, "south": r0 * 10, "east": (c1 + 1) * 10, "north": (r1 + 1) * 10}
    return transform, c1 - c0 + 1, r1 - r0 + 1, utm


def file_on_grid(path: Path, transform: rasterio.Affine, width: int, height: int,
                 resampling: rasterio.warp.Resampling) -> np.ndarray:
    """A whole sample file warped by GDAL onto a 10 m UTM grid (float32 for the DEM, the
    class codes for WorldCover)."""
    values, src_transform = whole(path)
    out = np.zeros((height, width), dtype=values.dtype)
    rasterio.warp.reproject(values, out, src_transform=src_transform, src_crs="EPSG:4326",
                            dst_transform=transform, dst_crs="EPSG:32632",
                            resampling=resampling)
    return out


def s2_ndvi(sample_data_dir: Path, utm: dict) -> np.ndarray:
    """NDVI of the Sentinel-2 sample on 2022-06-02 in `utm` (a box in EPSG:32632)."""
    red = sample_band(sample_data_dir, "2022-06-02", "B04", utm).astype(np.float64)
    nir = sample_band(sample_data_dir, "2022-06-02", "B08", utm).astype(np.float64)
    return (nir - red) / (nir + red)


def dem_on_s2(files: Path, box: dict, transform: rasterio.Affine, width: int, height: int,
              resampling: rasterio.warp.Resampling) -> np.ndarray:
    """The DEM as loaded with `box` (pixel centres in it) warped by GDAL onto a 10 m UTM grid
    (NaN where the box has no DEM pixel)."""
    z, z_t = centres_in(files / "copernicus_30.tif", box)
    out = np.full((height, width), np.nan, dtype=np.float32)
    rasterio.warp.reproject(z.astype(np.float32), out, src_transform=z_t, src_crs="EPSG:4326",
                            src_nodata=np.nan, dst_transform=transform, dst_crs="EPSG:32632",
                            dst_nodata=np.nan, resampling=resampling)
    return out


def test_load_biomass_stac_notebook_merges_the_dem_with_sentinel2(
        conn, files: Path, sample_data_dir: Path, tmp_path: Path) -> None:
    """LoadBiomassSTAC.ipynb (openeo-community-examples): load_stac of this server's
    SENTINEL2_L2A (B08) for the notebook's external Planetary Computer biomass, COPERNICUS_30
    with its band, mean_time of both, merge_cubes: the DEM (EPSG:4326) is aligned implicitly
    onto the first cube's grid (UTM, 10 m) by nearest neighbour, as the definition of
    merge_cubes says; the GeoTIFF's first band is B08, the second the elevation, as the
    notebook plots them. The same with an explicit bilinear resample_cube_spatial."""
    spatial_extent = dict(SMALL)
    temporal_extent = ["2022-06-02", "2022-06-02"]
    biomass_2010 = conn.load_stac(f"{conn.root_url.rstrip('/')}/collections/SENTINEL2_L2A",
                                  spatial_extent=spatial_extent,
                                  temporal_extent=temporal_extent, bands=["B08"])
    elevation = conn.load_collection("COPERNICUS_30", spatial_extent=spatial_extent,
                                     bands=["DEM"])
    elevation = elevation.mean_time()
    biomass_2010 = biomass_2010.mean_time()
    merged = biomass_2010.merge_cubes(elevation)
    merged.download(tmp_path / "biomass_elevation.tiff")
    bilinear = biomass_2010.merge_cubes(
        elevation.resample_cube_spatial(biomass_2010, method="bilinear"))
    bilinear.download(tmp_path / "bilinear.tiff")

    transform, width, height, utm = s2_grid(sample_data_dir, spatial_extent)
    b08 = sample_band(sample_data_dir, "2022-06-02", "B08", utm).astype(np.float32)
    for name, method in (("biomass_elevation", rasterio.warp.Resampling.nearest),
                         ("bilinear", rasterio.warp.Resampling.bilinear)):
        img = rasterio.open(tmp_path / f"{name}.tiff").read()
        assert img.shape == (2, height, width)
        np.testing.assert_array_equal(img[0], b08)
        elev = img[1]
        # The corners of the UTM envelope lie outside the lon/lat box given to the DEM: its
        # load is widened to the first cube's grid, so there is elevation there too, as CDSE
        # reads the DEM onto the whole envelope; the reference is the DEM of a wider box.
        wider = {**spatial_extent, "west": spatial_extent["west"] - 0.005,
                 "east": spatial_extent["east"] + 0.005,
                 "south": spatial_extent["south"] - 0.005,
                 "north": spatial_extent["north"] + 0.005}
        expected = dem_on_s2(files, wider, transform, width, height, method)
        assert not np.isnan(elev).any() and not np.isnan(expected).any()
        both = ~np.isnan(expected)
        if method == rasterio.warp.Resampling.nearest:  # but for ties on pixel borders
            assert (np.abs(elev[both] - expected[both]) < 0.01).mean() > 0.999
        else:
            np.testing.assert_allclose(elev[both], expected[both], atol=0.05)
        assert 240 < np.nanmin(elev) and np.nanmax(elev) < 1700


def test_sentinel2_masked_by_land_cover_and_terrain(conn, files: Path, sample_data_dir: Path,
                                                    tmp_path: Path) -> None:
    """CDSE's land cover mask: WorldCover's cropland (40), aligned with Sentinel-2 by mask
    itself (nearest neighbour, as its definition says), keeps the fields' NDVI; the forest
    (10) is green, water dark; a terrain mask (DEM above 400 m) hides the mountain side."""
    box = SMALL
    s2 = conn.load_collection("SENTINEL2_L2A", spatial_extent=box,
                              temporal_extent=["2022-06-02", "2022-06-03"],
                              bands=["B04", "B08"])
    ndvi = s2.ndvi(red="B04", nir="B08")
    wc = conn.load_collection("ESA_WORLDCOVER_10M_2021_V2", spatial_extent=box,
                              temporal_extent=["2021-01-01", "2021-12-31"], bands=["MAP"])
    wc = wc.reduce_dimension(dimension="t", reducer="first")
    # (the mask in EPSG:4326 is aligned with the data implicitly, nearest neighbour)
    not_cropland = wc.band("MAP") != 40
    wc = wc.resample_cube_spatial(s2, method="near")
    dem = conn.load_collection("COPERNICUS_30", spatial_extent=box).max_time()
    high = dem.resample_cube_spatial(s2, method="bilinear").band("DEM") > 400
    cropland_ndvi = ndvi.mask(not_cropland)
    low_ndvi = ndvi.mask(high)
    cropland_ndvi.download(tmp_path / "crop.nc")
    low_ndvi.download(tmp_path / "low.nc")
    wc.download(tmp_path / "wc.nc")
    got_crop = xr.load_dataset(tmp_path / "crop.nc")
    got_low = xr.load_dataset(tmp_path / "low.nc")
    got_wc = xr.load_dataset(tmp_path / "wc.nc")["MAP"].values.squeeze()

    transform, width, height, utm = s2_grid(sample_data_dir, box)
    expected_ndvi = s2_ndvi(sample_data_dir, utm)
    # The map and the DEM are loaded over the whole Sentinel-2 extent (the UTM envelope of the
    # box), as on CDSE (engine/alignment.py): no empty corners.
    on_s2 = file_on_grid(files / "esa_worldcover_2021_v200.tif", transform, width, height,
                         rasterio.warp.Resampling.nearest)
    assert (on_s2 != 0).all() and not np.isnan(got_wc).any()
    # nearest neighbour: the same class as GDAL's warp but for ties on pixel borders
    assert (got_wc == on_s2).mean() > 0.999
    (crop,) = [v.values.squeeze() for v in got_crop.data_vars.values() if v.ndim >= 2]
    keep = got_wc == 40
    np.testing.assert_allclose(crop[keep], expected_ndvi[keep], rtol=1e-5)
    assert np.isnan(crop[~keep]).all()
    # The land cover agrees with the image: trees green, water dark, fields in between.
    assert expected_ndvi[got_wc == 10].mean() > 0.6
    assert expected_ndvi[got_wc == 80].mean() < 0.1

    z_on_s2 = file_on_grid(files / "copernicus_30.tif", transform, width, height,
                           rasterio.warp.Resampling.bilinear)
    assert (z_on_s2 > 200).all()
    (low,) = [v.values.squeeze() for v in got_low.data_vars.values() if v.ndim >= 2]
    sure = ~np.isnan(z_on_s2) & (np.abs(z_on_s2 - 400) > 1)
    np.testing.assert_allclose(low[sure & (z_on_s2 <= 400)],
                               expected_ndvi[sure & (z_on_s2 <= 400)], rtol=1e-5)
    assert np.isnan(low[sure & (z_on_s2 > 400)]).all() and (z_on_s2 > 400).any()


def test_random_forest_trained_on_worldcover_labels(conn, files: Path, sample_data_dir: Path,
                                                    tmp_path: Path) -> None:
    """Training labels from the land cover map, as openEO Platform's land cover examples take
    them: the WorldCover class at random points (aggregate_spatial to CSV), a random forest
    on summer median Sentinel-2 bands at those points, predicted over the box in the same
    graph. The labels are the file's classes at the points; the prediction matches the map
    on most pixels (the sample's covers have distinct spectra)."""
    import pandas as pd

    box = SMALL
    rng = np.random.default_rng(7)
    points = [{"type": "Feature", "properties": {}, "geometry": {"type": "Point", "coordinates": [
        float(rng.uniform(box["west"], box["east"])),
        float(rng.uniform(box["south"], box["north"]))]}} for _ in range(150)]
    wc = conn.load_collection("ESA_WORLDCOVER_10M_2021_V2", spatial_extent=box,
                              temporal_extent=["2021-01-01", "2021-12-31"], bands=["MAP"])
    wc.max_time().aggregate_spatial({"type": "FeatureCollection", "features": points},
                                    reducer="mean").download(tmp_path / "labels.csv",
                                                             format="CSV")
    labels = pd.read_csv(tmp_path / "labels.csv").sort_values("feature_index").MAP
    classes, c_t = whole(files / "esa_worldcover_2021_v200.tif")
    lon = [p["geometry"]["coordinates"][0] for p in points]
    lat = [p["geometry"]["coordinates"][1] for p in points]
    rows, cols = rasterio.transform.rowcol(c_t, lon, lat)
    np.testing.assert_array_equal(labels.to_numpy(), classes[rows, cols])

    train = {"type": "FeatureCollection", "features": [
        {**p, "properties": {"target": int(label)}} for p, label in zip(points, labels)]}
    s2 = conn.load_collection("SENTINEL2_L2A", spatial_extent=box,
                              temporal_extent=["2022-05-01", "2022-08-31"],
                              bands=["B02", "B03", "B04", "B08", "B11", "B12"],
                              max_cloud_cover=20)
    features = s2.reduce_dimension(dimension="t", reducer="median")
    model = features.aggregate_spatial(train, reducer="mean").fit_class_random_forest(
        target=train, num_trees=50, seed=3)
    features.predict_random_forest(model=model, dimension="bands").download(
        tmp_path / "predicted.tif")
    with rasterio.open(tmp_path / "predicted.tif") as ds:
        predicted, transform = ds.read(1), ds.transform
        assert ds.crs.to_epsg() == 32632
    truth = file_on_grid(files / "esa_worldcover_2021_v200.tif", transform,
                         predicted.shape[1], predicted.shape[0],
                         rasterio.warp.Resampling.nearest)
    assert set(np.unique(predicted)) <= set(labels)
    assert (predicted == truth).mean() > 0.85


def test_zonal_statistics_per_land_cover_class(conn, files: Path, sample_data_dir: Path,
                                               tmp_path: Path) -> None:
    """Mean NDVI and elevation per WorldCover class inside an area: NDVI masked with each
    class in turn (the map aligned by mask), merged with the DEM, aggregate_spatial over a
    lon/lat polygon, to CSV; checked with numpy over the pixels whose centre is inside."""
    import pandas as pd
    from pyproj import Transformer

    box = BBOX  # with the town
    ring = [[box["west"], box["south"]], [box["east"], box["south"]],
            [box["east"], box["north"]], [box["west"], box["north"]],
            [box["west"], box["south"]]]
    area = {"type": "Polygon", "coordinates": [ring]}
    s2 = conn.load_collection("SENTINEL2_L2A", spatial_extent=box,
                              temporal_extent=["2022-06-02", "2022-06-03"],
                              bands=["B04", "B08"])
    ndvi = s2.ndvi(red="B04", nir="B08", target_band="NDVI").max_time()
    dem = conn.load_collection("COPERNICUS_30", spatial_extent=box).max_time()
    wc = conn.load_collection("ESA_WORLDCOVER_10M_2021_V2", spatial_extent=box).max_time()
    got = {}
    for code in (10, 30, 40, 50):
        per_class = ndvi.merge_cubes(dem).mask(wc.band("MAP") != code)
        per_class.aggregate_spatial(area, reducer="mean").download(
            tmp_path / f"class{code}.csv", format="CSV")
        got[code] = pd.read_csv(tmp_path / f"class{code}.csv").iloc[0]

    transform, width, height, utm = s2_grid(sample_data_dir, box)
    ndvi_np = s2_ndvi(sample_data_dir, utm)
    on_s2 = file_on_grid(files / "esa_worldcover_2021_v200.tif", transform, width, height,
                         rasterio.warp.Resampling.nearest)
    z_on_s2 = file_on_grid(files / "copernicus_30.tif", transform, width, height,
                           rasterio.warp.Resampling.nearest)
    cols, rows = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    x, y = transform * (cols, rows)
    lon, lat = Transformer.from_crs(32632, 4326, always_xy=True).transform(x, y)
    inside = contains_xy(shape(area), lon, lat)
    for code, row in got.items():
        pixels = inside & (on_s2 == code)
        assert pixels.sum() > 20
        assert row["NDVI"] == pytest.approx(ndvi_np[pixels].mean(), rel=2e-3)
        assert row["DEM"] == pytest.approx(z_on_s2[pixels].mean(), rel=2e-3)
    assert got[10]["NDVI"] > got[40]["NDVI"] > got[50]["NDVI"]
    assert got[10]["DEM"] > got[40]["DEM"] + 200
