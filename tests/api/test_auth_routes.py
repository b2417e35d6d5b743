"""openEO basic authentication over HTTP: /credentials/basic, Bearer tokens, /me."""

from __future__ import annotations

import base64
import json

import pytest
from fastapi.testclient import TestClient
from tests.support.fakes import EmptyCatalog

from terracube.api.app import create_app
from terracube.engine.registry import ProcessRegistry
from terracube.settings import Settings

API = "/openeo/1.2"


@pytest.fixture(scope="module")
def error_codes(shared_dir) -> dict[str, dict]:
    return json.loads((shared_dir / "openeo-api" / "errors.json").read_text())


def make_client(tmp_path, **settings) -> TestClient:
    app = create_app(Settings(data_dir=tmp_path, **settings), catalog=EmptyCatalog(),
                     registry=ProcessRegistry())
    app.state.users.add("alice", "wonderland")
    app.state.users.add("bob", "builder")
    return TestClient(app)


@pytest.fixture
def client(tmp_path) -> TestClient:
    return make_client(tmp_path)


def login(client: TestClient, name: str, password: str) -> dict[str, str]:
    r = client.get(f"{API}/credentials/basic", auth=(name, password))
    assert r.status_code == 200, r.text
    assert set(r.json()) == {"access_token"}
    token = r.json()["access_token"]
    assert not token.startswith("basic//")
    return {"Authorization": f"Bearer basic//{token}"}


def check_error(response, code: str, error_codes: dict) -> None:
    assert response.json()["code"] == code, response.text
    assert response.status_code == error_codes[code]["http"]


def test_two_users_get_their_own_identity(client):
    alice, bob = login(client, "alice", "wonderland"), login(client, "bob", "builder")
    assert alice != bob
    me = client.get(f"{API}/me", headers=alice).json()
    assert me["user_id"] == "alice" and me["name"] == "alice"
    # No budget: the key is absent (the API schema allows no null there); the storage of the
    # workspace is described in tests/api/test_files.py.
    assert "budget" not in me
    assert set(me["storage"]) == {"free", "quota"}
    assert isinstance(me["links"], list)
    assert client.get(f"{API}/me", headers=bob).json()["user_id"] == "bob"


def test_wrong_password(client, error_codes):
    r = client.get(f"{API}/credentials/basic", auth=("alice", "builder"))
    check_error(r, "CredentialsInvalid", error_codes)


def test_unknown_user_looks_like_a_wrong_password(client, error_codes):
    r = client.get(f"{API}/credentials/basic", auth=("mallory", "wonderland"))
    check_error(r, "CredentialsInvalid", error_codes)
    assert "wonderland" not in r.text


def test_credentials_without_authorization(client, error_codes):
    r = client.get(f"{API}/credentials/basic")
    check_error(r, "AuthenticationRequired", error_codes)
    assert r.headers["www-authenticate"].startswith("Basic")


def test_credentials_with_bearer_scheme(client, error_codes):
    r = client.get(f"{API}/credentials/basic", headers={"Authorization": "Bearer abc"})
    check_error(r, "AuthenticationSchemeInvalid", error_codes)


@pytest.mark.parametrize("raw", ["not base64!", base64.b64encode(b"no-colon").decode(),
                                 base64.b64encode(b"\xff\xfe:x").decode()])
def test_malformed_basic_credentials(client, error_codes, raw):
    r = client.get(f"{API}/credentials/basic", headers={"Authorization": f"Basic {raw}"})
    check_error(r, "CredentialsInvalid", error_codes)


def test_password_with_colon_and_unicode(client):
    client.app.state.users.add("carol", "pä:ss wörd")
    assert client.get(f"{API}/me", headers=login(client, "carol", "pä:ss wörd")).status_code == 200


def test_missing_authorization(client, error_codes):
    r = client.get(f"{API}/me")
    check_error(r, "AuthenticationRequired", error_codes)
    assert r.headers["www-authenticate"] == "Bearer"
    check_error(client.post(f"{API}/result", json={}), "AuthenticationRequired", error_codes)


@pytest.mark.parametrize("header", ["Basic YWxpY2U6d29uZGVybGFuZA==", "Bearer", "Token abc"])
def test_not_a_bearer_token(client, error_codes, header):
    r = client.get(f"{API}/me", headers={"Authorization": header})
    check_error(r, "AuthenticationRequired", error_codes)


@pytest.mark.parametrize("token", ["oidc/egi/abc", "abc", "basic/abc"])
def test_bearer_token_of_another_scheme(client, error_codes, token):
    r = client.get(f"{API}/me", headers={"Authorization": f"Bearer {token}"})
    check_error(r, "AuthenticationSchemeInvalid", error_codes)


def test_unknown_token(client, error_codes):
    r = client.get(f"{API}/me", headers={"Authorization": "Bearer basic//made-up"})
    check_error(r, "TokenInvalid", error_codes)
    r = client.get(f"{API}/me", headers={"Authorization": "Bearer basic//"})
    check_error(r, "TokenInvalid", error_codes)


def test_scheme_names_are_case_insensitive(client):
    token = login(client, "alice", "wonderland")["Authorization"].split(" ", 1)[1]
    assert client.get(f"{API}/me", headers={"Authorization": f"bearer {token}"}).status_code == 200


def test_expired_token(tmp_path, error_codes):
    client = make_client(tmp_path, token_ttl_seconds=0)
    r = client.get(f"{API}/me", headers=login(client, "alice", "wonderland"))
    check_error(r, "TokenInvalid", error_codes)
    assert "expired" in r.json()["message"]


def test_password_change_logs_out(client, error_codes):
    headers = login(client, "alice", "wonderland")
    client.app.state.users.set_password("alice", "looking-glass")
    check_error(client.get(f"{API}/me", headers=headers), "TokenInvalid", error_codes)
    assert client.get(f"{API}/me", headers=login(client, "alice", "looking-glass")).json()[
        "user_id"] == "alice"


def test_removed_user_is_logged_out(client, error_codes):
    headers = login(client, "bob", "builder")
    client.app.state.users.remove("bob")
    check_error(client.get(f"{API}/me", headers=headers), "TokenInvalid", error_codes)


def test_public_endpoints_need_no_token(client):
    assert client.get(f"{API}/").status_code == 200
    assert client.get(f"{API}/collections").status_code == 200


def test_validation_checks_a_token_if_one_is_sent(client, error_codes):
    assert client.post(f"{API}/validation", json={}).status_code == 200
    r = client.post(f"{API}/validation", json={},
                    headers={"Authorization": "Bearer basic//made-up"})
    check_error(r, "TokenInvalid", error_codes)
