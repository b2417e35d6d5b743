"""More of the openEO community examples (github.com/Open-EO/openeo-community-examples): its
stored-process JSONs (burntmapping_chunks, rescale_chunks: chunk_polygon with UDFs), the
BurntMapping and RankComposites/rank_composites notebooks, and the UDF API as CDSE gives it in
apply_polygon (UdfData.proj, apply_metadata labels). Run through the official client against
the shared server, adapted only in URL, login, collection id and extent; values checked with
numpy on the sample files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import rasterio.windows
import xarray as xr
from tests.support.data import sample_band, sample_series

openeo = pytest.importorskip("openeo")
pytestmark = pytest.mark.e2e

EXAMPLES = "https://github.com/Open-EO/openeo-community-examples"
# 30 x 30 pixels of 10 m on the sample's grid (its 20 m pixels whole), in the Bolzano valley.
BOX = {"west": 680400, "south": 5151120, "east": 680700, "north": 5151420, "crs": 32632}
# A second, smaller polygon beside BOX (20 x 18 pixels).
BOX2 = {"west": 681000, "south": 5151120, "east": 681200, "north": 5151300, "crs": 32632}


def polygon_wgs84(box: dict, inset: float = 1.0) -> dict:
    """`box` as a GeoJSON polygon in WGS 84, its corners `inset` metres inside: the pixels of
    `box` (and only they) have their centres inside it."""
    from pyproj import Transformer

    to_wgs84 = Transformer.from_crs(32632, 4326, always_xy=True)
    w, s, e, n = (box["west"] + inset, box["south"] + inset, box["east"] - inset,
                  box["north"] - inset)
    return {"type": "Polygon", "coordinates": [[list(to_wgs84.transform(x, y))
                                                for x, y in ((w, s), (e, s), (e, n), (w, n),
                                                             (w, s))]]}


def feature_collection(*boxes: dict) -> dict:
    return {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {}, "geometry": polygon_wgs84(b)} for b in boxes]}


def window_of(path: Path, box: dict, band: int = 1) -> np.ndarray:
    """The pixels of `box` in a GeoTIFF written by the server (no-data as NaN)."""
    with rasterio.open(path) as ds:
        window = rasterio.windows.from_bounds(box["west"], box["south"], box["east"],
                                              box["north"], ds.transform)
        values = ds.read(band, window=window.round_offsets().round_lengths()).astype("float64")
        if ds.nodata is not None and not np.isnan(ds.nodata):
            values[values == ds.nodata] = np.nan
    return values


def nbr_mean(sample_data_dir: Path, box: dict, start: str, end: str) -> np.ndarray:
    """The mean over the dates in [start, end) of (B08 - B12) / (B08 + B12) on the 10 m grid
    (B12 repeated from 20 m), no-data skipped."""
    days = sorted(sample_series(sample_data_dir, "B08", box, start, end))
    layers = []
    for day in days:
        nir = sample_band(sample_data_dir, day, "B08", box).astype("float64")
        swir = sample_band(sample_data_dir, day, "B12", box, resolution=10).astype("float64")
        nir[nir == 0], swir[swir == 0] = np.nan, np.nan
        layers.append((nir - swir) / (nir + swir))
    assert len(layers) >= 2
    return np.nanmean(np.stack(layers), axis=0)


# --- merge_cubes of a band-less cube and a one-band cube --------------------------------------
def test_merge_bandless_and_one_band_cube(con, sample_data_dir: Path, tmp_path: Path) -> None:
    """`ndvi.merge_cubes(b04)` (ndvi without bands, B04 one band): CDSE appends the band-less
    values as a band, which the definition would call an overlap. Here they become the band
    `var` (the name netCDF gives band-less values, here and on CDSE) beside B04, in cube1's
    order; `.band("B04")`, `rename_labels(source=["var"])` and renaming all bands in order
    without `source` then work."""
    s2 = con.load_collection("SENTINEL2_L2A", spatial_extent=BOX,
                             temporal_extent=["2022-06-01", "2022-06-12"], bands=["B04", "B08"])
    ndvi = s2.ndvi()
    b04 = s2.filter_bands(["B04"])
    red = sample_series(sample_data_dir, "B04", BOX, "2022-06-01", "2022-06-12")
    nir = sample_series(sample_data_dir, "B08", BOX, "2022-06-01", "2022-06-12")
    days = sorted(red)
    want_ndvi = np.stack([(nir[d] - red[d]) / (nir[d] + red[d]) for d in days])
    want_red = np.stack([red[d] for d in days])

    ndvi.merge_cubes(b04).download(tmp_path / "a.nc")
    b04.merge_cubes(ndvi).download(tmp_path / "b.nc")
    with xr.open_dataset(tmp_path / "a.nc") as a, xr.open_dataset(tmp_path / "b.nc") as b:
        assert [v for v in a.data_vars if v != "crs"] == ["var", "B04"]
        assert [v for v in b.data_vars if v != "crs"] == ["B04", "var"]
        for ds in (a, b):
            np.testing.assert_allclose(ds["var"].values, want_ndvi, rtol=1e-6, equal_nan=True)
            np.testing.assert_allclose(ds["B04"].values, want_red, equal_nan=True)

    # all bands renamed in order without `source` (CDSE renames positionally): the user
    # never named `var`
    b04.merge_cubes(ndvi).rename_labels("bands", ["red", "NDVI"]).download(tmp_path / "d.nc")
    with xr.open_dataset(tmp_path / "d.nc") as d:
        assert [v for v in d.data_vars if v != "crs"] == ["red", "NDVI"]
        np.testing.assert_allclose(d["NDVI"].values, want_ndvi, rtol=1e-6, equal_nan=True)

    named = ndvi.merge_cubes(b04).rename_labels("bands", target=["NDVI"], source=["var"])
    (named.band("NDVI") * 2 - named.band("B04") * 0).download(tmp_path / "c.nc")
    with xr.open_dataset(tmp_path / "c.nc") as c:
        np.testing.assert_allclose(c["var"].values, 2 * want_ndvi, rtol=1e-6, equal_nan=True)


def test_rank_composites_mask_is_bandless(con, sample_data_dir: Path, tmp_path: Path) -> None:
    """RankComposites/rank_composites.ipynb: a band-less rank mask (ndvi, apply_neighborhood
    per month, `x != max`) merged with the one-band SCL dilation mask by `max`: one value per
    pixel, band-less as on CDSE (the notebook reads the netCDF variable `var`), then used as
    the mask of the RGB bands and `aggregate_temporal_period("month", "first")`."""
    c = con
    spatial_extent = BOX
    temporal_extent = ["2022-06-04", "2022-07-20"]
    scl = c.load_collection("SENTINEL2_L2A", temporal_extent=temporal_extent, bands=["SCL"],
                            max_cloud_cover=95, spatial_extent=spatial_extent)
    cloud_mask = scl.process("to_scl_dilation_mask", data=scl, kernel1_size=17,
                             kernel2_size=77, mask1_values=[2, 4, 5, 6, 7],
                             mask2_values=[3, 8, 9, 10, 11], erosion_kernel_size=3)
    ndvi_bands = c.load_collection("SENTINEL2_L2A", temporal_extent=temporal_extent,
                                   bands=["B04", "B08", "SCL"], max_cloud_cover=95,
                                   spatial_extent=spatial_extent)
    ndvi_bands = ndvi_bands.mask(cloud_mask)
    ndvi = ndvi_bands.ndvi(nir="B08", red="B04")

    def max_ndvi_selection(ndvi):
        max_ndvi = ndvi.max()
        return ndvi.array_apply(lambda x: x != max_ndvi)

    rank_mask = ndvi.apply_neighborhood(
        max_ndvi_selection,
        size=[{"dimension": "x", "unit": "px", "value": 1},
              {"dimension": "y", "unit": "px", "value": 1},
              {"dimension": "t", "value": "month"}],
        overlap=[]).linear_scale_range(0, 200, 0, 200)
    combined_mask = rank_mask.merge_cubes(cloud_mask, overlap_resolver="max")
    combined_mask.filter_bbox(spatial_extent).execute_batch(tmp_path / "the_mask.nc",
                                                            max_poll_interval=0.2)
    cloud_mask.download(tmp_path / "cloud.nc")
    mask_ds = xr.open_dataset(tmp_path / "the_mask.nc")
    mask_ds["var"] = mask_ds["var"].where(mask_ds["var"] != 129)  # the notebook's next cell

    with xr.open_dataset(tmp_path / "cloud.nc") as cloud_ds:
        cloud = cloud_ds["SCL"].values.astype(bool)  # on the 20 m grid of SCL
    cloud = np.repeat(np.repeat(cloud, 2, axis=1), 2, axis=2)  # as the 10 m bands see it
    red = sample_series(sample_data_dir, "B04", BOX, *temporal_extent)
    nir = sample_series(sample_data_dir, "B08", BOX, *temporal_extent)
    days = sorted(red)
    assert [str(t)[:10] for t in mask_ds.t.values] == days
    ndvi_np = np.stack([(nir[d] - red[d]) / (nir[d] + red[d]) for d in days])
    ndvi_np[cloud] = np.nan
    want = np.empty_like(ndvi_np)
    for month in ("06", "07"):
        idx = [i for i, d in enumerate(days) if d[5:7] == month]
        with np.errstate(invalid="ignore"):
            best = np.nanmax(ndvi_np[idx], axis=0) if len(idx) else None
        for i in idx:
            rank = np.where(np.isnan(ndvi_np[i]), np.nan, (ndvi_np[i] != best).astype(float))
            want[i] = np.where(np.isnan(rank), cloud[i], np.fmax(rank, cloud[i]))
    assert list(mask_ds.data_vars) == ["crs", "var"]
    np.testing.assert_array_equal(mask_ds["var"].values, want)
    assert 0 < (want == 0).sum() < want.size  # some pixels are the month's best

    rgb_bands = c.load_collection("SENTINEL2_L2A", temporal_extent=temporal_extent,
                                  bands=["B02", "B03", "B04"], max_cloud_cover=95,
                                  spatial_extent=spatial_extent)
    composite = rgb_bands.mask(combined_mask).aggregate_temporal_period("month", "first")
    composite.filter_bbox(spatial_extent).execute_batch(tmp_path / "composite.nc",
                                                        max_poll_interval=0.2)
    composite = xr.open_dataset(tmp_path / "composite.nc")
    rgb_array = composite.to_array(dim="bands").sel(bands=["B04", "B03", "B02"]).astype(
        np.float32) / 10000
    assert rgb_array.shape == (3, 2, 30, 30)
    for t, month in enumerate(("06", "07")):
        idx = [i for i, d in enumerate(days) if d[5:7] == month]
        first = np.full((30, 30), np.nan)
        for i in idx[::-1]:
            layer = np.where(want[i] == 0, red[days[i]], np.nan)
            first = np.where(np.isnan(layer), first, layer)
        np.testing.assert_allclose(composite["B04"].isel(t=t).values, first, equal_nan=True)


# --- chunk_polygon / apply_polygon with UDFs --------------------------------------------------
def stored_example(con, name: str) -> None:
    """processes/<name>.json of the community examples, stored as the user's own process with
    its collection replaced by the sample (SENTINEL2_L1C has no sample here)."""
    folder = Path(__file__).parent / "data"
    definition = json.loads((folder / f"community_{name}.json").read_text())
    for node in definition["process_graph"].values():
        if node["process_id"] == "load_collection":
            node["arguments"]["id"] = "SENTINEL2_L2A"
    con.save_user_defined_process(name, definition["process_graph"],
                                  parameters=definition["parameters"],
                                  returns=definition.get("returns"),
                                  summary=definition.get("summary"))


def test_burntmapping_chunks_udp(con, sample_data_dir: Path, tmp_path: Path) -> None:
    """processes/burntmapping_chunks.json: two chunk_polygon of an NBR UDF (XarrayDataCube,
    `inarr.loc[:, 'B08']`, a new band `nbr`) on loads without a spatial extent, means over
    time, merge_cubes with `subtract`. Called as the notebook calls stored processes
    (datacube_from_process); pixels outside the polygons are no-data."""
    stored_example(con, "burntmapping_chunks")
    aoi = feature_collection(BOX, BOX2)
    before, after = ["2022-06-01", "2022-06-15"], ["2022-07-01", "2022-07-15"]
    cube = con.datacube_from_process("burntmapping_chunks", Previous_date=before,
                                     After_date=after, aoi=aoi)
    cube.download(tmp_path / "burnt.tif")
    with rasterio.open(tmp_path / "burnt.tif") as ds:
        assert ds.count == 1 and ds.descriptions == ("nbr",)
        everything = ds.read(1)
    for box in (BOX, BOX2):
        want = nbr_mean(sample_data_dir, box, *after) - nbr_mean(sample_data_dir, box, *before)
        got = window_of(tmp_path / "burnt.tif", box)
        assert np.isfinite(want).sum() > 300
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6, equal_nan=True)
    assert np.isfinite(everything).sum() == np.isfinite(
        nbr_mean(sample_data_dir, BOX, *after) - nbr_mean(sample_data_dir, BOX, *before)).sum() \
        + np.isfinite(nbr_mean(sample_data_dir, BOX2, *after)
                      - nbr_mean(sample_data_dir, BOX2, *before)).sum()


def test_burntmapping_notebook_apply_polygon(con, sample_data_dir: Path,
                                             tmp_path: Path) -> None:
    """BurntMapping/burntmapping.ipynb: the same UDF through apply_polygon(geometries=...,
    process=lambda data: data.run_udf(...)) on each period, means over time, `post_n - pre_n`
    (cube arithmetic: merge_cubes of the two one-band cubes), GeoTIFF."""
    before_cube = con.load_collection("SENTINEL2_L2A", temporal_extent=["2022-06-01",
                                                                         "2022-06-15"],
                                      bands=["B08", "B12"])
    after_cube = con.load_collection("SENTINEL2_L2A", temporal_extent=["2022-07-01",
                                                                        "2022-07-15"],
                                     bands=["B08", "B12"])
    my_code = """
from openeo.udf import XarrayDataCube


def apply_datacube(cube: XarrayDataCube, context: dict) -> XarrayDataCube:
    # access the underlying xarray
    inarr = cube.get_array()

    # nbr
    nir = inarr.loc[:,'B08']
    swir = inarr.loc[:,'B12']
    nbr = (nir-swir)/(nir+swir)

    # extend bands dim
    nbr=nbr.expand_dims(dim='bands', axis=-3).assign_coords(bands=['nbr'])

    # wrap back to datacube and return
    return XarrayDataCube(nbr)
"""
    udf_process = lambda data: data.run_udf(udf=my_code, runtime="python")  # noqa: E731
    spatial_param = feature_collection(BOX)
    pre_nbr = before_cube.apply_polygon(geometries=spatial_param, process=udf_process)
    post_nbr = after_cube.apply_polygon(geometries=spatial_param, process=udf_process)
    pre_n = pre_nbr.reduce_dimension(dimension="t", reducer="mean")
    post_n = post_nbr.reduce_dimension(dimension="t", reducer="mean")
    sub = post_n - pre_n
    sub.download(tmp_path / "sub_nbr_udf.tiff")
    want = (nbr_mean(sample_data_dir, BOX, "2022-07-01", "2022-07-15")
            - nbr_mean(sample_data_dir, BOX, "2022-06-01", "2022-06-15"))
    np.testing.assert_allclose(window_of(tmp_path / "sub_nbr_udf.tiff", BOX), want,
                               rtol=1e-4, atol=1e-6, equal_nan=True)
    with rasterio.open(tmp_path / "sub_nbr_udf.tiff") as ds:
        img = ds.read()
    assert img.shape[0] == 1 and np.isfinite(img).sum() == np.isfinite(want).sum()


def test_rescale_chunks_udp(con, sample_data_dir: Path, tmp_path: Path) -> None:
    """processes/rescale_chunks.json: chunk_polygon of a UDF that scales the values in place
    (`array.values = 0.0001 * array.values; return cube`), then the mean over time."""
    stored_example(con, "rescale_chunks")
    cube = con.datacube_from_process("rescale_chunks", date=["2022-06-01", "2022-06-15"],
                                     aoi=feature_collection(BOX))
    cube.download(tmp_path / "rescaled.nc")
    with xr.open_dataset(tmp_path / "rescaled.nc") as ds:
        assert [v for v in ds.data_vars if v != "crs"] == ["B02", "B03", "B04"]
        inside = ds.sel(x=slice(BOX["west"], BOX["east"]), y=slice(BOX["north"], BOX["south"]))
        for band in ("B02", "B03", "B04"):
            series = sample_series(sample_data_dir, band, BOX, "2022-06-01", "2022-06-15")
            want = 0.0001 * np.nanmean(np.stack(list(series.values())), axis=0)
            np.testing.assert_allclose(inside[band].values, want, rtol=1e-5, equal_nan=True)
            assert np.isfinite(ds[band].values).sum() == np.isfinite(want).sum()


def test_udf_data_proj_and_apply_metadata_in_apply_polygon(con, sample_data_dir: Path,
                                                           tmp_path: Path) -> None:
    """The UDF API in apply_polygon as CDSE gives it: `UdfData.proj` is {"EPSG": code} of the
    cube's grid (apply_udf_data), and labels renamed by apply_metadata name the bands of the
    result."""
    extent = {"west": 680300, "south": 5151020, "east": 680800, "north": 5151520, "crs": 32632}
    s2 = con.load_collection("SENTINEL2_L2A", spatial_extent=extent,
                             temporal_extent=["2022-06-01", "2022-06-12"], bands=["B04", "B08"])
    aoi = feature_collection(BOX)
    proj_code = """
from openeo.udf import UdfData, XarrayDataCube

def apply_udf_data(data: UdfData):
    arr = data.get_datacube_list()[0].get_array()
    data.set_datacube_list([XarrayDataCube(arr * 0 + data.proj["EPSG"])])
"""
    s2.apply_polygon(geometries=aoi, process=openeo.UDF(proj_code, runtime="Python")) \
        .download(tmp_path / "proj.nc")
    with xr.open_dataset(tmp_path / "proj.nc") as ds:
        values = ds["B04"].values
        assert set(np.unique(values[np.isfinite(values)])) == {32632}
        assert np.isfinite(values).sum() == 2 * 30 * 30  # BOX's pixels on two dates

    rename_code = """
import xarray
from openeo.metadata import CollectionMetadata

def apply_metadata(metadata: CollectionMetadata, context: dict) -> CollectionMetadata:
    return metadata.rename_labels(dimension="bands", target=["ndvi"])

def apply_datacube(cube: xarray.DataArray, context: dict) -> xarray.DataArray:
    nir, red = cube.sel(bands="B08"), cube.sel(bands="B04")
    return ((nir - red) / (nir + red)).expand_dims(bands=["ndvi"]).transpose(*cube.dims)
"""
    s2.apply_polygon(geometries=aoi, process=openeo.UDF(rename_code, runtime="Python")) \
        .download(tmp_path / "renamed.nc")
    red = sample_series(sample_data_dir, "B04", BOX, "2022-06-01", "2022-06-12")
    nir = sample_series(sample_data_dir, "B08", BOX, "2022-06-01", "2022-06-12")
    want = np.stack([(nir[d] - red[d]) / (nir[d] + red[d]) for d in sorted(red)])
    with xr.open_dataset(tmp_path / "renamed.nc") as ds:
        assert [v for v in ds.data_vars if v != "crs"] == ["ndvi"]
        inside = ds.sel(x=slice(BOX["west"], BOX["east"]), y=slice(BOX["north"], BOX["south"]))
        np.testing.assert_allclose(inside["ndvi"].values, want, rtol=1e-6, equal_nan=True)


# --- 1. GettingStarted, StatisticalDataFill, the crop_polygon process ------------------------
def test_getting_started_evi_max_composite(con, sample_data_dir: Path, tmp_path: Path) -> None:
    """1. GettingStarted/GettingStarted.ipynb: discovery calls, then EVI from band math on
    scaled bands (`cube.band("B02") * 0.0001`, ...), `max_time()`, GeoTIFF."""
    connection = con
    assert "SENTINEL2_L2A" in connection.list_collection_ids()
    assert connection.describe_collection("SENTINEL2_L2A")["id"] == "SENTINEL2_L2A"
    assert any(p["id"] == "aggregate_temporal" for p in connection.list_processes())
    assert connection.describe_process("aggregate_temporal")["id"] == "aggregate_temporal"
    sentinel2_cube = connection.load_collection(
        "SENTINEL2_L2A", spatial_extent=BOX, temporal_extent=["2022-04-01", "2022-05-15"],
        bands=["B02", "B04", "B08"])
    blue = sentinel2_cube.band("B02") * 0.0001
    red = sentinel2_cube.band("B04") * 0.0001
    nir = sentinel2_cube.band("B08") * 0.0001
    evi_cube = 2.5 * (nir - red) / (nir + 6.0 * red - 7.5 * blue + 1.0)
    evi_composite = evi_cube.max_time()
    evi_composite.download(tmp_path / "evi_composite.tiff")
    with rasterio.open(tmp_path / "evi_composite.tiff") as ds:
        img2 = ds.read()
    series = {b: sample_series(sample_data_dir, b, BOX, "2022-04-01", "2022-05-15")
              for b in ("B02", "B04", "B08")}
    assert [list(v) for v in series.values()][0][0] == "2022-04-03"
    evi = [2.5 * (n - r) / (n + 6.0 * r - 7.5 * b + 1.0)
           for b, r, n in zip(*(np.stack(list(series[k].values())) * 0.0001
                                for k in ("B02", "B04", "B08")), strict=True)]
    assert len(evi) >= 5
    want = np.nanmax(np.stack(evi), axis=0)
    assert img2.shape == (1, 30, 30)
    np.testing.assert_allclose(img2[0], want, rtol=1e-5, equal_nan=True)


LOWESS_UDF = '''
import xarray as xr
import numpy as np
from openeo.udf import inspect
from openeo.metadata import CollectionMetadata
from statsmodels.nonparametric.smoothers_lowess import lowess

def lowess_along_axis(arr: np.ndarray) -> np.ndarray:
    if not np.all(np.isnan(arr)):
        # Get non-NaN indices
        not_nan_indices = np.where(~np.isnan(arr))[0]

        # Interpolate NaN values using lowess
        smoothed = lowess(arr[not_nan_indices], not_nan_indices, frac=0.2)

        # Create a copy of the original series
        filled_series = arr.copy()

        # Replace NaN values with interpolated values
        filled_series[np.isnan(filled_series)] = np.interp(np.arange(len(filled_series)),
                                                smoothed[:, 0],
                                                smoothed[:, 1])[np.isnan(filled_series)]
    else:
        filled_series = arr.copy()
    return filled_series

def apply_datacube(cube: xarray.DataArray, context: dict) -> xarray.DataArray:

    res_arr = xr.apply_ufunc(lowess_along_axis,
    cube,
    input_core_dims=[['t']],
    output_core_dims=[['t']],
    vectorize=True)
    return res_arr

'''


def test_statistical_data_fill_lowess_udf(con, sample_data_dir: Path, tmp_path: Path) -> None:
    """StatisticalDataFill/StatisticalDataFill.ipynb (SENTINEL_5P_L2 / NO2 -> SENTINEL2_L2A /
    B04): daily means by aggregate_temporal_period, the gaps filled by a statsmodels LOWESS
    UDF in apply_dimension over t (xr.apply_ufunc, `xarray` not imported by the UDF), two
    batch jobs to netCDF, the job's `costs`."""
    from statsmodels.nonparametric.smoothers_lowess import lowess

    connection = con
    No2 = connection.load_collection("SENTINEL2_L2A", temporal_extent=["2022-04-01",
                                                                        "2022-05-01"],
                                     spatial_extent=BOX, bands=["B04"])
    No2 = No2.aggregate_temporal_period(reducer="mean", period="day")
    udf = openeo.UDF(LOWESS_UDF)
    No2_filled = No2.apply_dimension(process=udf, dimension="t")
    No2_filled.execute_batch(title="Filled NO2 data with Lowess",
                             outputfile=tmp_path / "NO2_Interpolated.nc")
    job = No2.execute_batch(title="Observed NO2 data before Lowess",
                            outputfile=tmp_path / "NO2_withNAN.nc")
    assert job.describe()["costs"] is not None
    filled = xr.load_dataset(tmp_path / "NO2_Interpolated.nc")
    observed = xr.load_dataset(tmp_path / "NO2_withNAN.nc")
    assert np.isfinite(observed.B04.mean(dim=["y", "x"]).values).sum() >= 5
    assert np.isfinite(filled.B04.mean(dim=["y", "x"]).values).all()

    days = [str(t)[:10] for t in observed.t.values]
    stored = sample_series(sample_data_dir, "B04", BOX, "2022-04-01", "2022-05-01")
    stack = np.stack([stored.get(d, np.full((30, 30), np.nan)) for d in days])
    np.testing.assert_allclose(observed.B04.values, stack, equal_nan=True)
    want = stack.copy()
    index = np.arange(len(days))
    for y in range(30):
        for x in range(30):
            arr = stack[:, y, x]
            ok = ~np.isnan(arr)
            smoothed = lowess(arr[ok], index[ok], frac=0.2)
            want[~ok, y, x] = np.interp(index, smoothed[:, 0], smoothed[:, 1])[~ok]
    np.testing.assert_allclose(filled.B04.values, want, rtol=1e-6)


def test_crop_polygon_process(con, sample_data_dir: Path, tmp_path: Path) -> None:
    """processes/crop_polygon.json (filter_spatial then mask_polygon with `inside: false`):
    stored as the user's process and called with a triangle; the result is the triangle's
    bounding box, pixels outside the triangle no-data. A `replacement` changes nothing: the
    pixels outside are no-data after filter_spatial already, and mask_polygon leaves no-data
    untouched (its definition)."""
    definition = json.loads((Path(__file__).parent / "data" / "community_crop_polygon.json")
                            .read_text())
    con.save_user_defined_process("crop_polygon", definition["process_graph"],
                                  parameters=definition["parameters"],
                                  returns=definition.get("returns"))
    from pyproj import Transformer

    to_wgs84 = Transformer.from_crs(32632, 4326, always_xy=True)
    corners = [(680451, 5151171), (680633, 5151171), (680451, 5151354)]  # 18 x 18 pixels
    triangle = {"type": "Polygon", "coordinates": [[list(to_wgs84.transform(x, y))
                                                    for x, y in [*corners, corners[0]]]]}
    s2 = con.load_collection("SENTINEL2_L2A", spatial_extent=BOX,
                             temporal_extent=["2022-06-01", "2022-06-05"], bands=["B04"])
    s2.process("crop_polygon", data=s2, mask=triangle).download(tmp_path / "crop.nc")
    s2.process("crop_polygon", data=s2, mask=triangle, replacement=5) \
        .download(tmp_path / "crop0.nc")
    inner = {"west": 680450, "south": 5151170, "east": 680630, "north": 5151350}
    (stored,) = sample_series(sample_data_dir, "B04", inner, "2022-06-01", "2022-06-05").values()
    import shapely.geometry

    xs = inner["west"] + 5 + 10 * np.arange(18)
    ys = inner["north"] - 5 - 10 * np.arange(18)
    shape = shapely.geometry.Polygon(corners)
    centres = [[shapely.geometry.Point(x, y) for x in xs] for y in ys]
    inside = np.array([[shape.contains(p) for p in row] for row in centres])
    nearest = min(shape.exterior.distance(p) for row in centres for p in row)
    assert nearest > 0.5 and 120 < inside.sum() < 200  # no centre on the edge
    with xr.open_dataset(tmp_path / "crop.nc") as ds, xr.open_dataset(tmp_path / "crop0.nc") \
            as ds0:
        assert ds.B04.shape == (1, 18, 18)
        np.testing.assert_array_equal(ds.B04.values[0], np.where(inside, stored, np.nan))
        np.testing.assert_array_equal(ds0.B04.values[0], np.where(inside, stored, np.nan))


def test_federated_processing_without_the_federation(con, sample_data_dir: Path,
                                                     tmp_path: Path) -> None:
    """Federation/FederatedProcessing.ipynb without its federation-only cells (collection
    summaries `federation:backends`, a WorldCereal load filtered by that property):
    `filter_temporal(extent="2022-08")` (a month as the whole extent) and filter_bbox after
    loads without extents, reduce_temporal("mean"), merge_cubes of two one-band cubes,
    save_result netCDF, create_job with the aggregator's `split_strategy` job option and
    `validate=False`, start, list_jobs(limit=3)."""
    connection = con
    assert connection.describe_process("add")["id"] == "add"
    temporal_extent = "2022-08"
    spatial_extent = BOX
    cube1 = (connection.load_collection("SENTINEL2_L2A", bands=["B02"], max_cloud_cover=50)
             .filter_temporal(extent=temporal_extent).filter_bbox(spatial_extent))
    cube1 = cube1.reduce_temporal("mean")
    cube2 = (connection.load_collection("SENTINEL2_L2A", bands=["B08"])
             .filter_temporal(extent=temporal_extent).filter_bbox(spatial_extent))
    cube2 = cube2.reduce_temporal("mean")
    merged = cube1.merge_cubes(cube2)
    saved = merged.save_result(format="netCDF")
    job = saved.create_job(title="Deep graph splitting demo", job_options={
        "split_strategy": {"crossbackend": {"method": "deep"}}}, validate=False)
    job.start()
    assert job.job_id in [j["id"] for j in connection.list_jobs(limit=3)]
    job.start_and_wait(max_poll_interval=0.2)
    (path,) = [p for p in job.get_results().download_files(tmp_path / "out")
               if p.suffix == ".nc"]
    covers = {i["datetime"][:10]: i["eo:cloud_cover"] for i in json.loads(
        (sample_data_dir / "samples" / "sentinel2_l2a" / "items.json").read_text())["items"]}
    with xr.open_dataset(path) as ds:
        for band, limit in (("B02", 50), ("B08", 101)):
            series = sample_series(sample_data_dir, band, BOX, "2022-08-01", "2022-09-01")
            days = [d for d in series if covers[d] <= limit]
            assert len(days) >= 3
            want = np.nanmean(np.stack([series[d] for d in days]), axis=0)
            np.testing.assert_allclose(ds[band].values, want, rtol=1e-5, equal_nan=True)


def test_load_stac_of_a_stac_item_made_with_pystac(con, sample_data_dir: Path,
                                                   tmp_path: Path) -> None:
    """LoadStac/load-stac-item-example.ipynb: a cloud-masked mean NDVI as a GeoTIFF batch job
    (`temporal_extent="2022-06"`, ndvi with `target_band`, filter_bands), the file put on a
    web server, a STAC item for it written with pystac (eo:bands on the asset, proj
    properties), and `load_stac` of the item's URL downloaded again."""
    import pystac
    import rasterio.warp
    from tests.support.processes import StaticHttpServer

    connection = con
    scl = connection.load_collection("SENTINEL2_L2A", spatial_extent=BOX,
                                     temporal_extent="2022-06", bands=["SCL"],
                                     max_cloud_cover=95)
    cloud_mask = scl.process("to_scl_dilation_mask", data=scl, kernel1_size=17,
                             kernel2_size=77, mask1_values=[2, 4, 5, 6, 7],
                             mask2_values=[3, 8, 9, 10, 11], erosion_kernel_size=3)
    collection = connection.load_collection("SENTINEL2_L2A", spatial_extent=BOX,
                                            temporal_extent="2022-06", bands=["B04", "B08"],
                                            max_cloud_cover=95)
    collection = collection.mask(cloud_mask)
    collection = collection.ndvi(red="B04", nir="B08", target_band="NDVI-band") \
        .filter_bands("NDVI-band")
    collection = collection.reduce_temporal("mean")
    ndvi_job = collection.create_job(title="NDVI", out_format="GTiff")
    hosted = tmp_path / "hosted"
    hosted.mkdir()
    ndvi_job.start_and_wait(max_poll_interval=0.2).get_results().download_file(
        hosted / "ndvi-file.tiff")

    with StaticHttpServer(hosted) as web:
        tiff_url = f"{web.url}/ndvi-file.tiff"
        from datetime import datetime

        dt = datetime.fromisoformat("2022-06-01")
        output_path = hosted / "ndvi-example-stac-item.json"
        # the notebook opens tiff_url; rasterio keeps the GIL while GDAL reads a URL, so a
        # web server in this process could never answer it: the same file, read from disk
        with rasterio.open(hosted / "ndvi-file.tiff") as src:
            proj_bounds = list(src.bounds)
            left, bottom, right, top = rasterio.warp.transform_bounds(src.crs, "EPSG:4326",
                                                                      *src.bounds)
            item = pystac.Item(
                id="ndvi-example-stac-item",
                geometry={"type": "Polygon", "coordinates": [[
                    [left, bottom], [right, bottom], [right, top], [left, top],
                    [left, bottom]]]},
                bbox=[left, bottom, right, top],
                datetime=dt,
                properties={"proj:epsg": src.crs.to_epsg(), "proj:shape": src.shape,
                            "proj:bbox": proj_bounds},
                stac_extensions=[
                    "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
                    "https://stac-extensions.github.io/projection/v1.1.0/schema.json"],
                assets={"ndvi": pystac.Asset(
                    href=tiff_url, title="Normalized Difference Vegetation Index",
                    extra_fields={"eo:bands": [{"name": "NDVI-band"}]})})
            item.save_object(dest_href=str(output_path), include_self_link=False)
        datacube = connection.load_stac(f"{web.url}/ndvi-example-stac-item.json")
        datacube.download(tmp_path / "ndvi-from-stac.tiff")

    with rasterio.open(hosted / "ndvi-file.tiff") as first, \
            rasterio.open(tmp_path / "ndvi-from-stac.tiff") as again:
        assert again.crs == first.crs and again.transform == first.transform
        np.testing.assert_array_equal(again.read(1), first.read(1))
        values = first.read(1)
    red = sample_series(sample_data_dir, "B04", BOX, "2022-06-01", "2022-07-01")
    nir = sample_series(sample_data_dir, "B08", BOX, "2022-06-01", "2022-07-01")
    ndvi = np.stack([(nir[d] - red[d]) / (nir[d] + red[d]) for d in sorted(red)])
    # the dilated cloud mask makes some dates no-data: the mean lies within each pixel's range
    with np.errstate(invalid="ignore"):
        low, high = np.nanmin(ndvi, axis=0), np.nanmax(ndvi, axis=0)
    ok = np.isfinite(values)
    assert ok.sum() > 100
    assert (values[ok] >= low[ok] - 1e-6).all() and (values[ok] <= high[ok] + 1e-6).all()


def test_managing_multiple_large_scale_jobs(con, sample_data_dir: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """ManagingMultipleLargeScaleJobs/ManagingMultipleLargeScaleJobs.ipynb: split_area tiles
    in EPSG:3857, one job per tile (SCL dilation mask, `properties={"eo:cloud_cover": lambda
    x: x.lte(60)}`, median composite, GeoTIFF) run by MultiBackendJobManager with a Parquet
    job database, then the notebook's reading of `job_<id>/openEO.tif` per finished tile.
    Adapted: the area (2 tiles of 1 km over the sample) and the manager's poll_sleep."""
    import geopandas as gpd
    import pandas as pd
    from openeo.extra.job_management import (
        MultiBackendJobManager,
        create_job_db,
        split_area,
    )

    monkeypatch.chdir(tmp_path)  # the notebook's relative paths
    TILING_PROJECTION = "EPSG:3857"  # noqa: N806 - the notebook's names
    AREA_OF_INTEREST = {"west": 1_261_000.0, "south": 5_858_000.0, "east": 1_263_000.0,  # noqa: N806
                        "north": 5_859_000.0, "crs": TILING_PROJECTION}
    TILE_SIZE = 1_000  # noqa: N806
    jobs_database = split_area(aoi=AREA_OF_INTEREST, tile_size=TILE_SIZE,
                               projection=TILING_PROJECTION)
    jobs_database["tile_id"] = jobs_database.index
    assert len(jobs_database) == 2

    def start_job(row: pd.Series, connection: openeo.Connection, **_) -> openeo.BatchJob:
        west, south, east, north = row.geometry.bounds
        spatial_extent = {"west": west, "south": south, "east": east, "north": north,
                          "crs": TILING_PROJECTION}
        scl = connection.load_collection(
            collection_id="SENTINEL2_L2A", spatial_extent=spatial_extent,
            temporal_extent=["2022-06-01", "2022-09-01"], bands=["SCL"],
            properties={"eo:cloud_cover": lambda x: x.lte(60)})
        cloud_mask = scl.process("to_scl_dilation_mask", data=scl, kernel1_size=17,
                                 kernel2_size=77, mask1_values=[2, 4, 5, 6, 7],
                                 mask2_values=[3, 8, 9, 10, 11], erosion_kernel_size=3)
        s2_cube = connection.load_collection(
            collection_id="SENTINEL2_L2A", spatial_extent=spatial_extent,
            temporal_extent=["2022-06-01", "2022-09-01"], bands=["B02", "B03", "B04"],
            properties={"eo:cloud_cover": lambda x: x.lte(60)})
        s2_cube = s2_cube.mask(cloud_mask)
        s2_cube = s2_cube.reduce_temporal(reducer="median")
        return s2_cube.create_job(title=f"MultiBackendJobManager - Tile {row['tile_id']}",
                                  out_format="GTiff")

    job_tracker = "community_example_job_tracker.parquet"
    job_db = create_job_db(job_tracker, df=jobs_database, on_exists="skip")
    manager = MultiBackendJobManager(poll_sleep=1)
    manager.add_backend("cdse", connection=con, parallel_jobs=2)
    manager.run_jobs(job_db=job_db, start_job=start_job)

    output_df = gpd.read_parquet(job_tracker)
    finished_jobs = output_df[output_df["status"] == "finished"]
    assert len(finished_jobs) == 2
    covers = {i["datetime"][:10]: i["eo:cloud_cover"] for i in json.loads(
        (sample_data_dir / "samples" / "sentinel2_l2a" / "items.json").read_text())["items"]}
    for _, row in finished_jobs.iterrows():
        image_path = Path(f"job_{row['id']}") / "openEO.tif"
        with rasterio.open(image_path) as src:
            blue = src.read(1).astype("float64")
            if src.nodata is not None:
                blue[blue == src.nodata] = np.nan
            assert src.count == 3 and src.crs.to_epsg() == 32632
            # the tile's pixels on the sample's grid, in UTM
            bounds = src.bounds
        tile_box = {"west": bounds.left, "south": bounds.bottom, "east": bounds.right,
                    "north": bounds.top}
        series = sample_series(sample_data_dir, "B02", tile_box, "2022-06-01", "2022-09-01")
        days = [d for d in series if covers[d] <= 60]
        assert len(days) >= 5
        clear = np.isfinite(blue)
        lows = np.nanmin(np.stack([series[d] for d in days]), axis=0)
        highs = np.nanmax(np.stack([series[d] for d in days]), axis=0)
        assert blue.shape == lows.shape and clear.mean() > 0.5
        assert ((blue >= lows) & (blue <= highs))[clear & np.isfinite(lows)].all()


def test_chunk_polygon_calls_the_udf_once_per_polygon(con, tmp_path: Path) -> None:
    """chunk_polygon (the community examples' name of apply_polygon) gives the UDF one
    polygon at a time, as CDSE does: a UDF writing the number of valid pixels it was given
    writes each polygon's own count (30 x 30 and 20 x 18 pixels)."""
    extent = {"west": 680300, "south": 5151020, "east": 681300, "north": 5151520, "crs": 32632}
    s2 = con.load_collection("SENTINEL2_L2A", spatial_extent=extent,
                             temporal_extent=["2022-06-01", "2022-06-05"], bands=["B04"])
    code = """
from openeo.udf import XarrayDataCube

def apply_datacube(cube: XarrayDataCube, context: dict) -> XarrayDataCube:
    arr = cube.get_array()
    return XarrayDataCube(arr * 0 + float(arr.count()))
"""
    with pytest.warns(Warning, match="chunk_polygon"):  # the client's deprecation
        cube = s2.chunk_polygon(chunks=feature_collection(BOX, BOX2),
                                process=openeo.UDF(code, runtime="Python"))
    cube.download(tmp_path / "counts.nc")
    with xr.open_dataset(tmp_path / "counts.nc") as ds:
        for box, count in ((BOX, 900), (BOX2, 360)):
            inside = ds.B04.sel(x=slice(box["west"], box["east"]),
                                y=slice(box["north"], box["south"])).values
            assert inside.size == count and (inside == count).all()
        values = ds.B04.values
        assert np.isfinite(values).sum() == 900 + 360
