"""GET /files, GET/PUT/DELETE /files/{path} and the storage in GET /me, with two users."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from tests.support.fakes import EmptyCatalog

from terracube.api.app import create_app
from terracube.engine.registry import ProcessRegistry
from terracube.settings import Settings
from terracube.workspace.files import UPLOAD_PREFIX

API = "/openeo/1.2"
QUOTA = 1000


@pytest.fixture
def data_dir(tmp_path):
    return tmp_path / "data"


@pytest.fixture
def client(data_dir) -> TestClient:
    app = create_app(Settings(data_dir=data_dir, storage_quota_bytes=QUOTA),
                     catalog=EmptyCatalog(), registry=ProcessRegistry())
    app.state.users.add("alice", "wonderland")
    app.state.users.add("bob", "builder")
    return TestClient(app)




def put(client, headers, path: str, content) -> object:
    return client.put(f"{API}/files/{path}", content=content,
                      headers={**headers, "Content-Type": "application/octet-stream"})


def no_temporary_files(data_dir) -> bool:
    return not list((data_dir / "workspaces").rglob(f"{UPLOAD_PREFIX}*"))


def test_upload_list_download_delete(client, alice, data_dir):
    r = put(client, alice, "borders/europe.geojson", b'{"type": "FeatureCollection"}')
    assert r.status_code == 200, r.text
    meta = r.json()
    assert meta["path"] == "borders/europe.geojson" and meta["size"] == 29
    assert meta["modified"].endswith("Z") and "T" in meta["modified"]
    assert (data_dir / "workspaces" / "alice" / "borders" / "europe.geojson").is_file()

    r = client.get(f"{API}/files", headers=alice)
    assert r.status_code == 200
    assert r.json() == {"files": [meta], "links": []}

    r = client.get(f"{API}/files/borders/europe.geojson", headers=alice)
    assert r.status_code == 200
    assert r.content == b'{"type": "FeatureCollection"}'
    assert r.headers["content-type"] == "application/octet-stream"
    assert "europe.geojson" in r.headers["content-disposition"]

    r = client.delete(f"{API}/files/borders/europe.geojson", headers=alice)
    assert r.status_code == 204 and r.content == b""
    assert client.get(f"{API}/files", headers=alice).json()["files"] == []
    assert not (data_dir / "workspaces" / "alice" / "borders").exists()  # empty folder gone


def test_special_characters_are_url_encoded(client, alice):
    # the API's own example: europe/österreich/münster.shp
    r = put(client, alice, "europe/%C3%B6sterreich/m%C3%BCnster.shp", b"shp")
    assert r.status_code == 200 and r.json()["path"] == "europe/österreich/münster.shp"
    assert client.get(f"{API}/files/europe/%C3%B6sterreich/m%C3%BCnster.shp",
                      headers=alice).content == b"shp"
    r = put(client, alice, "with%20space.txt", b"s")
    assert r.json()["path"] == "with space.txt"


def test_replace_a_file(client, alice):
    put(client, alice, "f.txt", b"first")
    r = put(client, alice, "f.txt", b"second version")
    assert r.json()["size"] == 14
    assert client.get(f"{API}/files/f.txt", headers=alice).content == b"second version"
    assert len(client.get(f"{API}/files", headers=alice).json()["files"]) == 1


def test_range_requests(client, alice):
    put(client, alice, "f.bin", bytes(range(100)))
    r = client.get(f"{API}/files/f.bin", headers={**alice, "Range": "bytes=10-19"})
    assert r.status_code == 206 and r.content == bytes(range(10, 20))


def test_quota_exceeded(client, alice, data_dir):
    put(client, alice, "keep.bin", b"k" * 600)
    r = put(client, alice, "big.bin", b"x" * 500)
    assert r.status_code == 400
    assert r.json()["code"] == "StorageQuotaExceeded"
    assert no_temporary_files(data_dir)

    def chunks():  # no Content-Length: refused while streaming
        for _ in range(10):
            yield b"y" * 100

    r = client.put(f"{API}/files/streamed.bin", content=chunks(), headers=alice)
    assert r.status_code == 400 and r.json()["code"] == "StorageQuotaExceeded"
    assert no_temporary_files(data_dir)
    assert [f["path"] for f in client.get(f"{API}/files", headers=alice).json()["files"]] == [
        "keep.bin"]
    assert put(client, alice, "fits.bin", b"x" * 400).status_code == 200


def test_me_shows_storage(client, alice, bob):
    r = client.get(f"{API}/me", headers=alice)
    assert r.status_code == 200
    assert r.json()["storage"] == {"free": QUOTA, "quota": QUOTA}
    assert "budget" not in r.json()
    put(client, alice, "f.bin", b"x" * 123)
    assert client.get(f"{API}/me", headers=alice).json()["storage"] == {
        "free": QUOTA - 123, "quota": QUOTA}
    assert client.get(f"{API}/me", headers=bob).json()["storage"]["free"] == QUOTA


@pytest.mark.parametrize("path", [
    "%2E%2E/bob/secret.txt",  # '..', encoded so that the HTTP client leaves it alone
    "a/%2E%2E/%2E%2E/bob/secret.txt",
    "%2Fetc%2Fpasswd",  # absolute
    "%2E/x.txt",
    "a%5Cb.txt",  # backslash
    "c%3A.txt",  # colon
    "a//b.txt",
    f"{UPLOAD_PREFIX}x.part",
])
def test_paths_escaping_the_workspace(client, alice, bob, path, data_dir):
    put(client, bob, "secret.txt", b"bob's secret")
    for method in ("GET", "PUT", "DELETE"):
        r = client.request(method, f"{API}/files/{path}", headers=alice,
                           content=b"evil" if method == "PUT" else None)
        assert r.status_code == 400, (method, path, r.text)
        assert r.json()["code"] == "FilePathInvalid"
    assert (data_dir / "workspaces" / "bob" / "secret.txt").read_bytes() == b"bob's secret"
    assert not (data_dir / "etc").exists()


def test_symlink_out_of_the_workspace(client, alice, data_dir, tmp_path):
    put(client, alice, "f.txt", b"1")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("s")
    (data_dir / "workspaces" / "alice" / "escape").symlink_to(outside)
    r = client.get(f"{API}/files/escape/secret", headers=alice)
    assert r.status_code == 400 and r.json()["code"] == "FilePathInvalid"
    assert put(client, alice, "escape/new", b"x").json()["code"] == "FilePathInvalid"
    assert not (outside / "new").exists()
    assert [f["path"] for f in client.get(f"{API}/files", headers=alice).json()["files"]] == [
        "f.txt"]


def test_folders(client, alice):
    put(client, alice, "dir/f.txt", b"1")
    r = client.get(f"{API}/files/dir", headers=alice)
    assert r.status_code == 400 and r.json()["code"] == "FileOperationUnsupported"
    r = client.delete(f"{API}/files/dir", headers=alice)
    assert r.status_code == 400 and r.json()["code"] == "FileOperationUnsupported"
    r = put(client, alice, "dir", b"x")
    assert r.status_code == 400 and r.json()["code"] == "FilePathInvalid"
    r = put(client, alice, "dir/f.txt/g.txt", b"x")
    assert r.status_code == 400 and r.json()["code"] == "FilePathInvalid"
    assert client.get(f"{API}/files/dir/f.txt", headers=alice).content == b"1"


def test_missing_files(client, alice):
    for method in ("GET", "DELETE"):
        r = client.request(method, f"{API}/files/nope.txt", headers=alice)
        assert r.status_code == 404 and r.json()["code"] == "FileNotFound"


def test_users_are_isolated(client, alice, bob, data_dir):
    put(client, alice, "private/notes.txt", b"alice only")
    assert client.get(f"{API}/files", headers=bob).json()["files"] == []
    r = client.get(f"{API}/files/private/notes.txt", headers=bob)
    assert r.status_code == 404 and r.json()["code"] == "FileNotFound"
    r = client.delete(f"{API}/files/private/notes.txt", headers=bob)
    assert r.status_code == 404
    # bob writing the same path writes his own file
    assert put(client, bob, "private/notes.txt", b"bob's").status_code == 200
    assert client.get(f"{API}/files/private/notes.txt", headers=alice).content == b"alice only"
    assert client.get(f"{API}/files/private/notes.txt", headers=bob).content == b"bob's"
    client.delete(f"{API}/files/private/notes.txt", headers=bob)
    assert client.get(f"{API}/files/private/notes.txt", headers=alice).status_code == 200


def test_authentication_is_required(client):
    for method, path in (("GET", "/files"), ("GET", "/files/a"), ("PUT", "/files/a"),
                         ("DELETE", "/files/a"), ("GET", "/me")):
        r = client.request(method, API + path)
        assert r.status_code == 401, (method, path)


def test_list_pagination(client, alice):
    for name in "abcde":
        put(client, alice, f"{name}.txt", b"1")
    body = client.get(f"{API}/files?limit=3", headers=alice).json()
    assert [f["path"] for f in body["files"]] == ["a.txt", "b.txt", "c.txt"]
    (nxt,) = [link for link in body["links"] if link["rel"] == "next"]
    page = client.get(nxt["href"], headers=alice).json()
    assert [f["path"] for f in page["files"]] == ["d.txt", "e.txt"]
    assert not [link for link in page["links"] if link["rel"] == "next"]
