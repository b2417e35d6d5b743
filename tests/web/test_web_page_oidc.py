"""Sign-in with an OpenID Connect provider inside the web page, in a real browser (Debian's
chromium driven by playwright) against a real provider (node-oidc-provider, as in
tests/auth/test_oidc_provider.py) and a real `terracube serve`: the page's button, the
provider's own login and consent pages, the redirect back with a code, the code exchanged with
PKCE at the provider's token endpoint, and the page working as the signed-in person.
"""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import httpx
import pytest
from tests.support.browser import open_browser
from tests.support.data import data_dir_with_samples
from tests.support.markers import needs_oidc_provider
from tests.support.processes import OidcProviderProcess, ServerProcess, free_port

pytestmark = [
    pytest.mark.e2e,
    needs_oidc_provider,
]

AUDIENCE = "https://terracube.example/openeo"
ADD = {"process_graph": {"sum": {"process_id": "add", "arguments": {"x": 3, "y": 4},
                                 "result": True}}}


@pytest.fixture(scope="module")
def setup(tmp_path_factory, sample_data_dir):
    """The provider and the server, each naming the other: the page's URL is the redirect URL
    registered with the provider and listed in the server's default client."""
    port = free_port()
    page_url = f"http://127.0.0.1:{port}/"
    provider = OidcProviderProcess([
        {"client_id": "terracube-web", "grant_types": ["authorization_code", "refresh_token"],
         "response_types": ["code"], "redirect_uris": [page_url]}], audience=AUDIENCE)
    settings = [
        {"id": "school", "issuer": provider.issuer, "title": "School account",
         "scopes": ["openid", "profile", "email"], "audience": [AUDIENCE],
         "default_clients": [{"id": "terracube-web",
                              "grant_types": ["authorization_code+pkce", "refresh_token"],
                              "redirect_urls": [page_url]}]},
        # no client for this page: listed without a button, not in the page's CSP
        {"id": "other", "issuer": "http://127.0.0.1:9/realms/other", "title": "Other account",
         "default_clients": [{"id": "cli", "grant_types": [
             "urn:ietf:params:oauth:grant-type:device_code+pkce"]}]},
    ]
    data = data_dir_with_samples(tmp_path_factory.mktemp("web-oidc") / "data", sample_data_dir)
    try:
        server = ServerProcess(data, {"TERRACUBE_WORKERS": "0",
                                      "TERRACUBE_OIDC_PROVIDERS": json.dumps(settings)},
                               port=port)
    except Exception:
        provider.stop()
        raise
    yield server, provider
    server.stop()
    provider.stop()


@pytest.fixture(scope="module")
def browser(setup):
    server, _ = setup
    with open_browser(server.url + "/") as b:
        # Where each request came from: the page's own document, or the provider's pages.
        b.origins = []
        b.page.on("request", lambda r: b.origins.append((r.frame.url, r.url)))
        yield b


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    folder = tmp_path_factory.mktemp("web-oidc-screenshots")
    yield folder
    print(f"\nscreenshots of the OIDC sign-in: {folder}")


def test_the_csp_allows_the_sign_in_provider_only(setup):
    server, provider = setup
    csp = httpx.get(server.url + "/").headers["content-security-policy"]
    connect = next(d for d in csp.split(";") if d.strip().startswith("connect-src")).split()
    assert connect == ["connect-src", "'self'", provider.issuer]  # not 127.0.0.1:9 ("other")
    assert "default-src 'self'" in csp and "script-src 'self'" in csp


def test_sign_in_with_the_provider_in_the_page(browser, setup, shots):
    server, provider = setup
    page = browser.page
    button = "button.oidc-sign-in[data-provider=school]"
    page.wait_for_selector(button)
    assert page.locator("button.oidc-sign-in").count() == 1  # "other" has no page client
    assert "Other account" in page.inner_text("#oidc-providers")
    assert page.is_visible("#oidc-elsewhere")
    page.screenshot(path=str(shots / "oidc-login-box.png"))
    page.click(button)
    # The provider's own login page (any login name, any password in this test provider).
    page.wait_for_url(f"{provider.issuer}/interaction/**")
    page.fill("input[name=login]", "olivia")
    page.fill("input[name=password]", "any")
    page.screenshot(path=str(shots / "oidc-provider-login.png"))
    page.click("button[type=submit]")
    page.wait_for_selector("button:has-text('Continue')")  # the consent page
    page.click("button:has-text('Continue')")
    page.wait_for_url(server.url + "/")
    page.wait_for_selector("#user-name:has-text('Olivia Example')", timeout=30_000)
    assert page.inner_text("#user-name") == "Olivia Example (olivia)"
    assert page.url == server.url + "/"  # the one-time code is out of the address bar
    page.wait_for_selector("[data-collection=SENTINEL2_L2A]")
    bearer = page.evaluate("sessionStorage.getItem('terracube.bearer')")
    assert bearer.startswith("oidc/school/ey")  # openEO's OIDC bearer with a JWT
    me = httpx.get(server.api + "me", headers={"Authorization": f"Bearer {bearer}"}).json()
    assert me["user_id"] == "olivia" and me["name"] == "Olivia Example"


def test_the_signed_in_page_shows_the_persons_jobs(browser, setup, shots):
    server, _ = setup
    page = browser.page
    bearer = page.evaluate("sessionStorage.getItem('terracube.bearer')")
    r = httpx.post(server.api + "jobs", json={"title": "Olivia's sum", "process": ADD},
                   headers={"Authorization": f"Bearer {bearer}"})
    assert r.status_code == 201, r.text
    job_id = r.headers["OpenEO-Identifier"]
    page.click("[data-tab=jobs]")
    row = f"#job-table tr[data-job='{job_id}']"
    page.wait_for_selector(f"{row} .status-created")
    assert "Olivia's sum" in page.inner_text(row)
    page.screenshot(path=str(shots / "oidc-jobs.png"))


def test_a_return_that_this_tab_did_not_start_is_refused(browser, setup):
    server, _ = setup
    page = browser.page
    page.click("#logout")
    page.goto(server.url + "/?code=stolen&state=forged")
    page.wait_for_selector("#login-error:has-text('not started in this tab')")
    assert page.evaluate("sessionStorage.getItem('terracube.bearer')") is None
    assert page.url == server.url + "/"


def test_the_page_talked_to_the_server_and_the_provider_only(browser, setup):
    server, provider = setup
    browser.page.wait_for_timeout(300)
    ours = [url for frame, url in browser.origins if frame.startswith(server.url + "/")]
    elsewhere = [u for u in ours if not u.startswith((server.url + "/", provider.issuer + "/",
                                                      "data:"))]
    assert not elsewhere, elsewhere
    to_provider = {urlsplit(u).path for u in ours if u.startswith(provider.issuer + "/")}
    # discovery, the token endpoint, and the navigation to the authorization endpoint
    assert {"/.well-known/openid-configuration", "/token"} <= to_provider, to_provider
    assert not browser.errors, browser.errors
