"""Issue 11, defect 14: sharing user-defined processes. `public=True` gives a process a
`canonical` URL served without authentication, and another user runs it by giving that URL as
the node's namespace (the API's remote-process-definition extension); values checked against
NDVI computed with numpy from the sample files."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest
import requests
import xarray as xr
from tests.e2e.test_udp_files import add_user
from tests.support.data import sample_band

openeo = pytest.importorskip("openeo")
from openeo.api.process import Parameter  # noqa: E402

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

SMALL = {"west": 680000, "south": 5151200, "east": 680300, "north": 5151500, "crs": 32632}
DAY = ["2022-06-07", "2022-06-08"]


@pytest.fixture(scope="module")
def owner(server):
    return openeo.connect(server.url).authenticate_basic("demo", "demo")


@pytest.fixture(scope="module")
def other(server, sample_data_dir):
    name = f"bob_{uuid.uuid4().hex[:8]}"
    add_user(sample_data_dir, name, "bob-password")
    return openeo.connect(server.url).authenticate_basic(name, "bob-password")


def store(con, process_id: str, public: bool):
    cube = con.load_collection("SENTINEL2_L2A", spatial_extent=SMALL,
                               temporal_extent=DAY, bands=["B04", "B08"])
    scaled = cube.ndvi(nir="B08", red="B04") * Parameter.number("factor", default=1)
    return con.save_user_defined_process(process_id, scaled, public=public,
                                         parameters=[Parameter.number("factor", default=1)])


def sample(sample_data_dir: Path, band: str) -> np.ndarray:
    return sample_band(sample_data_dir, DAY[0], band, SMALL).astype("float64")


def canonical(udp) -> str:
    (href,) = [link["href"] for link in udp.describe()["links"] if link["rel"] == "canonical"]
    return href


def test_public_process_has_a_canonical_url_served_without_auth(owner) -> None:
    url = canonical(store(owner, "shared_ndvi", public=True))
    r = requests.get(url, timeout=30)  # no Authorization header
    assert r.status_code == 200
    assert r.json()["id"] == "shared_ndvi" and "process_graph" in r.json()
    assert "https://api.openeo.org/extensions/remote-process-definition/0.1.0" in \
        owner.get("/conformance").json()["conformsTo"]


def test_private_process_is_not_served(owner) -> None:
    udp = store(owner, "private_ndvi", public=False)
    assert not [link for link in udp.describe().get("links", []) if link["rel"] == "canonical"]
    url = canonical(store(owner, "shared_ndvi", public=True)).replace("shared_ndvi",
                                                                      "private_ndvi")
    assert requests.get(url, timeout=30).status_code == 404


def test_another_user_runs_it_by_its_url(owner, other, sample_data_dir: Path,
                                         tmp_path: Path) -> None:
    url = canonical(store(owner, "shared_ndvi", public=True))
    cube = other.datacube_from_process("shared_ndvi", namespace=url, factor=10)
    cube.download(tmp_path / "out.nc", format="netCDF")
    red, nir = sample(sample_data_dir, "B04"), sample(sample_data_dir, "B08")
    expected = 10 * (nir - red) / (nir + red)
    with xr.open_dataset(tmp_path / "out.nc") as ds:
        (var,) = [v for v in ds.data_vars if v not in ("crs", "spatial_ref")]
        got = ds[var].values.squeeze()
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_an_unresolvable_namespace_is_process_namespace_invalid(owner, other) -> None:
    url = canonical(store(owner, "shared_ndvi", public=True))
    for namespace, reason in [(url.replace("shared_ndvi", "nothing_here"), "HTTP 404"),
                              (url, "serves the process 'shared_ndvi'")]:
        pid = "shared_ndvi" if "nothing_here" in namespace else "other_name"
        cube = other.datacube_from_process(pid, namespace=namespace)
        with pytest.raises(openeo.rest.OpenEoApiError) as info:
            cube.download(format="netCDF")
        assert info.value.code == "ProcessNamespaceInvalid", info.value.message
        assert reason in info.value.message and namespace in info.value.message
