"""OpenID Connect sign-in against a real provider: node-oidc-provider (npm) started on loopback,
a real `terracube serve` configured with it, and the official `openeo` client.

Two provider processes, two issuers with keys of their own: "main" (access tokens live 300 s)
and "short" (3 s, for expiry and refresh). Both issue JWT access tokens for the server's
audience (the client "opaque-cli" of "main" gets opaque ones, checked at the userinfo endpoint).
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import threading
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin

import httpx
import openeo
import pytest
from openeo.rest import OpenEoApiError
from tests.support.data import data_dir_with_samples
from tests.support.markers import needs_oidc_provider
from tests.support.processes import OidcProviderProcess, ServerProcess

from terracube import errors
from terracube.auth.oidc import OidcVerifier
from terracube.settings import OidcProviderSettings

pytestmark = [
    pytest.mark.e2e,
    needs_oidc_provider,
]

AUDIENCE = "https://terracube.example/openeo"
KEYS_REFETCH_S = 1  # the short provider's keys_refetch_seconds (default 10)
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
CLIENTS = [
    {"client_id": "terracube-cli", "client_secret": "cli-secret",
     "grant_types": ["client_credentials", "password", "refresh_token"]},
    # the public client openEO clients find in default_clients (like CDSE's)
    {"client_id": "openeo-public", "grant_types": [DEVICE_GRANT, "refresh_token"]},
    {"client_id": "opaque-cli", "client_secret": "opaque-secret",
     "grant_types": ["password"], "opaque": True},
]
ADD = {"sum": {"process_id": "add", "arguments": {"x": 3, "y": 4}, "result": True}}


@pytest.fixture(scope="module")
def providers():
    main = OidcProviderProcess(CLIENTS, audience=AUDIENCE, ttl=300)
    try:
        short = OidcProviderProcess(CLIENTS, audience=AUDIENCE, ttl=3)
    except Exception:
        main.stop()
        raise
    running = {"main": main, "short": short}
    yield running
    for process in running.values():  # a test may have restarted one
        process.stop()


def provider_settings(providers) -> list[dict]:
    return [
        {"id": "main", "issuer": providers["main"].issuer, "title": "Main test provider",
         "scopes": ["openid", "profile", "email"], "audience": [AUDIENCE],
         "default_clients": [{"id": "openeo-public",
                              "grant_types": [DEVICE_GRANT, "refresh_token"]}]},
        {"id": "short", "issuer": providers["short"].issuer, "title": "Short-lived tokens",
         "scopes": ["openid", "profile", "email"], "audience": [AUDIENCE],
         "clock_skew_seconds": 0, "keys_refetch_seconds": KEYS_REFETCH_S,
         "default_clients": [{"id": "openeo-public",
                              "grant_types": [DEVICE_GRANT, "refresh_token"]}]},
    ]


@pytest.fixture(scope="module")
def server(providers, tmp_path_factory, sample_data_dir):
    # The session's samples: a data folder without them would be generated at start (slow).
    data_dir = data_dir_with_samples(tmp_path_factory.mktemp("oidc-server"), sample_data_dir)
    srv = ServerProcess(data_dir, {"TERRACUBE_WORKERS": "0", "TERRACUBE_OIDC_PROVIDERS":
                                   json.dumps(provider_settings(providers))}, clean=True)
    yield srv
    srv.stop()


@pytest.fixture(autouse=True)
def _client_files(tmp_path, monkeypatch):
    # The openeo client keeps refresh tokens in the user's data folder: keep ours apart.
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    for name in ("OPENEO_AUTH_PROVIDER_ID", "OPENEO_AUTH_CLIENT_ID", "OPENEO_AUTH_CLIENT_SECRET"):
        monkeypatch.delenv(name, raising=False)


def password_login(server, user: str, provider: str = "main",
                   client_id: str = "terracube-cli",
                   secret: str = "cli-secret") -> openeo.Connection:
    con = openeo.connect(server.api)
    return con.authenticate_oidc_resource_owner_password_credentials(
        username=user, password=f"{user}-password", client_id=client_id, client_secret=secret,
        provider_id=provider)


def bearer(con: openeo.Connection) -> str:
    return con.auth.bearer


def error_of(server, token: str) -> tuple[int, dict]:
    r = httpx.get(f"{server.api}me", headers={"Authorization": f"Bearer {token}"})
    return r.status_code, r.json()


# --- GET /credentials/oidc --------------------------------------------------------------------
def test_providers_are_listed_with_default_clients(server, providers):
    body = httpx.get(f"{server.api}credentials/oidc").json()
    assert [p["id"] for p in body["providers"]] == ["main", "short"]
    main = body["providers"][0]
    assert main["issuer"] == providers["main"].issuer
    assert main["title"] == "Main test provider"
    assert main["scopes"] == ["openid", "profile", "email"]
    assert main["default_clients"] == [{"id": "openeo-public",
                                        "grant_types": [DEVICE_GRANT, "refresh_token"]}]
    endpoints = httpx.get(server.api).json()["endpoints"]
    assert {"path": "/credentials/oidc", "methods": ["GET"]} in endpoints


# --- the official client's flows ----------------------------------------------------------------
def test_client_credentials(server):
    con = openeo.connect(server.api).authenticate_oidc_client_credentials(
        client_id="terracube-cli", client_secret="cli-secret", provider_id="main")
    assert bearer(con).startswith("oidc/main/ey")  # a JWT access token
    me = con.describe_account()
    # a service account: the token's subject is the client id
    assert me["user_id"] == "terracube-cli"
    assert con.execute(ADD) == 7


def test_resource_owner_password_credentials(server):
    con = password_login(server, "alice")
    me = con.describe_account()
    assert me["user_id"] == "alice"
    assert me["name"] == "Alice Example"
    assert me["storage"]["quota"] > 0
    assert con.execute(ADD) == 7


def test_wrong_password_is_refused_by_the_provider(server):
    con = openeo.connect(server.api)
    with pytest.raises(Exception, match="invalid_grant"):
        con.authenticate_oidc_resource_owner_password_credentials(
            username="alice", password="nope", client_id="terracube-cli",
            client_secret="cli-secret", provider_id="main")


class _Forms(HTMLParser):
    """The forms of an HTML page: action, method and the inputs' names and values."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            self.forms.append({"action": a.get("action") or "", "fields": {}})
        elif tag in ("input", "button") and self.forms and a.get("name"):
            self.forms[-1]["fields"].setdefault(a["name"], a.get("value") or "")


def approve_device(verification_url: str, login: str) -> str:
    """Approve a device code as a person would in the browser: confirm the code, sign in,
    grant the consent. Returns the text of the last page."""
    with httpx.Client(follow_redirects=True, timeout=30) as browser:
        page = browser.get(verification_url)
        for _ in range(8):
            parser = _Forms()
            parser.feed(page.text)
            if not parser.forms:
                return page.text
            form = parser.forms[0]
            fields = dict(form["fields"])
            fields.pop("abort", None)  # the other button: only the one clicked is sent
            if "login" in fields:
                fields.update(login=login, password="any")
            page = browser.post(urljoin(str(page.url), form["action"]), data=fields)
            assert page.status_code == 200, page.text[:2000]
    raise AssertionError(f"the device pages did not finish:\n{page.text[:2000]}")


def device_login(server, login: str, provider: str = "main",
                 store_refresh_token: bool = False) -> openeo.Connection:
    """The official client's device flow with the backend's default client, approved by a
    thread that drives the provider's pages like a student's browser."""
    con = openeo.connect(server.api)
    shown: list[str] = []
    approved: list[str] = []

    def display(message: str = "", **_kwargs: object) -> None:
        # the client shows the verification URL once, then its polling progress
        url = re.search(r"https?://\S+user_code=[\w-]+", message)
        if url is None or shown:
            return
        shown.append(message)
        threading.Thread(target=lambda: approved.append(approve_device(url.group(0), login)),
                         daemon=True).start()

    con.authenticate_oidc_device(provider_id=provider, display=display, max_poll_time=90,
                                 store_refresh_token=store_refresh_token)
    assert shown and approved and "Sign-in Success" in approved[0], (shown, approved)
    return con


def test_device_flow_with_the_default_client(server):
    con = device_login(server, "carol")
    assert con.describe_account()["user_id"] == "carol"
    assert con.execute(ADD) == 7


# --- accounts ---------------------------------------------------------------------------------
def test_the_same_person_gets_the_same_account_and_workspace(server, tmp_path):
    first = password_login(server, "bob")
    note = tmp_path / "note.txt"
    note.write_text("kept across sign-ins")
    first.upload_file(note, "notes/note.txt")
    again = device_login(server, "bob")  # another flow, another client, the same person
    assert again.describe_account()["user_id"] == "bob"
    assert [str(f.path) for f in again.list_files()] == ["notes/note.txt"]
    # an opaque token of the same provider (checked at its userinfo endpoint): the same person
    opaque = password_login(server, "bob", client_id="opaque-cli", secret="opaque-secret")
    assert not bearer(opaque).startswith("oidc/main/ey")
    assert opaque.describe_account()["user_id"] == "bob"
    # an account of OpenID Connect has no password: basic login is refused
    r = httpx.get(f"{server.api}credentials/basic", auth=("bob", ""))
    assert (r.status_code, r.json()["code"]) == (403, "CredentialsInvalid")


def test_a_name_of_a_basic_account_is_not_taken_over(server):
    # "demo" is the server's basic account (dev default user); an OIDC "demo" is someone else
    con = device_login(server, "demo")
    assert con.describe_account()["user_id"] == "demo-2"
    basic = openeo.connect(server.api).authenticate_basic("demo", "demo")
    assert basic.describe_account()["user_id"] == "demo"


def test_the_same_name_at_another_issuer_is_another_person(server):
    main = password_login(server, "alice", provider="main")
    short = password_login(server, "alice", provider="short")
    ids = {main.describe_account()["user_id"], short.describe_account()["user_id"]}
    assert len(ids) == 2 and "alice" in ids


# --- refused tokens ---------------------------------------------------------------------------
def test_a_token_of_another_issuer_is_refused(server):
    token = bearer(password_login(server, "alice", provider="short")).split("/", 2)[2]
    status, body = error_of(server, f"oidc/main/{token}")
    assert (status, body["code"]) == (403, "TokenInvalid")
    assert "another issuer" in body["message"]


def test_a_tampered_token_is_refused(server):
    token = bearer(password_login(server, "alice")).split("/", 2)[2]
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sub"] = "bob"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    status, body = error_of(server, f"oidc/main/{header}.{forged}.{signature}")
    assert (status, body["code"]) == (403, "TokenInvalid")
    status, body = error_of(server, "oidc/main/not-a-token-the-provider-knows")
    assert (status, body["code"]) == (403, "TokenInvalid")


def test_an_unknown_provider_is_refused(server):
    token = bearer(password_login(server, "alice")).split("/", 2)[2]
    status, body = error_of(server, f"oidc/egi/{token}")
    assert (status, body["code"]) == (403, "TokenInvalid")
    assert "'main'" in body["message"]
    status, body = error_of(server, "oidc/main")
    assert (status, body["code"]) == (403, "TokenInvalid")


def test_an_expired_token_is_refused_and_the_client_refreshes_it(server):
    con = device_login(server, "dave", provider="short", store_refresh_token=True)
    assert con.describe_account()["user_id"] == "dave"
    old = bearer(con)
    time.sleep(4)  # the short provider's tokens live 3 s; no clock skew allowed
    status, body = error_of(server, old)
    assert (status, body["code"]) == (403, "TokenInvalid")
    assert "expired" in body["message"]
    # the client meets TokenInvalid, uses its refresh token, and retries
    assert con.describe_account()["user_id"] == "dave"
    assert bearer(con) != old
    assert con.execute(ADD) == 7


def test_client_without_refresh_token_sees_the_expiry(server):
    con = openeo.connect(server.api).authenticate_oidc_access_token(
        bearer(password_login(server, "alice", provider="short")).split("/", 2)[2],
        provider_id="short")
    time.sleep(4)
    with pytest.raises(OpenEoApiError) as e:
        con.describe_account()
    assert (e.value.http_status_code, e.value.code) == (403, "TokenInvalid")


def test_new_signing_keys_are_fetched_and_old_tokens_refused(server, providers):
    old = password_login(server, "erin", provider="short")
    old_token = bearer(old)
    user_id = old.describe_account()["user_id"]
    providers["short"] = providers["short"].restarted()  # same issuer, a new key
    time.sleep(KEYS_REFETCH_S + 0.5)  # an unknown key id: the keys are fetched again, at most
    # every keys_refetch_seconds (default 10 s)
    new = password_login(server, "erin", provider="short")
    assert new.describe_account()["user_id"] == user_id  # the same person, the same account
    status, body = error_of(server, old_token)
    assert (status, body["code"]) == (403, "TokenInvalid")
    assert "not signed by a key" in body["message"]


def test_unknown_keys_are_fetched_at_most_every_keys_refetch_seconds(server, providers):
    """The rate limit of the refetch, on the verifier's own clock (the provider and its
    tokens are real): a token of a new key is refused until keys_refetch_seconds have passed
    since the last fetch, then the keys are fetched again and it passes."""
    settings = OidcProviderSettings(**provider_settings(providers)[1])
    clock = [10_000.0]
    verifier = OidcVerifier([settings], clock=lambda: clock[0])

    def token() -> str:  # the short provider's tokens live 3 s (of real time)
        return bearer(password_login(server, "frank", provider="short")).split("/", 2)[2]

    assert verifier.verify("short", token())["sub"]  # the keys fetched at 10 000 s
    providers["short"] = providers["short"].restarted()  # same issuer, a new key
    clock[0] += KEYS_REFETCH_S - 0.1
    with pytest.raises(errors.TokenInvalid, match="not signed by a key"):
        verifier.verify("short", token())
    clock[0] += 0.2
    assert verifier.verify("short", token())["sub"]


# --- the official suite's wp4 --------------------------------------------------------------------
def test_official_suite_credentials_oidc(server, shared_dir: Path, tmp_path):
    runner = shared_dir / "conformance" / "run"
    if not runner.exists():
        pytest.skip(f"{runner} not found")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    proc = subprocess.run(
        ["bash", str(runner), server.api, "--user", "demo", "--password", "demo", "wp4",
         "--out", str(tmp_path), "--allow-fail", "--", "-k", "test_GET_credentials_oidc"],
        capture_output=True, text=True, timeout=900, env=env)
    assert proc.stdout.strip().splitlines()[-1] == "1 passed, 0 failed", proc.stdout[-3000:]
