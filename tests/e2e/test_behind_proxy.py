"""terracube behind a real reverse proxy: Debian's nginx, started by the test on loopback with
its own configuration, publishes a real `terracube serve` under the path prefix /openeo-proxy/
(the prefix stripped, X-Forwarded-Proto/-Host/-Prefix/-For set, as docs/administration/proxy.md
shows). Through the proxy, with the official client: the README example, a batch job whose
signed links download, an XYZ service whose tiles load, and every URL the server emits starts
with the proxy's public prefix. nginx connects from 127.0.0.2, the only trusted proxy, so the
test's own direct requests (from 127.0.0.1) show that an untrusted client's Host and
X-Forwarded-* headers never reach a signed link."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest
import rasterio
from tests.support.processes import ChildProcess, ServerProcess, free_port

openeo = pytest.importorskip("openeo")

NGINX = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.path.exists(p)),
                                      None)
pytestmark = [pytest.mark.e2e, pytest.mark.skipif(
    NGINX is None, reason="needs Debian's nginx (make test installs it as root with apt-get)")]

PREFIX = "/openeo-proxy"
PROXY_ADDRESS = "127.0.0.2"  # nginx's side of its connections to terracube (proxy_bind)
BBOX = {"west": 679720, "south": 5151080, "east": 680680, "north": 5151920, "crs": "EPSG:32632"}
DATES = ["2022-06-01", "2022-07-01"]
EVIL = "evil.example"

NGINX_CONF = """
{user}
worker_processes 1;
error_log {tmp}/error.log warn;
pid {tmp}/nginx.pid;
events {{ worker_connections 128; }}
http {{
    access_log {tmp}/access.log;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    client_max_body_size 100m;
    server {{
        listen 127.0.0.1:{port};
        location {prefix}/ {{
            proxy_pass http://127.0.0.1:{backend}/;
            proxy_bind {proxy_address};
            proxy_http_version 1.1;
            proxy_read_timeout 300s;
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host 127.0.0.1:{port};
            proxy_set_header X-Forwarded-Prefix {prefix};
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        }}
    }}
}}
"""


class Nginx(ChildProcess):
    name = "nginx"


@pytest.fixture(scope="module")
def backend(sample_data_dir: Path):
    srv = ServerProcess(sample_data_dir, {"TERRACUBE_FORWARDED_ALLOW_IPS": PROXY_ADDRESS})
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def public(backend: ServerProcess, tmp_path_factory: pytest.TempPathFactory):
    """The proxy's public URL of the server root: http://127.0.0.1:<port>/openeo-proxy."""
    tmp = tmp_path_factory.mktemp("nginx")
    port = free_port()
    conf = tmp / "nginx.conf"
    conf.write_text(NGINX_CONF.format(
        user="user root;" if os.geteuid() == 0 else "", tmp=tmp, port=port, prefix=PREFIX,
        backend=backend.port, proxy_address=PROXY_ADDRESS))
    url = f"http://127.0.0.1:{port}{PREFIX}"
    proxy = Nginx([NGINX, "-p", str(tmp), "-c", str(conf), "-e", str(tmp / "error.log"),
                   "-g", "daemon off;"], tmp / "nginx.out", ready_url=f"{url}/openeo/1.2/",
                  timeout=30)
    yield url
    proxy.stop()


def hrefs(doc: object) -> list[str]:
    """Every `href` and `url` string anywhere in a JSON document."""
    out: list[str] = []
    if isinstance(doc, dict):
        for key, value in doc.items():
            if key in ("href", "url") and isinstance(value, str):
                out.append(value)
            else:
                out.extend(hrefs(value))
    elif isinstance(doc, list):
        for value in doc:
            out.extend(hrefs(value))
    return out


def ours(urls: list[str]) -> list[str]:
    """The URLs that point at this machine (leaving out spdx.org, openeo.org ...)."""
    return [u for u in urls if u.startswith("http://127.0.0.")]


def readme_cube(con):
    s2 = con.load_collection("SENTINEL2_L2A", spatial_extent=BBOX, temporal_extent=DATES,
                             bands=["B04", "B08", "SCL"])
    scl = s2.band("SCL")
    cloud = (scl == 3) | (scl == 8) | (scl == 9) | (scl == 10)
    ndvi = s2.ndvi(nir="B08", red="B04").mask(cloud)
    return ndvi.reduce_dimension(dimension="t", reducer="median")


def read(path: Path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read(1)


def test_capabilities_and_collections_through_the_proxy(public: str) -> None:
    api = f"{public}/openeo/1.2"
    caps = httpx.get(f"{api}/", timeout=60).json()
    links = ours(hrefs(caps["links"]))
    assert links and all(u.startswith(f"{public}/") for u in links), links
    assert f"{public}/" in links  # the web page (rel alternate)
    assert httpx.get(f"{public}/", timeout=60).status_code == 200
    well_known = httpx.get(f"{public}/.well-known/openeo", timeout=60).json()
    assert [v["url"] for v in well_known["versions"]] == [f"{api}/"]
    collection = httpx.get(f"{api}/collections/SENTINEL2_L2A", timeout=60).json()
    urls = ours(hrefs(collection))
    assert urls and all(u.startswith(f"{api}/") for u in urls), urls
    (xyz,) = [lk for lk in collection["links"] if lk["rel"] == "xyz"]
    page = httpx.get(f"{api}/collections?limit=1", timeout=60).json()
    (nxt,) = [lk["href"] for lk in page["links"] if lk["rel"] == "next"]
    assert nxt.startswith(f"{api}/collections?")
    assert httpx.get(nxt, timeout=60).status_code == 200
    # Swagger's OpenAPI document is found under the prefix too.
    assert httpx.get(f"{api}/openapi.json", timeout=60).status_code == 200
    assert xyz["href"].startswith(f"{api}/services/xyz/collections/")


def test_readme_example_through_the_proxy(public: str, backend: ServerProcess,
                                          tmp_path: Path) -> None:
    con = openeo.connect(public).authenticate_basic("demo", "demo")
    assert con.root_url.rstrip("/") == f"{public}/openeo/1.2"
    readme_cube(con).download(tmp_path / "proxied.tif")
    direct = openeo.connect(backend.url).authenticate_basic("demo", "demo")
    readme_cube(direct).download(tmp_path / "direct.tif")
    proxied, expected = read(tmp_path / "proxied.tif"), read(tmp_path / "direct.tif")
    assert np.isfinite(proxied).sum() > 1000
    np.testing.assert_array_equal(proxied, expected)


@pytest.fixture(scope="module")
def finished_job(public: str):
    con = openeo.connect(public).authenticate_basic("demo", "demo")
    cube = con.load_collection("SENTINEL2_L2A", spatial_extent=BBOX, temporal_extent=DATES,
                               bands=["B04", "B08"]).ndvi(nir="B08", red="B04").max_time()
    job = con.create_job(cube.save_result("GTiff"), title="through the proxy")
    job.start_and_wait(max_poll_interval=0.2)
    return con, job


def test_batch_job_results_download_through_the_proxy(public: str, finished_job,
                                                      tmp_path: Path) -> None:
    api = f"{public}/openeo/1.2"
    con, job = finished_job
    token = {"Authorization": f"Bearer {con.auth.bearer}"}
    # Location of a created job
    r = httpx.post(f"{api}/jobs", headers=token, timeout=60, json={
        "process": {"process_graph": {"x": {"process_id": "add", "arguments": {"x": 1, "y": 2},
                                            "result": True}}}})
    assert r.status_code == 201 and r.headers["Location"] == (
        f"{api}/jobs/{r.headers['OpenEO-Identifier']}")
    assert httpx.get(r.headers["Location"], headers=token, timeout=60).status_code == 200
    # pagination of jobs
    page = httpx.get(f"{api}/jobs?limit=1", headers=token, timeout=60).json()
    (nxt,) = [lk["href"] for lk in page["links"] if lk["rel"] == "next"]
    assert nxt.startswith(f"{api}/jobs?") and httpx.get(
        nxt, headers=token, timeout=60).status_code == 200

    results = job.get_results().get_metadata()
    urls = ours(hrefs(results))
    assert urls and all(u.startswith(f"{api}/") for u in urls), urls
    (asset,) = results["assets"].values()
    r = httpx.get(asset["href"], timeout=60)  # signed: no Authorization
    assert r.status_code == 200, r.text
    (tmp_path / "result.tif").write_bytes(r.content)
    assert np.isfinite(read(tmp_path / "result.tif")).sum() > 1000
    # the client downloads the same way
    job.get_results().download_files(tmp_path / "client")
    assert [p.suffix for p in (tmp_path / "client").glob("*.tif")] == [".tif"]
    (canonical,) = [lk["href"] for lk in results["links"] if lk["rel"] == "canonical"]
    item = httpx.get(canonical, timeout=60).json()
    assert all(u.startswith(f"{api}/") for u in ours(hrefs(item)))
    (xyz,) = [lk["href"] for lk in results["links"] if lk["rel"] == "xyz"]
    tile = httpx.get(xyz.format(z=15, x=17416, y=11592), timeout=60)
    assert tile.status_code == 200 and tile.headers["content-type"] == "image/png"


def test_xyz_service_through_the_proxy(public: str) -> None:
    api = f"{public}/openeo/1.2"
    con = openeo.connect(public).authenticate_basic("demo", "demo")
    service = readme_cube(con).tiled_viewing_service(
        type="XYZ", title="NDVI", configuration={"rescale": [0, 1]})
    meta = service.describe_service()
    assert meta["url"].startswith(f"{api}/services/xyz/{service.service_id}/tiles/")
    tile = httpx.get(meta["url"].format(z=15, x=17416, y=11592), timeout=120)
    assert tile.status_code == 200 and tile.headers["content-type"] == "image/png"
    r = con.post("/services", json={"type": "XYZ", "process": {
        "process_graph": readme_cube(con).flat_graph()}}, expected_status=201)
    assert r.headers["Location"] == f"{api}/services/{r.headers['OpenEO-Identifier']}"
    service.delete_service()


def test_forged_host_never_reaches_signed_links(public: str, backend: ServerProcess,
                                               finished_job) -> None:
    con, job = finished_job
    token = {"Authorization": f"Bearer {con.auth.bearer}"}
    forged = {**token, "Host": EVIL, "X-Forwarded-Host": EVIL, "X-Forwarded-Proto": "https",
              "X-Forwarded-Prefix": "/phish"}
    # Straight to the server, from an address that is not a trusted proxy.
    direct = httpx.get(f"{backend.api}jobs/{job.job_id}/results", headers=forged,
                       timeout=60).json()
    signed = [u for u in hrefs(direct) if "signature=" in u]
    assert signed and all(u.startswith(backend.api) for u in signed), signed
    text = str(direct)
    assert EVIL not in text and "phish" not in text
    assert not [u for u in hrefs(direct) if u.startswith(f"https://{backend.url[7:]}")]
    # The untrusted client's X-Forwarded-* are ignored for every link, not only signed ones.
    caps = httpx.get(backend.api, headers=forged, timeout=60).json()
    assert "phish" not in str(caps)
    assert not [u for u in hrefs(caps) if u.startswith(f"https://{EVIL}")]
    # Through the proxy: the client's Host is the proxy's business; what terracube trusts is
    # the X-Forwarded-Host nginx sets.
    proxied = httpx.get(f"{public}/openeo/1.2/jobs/{job.job_id}/results", headers=forged,
                        timeout=60).json()
    signed = [u for u in hrefs(proxied) if "signature=" in u]
    assert signed and all(u.startswith(f"{public}/openeo/1.2/") for u in signed), signed
    assert EVIL not in str(proxied) and "phish" not in str(proxied)
    # A job's results also through the server's own address (nothing forged): unchanged.
    plain = httpx.get(f"{backend.api}jobs/{job.job_id}/results", headers=token,
                      timeout=60).json()
    assert all(u.startswith(backend.api) for u in ours(hrefs(plain)))
