"""load_uploaded_files: GeoTIFF and netCDF files from the user's workspace as a data cube."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
import rasterio
import xarray as xr
from fastapi.testclient import TestClient
from rasterio.transform import from_origin

from terracube import errors
from terracube.api.app import create_app
from terracube.catalog.access import UploadedFileReader
from terracube.engine.evaluate import Evaluator, Services
from terracube.engine.registry import build_registry
from terracube.results.access import FormatTable
from terracube.settings import Settings
from terracube.workspace.access import UserWorkspace

API = "/openeo/1.2"
VALUES = np.arange(12, dtype="float32").reshape(3, 4)
TRANSFORM = from_origin(680000, 5151600, 10, 10)


def write_tif(path, data=VALUES, band="B04", date: str | None = None, crs="EPSG:32632"):
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[1], height=data.shape[0],
                       count=1, dtype=data.dtype, crs=crs, transform=TRANSFORM) as ds:
        ds.write(data, 1)
        ds.set_band_description(1, band)
        if date:
            ds.update_tags(DATETIME=date)


def tif_bytes(data=VALUES) -> bytes:
    with rasterio.MemoryFile() as mem:
        with mem.open(driver="GTiff", width=data.shape[1], height=data.shape[0], count=1,
                      dtype=data.dtype, crs="EPSG:32632", transform=TRANSFORM) as ds:
            ds.write(data, 1)
            ds.set_band_description(1, "B04")
        return mem.read()


def write_netcdf(path):
    import pyproj

    t = pd.date_range("2022-06-01", periods=2)
    x = 680005 + 10 * np.arange(4)
    y = 5151595 - 10 * np.arange(3)
    da = xr.DataArray(np.stack([VALUES, VALUES * 2]), dims=("t", "y", "x"),
                      coords={"t": t, "y": y, "x": x}, name="B08", attrs={"grid_mapping": "crs"})
    ds = da.to_dataset()
    ds["crs"] = xr.DataArray(0, attrs=pyproj.CRS.from_epsg(32632).to_cf())
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.to_netcdf(path)


def load(registry, workspace, paths, format="GTiff", **extra):
    graph = {"l": {"process_id": "load_uploaded_files",
                   "arguments": {"paths": paths, "format": format, **extra}, "result": True}}
    services = Services(registry=registry, uploads=UploadedFileReader(), formats=FormatTable(),
                        workspace=None if workspace is None else UserWorkspace(workspace))
    return Evaluator(services).run(graph)


def test_geotiff(registry, tmp_path):
    write_tif(tmp_path / "in" / "a.tif")
    for path in ("in/a.tif", "/in/a.tif", "./in/a.tif"):  # all the same file (process spec)
        cube = load(registry, tmp_path, [path], format="gtiff")
        assert [d.name for d in cube.dimensions] == ["bands", "y", "x"]
        assert cube.labels("bands") == ["B04"]
        assert cube.crs == 32632
        np.testing.assert_array_equal(cube.data.sel(bands="B04").values, VALUES)
        assert list(cube.data.x.values) == [680005, 680015, 680025, 680035]


def test_dated_geotiffs_make_a_time_series(registry, tmp_path):
    write_tif(tmp_path / "s" / "1.tif", date="2022-06-01T10:00:00Z")
    write_tif(tmp_path / "s" / "2.tif", data=VALUES * 10, date="2022-06-11T10:00:00Z")
    cube = load(registry, tmp_path, ["s/1.tif", "s/2.tif"])
    assert [d.type for d in cube.dimensions][:2] == ["temporal", "bands"]
    assert cube.data.sizes["t"] == 2
    np.testing.assert_array_equal(cube.data.isel(t=1, bands=0).values, VALUES * 10)


def test_netcdf(registry, tmp_path):
    write_netcdf(tmp_path / "cube.nc")
    cube = load(registry, tmp_path, ["cube.nc"], format="netcdf")
    assert [d.name for d in cube.dimensions] == ["t", "bands", "y", "x"]
    assert cube.labels("bands") == ["B08"]
    np.testing.assert_array_equal(cube.data.isel(t=1, bands=0).values, VALUES * 2)


@pytest.mark.parametrize("paths, format, error", [
    (["../outside.tif"], "GTiff", errors.FileNotFound),
    (["in/../../outside.tif"], "GTiff", errors.FileNotFound),
    (["missing.tif"], "GTiff", errors.FileNotFound),
    (["in"], "GTiff", errors.FolderOperationUnsupported),
    (["in/a.tif"], "JSON", "FormatUnsuitable"),
    (["in/a.tif"], "PNG", "FormatUnsuitable"),
    (["in/broken.tif"], "GTiff", "FormatUnsuitable"),
    (["in/a.tif", "in/a.tif"], "netCDF", errors.ProcessParameterInvalid),
    ([], "GTiff", errors.ProcessParameterInvalid),
])
def test_errors(registry, tmp_path, paths, format, error):
    workspace = tmp_path / "ws"
    write_tif(workspace / "in" / "a.tif")
    write_tif(tmp_path / "outside.tif")
    (workspace / "in" / "broken.tif").write_bytes(b"not a tiff")
    with pytest.raises(errors.OpenEOError) as info:
        load(registry, workspace, paths, format)
    if isinstance(error, str):
        assert info.value.code == error
    else:
        assert isinstance(info.value, error)
    assert info.value.status in (400, 404)
    assert str(tmp_path) not in info.value.message  # no server paths in messages


def test_symlink_out_of_the_workspace(registry, tmp_path):
    write_tif(tmp_path / "secret.tif")
    (tmp_path / "ws").mkdir()
    (tmp_path / "ws" / "link.tif").symlink_to(tmp_path / "secret.tif")
    with pytest.raises(errors.FileNotFound):
        load(registry, tmp_path / "ws", ["link.tif"])


def test_options_are_refused(registry, tmp_path):
    write_tif(tmp_path / "a.tif")
    with pytest.raises(errors.ProcessParameterInvalid, match="no options"):
        load(registry, tmp_path, ["a.tif"], options={"bands": [1]})


def test_without_a_workspace(registry):
    with pytest.raises(errors.FileNotFound):
        load(registry, None, ["a.tif"])


# --- through the API: upload, then process; each user only reads their own files ----------------
@pytest.fixture
def client(tmp_path, registry):
    class NoCollections:
        def collection_ids(self):
            return []

    app = create_app(Settings(data_dir=tmp_path / "data"), catalog=NoCollections(),
                     registry=registry)
    for name in ("alice", "bob"):
        app.state.users.add(name, f"{name}-pw")
    return TestClient(app)


def login(client, name):
    token = client.get(f"{API}/credentials/basic", auth=(name, f"{name}-pw")).json()
    return {"Authorization": f"Bearer basic//{token['access_token']}"}


def test_upload_then_process(client):
    alice, bob = login(client, "alice"), login(client, "bob")
    assert client.put(f"{API}/files/uploads/a.tif", content=tif_bytes(),
                      headers=alice).status_code == 200
    process = {"process_graph": {
        "l": {"process_id": "load_uploaded_files",
              "arguments": {"paths": ["uploads/a.tif"], "format": "GTiff"}},
        "m": {"process_id": "apply", "arguments": {"data": {"from_node": "l"}, "process": {
            "process_graph": {"x2": {"process_id": "multiply", "arguments": {
                "x": {"from_parameter": "x"}, "y": 2}, "result": True}}}}},
        "s": {"process_id": "save_result", "arguments": {"data": {"from_node": "m"},
                                                         "format": "GTiff"}, "result": True}}}
    r = client.post(f"{API}/result", json={"process": process}, headers=alice)
    assert r.status_code == 200, r.text
    with rasterio.open(io.BytesIO(r.content)) as ds:
        np.testing.assert_array_equal(ds.read(1), VALUES * 2)
        assert ds.crs.to_epsg() == 32632
    # bob runs the same graph: his workspace has no such file
    r = client.post(f"{API}/result", json={"process": process}, headers=bob)
    assert r.status_code == 404 and r.json()["code"] == "FileNotFound"


def test_export_workspace_copies_saved_results_into_the_workspace(tmp_path) -> None:
    """save_result -> export_workspace: the written file lands in the user's /files."""
    from terracube.auth.users import User
    from terracube.processing.outputs import compute_result
    from terracube.processing.services import build_services
    from terracube.settings import Settings
    from terracube.workspace.files import workspace_for

    settings = Settings(data_dir=tmp_path / "data")
    user = User(user_id="alice")
    services = build_services(settings, None, build_registry(), user)
    graph = {
        "save": {"process_id": "save_result",
                 "arguments": {"data": [1, 2, 3], "format": "JSON"}},
        "export": {"process_id": "export_workspace",
                   "arguments": {"data": {"from_node": "save"}, "workspace": "exports",
                                 "merge": "run1"}, "result": True},
    }
    result = compute_result({"process": {"process_graph": graph}}, services)
    ws = workspace_for(settings, "alice")
    files = {f.path: f for f in ws.list_files()}
    assert f"exports/run1/{result.filename}" in files
    copied, _ = ws.file_to_read(f"exports/run1/{result.filename}")
    assert copied.read_bytes() == result.path.read_bytes() == b"[1, 2, 3]"


def test_geotiff_in_longitude_latitude(registry, tmp_path):
    """A GeoTIFF in EPSG:4326 (as the server's own results are when loaded in degrees):
    odc-geo names the axes latitude/longitude, the cube's are y/x (was KeyError: 'y')."""
    path = tmp_path / "in" / "geo.tif"
    path.parent.mkdir(parents=True)
    with rasterio.open(path, "w", driver="GTiff", width=4, height=3, count=1, dtype="float32",
                       crs="EPSG:4326", transform=from_origin(11.0, 46.5, 0.01, 0.01)) as ds:
        ds.write(VALUES, 1)
        ds.set_band_description(1, "B04")
    cube = load(registry, tmp_path, ["in/geo.tif"])
    assert [d.name for d in cube.dimensions] == ["bands", "y", "x"]
    assert cube.crs == 4326
    np.testing.assert_array_equal(cube.data.sel(bands="B04").values, VALUES)
    np.testing.assert_allclose(cube.data.x.values, [11.005, 11.015, 11.025, 11.035])
    np.testing.assert_allclose(cube.data.y.values, [46.495, 46.485, 46.475])
