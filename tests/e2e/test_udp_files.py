"""User-defined processes and the file workspace on a real server, with the openeo client."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
import rasterio
import requests
from tests.support.processes import ServerProcess

openeo = pytest.importorskip("openeo")
from openeo.api.process import Parameter  # noqa: E402

SMALL = {"west": 680000, "south": 5151500, "east": 680100, "north": 5151600, "crs": "EPSG:32632"}
JUNE = ["2022-06-01", "2022-07-01"]
MiB = 1024 * 1024


def add_user(data_dir: Path, name: str, password: str, env: dict | None = None) -> None:
    subprocess.run([sys.executable, "-m", "terracube.cli", "users", "add", name,
                    "--data-dir", str(data_dir)], input=f"{password}\n", text=True, check=True,
                   capture_output=True, env={**os.environ, **(env or {})})


def token(server, name: str, password: str) -> dict[str, str]:
    r = requests.get(f"{server.api}credentials/basic", auth=(name, password), timeout=30)
    r.raise_for_status()
    return {"Authorization": f"Bearer basic//{r.json()['access_token']}"}


@pytest.fixture(scope="module")
def second_user(server, sample_data_dir) -> tuple[str, str]:
    name = f"eve_{uuid.uuid4().hex[:8]}"
    add_user(sample_data_dir, name, "eve-password")
    return name, "eve-password"


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


@pytest.mark.e2e
def test_udp_with_a_default_through_the_client(con):
    pid = unique("scale")
    x = Parameter.number("x", description="the value")
    factor = Parameter.number("factor", description="the factor", default=10)
    graph = {"m": {"process_id": "multiply", "arguments": {
        "x": {"from_parameter": "x"}, "y": {"from_parameter": "factor"}}, "result": True}}
    udp = con.save_user_defined_process(pid, graph, parameters=[x, factor],
                                        summary="x times factor")
    try:
        assert pid in [p["id"] for p in con.list_user_defined_processes()]
        described = udp.describe()
        assert described["id"] == pid and described["process_graph"] == graph
        assert described["parameters"][1]["default"] == 10
        assert con.execute({"c": {"process_id": pid, "arguments": {"x": 4},
                                  "result": True}}) == 40
        assert con.execute({"c": {"process_id": pid, "arguments": {"x": 4, "factor": 0.5},
                                  "result": True}}) == 2
    finally:
        udp.delete()
    assert pid not in [p["id"] for p in con.list_user_defined_processes()]


@pytest.mark.e2e
def test_udp_over_a_data_cube_gives_the_same_result_as_inline(con, tmp_path):
    pid = unique("clear_ndvi")
    data = Parameter.raster_cube("data")
    s2 = con.load_collection("SENTINEL2_L2A", spatial_extent=SMALL, temporal_extent=JUNE,
                             bands=["B04", "B08", "SCL"])

    def clear_ndvi(cube):
        scl = cube.band("SCL")
        return cube.ndvi(nir="B08", red="B04").mask((scl == 3) | (scl == 8) | (scl == 9))

    # The UDP body: the inline graph with load_collection replaced by the parameter `data`.
    template = clear_ndvi(s2).flat_graph()
    (loader,) = [nid for nid, n in template.items() if n["process_id"] == "load_collection"]
    del template[loader]
    template = json.loads(json.dumps(template).replace(
        json.dumps({"from_node": loader}), json.dumps({"from_parameter": "data"})))
    con.save_user_defined_process(pid, template, parameters=[data])
    try:
        via_udp = con.datacube_from_process(pid, data=s2).reduce_dimension(
            dimension="t", reducer="max")
        inline = clear_ndvi(s2).reduce_dimension(dimension="t", reducer="max")
        via_udp.download(tmp_path / "udp.tif")
        inline.download(tmp_path / "inline.tif")
        with rasterio.open(tmp_path / "udp.tif") as a, rasterio.open(tmp_path / "inline.tif") as b:
            got, want = a.read(1), b.read(1)
            assert a.transform == b.transform and a.crs == b.crs
        assert got.shape == (10, 10) and np.isfinite(want).any()
        np.testing.assert_array_equal(got, want)
    finally:
        con.user_defined_process(pid).delete()


@pytest.mark.e2e
def test_recursive_udp_is_refused_cleanly(server, con):
    headers = token(server, "demo", "demo")
    pid = unique("loop")
    body = {"process_graph": {"r": {"process_id": pid, "arguments": {}, "result": True}}}
    r = requests.put(f"{server.api}process_graphs/{pid}", json=body, headers=headers,
                     timeout=30)
    assert r.status_code == 400 and r.json()["code"] == "ProcessGraphInvalid"
    assert "calls itself" in r.json()["message"]


@pytest.mark.e2e
def test_files_through_the_client(con, tmp_path):
    folder = unique("client")
    local = tmp_path / "in.txt"
    local.write_bytes(b"some bytes\n" * 100)
    uploaded = con.upload_file(local, target=f"{folder}/in.txt")
    try:
        assert str(uploaded.path) == f"{folder}/in.txt"
        listed = {str(f.path): f.metadata for f in con.list_files()}
        assert listed[f"{folder}/in.txt"]["size"] == 1100
        out = con.get_file(f"{folder}/in.txt").download(tmp_path / "out.txt")
        assert out.read_bytes() == local.read_bytes()
    finally:
        con.get_file(f"{folder}/in.txt").delete()
    assert f"{folder}/in.txt" not in {str(f.path) for f in con.list_files()}


def raw_request(server, method: str, path: str, headers: dict, body: bytes | None = None):
    """A request whose path is sent exactly as given (no '..' normalisation)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@pytest.mark.e2e
def test_dot_dot_paths_over_the_wire(server, sample_data_dir):
    headers = token(server, "demo", "demo")
    for path in ("../../terracube.db", "a/../../../terracube.db", "..%2F..%2Fterracube.db",
                 "%2E%2E/%2E%2E/terracube.db", "/etc/passwd"):
        for method in ("GET", "PUT", "DELETE"):
            status, body = raw_request(server, method, f"/openeo/1.2/files/{path}", headers,
                                       b"x" if method == "PUT" else None)
            assert status == 400, (method, path, body)
            assert json.loads(body)["code"] == "FilePathInvalid"
    assert (sample_data_dir / "terracube.db").stat().st_size > 0


@pytest.mark.e2e
def test_two_users_cannot_touch_each_others_data(server, second_user):
    demo = token(server, "demo", "demo")
    eve = token(server, *second_user)
    path = f"{unique('private')}/secret.txt"
    pid = unique("private_udp")
    api = server.api
    assert requests.put(f"{api}files/{path}", data=b"demo only", headers=demo,
                        timeout=30).status_code == 200
    udp = {"process_graph": {"a": {"process_id": "absolute", "arguments": {"x": -1},
                                   "result": True}}}
    assert requests.put(f"{api}process_graphs/{pid}", json=udp, headers=demo,
                        timeout=30).status_code == 200
    try:
        files = requests.get(f"{api}files", headers=eve, timeout=30).json()["files"]
        assert path not in [f["path"] for f in files]
        assert requests.get(f"{api}files/{path}", headers=eve, timeout=30).status_code == 404
        assert requests.delete(f"{api}files/{path}", headers=eve, timeout=30).status_code == 404
        udps = requests.get(f"{api}process_graphs", headers=eve, timeout=30).json()["processes"]
        assert pid not in [p["id"] for p in udps]
        assert requests.get(f"{api}process_graphs/{pid}", headers=eve,
                            timeout=30).status_code == 404
        assert requests.delete(f"{api}process_graphs/{pid}", headers=eve,
                               timeout=30).status_code == 404
        r = requests.post(f"{api}result", json={"process": {"process_graph": {
            "c": {"process_id": pid, "arguments": {}, "result": True}}}}, headers=eve,
            timeout=60)
        assert r.status_code == 400 and r.json()["code"] == "ProcessUnsupported"
        # eve's writes to the same names land in her own workspace and namespace
        assert requests.put(f"{api}files/{path}", data=b"eve's", headers=eve,
                            timeout=30).status_code == 200
        assert requests.get(f"{api}files/{path}", headers=demo, timeout=30).content == \
            b"demo only"
        requests.delete(f"{api}files/{path}", headers=eve, timeout=30)
    finally:
        requests.delete(f"{api}files/{path}", headers=demo, timeout=30)
        requests.delete(f"{api}process_graphs/{pid}", headers=demo, timeout=30)


def peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM")


@pytest.mark.e2e
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_large_upload_is_streamed_not_held_in_memory(server):
    headers = token(server, "demo", "demo")
    path = f"{unique('large')}.bin"
    size = 256 * MiB
    block = bytes(range(256)) * 4096  # 1 MiB

    def body():
        for _ in range(size // len(block)):
            yield block

    before = peak_rss(server.proc.pid)
    r = requests.put(f"{server.api}files/{path}", data=body(), headers=headers, timeout=300)
    try:
        assert r.status_code == 200, r.text
        assert r.json()["size"] == size
        grown = peak_rss(server.proc.pid) - before
        assert grown < 64 * MiB, f"the server's peak memory grew by {grown / MiB:.0f} MiB"
        with requests.get(f"{server.api}files/{path}", headers=headers, stream=True,
                          timeout=300) as download:
            received = sum(len(c) for c in download.iter_content(MiB))
        assert received == size
    finally:
        requests.delete(f"{server.api}files/{path}", headers=headers, timeout=30)


@pytest.fixture(scope="module")
def small_quota_server(sample_data_dir, tmp_path_factory):
    """A second server on the same data with its own database and a 1 MiB quota."""
    db = tmp_path_factory.mktemp("quota-db") / "quota.db"
    env = {"TERRACUBE_DATABASE_URL": f"sqlite:///{db}", "TERRACUBE_DEV_DEFAULT_USER": "false",
           "TERRACUBE_STORAGE_QUOTA_BYTES": str(MiB), "TERRACUBE_WORKERS": "0"}
    name = unique("quota")
    add_user(sample_data_dir, name, "quota-password", env)
    srv = ServerProcess(sample_data_dir, env=env)
    yield srv, name
    srv.stop()
    subprocess.run([sys.executable, "-m", "terracube.cli", "users", "remove", name,
                    "--data-dir", str(sample_data_dir)], check=False, capture_output=True,
                   env={**os.environ, **env})


@pytest.mark.e2e
def test_quota_exceeded_over_the_wire(small_quota_server, sample_data_dir):
    srv, name = small_quota_server
    headers = token(srv, name, "quota-password")
    me = requests.get(f"{srv.api}me", headers=headers, timeout=30).json()
    assert me["storage"] == {"free": MiB, "quota": MiB}

    def body():  # chunked, so the server only finds out while reading
        for _ in range(8):
            yield b"x" * (MiB // 2)

    for data in (body(), b"x" * (2 * MiB)):  # without and with Content-Length
        r = requests.put(f"{srv.api}files/too_big.bin", data=data, headers=headers, timeout=60)
        assert r.status_code == 400 and r.json()["code"] == "StorageQuotaExceeded"
    folder = sample_data_dir / "workspaces" / name
    assert not folder.exists() or list(folder.rglob("*")) == []
    r = requests.put(f"{srv.api}files/fits.bin", data=b"x" * 1000, headers=headers, timeout=30)
    assert r.status_code == 200
    me = requests.get(f"{srv.api}me", headers=headers, timeout=30).json()
    assert me["storage"] == {"free": MiB - 1000, "quota": MiB}
