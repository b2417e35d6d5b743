"""Real users' programs that failed on terracube (or were not covered yet), found by a second
sweep of the openeo client's documentation (udp, udp_sharing, data_access, batch_jobs), the
CDSE notebook samples (Whittaker, AirPollutionVsTemp), the openEO Platform sample notebooks
(Dynamic land cover mapping, sentinel-5p) and SRR2 notebooks (UC6 Forest Dynamics and its
process graphs) and openeo.org's openEO Cookbook; each adapted only in URL, login, collection,
bands, extent and dates to the Sentinel-2 sample, run through the official client against
the shared server, values checked with numpy on the sample files.
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
pytestmark = pytest.mark.e2e

# 30 x 30 pixels of 10 m, on the pixel edges of the sample's grid.
BOX = {"west": 680000, "south": 5151200, "east": 680300, "north": 5151500, "crs": 32632}
JUNE = ["2022-06-01", "2022-06-15"]


def box_ring() -> list[list[float]]:
    """BOX's corners in longitude/latitude as a closed ring: a polygon whose pixels (centres
    inside) are exactly BOX's."""
    to_ll = Transformer.from_crs(32632, 4326, always_xy=True)
    corners = [(BOX["west"], BOX["north"]), (BOX["west"], BOX["south"]),
               (BOX["east"], BOX["south"]), (BOX["east"], BOX["north"])]
    ring = [list(to_ll.transform(x, y)) for x, y in corners]
    return [*ring, ring[0]]


def box_lonlat() -> dict[str, float]:
    lons, lats = zip(*box_ring(), strict=True)
    return {"west": min(lons), "south": min(lats), "east": max(lons), "north": max(lats)}


def in_box(ds: xr.Dataset | xr.DataArray) -> xr.Dataset | xr.DataArray:
    """The pixels of BOX in a cube on the sample's UTM grid (x ascending, y descending)."""
    return ds.sel(x=slice(BOX["west"], BOX["east"]), y=slice(BOX["north"], BOX["south"]))


def item_cloud_cover(sample_data_dir: Path) -> dict[str, float]:
    items = json.loads((sample_data_dir / "samples" / "sentinel2_l2a" / "items.json")
                       .read_text())["items"]
    return {i["datetime"][:10]: i["eo:cloud_cover"] for i in items}


def test_whittaker_mask_whose_dates_differ(con, sample_data_dir: Path, tmp_path: Path) -> None:
    """CDSE notebook openeo/Whittaker.ipynb: the SCL load has max_cloud_cover=95, the B04/B08
    load has none, so the dilation mask lacks the dates of cloudier scenes; CDSE joins the mask
    to the data (a left outer join) and leaves those dates unmasked (once "The labels of
    dimension 't' differ between the mask and the data cube"). Then mask_polygon, ndvi with
    target_band and the batch job's netCDF read as the notebook reads it."""
    temp_ext = ["2022-08-01", "2022-09-01"]
    cover = item_cloud_cover(sample_data_dir)
    cloudiest = [d for d in cover if temp_ext[0] <= d < temp_ext[1] and cover[d] > 95]
    assert cloudiest == ["2022-08-16"]  # the sample's 96 % cloudy scene

    spat_ext = {"type": "Polygon", "coordinates": [box_ring()]}
    scl = con.load_collection("SENTINEL2_L2A", temporal_extent=temp_ext, bands=["SCL"],
                              max_cloud_cover=95)
    cloud_mask = scl.process("to_scl_dilation_mask", data=scl, kernel1_size=17,
                             kernel2_size=77, mask1_values=[2, 4, 5, 6, 7],
                             mask2_values=[3, 8, 9, 10, 11], erosion_kernel_size=3)
    s2 = con.load_collection("SENTINEL2_L2A", temporal_extent=temp_ext, bands=["B04", "B08"])
    s2 = s2.mask(cloud_mask)
    s2 = s2.mask_polygon(spat_ext)
    ndvi_cube = s2.ndvi(red="B04", nir="B08", target_band="NDVI")
    out = tmp_path / "raw_s2_ndvi_field.nc"
    ndvi_cube.execute_batch(out, title="FUSETS-Raw NDVI", max_poll_interval=0.2)

    raw_ndvi_ds = xr.load_dataset(out)
    raw_ndvi = raw_ndvi_ds.NDVI.rename({"t": "time"})
    assert raw_ndvi.median(dim=["x", "y"]).sizes["time"] == 7
    red = sample_series(sample_data_dir, "B04", BOX, *temp_ext)
    nir = sample_series(sample_data_dir, "B08", BOX, *temp_ext)
    assert [str(t)[:10] for t in raw_ndvi_ds.t.values] == list(red)
    inside = in_box(raw_ndvi_ds.NDVI)
    assert inside.sizes["x"] == inside.sizes["y"] == 30
    for i, day in enumerate(red):
        expected = ((nir[day] - red[day]) / (nir[day] + red[day])).astype("float32")
        got = inside.isel(t=i).values
        if day == "2022-08-16":  # not in the mask: not masked at all
            np.testing.assert_allclose(got, expected, rtol=1e-6)
        else:  # masking only removes values
            kept = ~np.isnan(got)
            np.testing.assert_allclose(got[kept], expected[kept], rtol=1e-6)
    # mask_polygon: nothing outside the polygon
    outside = raw_ndvi_ds.NDVI.where((raw_ndvi_ds.x < BOX["west"]) | (raw_ndvi_ds.x > BOX["east"])
                                     | (raw_ndvi_ds.y < BOX["south"])
                                     | (raw_ndvi_ds.y > BOX["north"]))
    assert int(outside.notnull().sum()) == 0


def test_load_stac_of_the_unsigned_results_url_of_an_own_job(con, sample_data_dir: Path,
                                                              tmp_path: Path) -> None:
    """Client docs (data_access: load_stac; batch_jobs): `load_stac` of the GET
    /jobs/{id}/results URL a user copies from their own job (no signature; CDSE reads it as the
    user's job) once failed with '401 Unauthorized'."""
    cube = con.load_collection("SENTINEL2_L2A", spatial_extent=BOX, temporal_extent=JUNE,
                               bands=["B04", "B08"])
    job = cube.execute_batch(out_format="GTiff", max_poll_interval=0.2)
    url = job.get_results_metadata_url(full=True)
    assert "signature" not in url and url.endswith(f"/jobs/{job.job_id}/results")

    loaded = con.load_stac(url, temporal_extent=["2022-06-05", "2022-06-15"], bands=["B08"])
    loaded.download(tmp_path / "again.nc")
    expected = sample_series(sample_data_dir, "B08", BOX, "2022-06-05", "2022-06-15")
    with xr.open_dataset(tmp_path / "again.nc") as ds:
        assert [str(t)[:10] for t in ds.t.values] == list(expected)
        assert list(ds.data_vars) == ["crs", "B08"]
        for i, values in enumerate(expected.values()):
            np.testing.assert_array_equal(ds.B08.isel(t=i).values, values)


def test_properties_filters_of_the_client_docs(con, sample_data_dir: Path) -> None:
    """Client docs (data_access, "Filter on collection properties"): `collection_property`
    conditions and the dict-of-lambdas form select the items by eo:cloud_cover; a property the
    items do not have (`grid:code`, CDSE's tile) is named in the error with the properties
    there are, instead of 'No data for the given temporal extent'."""
    cover = item_cloud_cover(sample_data_dir)
    span = ["2022-04-01", "2022-06-01"]
    clear = [d for d in sorted(cover) if span[0] <= d < span[1] and cover[d] <= 60]
    assert 0 < len(clear) < len([d for d in cover if span[0] <= d < span[1]])
    for properties in ([openeo.collection_property("eo:cloud_cover") <= 60],
                       {"eo:cloud_cover": lambda x: x <= 60}):
        cube = con.load_collection("SENTINEL2_L2A", spatial_extent=BOX, temporal_extent=span,
                                   bands=["B04"], properties=properties)
        answer = cube.aggregate_spatial({"type": "Polygon", "coordinates": [box_ring()]},
                                        "mean").execute()
        assert sorted(k[:10] for k in answer) == clear

    tiles = con.load_collection(
        "SENTINEL2_L2A", spatial_extent=BOX, temporal_extent=span, bands=["B04"],
        properties=[openeo.collection_property("grid:code").is_one_of(["MGRS-32TPS"])])
    with pytest.raises(openeo.rest.OpenEoApiError) as failure:
        tiles.download()
    assert failure.value.http_status_code == 400
    message = failure.value.message
    assert "'grid:code'" in message and "eo:cloud_cover" in message
    assert "properties" in message


def test_user_defined_processes_of_the_client_docs(con, sample_data_dir: Path,
                                                    tmp_path: Path) -> None:
    """Client docs udp.rst and cookbook/udp_sharing.rst: fahrenheit_to_celsius stored from
    process functions, from a dict and from a JSON file (build_process_dict); published and
    used through its public URL as `namespace` and with datacube_from_json; a parameterised
    load_collection (`bbox` with a default) and the "EVI timeseries" UDP with a temporal
    interval and a GeoJSON geometry as parameters, checked with numpy."""
    from openeo.api.process import Parameter
    from openeo.processes import divide, process, subtract
    from openeo.rest.udp import build_process_dict

    f = Parameter.number("f", description="Degrees Fahrenheit.")
    fahrenheit_to_celsius = divide(x=subtract(x=f, y=32), y=1.8)
    udp = con.save_user_defined_process("fahrenheit_to_celsius", fahrenheit_to_celsius,
                                        parameters=[f], public=True)
    assert con.execute(process("fahrenheit_to_celsius", f=70)) == pytest.approx(21.1111111)
    (public_url,) = [lk["href"] for lk in udp.describe()["links"] if lk["rel"] == "canonical"]
    cube = con.datacube_from_process(process_id="fahrenheit_to_celsius",
                                     namespace=public_url, f=86)
    assert cube.execute() == pytest.approx(30.0)
    assert con.datacube_from_json(public_url, parameters={"f": 86}).execute() == \
        pytest.approx(30.0)

    con.save_user_defined_process(
        user_defined_process_id="fahrenheit_to_celsius_dict",
        process_graph={
            "subtract1": {"process_id": "subtract",
                          "arguments": {"x": {"from_parameter": "f"}, "y": 32}},
            "divide1": {"process_id": "divide",
                        "arguments": {"x": {"from_node": "subtract1"}, "y": 1.8},
                        "result": True}},
        parameters=[Parameter.number(name="f", description="Degrees Fahrenheit")])
    assert con.execute(process("fahrenheit_to_celsius_dict", f=50)) == pytest.approx(10.0)
    spec = build_process_dict(process_id="fahrenheit_to_celsius",
                              process_graph=fahrenheit_to_celsius, parameters=[f])
    (tmp_path / "fahrenheit_to_celsius.json").write_text(json.dumps(spec, indent=2))
    assert con.datacube_from_json(str(tmp_path / "fahrenheit_to_celsius.json"),
                                  parameters={"f": 212}).execute() == pytest.approx(100.0)

    # "From a parameterized data cube": the bbox parameter's default is the area loaded
    spatial_extent = Parameter(name="bbox", schema="object", default=BOX,
                               description="The area to load")
    fancy = con.load_collection("SENTINEL2_L2A", spatial_extent=spatial_extent, bands=["B04"])
    con.save_user_defined_process("fancy_load_collection", fancy, parameters=[spatial_extent])
    cube = con.datacube_from_process("fancy_load_collection")
    cube = cube.filter_temporal("2022-06-02", "2022-06-03")
    cube.download(tmp_path / "fancy.tiff", format="GTiff")
    with rasterio.open(tmp_path / "fancy.tiff") as src:
        np.testing.assert_array_equal(
            src.read(1), sample_series(sample_data_dir, "B04", BOX, "2022-06-02",
                                       "2022-06-03")["2022-06-02"])

    # "UDP Example: EVI timeseries"
    temporal_extent = Parameter(
        name="temporal_extent", description="The date range to calculate the EVI for.",
        schema={"type": "array", "subtype": "temporal-interval"},
        default=["2018-06-15", "2018-06-27"])
    geometry = Parameter(
        name="geometry", description="The geometry to calculate the EVI for.",
        schema={"type": "object", "subtype": "geojson"})
    sentinel2_cube = con.load_collection("SENTINEL2_L2A", temporal_extent=temporal_extent,
                                         bands=["B02", "B04", "B08"])
    blue = sentinel2_cube.band("B02") * 0.0001
    red = sentinel2_cube.band("B04") * 0.0001
    nir = sentinel2_cube.band("B08") * 0.0001
    evi = 2.5 * (nir - red) / (nir + 6.0 * red - 7.5 * blue + 1.0)
    evi_aggregation = evi.aggregate_spatial(geometries=geometry, reducer="mean")
    con.save_user_defined_process(user_defined_process_id="evi_timeseries",
                                  process_graph=evi_aggregation,
                                  parameters=[temporal_extent, geometry])
    evi_timeseries = con.datacube_from_process(
        process_id="evi_timeseries", temporal_extent=JUNE,
        geometry={"type": "Polygon", "coordinates": [box_ring()]})
    evi_timeseries.download(tmp_path / "evi-aggregation.json")
    got = json.loads((tmp_path / "evi-aggregation.json").read_text())
    b02, b04, b08 = (sample_series(sample_data_dir, b, BOX, *JUNE)
                     for b in ("B02", "B04", "B08"))
    assert sorted(k[:10] for k in got) == list(b04)
    for key, value in got.items():
        day = key[:10]
        bl, r, n = b02[day] * 0.0001, b04[day] * 0.0001, b08[day] * 0.0001
        expected = np.nanmean(2.5 * (n - r) / (n + 6.0 * r - 7.5 * bl + 1.0))
        assert value[0][0] == pytest.approx(expected, rel=1e-5)


def test_dynamic_land_cover_features_and_random_forest(con, tmp_path: Path) -> None:
    """openEO Platform sample-notebooks "Dynamic land cover mapping", its Sentinel-2 part
    (the Sentinel-1 half needs sar_backscatter): mask_scl_dilation, compute_and_rescale_indices
    appended, dekad medians, array_interpolate_linear over t, the statistics of
    compute_statistics_fill_nan (quantiles, sd and six time steps filled with if_/is_nodata by
    array_concat into bands, renamed), a random forest trained on points and used by the
    BatchJob itself, its predictions aggregated to CSV as the notebook reads them. The
    statistics are checked with numpy against the dekad cube the same graph gives."""
    import datetime

    from openeo.extra.spectral_indices.spectral_indices import compute_and_rescale_indices
    from openeo.processes import array_concat, if_, is_nodata

    start_date, end_date = datetime.date(2022, 4, 1), datetime.date(2022, 7, 1)
    area = box_lonlat()

    def sentinel2_composite(index_dict: dict, s2_list: list[str]):
        props = {"eo:cloud_cover": lambda v: v <= 80}
        bands = ["B03", "B04", "B05", "B06", "B07", "B08", "B11", "B12", "SCL"]
        s2 = con.load_collection("SENTINEL2_L2A",
                                 temporal_extent=[start_date.isoformat(), end_date.isoformat()],
                                 bands=bands, properties=props, spatial_extent=area)
        s2 = s2.process("mask_scl_dilation", data=s2, scl_band_name="SCL").filter_bands(
            s2.metadata.band_names[:-1])
        # the client's signature today: append is keyword-only
        indices = compute_and_rescale_indices(s2, index_dict, append=True).filter_bands(
            s2_list + list(index_dict["indices"].keys()))
        idx_dekad = indices.aggregate_temporal_period("dekad", reducer="median")
        return idx_dekad.apply_dimension(dimension="t", process="array_interpolate_linear")

    def compute_statistics_fill_nan(base_features, stepsize: int):
        def compute_stats(input_timeseries, sample_stepsize, offset):
            tsteps = [input_timeseries.array_element(offset + sample_stepsize * index)
                      for index in range(0, 6)]
            tsteps[1] = if_(is_nodata(tsteps[1]), tsteps[2], tsteps[1])
            tsteps[4] = if_(is_nodata(tsteps[4]), tsteps[3], tsteps[4])
            tsteps[0] = if_(is_nodata(tsteps[0]), tsteps[1], tsteps[0])
            tsteps[5] = if_(is_nodata(tsteps[5]), tsteps[4], tsteps[5])
            return array_concat(array_concat(
                input_timeseries.quantiles(probabilities=[0.25, 0.5, 0.75]),
                input_timeseries.sd()), tsteps)

        tot_samples = (end_date - start_date).days // stepsize
        sample_stepsize = tot_samples // 6
        offset = int(sample_stepsize / 2 + (tot_samples % 6) / 2)
        features = base_features.apply_dimension(
            dimension="t", target_dimension="bands",
            process=lambda x: compute_stats(x, sample_stepsize, offset))
        tstep_labels = ["t" + str(offset + sample_stepsize * index) for index in range(0, 6)]
        all_bands = [band + "_" + stat for band in base_features.metadata.band_names
                     for stat in ["p25", "p50", "p75", "sd"] + tstep_labels]
        return features.rename_labels("bands", all_bands), offset, sample_stepsize

    # NDGI of the notebook needs wavelength constants the client no longer fills in
    index_dict = {idx: [-1, 1] for idx in ["NDVI", "NDMI", "NDRE1"]}
    index_dict["ANIR"] = [0, 1]
    final_index_dict = {
        "collection": {"input_range": [0, 8000], "output_range": [0, 30000]},
        "indices": {index: {"input_range": index_dict[index], "output_range": [0, 30000]}
                    for index in index_dict}}
    idx_dekad = sentinel2_composite(final_index_dict, ["B06", "B12"])
    features, offset, step = compute_statistics_fill_nan(idx_dekad, stepsize=10)
    idx_dekad.download(tmp_path / "dekads.nc")
    features.download(tmp_path / "features.nc")

    with xr.open_dataset(tmp_path / "dekads.nc") as dekads, \
            xr.open_dataset(tmp_path / "features.nc") as feats:
        assert dekads.sizes["t"] == 9  # April to June
        names = ["B06", "B12", "NDVI", "NDMI", "NDRE1", "ANIR"]
        assert [v for v in feats.data_vars if v != "crs"] == [
            f"{b}_{s}" for b in names
            for s in ["p25", "p50", "p75", "sd"] + [f"t{offset + step * i}" for i in range(6)]]
        for band in ("B06", "NDVI"):
            series = dekads[band].values  # t, y, x
            assert np.isfinite(series).any()
            with np.errstate(invalid="ignore"):
                q = np.quantile(series, [0.25, 0.5, 0.75], axis=0)
            for stat, values in zip(("p25", "p50", "p75"), q, strict=True):
                np.testing.assert_allclose(feats[f"{band}_{stat}"].values, values, rtol=1e-5)
            np.testing.assert_allclose(feats[f"{band}_sd"].values,
                                       np.std(series, axis=0, ddof=1), rtol=1e-4)
            steps = [series[offset + step * i] for i in range(6)]
            for i, j in ((1, 2), (4, 3), (0, 1), (5, 4)):
                steps[i] = np.where(np.isnan(steps[i]), steps[j], steps[i])
            for i in range(6):
                np.testing.assert_allclose(feats[f"{band}_t{offset + step * i}"].values,
                                           steps[i], rtol=1e-6)

    ring = box_ring()
    lon0, lat0 = ring[1]  # south-west corner
    dlon, dlat = (ring[2][0] - lon0) / 6, (ring[0][1] - lat0) / 6
    points = [{"type": "Feature", "properties": {"target": (i + j) % 3},
               "geometry": {"type": "Point",
                            "coordinates": [lon0 + dlon * (i + 0.5), lat0 + dlat * (j + 0.5)]}}
              for i in range(6) for j in range(6)]
    y_train = {"type": "FeatureCollection", "features": points[:24]}
    y_test = {"type": "FeatureCollection", "features": points[24:]}
    X = features.aggregate_spatial(y_train, reducer="mean")
    ml_model = X.fit_class_random_forest(target=y_train, num_trees=200)
    training_job = ml_model.save_ml_model().create_job()
    training_job.start_and_wait(max_poll_interval=0.2)

    predicted = features.predict_random_forest(model=training_job, dimension="bands") \
        .linear_scale_range(0, 255, 0, 255).aggregate_spatial(y_test, reducer="mean")
    test_job = predicted.execute_batch(out_format="CSV", max_poll_interval=0.2)
    test_job.get_results().download_files(tmp_path / "validation")
    df = pd.read_csv(tmp_path / "validation" / "timeseries.csv")
    df.index = df.feature_index
    df = df.sort_index()
    df.columns = ["feature_index", "predicted"]
    assert list(df.feature_index) == list(range(12))
    assert set(df.predicted.astype(int)) <= {0, 1, 2}


def harmonic_fit(values: np.ndarray, design: np.ndarray) -> np.ndarray:
    """Per pixel least squares of a (t, y, x) series on the columns of `design` (t, k), no-data
    left out: (k, y, x)."""
    params = np.full((design.shape[1], *values.shape[1:]), np.nan)
    for r in range(values.shape[1]):
        for c in range(values.shape[2]):
            ok = ~np.isnan(values[:, r, c])
            params[:, r, c] = np.linalg.lstsq(design[ok], values[ok, r, c], rcond=None)[0]
    return params


def test_forest_dynamics_curve_fitting_and_change_alarms(con, sample_data_dir: Path,
                                                         tmp_path: Path) -> None:
    """openEO Platform SRR2 notebook "UC6 - Forest Dynamics" (South Tyrol; the Platform docs'
    forest change detection page): the client's DataCube.fit_curve / predict_curve (the openEO
    1.x cube forms with `dimension` and `data`, once 'has no parameter'), the fit saved by a
    job and read back with load_result, predictions masked by merge_cubes(multiply) and
    subtracted with merge_cubes(subtract), the RMSE of the residuals over the bands, its sd
    over time as a job, and the alarms `residual > 3 * sd` with merge_cubes(gt) of a band-less
    cube and the one-band cube load_result gives (once 'share no common set of dimensions').
    Checked with numpy: the harmonic model is linear in its parameters (least squares)."""
    import math

    from openeo.processes import ProcessBuilder, cos, gt, multiply, sd, sin, subtract

    bands = ["B02", "B03", "B04", "B05", "B08"]
    training = ["2022-04-01", "2022-07-01"]
    l2a_bands = con.load_collection("SENTINEL2_L2A", spatial_extent=BOX, bands=bands,
                                    temporal_extent=training)
    l2a_bands_clipped = l2a_bands.apply(lambda x: x.clip(0, 5000))

    def fitFunction(x: ProcessBuilder, parameters: ProcessBuilder):  # noqa: N802 - as written
        t = 2 * math.pi / 31557600 * x
        return parameters[0] + parameters[1] * cos(t) + parameters[2] * sin(t)

    curve_fitting = l2a_bands_clipped.fit_curve(parameters=[1, 1, 1], dimension="t",
                                                function=fitFunction)
    job = curve_fitting.save_result(format="NetCDF").create_job(title="S2_curve_fitting_SRR2")
    job.start_and_wait(max_poll_interval=0.2)
    job_id_fitting = job.job_id
    job.get_results().download_files(tmp_path / "fit")

    curve_fitting_loaded = con.load_result(id=job_id_fitting)
    temporal_labels = l2a_bands_clipped.dimension_labels("t")
    curve_prediction = l2a_bands_clipped.predict_curve(
        parameters=curve_fitting_loaded, dimension="t", function=fitFunction,
        labels=temporal_labels)
    force_cloud_mask = l2a_bands.apply(lambda x: x.gt(0))
    predicted_masked = curve_prediction.merge_cubes(force_cloud_mask, overlap_resolver=multiply)
    merged_cubes = l2a_bands_clipped.merge_cubes(predicted_masked, overlap_resolver=subtract)
    rmse = merged_cubes.band(bands[0]) ** 2  # change_detection_utils.compute_residual
    for b in bands[1:]:
        rmse = merged_cubes.band(b) ** 2 + rmse
    rmse = (rmse / len(bands)) ** 0.5
    rmse_std = rmse.reduce_dimension(dimension="t", reducer=sd)
    job = rmse_std.save_result(format="NetCDF").create_job(title="S2_curve_predicting_SRR2")
    job.start_and_wait(max_poll_interval=0.2)
    job_id_predicting = job.job_id

    training_std_loaded = con.load_result(id=job_id_predicting)
    alarm_threshhold = training_std_loaded.apply(lambda x: x * 3)
    alarm_cubes = rmse.merge_cubes(alarm_threshhold, overlap_resolver=gt)
    job = alarm_cubes.save_result(format="NetCDF").create_job(title="S2_change_detection")
    job.start_and_wait(max_poll_interval=0.2)
    job.get_results().download_files(tmp_path / "results")

    # numpy: per pixel least squares of the clipped series on [1, cos(wt), sin(wt)]
    series = {b: sample_series(sample_data_dir, b, BOX, *training, times=True) for b in bands}
    stamps = list(series["B02"])
    seconds = np.array([pd.Timestamp(s, tz="UTC").timestamp() for s in stamps])
    w = 2 * math.pi / 31557600 * seconds
    design = np.stack([np.ones_like(w), np.cos(w), np.sin(w)], axis=1)
    raw = {b: np.stack(list(series[b].values())) for b in bands}  # t, y, x; no-data NaN
    # B05 (20 m) on the 10 m grid of the cube, as the server reads it (nearest neighbour)
    raw["B05"] = np.repeat(np.repeat(raw["B05"], 2, axis=1), 2, axis=2)
    clipped = {b: np.clip(raw[b], 0, 5000) for b in bands}
    with xr.open_dataset(next((tmp_path / "fit").glob("*.nc"))) as fit:
        assert fit.B02.dims == ("param", "y", "x") and fit.sizes["param"] == 3
        fitted = {b: fit[b].values for b in bands}
    residuals = {}
    for b in bands:
        values = clipped[b]
        np.testing.assert_allclose(fitted[b], harmonic_fit(values, design), rtol=1e-4,
                                   atol=1e-3 * 5000)
        predicted = np.einsum("tp,pyx->tyx", design, fitted[b])
        residuals[b] = values - predicted * (raw[b] > 0)
    rmse_np = np.sqrt(sum(residuals[b] ** 2 for b in bands) / len(bands))
    std_np = np.nanstd(rmse_np, axis=0, ddof=1)
    with xr.open_dataset(next((tmp_path / "results").glob("*.nc"))) as alarms:
        (name,) = [v for v in alarms.data_vars if v != "crs"]
        got = alarms[name].transpose("t", "y", "x").values
    expected = rmse_np > 3 * std_np
    decided = ~np.isnan(rmse_np)
    assert got.shape == expected.shape
    np.testing.assert_array_equal(got[decided].astype(bool), expected[decided])
    # the notebook's plot: the alarms smoothed over 3 dates
    smoothed = alarms[name].rolling(t=3, center=False).mean().fillna(0)
    assert smoothed.sizes["t"] == len(stamps)


def test_openeo_org_cookbook(con, sample_data_dir: Path, tmp_path: Path) -> None:
    """openeo.org's openEO Cookbook (documentation/1.0/cookbook), the Python examples of
    chapters 1 and 2: mean_time, linear_scale_range in apply, aggregate_spatial, save_result
    as GTiff, as PNG with the options red/green/blue (once "The format PNG has no option
    'red'") and as JSON in batch jobs; band math with array_element by index and by label and
    normalized_difference, SCL and threshold masks, apply_kernel with a 5 x 5 high-pass."""
    from openeo.processes import ProcessBuilder, array_element, normalized_difference

    t = ["2022-06-01", "2022-06-15"]
    cube_s2_b348 = con.load_collection("SENTINEL2_L2A", spatial_extent=BOX, temporal_extent=t,
                                       bands=["B03", "B04", "B08"])
    cube_s2_b8 = cube_s2_b348.filter_bands(bands=["B08"])
    cube_s2_b8_red = cube_s2_b8.mean_time()
    cube_s2_b348_red = cube_s2_b348.mean_time()

    def scale_function(x: ProcessBuilder):
        return x.linear_scale_range(0, 6000, 0, 255)

    cube_s2_b348_red_lin = cube_s2_b348_red.apply(scale_function)
    polygons = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon",
                                                           "coordinates": [box_ring()]}}]}
    cube_s2_b8_agg = cube_s2_b8.aggregate_spatial(geometries=polygons, reducer="mean")

    jobs = {
        "tif": cube_s2_b8_red.save_result(format="GTiff").create_job(
            title="temporal_mean_as_GTiff_py"),
        "png": cube_s2_b348_red_lin.save_result(
            format="PNG", options={"red": "B08", "green": "B04", "blue": "B03"}).create_job(
            title="temporal_mean_as_PNG_py"),
        "json": cube_s2_b8_agg.save_result(format="JSON").create_job(
            title="timeseries_as_JSON_py"),
    }
    for name, job in jobs.items():
        job.start_and_wait(max_poll_interval=0.2)
        job.get_results().download_files(tmp_path / name)

    means = {b: np.nanmean(np.stack(list(sample_series(sample_data_dir, b, BOX, *t).values())),
                           axis=0) for b in ("B03", "B04", "B08")}
    with rasterio.open(next((tmp_path / "tif").glob("*.tif"))) as src:
        np.testing.assert_allclose(src.read(1), means["B08"], rtol=1e-5)
    with rasterio.open(next((tmp_path / "png").glob("*.png"))) as src:
        png = src.read()
    assert png.shape == (4, 30, 30)  # RGB and alpha
    for layer, band in zip(png[:3], ("B08", "B04", "B03"), strict=True):
        scaled = np.clip(means[band], 0, 6000) / 6000 * 255
        lo, hi = np.percentile(scaled, [2, 98])
        expected = np.clip(np.round((scaled - lo) / (hi - lo) * 254) + 1, 1, 255)
        assert np.abs(layer.astype(float) - expected).max() <= 1
    series = json.loads(next((tmp_path / "json").glob("*.json")).read_text())
    b08 = sample_series(sample_data_dir, "B08", BOX, *t)
    assert sorted(k[:10] for k in series) == list(b08)
    for key, value in series.items():
        assert value[0][0] == pytest.approx(np.nanmean(b08[key[:10]]), rel=1e-6)

    # chapter 2: band math, masks, pixel operations, kernels (one day)
    day = ["2022-06-02", "2022-06-02"]
    cube_s2 = con.load_collection("SENTINEL2_L2A", spatial_extent=BOX, temporal_extent=day,
                                  bands=["B02", "B04", "B08", "SCL"])

    def ndvi_function(data):
        B04 = array_element(data, index=1)  # noqa: N806 - as written
        B08 = array_element(data, label="B08")  # noqa: N806
        return normalized_difference(B08, B04)

    cube_s2_ndvi = cube_s2.reduce_dimension(reducer=ndvi_function, dimension="bands")
    scl = cube_s2.band("SCL")
    cube_s2_masked = cube_s2.mask(~((scl == 4) | (scl == 5)))
    cube_s2_ndvi_masked = cube_s2_ndvi.mask(cube_s2_ndvi < 0.3)
    highpass = [[-1, -1, -1, -1, -1], [-1, -1, -1, -1, -1], [-1, -1, 24, -1, -1],
                [-1, -1, -1, -1, -1], [-1, -1, -1, -1, -1]]
    cube_s2_highpass = cube_s2.filter_bands(["B08"]).apply_kernel(highpass)
    for name, cube in (("ndvi", cube_s2_ndvi), ("masked", cube_s2_masked),
                       ("thr", cube_s2_ndvi_masked), ("hp", cube_s2_highpass)):
        cube.download(tmp_path / f"{name}.nc")

    one = {b: sample_series(sample_data_dir, b, BOX, "2022-06-02", "2022-06-03")["2022-06-02"]
           for b in ("B02", "B04", "B08")}
    scl10 = np.repeat(np.repeat(sample_series(sample_data_dir, "SCL", BOX, "2022-06-02",
                                              "2022-06-03")["2022-06-02"], 2, 0), 2, 1)
    ndvi = (one["B08"] - one["B04"]) / (one["B08"] + one["B04"])
    with xr.open_dataset(tmp_path / "ndvi.nc") as ds:
        (var,) = [v for v in ds.data_vars if v != "crs"]
        np.testing.assert_allclose(ds[var].isel(t=0).values, ndvi, rtol=1e-5)
    with xr.open_dataset(tmp_path / "thr.nc") as ds:
        (var,) = [v for v in ds.data_vars if v != "crs"]
        got = ds[var].isel(t=0).values
        np.testing.assert_array_equal(np.isnan(got), ndvi < 0.3)
    with xr.open_dataset(tmp_path / "masked.nc") as ds:
        keep = np.isin(scl10, (4, 5))
        np.testing.assert_array_equal(ds.B02.isel(t=0).values[keep], one["B02"][keep])
        assert np.isnan(ds.B02.isel(t=0).values[~keep]).all()
    with xr.open_dataset(tmp_path / "hp.nc") as ds:
        got = ds.B08.isel(t=0).values
    b = one["B08"]
    inner = sum(-b[2 + dy:28 + dy, 2 + dx:28 + dx] for dy in range(-2, 3)
                for dx in range(-2, 3)) + 25 * b[2:28, 2:28]
    np.testing.assert_allclose(got[2:28, 2:28], inner, rtol=1e-5)


def seasonal_graph(variable: str) -> dict:
    """a0 + a1 cos(2 pi / year * v) + a2 sin(2 pi / year * v) of the parameter `variable`, as
    the openEO Platform's UC6 process graphs write the model function (openEO 1.x called the
    independent variable `data`)."""
    def element(i: int) -> dict:
        return {"process_id": "array_element",
                "arguments": {"data": {"from_parameter": "parameters"}, "index": i}}
    return {"process_graph": {
        "a0": element(0), "a1": element(1), "a2": element(2),
        "w": {"process_id": "divide", "arguments": {"x": 6.283185307179586, "y": 31557600}},
        "wt": {"process_id": "multiply", "arguments": {"x": {"from_node": "w"},
                                                        "y": {"from_parameter": variable}}},
        "cos": {"process_id": "cos", "arguments": {"x": {"from_node": "wt"}}},
        "sin": {"process_id": "sin", "arguments": {"x": {"from_node": "wt"}}},
        "c1": {"process_id": "multiply", "arguments": {"x": {"from_node": "a1"},
                                                        "y": {"from_node": "cos"}}},
        "c2": {"process_id": "multiply", "arguments": {"x": {"from_node": "a2"},
                                                        "y": {"from_node": "sin"}}},
        "s1": {"process_id": "add", "arguments": {"x": {"from_node": "a0"},
                                                   "y": {"from_node": "c1"}}},
        "s2": {"process_id": "add", "arguments": {"x": {"from_node": "s1"},
                                                   "y": {"from_node": "c2"}}, "result": True}}}


def test_uc6_process_graphs_of_openeo_1x(con, sample_data_dir: Path, tmp_path: Path) -> None:
    """The openEO Platform SRR2 repository's UC6 process graphs (UC6_process_graphs/*_EURAC
    and *_EODC), sent as JSON: the model function's variable called `data` (openEO 1.x; once
    "The parameter 'data' is used, but it is no parameter here"), resample_cube_temporal with
    1.0's `method: "nearest"` (once "has no parameter 'method'"), predict_curve with `data` and
    `labels: []` (the labels of data; once "labels must be a non-empty array") and with labels
    null (the gaps of data filled). Checked with numpy least squares."""
    span = ["2022-04-01", "2022-07-01"]
    load = {"process_id": "load_collection", "arguments": {
        "id": "SENTINEL2_L2A", "spatial_extent": BOX, "temporal_extent": span,
        "bands": ["B04", "B08"], "properties": {}}}
    clip = {"process_graph": {"c": {"process_id": "clip", "arguments": {
        "x": {"from_parameter": "x"}, "min": 0, "max": 5000}, "result": True}}}
    fit_graph = {
        "load": load,
        "again": {"process_id": "resample_cube_temporal", "arguments": {
            "data": {"from_node": "load"}, "target": {"from_node": "load"},
            "method": "nearest"}},
        "clip": {"process_id": "apply", "arguments": {"data": {"from_node": "again"},
                                                      "process": clip, "context": ""}},
        "fit": {"process_id": "fit_curve", "arguments": {
            "data": {"from_node": "clip"}, "function": seasonal_graph("data"),
            "parameters": [1, 1, 1], "dimension": "t"}},
        "save": {"process_id": "save_result", "arguments": {
            "data": {"from_node": "fit"}, "format": "NETCDF"}, "result": True}}
    fit_job = con.create_job({"process_graph": fit_graph}, title="UC6 fit")
    fit_job.start_and_wait(max_poll_interval=0.2)

    def predict_graph(labels: list | None, variable: str) -> dict:
        return {
            "load": load,
            "clip": {"process_id": "apply", "arguments": {"data": {"from_node": "load"},
                                                          "process": clip}},
            "params": {"process_id": "load_result", "arguments": {"id": fit_job.job_id}},
            "predict": {"process_id": "predict_curve", "arguments": {
                "data": {"from_node": "clip"}, "parameters": {"from_node": "params"},
                "function": seasonal_graph(variable), "dimension": "t", "labels": labels}},
            "save": {"process_id": "save_result", "arguments": {
                "data": {"from_node": "predict"}, "format": "netCDF"}, "result": True}}

    con.download({"process_graph": predict_graph([], "data")}, tmp_path / "all.nc")
    con.download({"process_graph": predict_graph(None, "x")}, tmp_path / "gaps.nc")

    series = {b: sample_series(sample_data_dir, b, BOX, *span, times=True) for b in ("B04",
                                                                                    "B08")}
    stamps = list(series["B04"])
    seconds = np.array([pd.Timestamp(s, tz="UTC").timestamp() for s in stamps])
    w = 2 * np.pi / 31557600 * seconds
    design = np.stack([np.ones_like(w), np.cos(w), np.sin(w)], axis=1)
    with xr.open_dataset(tmp_path / "all.nc") as every, \
            xr.open_dataset(tmp_path / "gaps.nc") as gaps:
        assert [str(t)[:19] for t in every.t.values] == stamps
        for b in ("B04", "B08"):
            values = np.clip(np.stack(list(series[b].values())), 0, 5000)
            expected = np.einsum("tp,pyx->tyx", design, harmonic_fit(values, design))
            np.testing.assert_allclose(every[b].values, expected, rtol=1e-4, atol=0.5)
            np.testing.assert_allclose(gaps[b].values,
                                       np.where(np.isnan(values), expected, values),
                                       rtol=1e-4, atol=0.5)


def test_air_pollution_vs_temperature_weekly_merge(con, sample_data_dir: Path,
                                                   tmp_path: Path) -> None:
    """CDSE notebook openeo/AirPollutionVsTemp.ipynb (from the repository's history;
    SENTINEL_5P_L2 / NO2 -> B04, SENTINEL3_SLSTR_L2_LST / LST -> B11, confidence_in -> SCL):
    weekly means of both, the LST cube (20 m here) resampled bilinearly onto the NO2 cube's
    grid (10 m), merged with merge_cubes, the batch job's netCDF smoothed with rolling(t=3).
    As in the notebook, `lst.mask(mask)` is computed but not used."""
    time = ["2022-05-02", "2022-06-27"]  # eight ISO weeks, Monday to Monday
    aoi = {"type": "Polygon", "coordinates": [box_ring()]}
    s5pollution = con.load_collection("SENTINEL2_L2A", temporal_extent=time,
                                      spatial_extent=aoi, bands=["B04"])
    s5pollution = s5pollution.aggregate_temporal_period(reducer="mean", period="week")
    lst = con.load_collection("SENTINEL2_L2A", temporal_extent=time, spatial_extent=aoi,
                              bands=["B11"])
    mask = con.load_collection("SENTINEL2_L2A", temporal_extent=time, spatial_extent=aoi,
                               bands=["SCL"])
    mask = mask >= 8
    lst.mask(mask)
    lst_celsius = lst - 273.15
    lst_celsius = lst_celsius.aggregate_temporal_period(reducer="mean", period="week")
    lst_resampled = lst_celsius.resample_cube_spatial(target=s5pollution, method="bilinear")
    merged_cube = s5pollution.merge_cubes(lst_resampled)
    merged_cube.execute_batch(title="Air Pollution vs Tempreature Effect",
                              outputfile=tmp_path / "TempPollution.nc", max_poll_interval=0.2)

    dataset = xr.load_dataset(tmp_path / "TempPollution.nc")
    inside = in_box(dataset)  # the polygon's pixels; those around it are no-data
    assert inside.sizes["x"] == inside.sizes["y"] == 30
    weeks = pd.date_range(time[0], time[1], freq="7D", inclusive="left")
    assert [str(t)[:10] for t in dataset.t.values] == [str(w)[:10] for w in weeks]
    b04 = sample_series(sample_data_dir, "B04", BOX, *time)
    b11 = sample_series(sample_data_dir, "B11", BOX, *time)
    for i, start in enumerate(weeks):
        end = start + pd.Timedelta(days=7)
        days = [d for d in b04 if str(start)[:10] <= d < str(end)[:10]]
        if not days:
            assert np.isnan(inside.B04.isel(t=i).values).all()
            continue
        np.testing.assert_allclose(inside.B04.isel(t=i).values,
                                   np.nanmean([b04[d] for d in days], axis=0), rtol=1e-5)
        coarse = np.nanmean([b11[d] - 273.15 for d in days], axis=0)  # 15 x 15 at 20 m
        # 10 m centres sit a quarter of a 20 m pixel from the 20 m centres: bilinear weights
        # 3/4 and 1/4 in each direction (the inner pixels, away from the polygon's edge)
        rows = np.arange(30)
        src = (rows + 0.5) / 2 - 0.5
        lo = np.floor(src).astype(int)
        frac = src - lo
        inner = slice(2, 28)
        expected = np.full((30, 30), np.nan)
        for r in range(1, 29):
            for c in range(1, 29):
                y0, x0, fy, fx = lo[r], lo[c], frac[r], frac[c]
                expected[r, c] = ((1 - fy) * ((1 - fx) * coarse[y0, x0] + fx * coarse[y0, x0 + 1])
                                  + fy * ((1 - fx) * coarse[y0 + 1, x0]
                                          + fx * coarse[y0 + 1, x0 + 1]))
        np.testing.assert_allclose(inside.B11.isel(t=i).values[inner, inner],
                                   expected[inner, inner], rtol=1e-4)
    smoothed = dataset.rolling(t=3).mean()
    assert smoothed.B04.sizes["t"] == len(weeks)


def test_platform_sentinel5p_moving_average(con, sample_data_dir: Path) -> None:
    """openEO Platform sample-notebooks sentinel-5p.ipynb (TERRASCOPE_S5P_L3_NO2_TD_V1 ->
    SENTINEL2_L2A / B04): array_interpolate_linear over t, for "mean" a moving average UDF
    (`apply_timeseries` on a pandas Series returning a numpy array), aggregate_spatial with
    the method as reducer, JSON through `connection.execute`, read into a DataFrame as the
    notebook does. Checked with numpy."""
    from datetime import datetime

    extent = {"type": "Polygon", "coordinates": [box_ring()]}
    span = ["2022-04-01", "2022-10-01"]
    moving_average_window = 31
    results = {}
    for method in ("max", "mean"):
        udf = openeo.UDF("""
from pandas import Series
import numpy as np
def apply_timeseries(series: Series, context: dict) -> Series:
    return np.convolve(series, np.ones({n})/{n}, mode='same')
""".format(n=moving_average_window))  # noqa: UP032 - as the notebook writes it
        datacube = con.load_collection("SENTINEL2_L2A", spatial_extent=extent,
                                       temporal_extent=span, bands=["B04"])
        datacube = datacube.apply_dimension(dimension="t", process="array_interpolate_linear")
        if method == "mean":
            datacube = datacube.apply_dimension(dimension="t", process=udf)
        datacube = datacube.aggregate_spatial(geometries=extent, reducer=method)
        datacube = datacube.save_result(format="JSON")
        results[method] = con.execute(datacube)
    values: dict[str, list] = {}
    dates = []
    for m, result in results.items():
        dates = []
        for k, v in result.items():
            values.setdefault(m, [])
            dates.append(datetime.strptime(k, "%Y-%m-%dT%H:%M:%SZ"))
            values[m].append(v[0][0])
    df = pd.DataFrame(values, dates, list(results))

    series = sample_series(sample_data_dir, "B04", BOX, *span)
    stack = np.stack(list(series.values()))  # t, y, x
    assert [d.strftime("%Y-%m-%d") for d in df.index] == list(series)
    flat = stack.reshape(len(stack), -1)
    filled = np.empty_like(flat)
    steps = np.arange(len(flat))
    for p in range(flat.shape[1]):  # interior gaps only, as array_interpolate_linear
        ok = ~np.isnan(flat[:, p])
        filled[:, p] = flat[:, p]
        inside = (steps > steps[ok].min()) & (steps < steps[ok].max()) & ~ok
        filled[inside, p] = np.interp(steps[inside], steps[ok], flat[ok, p])
    np.testing.assert_allclose(df["max"].to_numpy(), np.nanmax(filled, axis=1), rtol=1e-6)
    kernel = np.ones(moving_average_window) / moving_average_window
    smoothed = np.stack([np.convolve(filled[:, p], kernel, mode="same")
                         for p in range(filled.shape[1])], axis=1)
    np.testing.assert_allclose(df["mean"].to_numpy(), np.nanmean(smoothed, axis=1), rtol=1e-5)


def test_client_basics_evi_timeseries_and_statistics(con, sample_data_dir: Path,
                                                     tmp_path: Path) -> None:
    """The openeo client's "Getting started" (basics.rst): the EVI of B02/B04/B08, masked with
    `scl != 4`, aggregated over two fields to JSON and read with timeseries_json_to_pandas
    ("Aggregated EVI timeseries"), then the four statistics of `array_create([mean(x), sd(x),
    median(x), count(x)])` per field ("Computing multiple statistics"). Checked with numpy."""
    from openeo.processes import array_create, count, mean, median, sd
    from openeo.rest.conversions import timeseries_json_to_pandas

    to_ll = Transformer.from_crs(32632, 4326, always_xy=True)

    def field(w: float, s: float, e: float, n: float) -> dict:
        ring = [list(to_ll.transform(x, y)) for x, y in ((w, n), (w, s), (e, s), (e, n))]
        return {"type": "Feature", "properties": {},
                "geometry": {"type": "Polygon", "coordinates": [[*ring, ring[0]]]}}

    boxes = [(680000, 5151300, 680100, 5151500), (680150, 5151200, 680300, 5151350)]
    features = {"type": "FeatureCollection", "features": [field(*b) for b in boxes]}
    span = ["2022-06-01", "2022-07-01"]
    sentinel2_cube = con.load_collection("SENTINEL2_L2A", spatial_extent=box_lonlat(),
                                         temporal_extent=span,
                                         bands=["B02", "B04", "B08", "SCL"])
    blue = sentinel2_cube.band("B02") * 0.0001
    red = sentinel2_cube.band("B04") * 0.0001
    nir = sentinel2_cube.band("B08") * 0.0001
    evi = 2.5 * (nir - red) / (nir + 6.0 * red - 7.5 * blue + 1.0)
    scl = sentinel2_cube.band("SCL")
    evi_masked = evi.mask(scl != 4)
    evi_masked.aggregate_spatial(geometries=features, reducer="mean").download(
        tmp_path / "evi-aggregation.json")
    with open(tmp_path / "evi-aggregation.json") as f:
        data = json.load(f)
    df = timeseries_json_to_pandas(data)
    df.index = pd.to_datetime(df.index)
    df = df.dropna()
    df.columns = ("Field A", "Field B")

    evi_aggregation = evi_masked.aggregate_spatial(
        geometries=features,
        reducer=lambda x: array_create([mean(x), sd(x), median(x), count(x)]))
    stats = evi_aggregation.execute()

    bands = {b: sample_series(sample_data_dir, b, BOX, *span) for b in ("B02", "B04", "B08")}
    scl20 = sample_series(sample_data_dir, "SCL", BOX, *span)
    per_field: dict[str, list[np.ndarray]] = {}
    for day in bands["B04"]:
        bl, r, n = (bands[b][day] * 0.0001 for b in ("B02", "B04", "B08"))
        values = 2.5 * (n - r) / (n + 6.0 * r - 7.5 * bl + 1.0)
        values[np.repeat(np.repeat(scl20[day], 2, 0), 2, 1) != 4] = np.nan
        per_field[day] = []
        for w, s, e, n_ in boxes:
            rows = slice(int((BOX["north"] - n_) / 10), int((BOX["north"] - s) / 10))
            cols = slice(int((w - BOX["west"]) / 10), int((e - BOX["west"]) / 10))
            per_field[day].append(values[rows, cols])
    for day, fields in per_field.items():
        key = f"{day}T10:20:00Z"
        means = [np.nanmean(v) if np.isfinite(v).any() else np.nan for v in fields]
        for got, expected in zip(data[key], means, strict=True):
            if np.isnan(expected):
                assert got[0] is None
            else:
                assert got[0] == pytest.approx(expected, rel=1e-5)
        for got, v in zip(stats[key], fields, strict=True):
            valid = v[np.isfinite(v)]
            if not valid.size:
                assert got[3] == 0
                continue
            assert got[0] == pytest.approx(valid.mean(), rel=1e-5)
            assert got[1] == pytest.approx(valid.std(ddof=1), rel=1e-4, abs=1e-7)
            assert got[2] == pytest.approx(np.median(valid), rel=1e-5)
            assert got[3] == valid.size
    complete = [d for d, f in per_field.items() if all(np.isfinite(v).any() for v in f)]
    assert [str(t)[:10] for t in df.index] == complete


def test_processes_page_of_the_client_docs(con, sample_data_dir: Path, tmp_path: Path) -> None:
    """The client's processes.rst: datacube_from_process("mean", data=[...]).execute(),
    cube.process with an arguments dict and with keywords, `THIS`, and every form of callback
    it shows (a process name, a function, a lambda of ProcessBuilder methods, of functions,
    mixed with operators, openeo.processes.sum, PGNode), checked with numpy."""
    import openeo.processes
    from openeo.internal.graph_building import PGNode
    from openeo.processes import ProcessBuilder, absolute, add, cos
    from openeo.processes import max as max_
    from openeo.processes import mean as mean_
    from openeo.rest.datacube import THIS

    assert con.datacube_from_process("mean", data=[2, 3, 5, 8]).execute() == 4.5
    span = ["2022-06-01", "2022-06-15"]
    cube = con.load_collection("SENTINEL2_L2A", spatial_extent=BOX, temporal_extent=span,
                               bands=["B04", "B08"])
    assert cube.process("mean", {"data": [1, 3, -1]}).execute() == 1
    assert cube.process("mean", data=[1, 3, -1]).execute() == 1

    def avg(data: ProcessBuilder):
        return data.mean()

    def transform(x):
        return x * 2 + 3

    cubes = {
        "ndvi": cube.process("ndvi", data=THIS),
        "abs_max": cube.apply("absolute").reduce_dimension(reducer="max", dimension="t"),
        "fn_max": cube.apply(absolute).reduce_dimension(reducer=max_, dimension="t"),
        "transform": cube.apply(transform).reduce_dimension(reducer=avg, dimension="t"),
        "chain": cube.apply(lambda x: x.absolute().cos().add(y=1.23)).reduce_dimension(
            reducer=lambda data: data.mean().cos().add(y=1.23), dimension="t"),
        "functions": cube.reduce_dimension(
            reducer=lambda data: add(x=cos(mean_(data)), y=1.23), dimension="t"),
        "mixed": cube.reduce_dimension(reducer=lambda data: cos(data.mean()) + 1.23,
                                       dimension="t"),
        "sum": cube.reduce_dimension(dimension="t", reducer=openeo.processes.sum),
        "pgnode": cube.apply(PGNode("add", x=PGNode("cos", x=PGNode(
            "absolute", x={"from_parameter": "x"})), y=1.23)).reduce_dimension(
            reducer=PGNode("max", data={"from_parameter": "data"}), dimension="bands"),
    }
    got = {}
    for name, c in cubes.items():
        c.download(tmp_path / f"{name}.nc")
        with xr.open_dataset(tmp_path / f"{name}.nc") as ds:
            got[name] = {v: ds[v].values for v in ds.data_vars if v != "crs"}

    series = {b: np.stack(list(sample_series(sample_data_dir, b, BOX, *span).values()))
              for b in ("B04", "B08")}
    red, nir = series["B04"], series["B08"]
    np.testing.assert_allclose(got["ndvi"]["var"], (nir - red) / (nir + red), rtol=1e-5)
    for b in ("B04", "B08"):
        s = series[b]
        np.testing.assert_allclose(got["abs_max"][b], np.nanmax(np.abs(s), axis=0), rtol=1e-6)
        np.testing.assert_allclose(got["fn_max"][b], np.nanmax(np.abs(s), axis=0), rtol=1e-6)
        np.testing.assert_allclose(got["transform"][b], np.nanmean(s * 2 + 3, axis=0),
                                   rtol=1e-5)
        chained = np.cos(np.nanmean(np.cos(np.abs(s)) + 1.23, axis=0)) + 1.23
        np.testing.assert_allclose(got["chain"][b], chained, rtol=1e-4, atol=1e-5)
        for name in ("functions", "mixed"):
            np.testing.assert_allclose(got[name][b], np.cos(np.nanmean(s, axis=0)) + 1.23,
                                       rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(got["sum"][b], np.nansum(s, axis=0), rtol=1e-6)
    np.testing.assert_allclose(got["pgnode"]["var"],
                               np.maximum(np.cos(red), np.cos(nir)) + 1.23, rtol=1e-4,
                               atol=1e-5)
