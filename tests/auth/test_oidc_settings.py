"""OpenID Connect provider settings (TERRACUBE_OIDC_PROVIDERS, TERRACUBE_OIDC_PROVIDERS_FILE)
and the API without providers (the sign-in itself: tests/auth/test_oidc_provider.py)."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from tests.support.fakes import EmptyCatalog
from tests.support.processes import free_port

from terracube.api.app import create_app
from terracube.engine.registry import ProcessRegistry
from terracube.settings import Settings

API = "/openeo/1.2"
CDSE_LIKE = {
    "id": "CDSE", "issuer": "https://identity.example.eu/auth/realms/CDSE/",
    "title": "Copernicus Data Space Ecosystem",
    "scopes": ["openid", "email", "profile"],
    "default_clients": [{"id": "sh-public", "grant_types": [
        "authorization_code+pkce", "urn:ietf:params:oauth:grant-type:device_code+pkce",
        "refresh_token"]}],
}


def test_providers_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("TERRACUBE_OIDC_PROVIDERS", json.dumps([CDSE_LIKE]))
    settings = Settings(data_dir=tmp_path)
    (provider,) = settings.oidc_providers
    assert provider.issuer == "https://identity.example.eu/auth/realms/CDSE"  # no trailing /
    assert provider.default_clients[0].grant_types[1].endswith("device_code+pkce")
    assert provider.audience == [] and provider.userinfo


def test_providers_from_a_file(tmp_path):
    path = tmp_path / "providers.json"
    path.write_text(json.dumps({"providers": [CDSE_LIKE]}))  # as GET /credentials/oidc answers
    assert Settings(data_dir=tmp_path, oidc_providers_file=path).oidc_providers[0].id == "CDSE"
    path.write_text("[{\"id\": \"x\"}]")
    with pytest.raises(ValidationError, match="issuer"):
        Settings(data_dir=tmp_path, oidc_providers_file=path)


@pytest.mark.parametrize("change, message", [
    ({"scopes": ["email"]}, "openid"),
    ({"id": "with-dash"}, "pattern"),
    ({"issuer": "ftp://x"}, "http"),
    ({"default_clients": [{"id": "c", "grant_types": ["password"]}]}, "grant_types"),
])
def test_invalid_providers_are_refused(tmp_path, change, message):
    with pytest.raises(ValidationError, match=message):
        Settings(data_dir=tmp_path, oidc_providers=[{**CDSE_LIKE, **change}])


def test_provider_ids_are_unique(tmp_path):
    with pytest.raises(ValidationError, match="unique"):
        Settings(data_dir=tmp_path, oidc_providers=[CDSE_LIKE, CDSE_LIKE])


@pytest.fixture(scope="module")
def registry() -> ProcessRegistry:
    return ProcessRegistry()


def test_without_providers_the_endpoint_is_not_offered(tmp_path, registry):
    # The API requires at least one provider in the list: no list at all, and no OIDC tokens.
    app = create_app(Settings(data_dir=tmp_path), catalog=EmptyCatalog(), registry=registry)
    client = TestClient(app)
    assert client.get(f"{API}/credentials/oidc").status_code == 404
    paths = [e["path"] for e in client.get(f"{API}/").json()["endpoints"]]
    assert "/credentials/oidc" not in paths and "/credentials/basic" in paths
    r = client.get(f"{API}/me", headers={"Authorization": "Bearer oidc/CDSE/abc"})
    assert (r.status_code, r.json()["code"]) == (403, "AuthenticationSchemeInvalid")


def test_with_providers_the_list_follows_the_spec(tmp_path, registry):
    app = create_app(Settings(data_dir=tmp_path, oidc_providers=[CDSE_LIKE]),
                     catalog=EmptyCatalog(), registry=registry)
    client = TestClient(app)
    body = client.get(f"{API}/credentials/oidc").json()
    assert body == {"providers": [{
        "id": "CDSE", "issuer": "https://identity.example.eu/auth/realms/CDSE",
        "title": "Copernicus Data Space Ecosystem", "scopes": ["openid", "email", "profile"],
        "default_clients": CDSE_LIKE["default_clients"]}]}
    paths = [e["path"] for e in client.get(f"{API}/").json()["endpoints"]]
    assert "/credentials/oidc" in paths


def test_a_provider_that_does_not_answer_is_503(tmp_path, registry):
    down = {**CDSE_LIKE, "issuer": f"http://127.0.0.1:{free_port()}"}  # nobody listens
    app = create_app(Settings(data_dir=tmp_path, oidc_providers=[down]),
                     catalog=EmptyCatalog(), registry=registry)
    client = TestClient(app)
    header = "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0"  # {"alg":"RS256","kid":"k1"}
    r = client.get(f"{API}/me", headers={"Authorization": f"Bearer oidc/CDSE/{header}.e30.c2ln"})
    assert (r.status_code, r.json()["code"]) == (503, "OidcProviderUnavailable")
    assert "did not answer" in r.json()["message"]
