"""The root path and X-Forwarded-* headers through the in-process app (api/proxy.py): links
under TERRACUBE_ROOT_PATH with and without the prefix in the request, headers of trusted
proxies honoured and of anyone else ignored, bad settings refused. The real reverse proxy
(nginx) is in tests/e2e/test_behind_proxy.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from terracube.api.app import create_app
from terracube.settings import Settings

API = "/openeo/1.2"
FORWARDED = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "eo.example.org",
             "X-Forwarded-Prefix": "/maps/", "X-Forwarded-For": "203.0.113.7, 10.0.0.1"}


def client_for(tmp_path: Path, **settings: str) -> TestClient:
    return TestClient(create_app(Settings(data_dir=tmp_path, **settings)))


def links_of(client: TestClient, path: str = f"{API}/", **headers: str) -> list[str]:
    r = client.get(path, headers=headers)
    assert r.status_code == 200, r.text
    return [lk["href"] for lk in r.json()["links"] if API in lk["href"]]


def test_root_path_with_and_without_the_prefix_in_the_request(tmp_path: Path) -> None:
    client = client_for(tmp_path, root_path="sub/path/")
    for path in (f"{API}/", f"/sub/path{API}/"):  # a proxy that strips it, one that does not
        links = links_of(client, path)
        assert links and all(u.startswith(f"http://testserver/sub/path{API}/") for u in links)
    versions = client.get("/.well-known/openeo").json()["versions"]
    assert versions[0]["url"] == f"http://testserver/sub/path{API}/"
    # merged slashes and the upload path below the prefix still work
    assert client.get(f"/sub/path{API}//collections").status_code == 200
    assert client.get(f"{API}/nope").status_code == 404


def test_forwarded_headers_only_from_trusted_proxies(tmp_path: Path) -> None:
    # TestClient's peer is "testclient", not an address: not trusted ...
    client = client_for(tmp_path, forwarded_allow_ips="10.0.0.0/8")
    assert all(u.startswith(f"http://testserver{API}/")
               for u in links_of(client, **FORWARDED))
    # ... unless every peer is trusted.
    trusted = client_for(tmp_path / "2", forwarded_allow_ips="*")
    links = links_of(trusted, **FORWARDED)
    assert links and all(u.startswith(f"https://eo.example.org/maps{API}/") for u in links)
    # an empty X-Forwarded-Prefix from a trusted proxy: no prefix (the setting's is replaced)
    rooted = client_for(tmp_path / "3", forwarded_allow_ips="*", root_path="/x")
    assert links_of(rooted, **{**FORWARDED, "X-Forwarded-Prefix": ""})[0].startswith(
        f"https://eo.example.org{API}/")


def test_public_url_wins(tmp_path: Path) -> None:
    client = client_for(tmp_path, public_url="https://eo.example.org/openeo-proxy/",
                        forwarded_allow_ips="*")
    links = links_of(client, **FORWARDED)
    assert links and all(u.startswith(f"https://eo.example.org/openeo-proxy{API}/")
                         for u in links)


@pytest.mark.parametrize("value", ["localhost", "10.0.0.0/40", "*, nope"])
def test_bad_trusted_proxies_are_refused(tmp_path: Path, value: str) -> None:
    with pytest.raises(ValueError, match="forwarded_allow_ips"):
        Settings(data_dir=tmp_path, forwarded_allow_ips=value)
