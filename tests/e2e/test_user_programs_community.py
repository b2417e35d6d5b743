"""The openEO community examples (github.com/Open-EO/openeo-community-examples) run through the
official client against the shared server, adapted only in URL, login, collection id, band
names and extent; values checked with numpy/scipy on the sample files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.ndimage
import xarray as xr
from tests.support.data import sample_series

openeo = pytest.importorskip("openeo")
pytestmark = pytest.mark.e2e

# On the 20 m grid of the sample's SCL files (origin 678000, 5153520): 15 x 15 of their pixels,
# where clouds make the best June date differ from pixel to pixel.
BOX = {"west": 680400, "south": 5151120, "east": 680700, "north": 5151420, "crs": 32632}


@pytest.fixture(scope="module")
def con(server):
    return openeo.connect(server.url).authenticate_basic("demo", "demo")


def box_polygon_wgs84(inset: float = 1.0) -> dict:
    """BOX as a GeoJSON polygon in WGS 84 (what users pass), its corners `inset` metres inside
    BOX: every pixel of BOX is inside it, and its bounding box snaps out to BOX again."""
    from pyproj import Transformer

    to_wgs84 = Transformer.from_crs(32632, 4326, always_xy=True)
    w, s, e, n = (BOX["west"] + inset, BOX["south"] + inset, BOX["east"] - inset,
                  BOX["north"] - inset)
    ring = [list(to_wgs84.transform(x, y)) for x, y in ((w, s), (e, s), (e, n), (w, n), (w, s))]
    return {"type": "FeatureCollection", "features": [{
        "type": "Feature", "properties": {},
        "geometry": {"type": "Polygon", "coordinates": [ring]}}]}


def items_of(sample_data_dir: Path) -> dict[str, float]:
    folder = sample_data_dir / "samples" / "sentinel2_l2a"
    return {i["datetime"][:10]: i["eo:cloud_cover"]
            for i in json.loads((folder / "items.json").read_text())["items"]}


# --- RankComposites/bap_composite.ipynb and its utils_BAP.py, as published ----------------------
def calculate_cloud_mask(scl):
    classification = scl.band("SCL")
    binary = (classification == 3) | (classification == 8) | (classification == 9) | (
        classification == 10)
    binary = binary.add_dimension(name="bands", label="score", type="bands")
    return binary


def calculate_cloud_coverage_score(cloud_mask, area, scl):
    cloud_coverage = (1 - cloud_mask).aggregate_spatial(geometries=area, reducer="mean")
    coverage_score = cloud_coverage.vector_to_raster(scl)
    coverage_score = coverage_score.rename_labels("bands", ["score"])
    return coverage_score


def day_of_month_calc(input):
    from openeo.api.process import Parameter

    label = Parameter("label")
    day = lambda x: 15 + x.process(  # noqa: E731 - the example's own code
        "date_difference",
        date1=x.process("date_replace_component", date=label, value=15, component="day"),
        date2=label, unit="day")
    return input.array_apply(day)


def date_score_calc(day):
    return day.subtract(15).multiply(0.2).multiply(day.subtract(15).multiply(0.2)).multiply(
        -0.5).exp().multiply(0.07978845)


def calculate_date_score(scl):
    day_of_month = scl.apply_neighborhood(
        day_of_month_calc,
        size=[{"dimension": "x", "unit": "px", "value": 1},
              {"dimension": "y", "unit": "px", "value": 1},
              {"dimension": "t", "value": "month"}],
        overlap=[])
    date_score = (1.0 * day_of_month).apply(date_score_calc)
    date_score = date_score.rename_labels("bands", ["score"])
    return date_score


def bap_kernel(spatial_resolution: int, max_distance: int = 150) -> np.ndarray:
    from scipy.signal.windows import gaussian

    def round_up_to_odd(f):
        return np.ceil(f) // 2 * 2 + 1

    kernel_size = round_up_to_odd(max_distance * 20 / spatial_resolution)
    gaussian_1d = gaussian(M=kernel_size, std=kernel_size / 6)
    gaussian_kernel = np.outer(gaussian_1d, gaussian_1d)
    gaussian_kernel /= gaussian_kernel.sum()
    return gaussian_kernel


def calculate_distance_to_cloud_score(binary, spatial_resolution):
    return 1 - binary.apply_kernel(bap_kernel(spatial_resolution))


def max_score_selection(score):
    max_score = score.max()
    return score.array_apply(lambda x: x != max_score)


def create_rank_mask(score):
    rank_mask = score.apply_neighborhood(
        max_score_selection,
        size=[{"dimension": "x", "unit": "px", "value": 1},
              {"dimension": "y", "unit": "px", "value": 1},
              {"dimension": "t", "value": "month"}],
        overlap=[])
    return rank_mask.band("score")


def aggregate_bap_scores(dtc_score, date_score, coverage_score, weights):
    return (weights[0] * dtc_score + weights[1] * date_score
            + weights[2] * coverage_score) / sum(weights)


def test_best_available_pixel_composite(con, sample_data_dir: Path, tmp_path: Path) -> None:
    """RankComposites/bap_composite.ipynb: SCL-based scores (distance to cloud by a 151 x 151
    Gaussian apply_kernel, day of month by apply_neighborhood + array_apply on labels,
    coverage by aggregate_spatial + vector_to_raster), the best date per pixel and month
    masks the 10 m bands, aggregate_temporal_period "first". It took 48 s of server CPU for
    34 x 32 px (the kernel correlated weight by weight); now well under a second."""
    from openeo.processes import if_, is_nan

    area = box_polygon_wgs84()
    temporal_extent = ["2022-06-01", "2022-07-31"]
    max_cloud_cover, spatial_resolution = 70, 20
    scl = con.load_collection("SENTINEL2_L2A", temporal_extent=temporal_extent, bands=["SCL"],
                              max_cloud_cover=max_cloud_cover
                              ).resample_spatial(spatial_resolution).filter_spatial(area)
    scl = scl.apply(lambda x: if_(is_nan(x), 0, x))
    cloud_mask = calculate_cloud_mask(scl)
    coverage_score = calculate_cloud_coverage_score(cloud_mask, area, scl)
    date_score = calculate_date_score(scl)
    dtc_score = calculate_distance_to_cloud_score(cloud_mask, spatial_resolution)
    weights = [1, 0.8, 0.5]
    score = aggregate_bap_scores(dtc_score, date_score, coverage_score, weights)
    score = score.mask(scl.band("SCL") == 0)
    rank_mask = create_rank_mask(score)
    rgb_bands = con.load_collection("SENTINEL2_L2A", temporal_extent=temporal_extent,
                                    bands=["B02", "B03", "B04"],
                                    max_cloud_cover=max_cloud_cover).filter_spatial(area)
    composite = rgb_bands.mask(rank_mask).mask(cloud_mask).aggregate_temporal_period(
        "month", "first")
    composite.download(tmp_path / "bap.nc", format="netCDF")

    # The oracle: the same scores in numpy on the stored files (SCL is stored at 20 m).
    covers = items_of(sample_data_dir)
    scl_days = sample_series(sample_data_dir, "SCL", BOX, "2022-06-01", "2022-07-31")
    bands = {band: sample_series(sample_data_dir, band, BOX, "2022-06-01", "2022-07-31")
             for band in ("B02", "B03", "B04")}
    kernel = bap_kernel(spatial_resolution)[None]
    chosen = set()
    with xr.open_dataset(tmp_path / "bap.nc") as ds:
        assert [str(t)[:7] for t in ds.t.values] == ["2022-06", "2022-07"]
        for index, month in enumerate(("2022-06", "2022-07")):
            days = sorted(d for d in scl_days if d.startswith(month) and covers[d] <= 70)
            scl_np = np.stack([np.nan_to_num(scl_days[d], nan=0.0) for d in days])
            cloud = np.isin(scl_np, [3, 8, 9, 10]).astype("float64")
            coverage = (1 - cloud).mean(axis=(1, 2))[:, None, None]
            day = np.array([int(d[8:10]) for d in days], dtype="float64")[:, None, None]
            date = np.exp(-0.5 * ((day - 15) * 0.2) ** 2) * 0.07978845
            dtc = 1 - scipy.ndimage.correlate(cloud, kernel, mode="constant", cval=0.0)
            score_np = (1 * dtc + 0.8 * date + 0.5 * coverage) / 2.3
            score_np[scl_np == 0] = np.nan
            best = score_np == np.nanmax(score_np, axis=0)  # per pixel: the dates not masked
            keep = np.repeat(np.repeat(best & (cloud == 0), 2, axis=1), 2, axis=2)  # to 10 m
            chosen |= {days[i] for i in np.flatnonzero(keep.any(axis=(1, 2)))}
            for band, series in bands.items():
                stack = np.where(keep, np.stack([series[d] for d in days]), np.nan)
                first = np.full(stack.shape[1:], np.nan)
                for layer in stack[::-1]:  # the first valid value in time order
                    first = np.where(np.isnan(layer), first, layer)
                got = ds[band].isel(t=index).values
                assert got.shape == (30, 30)
                np.testing.assert_allclose(got, first, equal_nan=True, err_msg=f"{band} {month}")
    assert len(chosen) >= 3  # several dates win somewhere: the scores decide


def to_10m(values: np.ndarray) -> np.ndarray:
    """A 20 m band of BOX on the 10 m grid of the load (each pixel as 2 x 2)."""
    return np.repeat(np.repeat(values, 2, axis=0), 2, axis=1)


def test_forest_fire_nbr_three_results(con, sample_data_dir: Path, tmp_path: Path) -> None:
    """ForestFire/ForestFire.ipynb: NBR by the client's compute_indices, the SCL cloud mask
    smoothed by an 11 x 11 Gaussian apply_kernel and thresholded, reduce_dimension over t with
    "first"/"last", three save_result with a `filename_prefix` in one MultiResult job."""
    import scipy.signal
    from openeo import MultiResult
    from openeo.extra.spectral_indices import compute_indices

    connection = con
    extent = BOX
    pre_temporal_extent = ["2022-05-03", "2022-08-03"]
    nrt_temporal_extent = ["2022-08-03", "2022-08-08"]
    post_temporal_extent = ["2022-08-03", "2022-11-03"]

    def get_cloud_free_pixels(scl, data, reducer="first"):
        mask = (scl == 3) | (scl == 8) | (scl == 9) | (scl == 10)
        g = scipy.signal.windows.gaussian(11, std=1.6)
        kernel = np.outer(g, g)
        kernel = kernel / kernel.sum()
        mask = mask.apply_kernel(kernel)
        mask = mask > 0.1
        data_masked = data.mask(mask)
        return data_masked.reduce_dimension(reducer=reducer, dimension="t")

    def cal_nbr(temporal_extent, reducer):
        s2_cube = connection.load_collection(
            "SENTINEL2_L2A", temporal_extent=temporal_extent, spatial_extent=extent,
            bands=["B08", "B12"], max_cloud_cover=90)
        scl = connection.load_collection(
            "SENTINEL2_L2A", temporal_extent=temporal_extent, spatial_extent=extent,
            bands=["SCL"], max_cloud_cover=90)
        nbr = compute_indices(s2_cube, indices=["NBR"])
        return get_cloud_free_pixels(scl, nbr, reducer=reducer)

    nbr_pre = cal_nbr(pre_temporal_extent, "last")
    nbr_nrt = cal_nbr(nrt_temporal_extent, "first")
    nbr_post = cal_nbr(post_temporal_extent, "first")
    nbr_pre_result = nbr_pre.save_result(format="GTiff", options={"filename_prefix": "NBR"})
    nbr_nrt_result = nbr_nrt.save_result(format="GTiff",
                                         options={"filename_prefix": "NRT_NBR"})
    nbr_post_result = nbr_post.save_result(format="GTiff",
                                           options={"filename_prefix": "Post_NBR"})
    multi_result_nbr = MultiResult([nbr_pre_result, nbr_nrt_result, nbr_post_result])
    nbr_job = multi_result_nbr.create_job(title="Multiple save result NBR")
    nbr_job.start_and_wait()
    results = nbr_job.get_results()
    results.download_files(tmp_path / "out")

    covers = items_of(sample_data_dir)
    g = scipy.signal.windows.gaussian(11, std=1.6)
    kernel = np.outer(g, g) / np.outer(g, g).sum()

    def expected(start: str, end: str, reducer: str) -> np.ndarray:
        nir = sample_series(sample_data_dir, "B08", BOX, start, end)
        swir = sample_series(sample_data_dir, "B12", BOX, start, end)
        scl = sample_series(sample_data_dir, "SCL", BOX, start, end)
        days = sorted(d for d in nir if covers[d] <= 90)
        layers = []
        for d in days:
            s = to_10m(swir[d])
            cloud = np.isin(to_10m(scl[d]), [3, 8, 9, 10]).astype("float64")
            smooth = scipy.ndimage.correlate(cloud, kernel, mode="constant", cval=0.0)
            layers.append(np.where(smooth > 0.1, np.nan, (nir[d] - s) / (nir[d] + s)))
        out = np.full(layers[0].shape, np.nan)
        for layer in (layers if reducer == "last" else layers[::-1]):
            out = np.where(np.isnan(layer), out, layer)
        return out

    import rasterio

    for name, (start, end), reducer in (("NBR", pre_temporal_extent, "last"),
                                        ("NRT_NBR", nrt_temporal_extent, "first"),
                                        ("Post_NBR", post_temporal_extent, "first")):
        with rasterio.open(tmp_path / "out" / f"{name}.tif") as ds:
            got = ds.read(1).astype("float64")
            if ds.nodata is not None and not np.isnan(ds.nodata):
                got[got == ds.nodata] = np.nan
        want = expected(start, end, reducer)
        assert got.shape == want.shape == (30, 30)
        assert np.isfinite(want).sum() > 100
        np.testing.assert_allclose(got, want, rtol=1e-5, equal_nan=True, err_msg=name)


def test_model_found_by_its_metadata_link(con, tmp_path: Path) -> None:
    """RandomForest-ForestFire and DynamicLandCoverMapping (and the client's ML guide) find a
    trained model as the results link whose href contains 'ml_model_metadata.json' (CDSE's
    name; once no such link: IndexError) and load it from that URL; it predicts as the model
    loaded by job id does."""
    from openeo.rest.mlmodel import MlModel

    box = {"west": 680000, "south": 5151000, "east": 680600, "north": 5151600, "crs": 32632}
    cube = con.load_collection("SENTINEL2_L2A", spatial_extent=box, bands=["B04", "B08"],
                               temporal_extent=["2022-06-01", "2022-06-15"]).median_time()
    from pyproj import Transformer

    to_wgs84 = Transformer.from_crs(32632, 4326, always_xy=True)
    rng = np.random.default_rng(1)
    points = [{"type": "Feature", "properties": {"target": i % 3}, "geometry": {
        "type": "Point", "coordinates": list(to_wgs84.transform(
            680050 + 500 * rng.random(), 5151050 + 500 * rng.random()))}} for i in range(24)]
    training = {"type": "FeatureCollection", "features": points}
    model = cube.aggregate_spatial(training, reducer="mean").fit_class_random_forest(
        target=training, num_trees=20, seed=2082).save_ml_model()
    training_job = model.create_job(title="training")
    training_job.start_and_wait()
    links = training_job.get_results().get_metadata()["links"]
    ml_model_metadata_url = [link for link in links
                             if "ml_model_metadata.json" in link["href"]][0]["href"]
    by_link = MlModel.load_ml_model(connection=con, id=ml_model_metadata_url)
    by_job = con.load_ml_model(training_job.job_id)
    for name, loaded in (("link", by_link), ("job", by_job)):
        cube.predict_random_forest(model=loaded, dimension="bands").download(
            tmp_path / f"{name}.nc")
    with xr.open_dataset(tmp_path / "link.nc") as a, xr.open_dataset(tmp_path / "job.nc") as b:
        (var,) = [v for v in a.data_vars if v != "crs"]
        values = a[var].values
        np.testing.assert_array_equal(values, b[var].values)
        assert set(np.unique(values[np.isfinite(values)])) <= {0, 1, 2}


# processes/array_find_nodata.json and array_contains_nodata.json of the examples, as published
def _nodata_udp(pid: str, final: str) -> dict:
    return {"id": pid, "parameters": [{"name": "data", "description": "An array.",
                                       "schema": {"type": "array"}}],
            "process_graph": {
                "apply": {"process_id": "array_apply", "arguments": {
                    "data": {"from_parameter": "data"},
                    "process": {"process_graph": {"is_null": {
                        "process_id": "is_nodata", "arguments": {"x": {"from_parameter": "x"}},
                        "result": True}}}}},
                "find": {"process_id": final, "arguments": {
                    "data": {"from_node": "apply"}, "value": True}, "result": True}}}


def test_nodata_udps_over_time(con, sample_data_dir: Path, tmp_path: Path) -> None:
    """The example UDPs array_find_nodata / array_contains_nodata (array_apply of is_nodata,
    then array_find / array_contains) stored and called as reducers over t of a cloud-masked
    series: the index of the first masked date (null if none) and whether there is one."""
    from openeo.processes import process

    for pid, final in (("array_find_nodata", "array_find"),
                       ("array_contains_nodata", "array_contains")):
        udp = _nodata_udp(pid, final)
        con.save_user_defined_process(pid, udp["process_graph"], parameters=udp["parameters"])
    span = ["2022-06-01", "2022-07-15"]
    red = con.load_collection("SENTINEL2_L2A", spatial_extent=BOX, temporal_extent=span,
                              bands=["B04"])
    scl = con.load_collection("SENTINEL2_L2A", spatial_extent=BOX, temporal_extent=span,
                              bands=["SCL"]).band("SCL")
    masked = red.mask((scl == 3) | (scl == 8) | (scl == 9) | (scl == 10))
    for pid in ("array_find_nodata", "array_contains_nodata"):
        masked.reduce_dimension(dimension="t", reducer=lambda data, pid=pid: process(
            pid, data=data, namespace="user")).download(tmp_path / f"{pid}.nc")
    b04 = sample_series(sample_data_dir, "B04", BOX, *span)
    cls = sample_series(sample_data_dir, "SCL", BOX, *span)
    days = sorted(b04)
    gone = np.stack([np.isnan(b04[d]) | np.isin(to_10m(cls[d]), [3, 8, 9, 10]) for d in days])
    first = np.where(gone.any(axis=0), gone.argmax(axis=0), np.nan)
    assert 0 < np.isnan(first).sum() < first.size  # some pixels never masked, some masked
    with xr.open_dataset(tmp_path / "array_find_nodata.nc") as ds:
        np.testing.assert_array_equal(ds["B04"].values, first)
    with xr.open_dataset(tmp_path / "array_contains_nodata.nc") as ds:
        np.testing.assert_array_equal(ds["B04"].values.astype(bool), gone.any(axis=0))


def test_dimensionality_reduction_statistics_cube(con, sample_data_dir: Path,
                                                  tmp_path: Path) -> None:
    """DimensionalityReduction's statistics cube (its SCL dilation mask left out): ndvi with
    `target_band` appended, apply_dimension over t into bands with array_create of mean,
    median, min, max and four quantiles, rename_labels by the client's band names,
    filter_bands of the means written as a GeoTIFF with band descriptions."""
    import openeo.processes as eop
    import rasterio

    span = ["2022-06-01", "2022-07-15"]
    data_cube = con.load_collection("SENTINEL2_L2A", spatial_extent=BOX, temporal_extent=span,
                                    bands=["B04", "B08"])
    data_cube = data_cube.ndvi(red="B04", nir="B08", target_band="NDVI")
    band_labels = data_cube.metadata.band_names

    def combined_reducer(t_array):
        return eop.array_create([
            eop.mean(t_array), eop.median(t_array), eop.min(t_array), eop.max(t_array),
            eop.quantiles(t_array, probabilities=[0.05]),
            eop.quantiles(t_array, probabilities=[0.25]),
            eop.quantiles(t_array, probabilities=[0.75]),
            eop.quantiles(t_array, probabilities=[0.95])])

    stats = ["mean", "median", "min", "max", "q05", "q25", "q75", "q95"]
    target_bands = [f"{b}_{s}" for b in band_labels for s in stats]
    master = data_cube.apply_dimension(process=combined_reducer, dimension="t",
                                       target_dimension="bands").rename_labels(
        "bands", target=target_bands)
    mean_bands = [b for b in master.metadata.band_names if b.endswith("_mean")]
    master.download(tmp_path / "master.nc")
    master.filter_bands(mean_bands).download(tmp_path / "means.tiff")

    red = sample_series(sample_data_dir, "B04", BOX, *span)
    nir = sample_series(sample_data_dir, "B08", BOX, *span)
    days = sorted(red)
    series = {"B04": np.stack([red[d] for d in days]), "B08": np.stack([nir[d] for d in days])}
    series["NDVI"] = (series["B08"] - series["B04"]) / (series["B08"] + series["B04"])
    oracle = {"mean": lambda a: np.nanmean(a, axis=0), "median": lambda a: np.nanmedian(a, 0),
              "min": lambda a: np.nanmin(a, axis=0), "max": lambda a: np.nanmax(a, axis=0),
              **{f"q{p:02d}": (lambda a, p=p: np.nanquantile(a, p / 100, axis=0))
                 for p in (5, 25, 75, 95)}}
    with xr.open_dataset(tmp_path / "master.nc") as ds:
        assert [v for v in ds.data_vars if v != "crs"] == target_bands
        for band in band_labels:
            for stat in stats:
                np.testing.assert_allclose(ds[f"{band}_{stat}"].values,
                                           oracle[stat](series[band]), rtol=1e-5,
                                           err_msg=f"{band}_{stat}")
    with rasterio.open(tmp_path / "means.tiff") as src:
        assert list(src.descriptions) == mean_bands
        np.testing.assert_allclose(src.read(3), oracle["mean"](series["NDVI"]), rtol=1e-5)
