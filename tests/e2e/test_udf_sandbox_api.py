"""Issue 12: hostile UDFs sent through the official client to a real `terracube serve` see none of
the server's files or environment and cannot reach its port; a legitimate UDF's values equal
those computed with numpy from the sample files, and the server carries on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import requests
import xarray as xr
from tests.support.data import data_dir_with_samples, sample_band
from tests.support.markers import needs_sandbox

openeo = pytest.importorskip("openeo")

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300), needs_sandbox]

SMALL = {"west": 680000, "south": 5151200, "east": 680300, "north": 5151500, "crs": 32632}
DAY = ["2022-06-07", "2022-06-08"]

PROBE = """
import glob, os, socket
import xarray

def apply_datacube(cube: xarray.DataArray, context: dict) -> xarray.DataArray:
    seen = 0
    for path in context["paths"]:
        try:
            open(path, "rb").read(1)
            seen += 1
        except OSError:
            pass
    seen += 10 * len([k for k in os.environ if k.startswith("TERRACUBE")])
    for f in glob.glob("/proc/*/environ"):
        try:
            seen += 100 * (b"TERRACUBE" in open(f, "rb").read())
        except OSError:
            pass
    try:
        socket.create_connection(("127.0.0.1", context["port"]), timeout=2).close()
        seen += 1000
    except OSError:
        pass
    return cube * 0 + seen
"""

DOUBLE = """
import xarray

def apply_datacube(cube: xarray.DataArray, context: dict) -> xarray.DataArray:
    return cube * 2
"""


def b04(sample_data_dir: Path) -> np.ndarray:
    return sample_band(sample_data_dir, DAY[0], "B04", SMALL).astype("float64")


def run(con, code: str, context: dict, tmp_path: Path) -> xr.DataArray:
    cube = con.load_collection("SENTINEL2_L2A", spatial_extent=SMALL, temporal_extent=DAY,
                               bands=["B04"])
    out = cube.apply(openeo.UDF(code, runtime="Python", context=context))
    target = tmp_path / "out.nc"
    out.download(target, format="netCDF")
    with xr.open_dataset(target) as ds:
        return ds["B04"].load()


def test_hostile_udf_sees_nothing_of_the_server(con, server, sample_data_dir, tmp_path) -> None:
    paths = [str(sample_data_dir / "terracube.db"), str(sample_data_dir / "secret.key"),
             "/etc/shadow", str(sample_data_dir / "workspaces")]
    assert (sample_data_dir / "terracube.db").exists()
    out = run(con, PROBE, {"paths": paths, "port": server.port}, tmp_path)
    assert np.nanmax(out.values) == 0
    assert requests.get(server.api, timeout=10).status_code == 200  # the server carries on


def test_legitimate_udf_values(con, sample_data_dir, tmp_path) -> None:
    out = run(con, DOUBLE, {}, tmp_path)
    np.testing.assert_allclose(np.squeeze(out.values), 2 * b04(sample_data_dir), rtol=1e-6)


def test_udf_errors_name_the_udfs_lines(con, tmp_path) -> None:
    code = "import xarray\n\ndef apply_datacube(cube: xarray.DataArray, context):\n" \
           "    return cube / undefined_name\n"
    with pytest.raises(openeo.rest.OpenEoApiError) as info:
        run(con, code, {}, tmp_path)
    assert info.value.code == "ProcessParameterInvalid"
    assert "NameError" in info.value.message and "line 4" in info.value.message
    assert "terracube" not in info.value.message


def test_udfs_switched_off_by_the_administrator(start_server, sample_data_dir, tmp_path) -> None:
    data_dir = data_dir_with_samples(tmp_path / "data", sample_data_dir)
    srv = start_server(data_dir, {"TERRACUBE_UDF_ENABLED": "false", "TERRACUBE_WORKERS": "0"})
    off = openeo.connect(srv.url).authenticate_basic("demo", "demo")
    with pytest.raises(openeo.rest.OpenEoApiError) as info:
        run(off, DOUBLE, {}, tmp_path)
    assert info.value.http_status_code == 501
    assert info.value.code == "FeatureUnsupported" and "switched off" in info.value.message
    runtimes = requests.get(srv.api + "udf_runtimes", timeout=10).json()
    assert "switched off" in runtimes["Python"]["description"]
