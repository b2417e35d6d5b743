"""Concurrent and stalled uploads against a real `terracube serve` (issue 16, probe item 5):
the quota is reserved atomically, so simultaneous uploads can neither exceed it together nor
refuse each other wrongly, and an upload that stops sending is ended and its reservation
released."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from tests.support.data import data_dir_with_samples
from tests.support.processes import ServerProcess

QUOTA = 8 * 1024 * 1024  # 8 MiB
IDLE = 2  # seconds an upload may stall


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory,
           sample_data_dir: Path) -> Iterator[ServerProcess]:
    data = data_dir_with_samples(tmp_path_factory.mktemp("uploads"), sample_data_dir)
    srv = ServerProcess(data, {"TERRACUBE_STORAGE_QUOTA_BYTES": str(QUOTA),
                               "TERRACUBE_UPLOAD_IDLE_TIMEOUT_SECONDS": str(IDLE),
                               "TERRACUBE_WORKERS": "0"})
    srv.data_dir = data  # type: ignore[attr-defined]
    yield srv
    srv.stop()


@pytest.fixture(autouse=True)
def empty_workspace(server: ServerProcess) -> Iterator[None]:
    yield
    auth = token(server)
    for path in stored(server, auth):
        httpx.delete(f"{server.api}files/{path}", headers=auth, timeout=60)


def token(server: ServerProcess) -> dict[str, str]:
    r = httpx.get(server.api + "credentials/basic", auth=("demo", "demo"), timeout=60)
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer basic//{r.json()['access_token']}"}


def put_all(server: ServerProcess, auth: dict, sizes: list[int]) -> list[httpx.Response]:
    """PUT one file per size at the same time (each its own connection)."""
    def put(i: int) -> httpx.Response:
        body = os.urandom(sizes[i])
        with httpx.Client(timeout=120) as client:
            return client.put(f"{server.api}files/f{i}.bin", content=body, headers=auth)

    with ThreadPoolExecutor(len(sizes)) as pool:
        return list(pool.map(put, range(len(sizes))))


def stored(server: ServerProcess, auth: dict) -> dict[str, int]:
    files = httpx.get(server.api + "files", headers=auth, timeout=60).json()["files"]
    return {f["path"]: f["size"] for f in files}


def workspace_bytes(server: ServerProcess) -> int:
    root = server.data_dir / "workspaces" / "demo"
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) if root.exists() else 0


def test_concurrent_uploads_never_exceed_the_quota(server):
    auth = token(server)
    size = 2_500_000  # 8 of them: 20 MB against 8 MiB; exactly 3 fit
    responses = put_all(server, auth, [size] * 8)
    accepted = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code != 200]
    assert len(accepted) == 3, [r.status_code for r in responses]
    assert all(r.status_code == 400 and r.json()["code"] == "StorageQuotaExceeded"
               for r in refused), [r.text for r in refused]
    files = stored(server, auth)
    assert sorted(files.values()) == [size] * 3
    assert workspace_bytes(server) == 3 * size <= QUOTA  # no temporary file left over


def test_two_uploads_that_fit_only_one_at_a_time_do_not_both_fail(server):
    auth = token(server)
    size = 5 * 1024 * 1024  # 2 × 5 MiB against 8 MiB: one fits
    responses = put_all(server, auth, [size, size])
    assert sorted(r.status_code for r in responses) == [200, 400], \
        [r.text for r in responses]
    assert list(stored(server, auth).values()) == [size]


def test_a_stalled_upload_times_out_and_releases_its_reservation(server):
    auth = token(server)
    announced = 7 * 1024 * 1024
    host, port = "127.0.0.1", server.port
    with socket.create_connection((host, port), timeout=60) as sock:
        head = (f"PUT /openeo/1.2/files/stalled.bin HTTP/1.1\r\nHost: {host}\r\n"
                f"Authorization: {auth['Authorization']}\r\n"
                f"Content-Type: application/octet-stream\r\n"
                f"Content-Length: {announced}\r\n\r\n")
        sock.sendall(head.encode() + b"x" * (1024 * 1024))  # 1 of 7 MiB, then nothing
        time.sleep(0.5)
        # Meanwhile the announced 7 MiB are reserved: 2 MiB more do not fit.
        r = httpx.put(server.api + "files/other.bin", content=b"y" * (2 * 1024 * 1024),
                      headers=auth, timeout=60)
        assert r.status_code == 400 and r.json()["code"] == "StorageQuotaExceeded", r.text
        started = time.monotonic()
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
        waited = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b'"RequestTimeout"' in answer
    assert waited < IDLE + 30
    # The reservation is gone: the whole quota can be used now, and nothing was stored.
    r = httpx.put(server.api + "files/full.bin", content=b"z" * QUOTA, headers=auth,
                  timeout=60)
    assert r.status_code == 200, r.text
    assert stored(server, auth) == {"full.bin": QUOTA}
