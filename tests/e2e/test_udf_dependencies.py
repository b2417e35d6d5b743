"""Issue 12: a UDF declares packages (PEP 723 `# /// script` dependencies), sent through the
official client to a real `terracube serve` whose package index is a folder of wheels written
here (offline: `--no-index --find-links`). The package is installed once into a cached
environment and the UDF's values equal those computed from the sample files; an unknown package,
one outside the allow-list, an unreachable index or a server that installs nothing give a clear
error before anything runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import requests
import xarray as xr
from tests.support.data import data_dir_with_samples, sample_band
from tests.support.markers import needs_sandbox
from tests.support.processes import ServerProcess, free_port
from tests.support.wheels import write_wheel

openeo = pytest.importorskip("openeo")

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300), needs_sandbox]

SMALL = {"west": 680000, "south": 5151200, "east": 680300, "north": 5151500, "crs": 32632}
DAY = ["2022-06-07", "2022-06-08"]

SCALE = """# /// script
# requires-python = ">=3.10"
# dependencies = [
#     "tc-demo-scale>=1.0",
#     "numpy",
# ]
# ///
import xarray
from tc_demo_scale import scale

def apply_datacube(cube: xarray.DataArray, context: dict) -> xarray.DataArray:
    return scale(cube) + context.get("add", 0)
"""


def declaring(*requirements: str) -> str:
    lines = "".join(f'#     "{r}",\n' for r in requirements)
    return (f"# /// script\n# dependencies = [\n{lines}# ]\n# ///\nimport xarray\n\n"
            f"def apply_datacube(cube: xarray.DataArray, context: dict) -> xarray.DataArray:\n"
            f"    return cube\n")


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tc-demo-scale (scale(x) = 3x + OFFSET) requires tc-demo-helper (OFFSET = 7) and numpy
    (which the runtime has, so it is not installed)."""
    folder = tmp_path_factory.mktemp("wheels")
    write_wheel(folder, "tc-demo-scale", "1.0",
                {"tc_demo_scale/__init__.py": "from tc_demo_helper import OFFSET\n\n\n"
                                              "def scale(x):\n    return x * 3 + OFFSET\n"},
                requires=["tc-demo-helper>=0.2", "numpy>=1"])
    write_wheel(folder, "tc-demo-helper", "0.2", {"tc_demo_helper/__init__.py": "OFFSET = 7\n"})
    write_wheel(folder, "tc-demo-other", "0.1", {"tc_demo_other/__init__.py": "X = 1\n"})
    return folder


def data_folder(tmp_path_factory: pytest.TempPathFactory, sample_data_dir: Path) -> Path:
    return data_dir_with_samples(tmp_path_factory.mktemp("data"), sample_data_dir)


@pytest.fixture(scope="module")
def server(tmp_path_factory, sample_data_dir, wheels):
    srv = ServerProcess(data_folder(tmp_path_factory, sample_data_dir), {
        "TERRACUBE_UDF_DEPENDENCIES": "any", "TERRACUBE_UDF_PACKAGE_INDEX": "none",
        "TERRACUBE_UDF_FIND_LINKS": str(wheels), "TERRACUBE_WORKERS": "1"})
    yield srv
    srv.stop()


def envs(srv: ServerProcess) -> list[Path]:
    folder = srv.log_path.parent / "udf-envs"
    return sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []


def b04(sample_data_dir: Path) -> np.ndarray:
    return sample_band(sample_data_dir, "2022-06-07T10:20:00Z", "B04", SMALL).astype("float64")


def cube_with(con, code: str, context: dict | None = None):
    cube = con.load_collection("SENTINEL2_L2A", spatial_extent=SMALL, temporal_extent=DAY,
                               bands=["B04"])
    return cube.apply(openeo.UDF(code, runtime="Python", context=context or {}))


def run(con, code: str, tmp_path: Path, context: dict | None = None) -> xr.DataArray:
    target = tmp_path / "out.nc"
    cube_with(con, code, context).download(target, format="netCDF")
    with xr.open_dataset(target) as ds:
        return ds["B04"].load()


def refused(con, code: str, tmp_path: Path) -> str:
    with pytest.raises(openeo.rest.OpenEoApiError) as info:
        run(con, code, tmp_path)
    assert info.value.http_status_code == 400 and info.value.code == "ProcessParameterInvalid"
    assert "[node 'runudf1', argument 'udf']" in info.value.message
    return info.value.message


def test_a_udf_with_a_declared_dependency_works_and_its_environment_is_reused(
        con, server, sample_data_dir, tmp_path) -> None:
    out = run(con, SCALE, tmp_path)
    np.testing.assert_allclose(np.squeeze(out.values), 3 * b04(sample_data_dir) + 7, rtol=1e-6)
    (env,) = envs(server)
    manifest = json.loads((env / ".terracube-env.json").read_text())
    assert manifest["installed"] == {"tc-demo-scale": "1.0", "tc-demo-helper": "0.2"}
    assert not (env / "numpy").exists()  # the runtime's numpy serves it
    stamp = env.stat().st_mtime_ns
    # the same set written otherwise (order, case, underscores): the same environment, reused
    code = SCALE.replace('"tc-demo-scale>=1.0",\n#     "numpy",',
                         '"NumPy",\n#     "TC_Demo_Scale >= 1.0",')
    assert code != SCALE
    out = run(con, code, tmp_path, {"add": 1})
    np.testing.assert_allclose(np.squeeze(out.values), 3 * b04(sample_data_dir) + 8, rtol=1e-6)
    assert envs(server) == [env] and env.stat().st_mtime_ns == stamp
    assert server.log().count("installed in") == 1
    description = requests.get(server.api + "udf_runtimes", timeout=10).json()["Python"][
        "description"]
    assert "installed from the server's own wheel folder" in description


def test_a_batch_job_with_a_declared_dependency(con, server, sample_data_dir,
                                                tmp_path) -> None:
    job = cube_with(con, SCALE, {"add": 2}).create_job(out_format="netCDF")
    job.start_and_wait(max_poll_interval=0.2)
    (asset,) = job.get_results().get_assets()
    asset.download(tmp_path / "job.nc")
    with xr.open_dataset(tmp_path / "job.nc") as ds:
        np.testing.assert_allclose(np.squeeze(ds["B04"].values),
                                   3 * b04(sample_data_dir) + 9, rtol=1e-6)
    assert len(envs(server)) == 1  # the worker used the environment of the first test


def test_an_unknown_package_fails_before_anything_runs(con, server, tmp_path) -> None:
    message = refused(con, declaring("tc-no-such-package"), tmp_path)
    assert "tc-no-such-package" in message and "No matching distribution found" in message
    # a batch job fails when it is started, not once queued
    job = cube_with(con, declaring("tc-no-such-package==2")).create_job()
    with pytest.raises(openeo.rest.OpenEoApiError) as info:
        job.start()
    assert info.value.code == "ProcessParameterInvalid" and "tc-no-such-package" in \
        info.value.message and "runudf1" in info.value.message
    assert job.status() == "created"


def test_another_version_of_a_runtime_library_is_refused(con, tmp_path) -> None:
    message = refused(con, declaring("numpy<1.0"), tmp_path)
    assert "numpy<1.0 (the runtime has numpy" in message


def test_allow_list_and_unreachable_index(tmp_path_factory, sample_data_dir, wheels,
                                          tmp_path) -> None:
    srv = ServerProcess(data_folder(tmp_path_factory, sample_data_dir), {
        "TERRACUBE_UDF_DEPENDENCIES": "allow-list",
        "TERRACUBE_UDF_ALLOWED_PACKAGES": "tc-demo-scale, tc-demo-helper",
        "TERRACUBE_UDF_PACKAGE_INDEX": f"http://127.0.0.1:{free_port()}/simple",
        "TERRACUBE_UDF_FIND_LINKS": "", "TERRACUBE_WORKERS": "0"})
    try:
        con = openeo.connect(srv.url).authenticate_basic("demo", "demo")
        message = refused(con, declaring("tc-demo-other"), tmp_path)
        assert "tc-demo-other" in message and "allows only these packages: tc-demo-helper, " \
            "tc-demo-scale" in message
        message = refused(con, SCALE, tmp_path)  # allowed, but the index does not answer
        assert "cannot reach http://127.0.0.1:" in message and "tc-demo-scale" in message
        assert envs(srv) == []
        description = requests.get(srv.api + "udf_runtimes", timeout=10).json()["Python"][
            "description"]
        assert "only these packages: tc-demo-helper, tc-demo-scale" in description
        parameters = {p["name"]: p for p in requests.get(
            srv.api + "processing_parameters", timeout=10).json()["create_job_parameters"]}
        assert parameters["udf-dependencies"]["default"] == "allow-list"
        assert parameters["udf-allowed-packages"]["default"] == "tc-demo-scale, tc-demo-helper"
    finally:
        srv.stop()


def test_a_server_that_installs_nothing(tmp_path_factory, sample_data_dir, wheels,
                                        tmp_path) -> None:
    srv = ServerProcess(data_folder(tmp_path_factory, sample_data_dir), {
        "TERRACUBE_UDF_DEPENDENCIES": "off", "TERRACUBE_UDF_PACKAGE_INDEX": "none",
        "TERRACUBE_UDF_FIND_LINKS": str(wheels), "TERRACUBE_WORKERS": "0"})
    try:
        con = openeo.connect(srv.url).authenticate_basic("demo", "demo")
        message = refused(con, SCALE, tmp_path)
        assert "tc-demo-scale>=1.0 (not installed)" in message
        assert "installs no packages for UDFs" in message
        # what the runtime has is still fine
        out = run(con, declaring("numpy>=1", "xarray"), tmp_path)
        assert out.size > 0 and envs(srv) == []
    finally:
        srv.stop()
