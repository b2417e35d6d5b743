"""The official `openeo` client's API surface beyond load_collection/download, against a live
server: metadata the client reads from the collection (bands by common name, NDVI with detected
bands, dimension names and extents), listings, process namespaces, dimension labels, label
renaming, apply_dimension into a new dimension, batch-job and file management and
user-defined processes, each called as users' programs call it. Values are checked against the
sample files read with rasterio (tests/support/data.py)."""

from __future__ import annotations

import io
import json
import uuid
from pathlib import Path

import numpy as np
import pytest
import requests
import xarray as xr
from tests.support.data import sample_series

openeo = pytest.importorskip("openeo")
import openeo.processes as eop  # noqa: E402
from openeo.api.process import Parameter  # noqa: E402

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

# 30 x 30 pixels of the valley in the files' CRS, and two sample dates (2022-06-02, -07)
BOX = {"west": 680000, "south": 5151200, "east": 680300, "north": 5151500, "crs": 32632}
START, END = "2022-06-01", "2022-06-10"


def cube(con, bands=("B04", "B08")):
    return con.load_collection("SENTINEL2_L2A", spatial_extent=BOX,
                               temporal_extent=[START, END], bands=list(bands))


def series(sample_data_dir: Path, band: str) -> np.ndarray:
    """(t, y, x) float64 of the sample dates in [START, END), no-data as NaN."""
    return np.stack(list(sample_series(sample_data_dir, band, BOX, START, END).values()))


def netcdf(data: bytes) -> xr.Dataset:
    return xr.open_dataset(io.BytesIO(data), engine="h5netcdf").load()


def variables(ds: xr.Dataset) -> list[str]:
    return [v for v in ds.data_vars if v not in ("crs", "spatial_ref")]


def test_collection_metadata_as_the_client_reads_it(con) -> None:
    meta = con.collection_metadata("SENTINEL2_L2A")
    assert meta.band_names[:4] == ["B01", "B02", "B03", "B04"] and "SCL" in meta.band_names
    assert meta.band_common_names[meta.band_names.index("B04")] == "red"
    assert meta.band_common_names[meta.band_names.index("B08")] == "nir"
    assert sorted(meta.dimension_names()) == ["bands", "t", "x", "y"]
    assert meta.temporal_dimension.extent[0].startswith("2022-04")
    assert meta.temporal_dimension.extent[1].startswith("2022-09")
    x, y = meta.spatial_dimensions
    assert (x.name, y.name, x.crs, x.step) == ("x", "y", 32632, 10.0)
    # a load with bands keeps their metadata: wavelengths in micrometres
    bands = {b.name: b for b in cube(con).metadata.bands}
    assert bands["B04"].common_name == "red" and abs(bands["B04"].wavelength_um - 0.665) < 0.01
    assert bands["B08"].common_name == "nir" and abs(bands["B08"].wavelength_um - 0.842) < 0.01


def test_band_math_by_common_name_and_ndvi_with_detected_bands(con, sample_data_dir) -> None:
    s2 = cube(con)
    red, nir = series(sample_data_dir, "B04"), series(sample_data_dir, "B08")
    diff = netcdf((s2.band("nir") - s2.band("red")).download(format="netCDF"))
    (var,) = variables(diff)
    np.testing.assert_allclose(diff[var].transpose("t", "y", "x").values, nir - red)
    ndvi = netcdf(s2.ndvi().download(format="netCDF"))   # red, nir found by common name
    (var,) = variables(ndvi)
    np.testing.assert_allclose(ndvi[var].transpose("t", "y", "x").values,
                               (nir - red) / (nir + red), rtol=1e-5)


def test_load_collection_bands_by_common_name(con, sample_data_dir) -> None:
    """load_collection's definition: a band is given by its name or its common name, and a
    common name several bands share (`rededge`) gives all of them in the collection's order."""
    s2 = con.load_collection("SENTINEL2_L2A", spatial_extent=BOX, temporal_extent=[START, END],
                             bands=["red", "nir"])
    assert s2.dimension_labels("bands").execute() == ["B04", "B08"]
    ds = netcdf(s2.download(format="netCDF"))
    assert variables(ds) == ["B04", "B08"]
    np.testing.assert_allclose(ds["B08"].transpose("t", "y", "x").values,
                               series(sample_data_dir, "B08"))
    edges = con.load_collection("SENTINEL2_L2A", spatial_extent=BOX,
                                temporal_extent=[START, END], bands=["rededge", "B02"])
    assert edges.dimension_labels("bands").execute() == ["B05", "B06", "B07", "B02"]


def test_listings_and_capabilities(con) -> None:
    formats = con.list_file_formats()
    assert {"GTiff", "netCDF", "JSON", "CSV", "Parquet", "PNG"} <= set(formats["output"])
    assert set(con.list_output_formats()) == set(formats["output"])
    assert {"GTiff", "GeoJSON"} <= set(con.list_input_formats())
    assert "XYZ" in con.list_service_types()
    assert "Python" in con.list_udf_runtimes()
    assert "SENTINEL2_L2A" in con.list_collection_ids()
    assert con.describe_account()["user_id"] == "demo"
    caps = con.capabilities()
    assert caps.api_version() == "1.2.0" and caps.supports_endpoint("/jobs", "POST")
    assert con.describe_process("ndvi")["id"] == "ndvi"


def test_collection_items_is_refused_as_on_cdse(con) -> None:
    """The client's `collection_items` (STAC API item search): FeatureUnsupported, as CDSE
    answers it, with where to look instead; an unknown collection is CollectionNotFound."""
    with pytest.raises(openeo.rest.OpenEoApiError) as info:
        next(con.collection_items("SENTINEL2_L2A", spatial_extent=[11.33, 46.48, 11.36, 46.5],
                                  temporal_extent=[START, END]))
    assert (info.value.http_status_code, info.value.code) == (501, "FeatureUnsupported")
    assert "dimension_labels" in info.value.message
    with pytest.raises(openeo.rest.OpenEoApiError) as info:
        next(con.collection_items("NO_SUCH_COLLECTION"))
    assert info.value.code == "CollectionNotFound"


def test_process_namespaces_backend_and_a_users_public_processes(con, server) -> None:
    """`list_processes(namespace=...)` and `describe_process(id, namespace=...)` (as on CDSE:
    "backend" the predefined processes, "u:<user>" a user's public ones, no login needed)."""
    predefined = {p["id"] for p in con.list_processes()}
    assert {p["id"] for p in con.list_processes(namespace="backend")} == predefined
    assert con.describe_process("ndvi", namespace="backend")["parameters"]
    r = requests.get(f"{server.url}/openeo/1.2/processes/backend/no_such_process", timeout=30)
    assert (r.status_code, r.json()["code"]) == (400, "ProcessUnsupported")

    shared, private = f"shared_{uuid.uuid4().hex[:6]}", f"private_{uuid.uuid4().hex[:6]}"
    x = Parameter.number("x", description="a number")
    con.save_user_defined_process(shared, eop.multiply(x, 2), parameters=[x], public=True)
    con.save_user_defined_process(private, eop.multiply(x, 3), parameters=[x])
    anonymous = openeo.connect(server.url)
    listed = {p["id"] for p in anonymous.list_processes(namespace="u:demo")}
    assert shared in listed and private not in listed
    described = anonymous.describe_process(shared, namespace="u:demo")
    assert described["process_graph"] and any(
        link["rel"] == "canonical" for link in described["links"])
    assert list(anonymous.list_processes(namespace="u:nobody_here")) == []


def test_dimension_labels_rename_labels_and_linear_scale_range(con, sample_data_dir) -> None:
    s2 = cube(con)
    assert s2.dimension_labels("t").execute() == ["2022-06-02T10:20:00Z",
                                                  "2022-06-07T10:20:00Z"]
    assert s2.dimension_labels("bands").execute() == ["B04", "B08"]
    renamed = s2.rename_labels("bands", target=["red", "nir"], source=["B04", "B08"])
    assert renamed.metadata.band_names == ["red", "nir"]
    scaled = renamed.linear_scale_range(0, 4000, 0, 255)
    ds = netcdf(scaled.download(format="netCDF"))
    assert variables(ds) == ["red", "nir"]
    red = series(sample_data_dir, "B04")
    np.testing.assert_allclose(ds["red"].transpose("t", "y", "x").values,
                               np.clip(red, 0, 4000) / 4000 * 255, rtol=1e-5)


def test_apply_dimension_with_target_dimension(con, sample_data_dir) -> None:
    """The client docs' `apply_dimension(dimension="t", target_dimension="bands")`: the time
    series of each pixel becomes bands (here its mean and maximum)."""
    s2 = cube(con, bands=["B08"])
    stats = s2.apply_dimension(dimension="t", target_dimension="bands",
                               process=lambda x: eop.array_create([eop.mean(x), eop.max(x)]))
    ds = netcdf(stats.download(format="netCDF"))
    assert "t" not in ds.dims and len(variables(ds)) == 2
    nir = series(sample_data_dir, "B08")
    first, second = (ds[v].transpose("y", "x").values for v in variables(ds))
    np.testing.assert_allclose(first, np.nanmean(nir, axis=0), rtol=1e-5)
    np.testing.assert_allclose(second, np.nanmax(nir, axis=0), rtol=1e-5)


def test_graph_inspection_print_json_validate_and_round_trip(con, tmp_path: Path) -> None:
    ndvi = cube(con).ndvi()
    out = io.StringIO()
    ndvi.print_json(file=out)
    assert json.loads(out.getvalue())["process_graph"] == ndvi.flat_graph()
    assert ndvi.validate() == []
    bad = con.load_collection("SENTINEL2_L2A", spatial_extent=BOX, temporal_extent=[START, END],
                              bands=["B04"]).process("no_such_process", data=cube(con))
    assert [e["code"] for e in bad.validate()] == ["ProcessUnsupported"]
    path = tmp_path / "ndvi.json"
    ndvi.print_json(file=path)
    again = con.datacube_from_json(path)
    assert again.flat_graph() == ndvi.flat_graph()


def test_batch_job_management(con, sample_data_dir, tmp_path: Path) -> None:
    """execute_batch with title, description and job_options; create_job with `additional`
    and a log level; describe, logs, estimate, results, load_result, delete."""
    s2 = cube(con)
    job = s2.max_time().execute_batch(tmp_path / "max.tif", title="max composite",
                                      description="two dates", job_options={"memory": "2G"})
    info = job.describe()
    assert (info["title"], info["description"], info["status"]) == \
        ("max composite", "two dates", "finished")
    assert isinstance(job.logs(), list) and job.logs(level="error") == []
    assert {"duration", "size"} <= set(job.estimate())
    results = job.get_results()
    (asset,) = results.get_assets()
    assert asset.metadata["type"].startswith("image/tiff")
    assert {"assets", "links"} <= set(results.get_metadata())
    expected = np.nanmax(series(sample_data_dir, "B08"), axis=0)
    loaded = con.load_result(job.job_id).band("B08")
    ds = netcdf(loaded.download(format="netCDF"))
    (var,) = variables(ds)
    np.testing.assert_allclose(ds[var].squeeze().values, expected)

    created = s2.create_job(title="not started", additional={"executor-memory": "1G"},
                            log_level="warning")
    assert created.describe()["log_level"] == "warning"
    assert created.status() == "created"
    created.delete()
    with pytest.raises(openeo.rest.OpenEoApiError) as info:
        created.status()
    assert info.value.code == "JobNotFound"


def test_user_files_and_vectorcube_from_paths(con, sample_data_dir, tmp_path: Path) -> None:
    square = [[680050, 5151250], [680150, 5151250], [680150, 5151350], [680050, 5151350],
              [680050, 5151250]]
    field = {"type": "FeatureCollection", "features": [{"type": "Feature",
             "properties": {"name": "field"},
             "geometry": {"type": "Polygon", "coordinates": [square]}}],
             "crs": {"type": "name", "properties": {"name": "EPSG:32632"}}}
    local = tmp_path / "field.geojson"
    local.write_text(json.dumps(field))
    target = f"client-{uuid.uuid4().hex[:6]}/field.geojson"
    uploaded = con.upload_file(local, target=target)
    assert target in [str(f.path) for f in con.list_files()]
    assert json.loads(uploaded.download(tmp_path / "back.geojson").read_text()) == field
    polygons = con.vectorcube_from_paths([target], format="GeoJSON")
    means = cube(con, bands=["B08"]).aggregate_spatial(polygons, reducer="mean").execute()
    # pixels whose centres lie in the square: rows and columns 5..14 of the 30 x 30 box
    nir = series(sample_data_dir, "B08")[:, 15:25, 5:15]
    got = [values[0][0] for _, values in sorted(means.items())]
    np.testing.assert_allclose(got, np.nanmean(nir, axis=(1, 2)), rtol=1e-6)
    uploaded.delete()
    assert target not in [str(f.path) for f in con.list_files()]


def test_user_defined_process_management(con, sample_data_dir) -> None:
    pid = f"scaled_ndvi_{uuid.uuid4().hex[:6]}"
    factor = Parameter.number("factor", description="multiplier", default=1)
    udp = con.save_user_defined_process(pid, cube(con).ndvi() * factor, parameters=[factor],
                                        summary="scaled NDVI", categories=["math"])
    assert pid in [p["id"] for p in con.list_user_defined_processes()]
    described = udp.describe()
    assert (described["summary"], described["categories"]) == ("scaled NDVI", ["math"])
    result = netcdf(con.datacube_from_process(pid, namespace="user", factor=10)
                    .download(format="netCDF"))
    red, nir = series(sample_data_dir, "B04"), series(sample_data_dir, "B08")
    (var,) = variables(result)
    np.testing.assert_allclose(result[var].transpose("t", "y", "x").values,
                               10 * (nir - red) / (nir + red), rtol=1e-5)
    udp.delete()
    assert pid not in [p["id"] for p in con.list_user_defined_processes()]


def test_processes_of_other_back_ends_say_what_to_use_instead(con) -> None:
    """ard_surface_reflectance, atmospheric_correction, resolution_merge (client methods that
    CDSE or VITO serve): ProcessUnsupported naming the way that works here."""
    s2 = cube(con)
    calls = {
        "ard_surface_reflectance": lambda: s2.ard_surface_reflectance(
            atmospheric_correction_method=None, cloud_detection_method=None),
        "atmospheric_correction": lambda: s2.atmospheric_correction(),
        "resolution_merge": lambda: s2.resolution_merge(high_resolution_bands=["B04"],
                                                        low_resolution_bands=["B08"]),
    }
    for pid, call in calls.items():
        with pytest.raises(openeo.rest.OpenEoApiError) as info:
            call().download(format="netCDF", validate=False)
        assert info.value.code == "ProcessUnsupported", pid
        assert pid in info.value.message
        assert ("SENTINEL2_L2A" if pid != "resolution_merge" else "10 m grid") \
            in info.value.message


def test_convert_data_type_to_uint8(con, sample_data_dir, tmp_path: Path) -> None:
    """The client's `convert_data_type` (CDSE's process): a scaled NDVI written as uint8
    GeoTIFF, fractions cut, values outside 0..255 clipped, no-data 0."""
    import rasterio

    ndvi = cube(con).ndvi().linear_scale_range(-1, 1, -100, 300)   # some values beyond 255
    ndvi.max_time().convert_data_type("uint8").download(tmp_path / "ndvi.tif")
    red, nir = series(sample_data_dir, "B04"), series(sample_data_dir, "B08")
    scaled = np.nanmax((nir - red) / (nir + red), axis=0) * 200 + 100
    with rasterio.open(tmp_path / "ndvi.tif") as ds:
        assert ds.dtypes[0] == "uint8" and ds.nodata == 0
        got = ds.read(1)
    expected = np.trunc(np.clip(scaled, 0, 255)).astype("int64")
    assert scaled.max() > 255 and got.max() == 255
    # float32 on the server, float64 here: a value next to a whole number may be cut to the
    # integer below it on one side only
    assert np.abs(got.astype("int64") - expected).max() <= 1
    assert (got == expected).mean() > 0.99
    with pytest.raises(openeo.rest.OpenEoApiError) as info:
        cube(con).convert_data_type("uint7").download(format="GTiff")
    assert info.value.code == "ProcessParameterInvalid" and "uint8ud255" in info.value.message
