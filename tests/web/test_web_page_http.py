"""The web page over plain HTTP: / is HTML naming its static files, which are served with cache
headers, and nothing the page loads comes from another host (it works offline)."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from tests.support.fakes import EmptyCatalog

from terracube.api.app import create_app
from terracube.engine.registry import ProcessRegistry
from terracube.settings import Settings
from terracube.web import page as web

# The one external address the page may name: a link (not a load) to the openEO Web Editor.
# XML namespace names in the SVG are identifiers, not addresses.
ALLOWED_EXTERNAL = {web.WEB_EDITOR, "http://www.w3.org/2000/svg"}
URL = re.compile(r"""https?://[^\s"'`)<>]*""")


@pytest.fixture(scope="module")
def client(tmp_path_factory) -> TestClient:
    settings = Settings(data_dir=tmp_path_factory.mktemp("data"))
    return TestClient(create_app(settings, catalog=EmptyCatalog(), registry=ProcessRegistry()))


def assets_of(html: str) -> list[str]:
    """The relative URLs of the scripts, style sheets and images the page loads."""
    return re.findall(r'(?:src|href)="(web/[^"]+)"', html)


def test_root_serves_the_page(client):
    r = client.get("/", headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert r.headers["cache-control"] == "no-cache"  # it names the current asset versions
    assert "default-src 'self'" in r.headers["content-security-policy"]
    html = r.text
    assert '<script type="module" src="web/static/' in html
    assert f'src="web/leaflet/{web.LEAFLET_VERSION}/leaflet.js"' in html
    assert 'data-api="openeo/1.2/"' in html  # relative: right under a proxy's path prefix
    assert '<base href="/">' in html
    # A plain client (curl: Accept */*) gets the page too; JSON clients the API (see
    # tests/api/test_capabilities.py).
    assert client.get("/").headers["content-type"].startswith("text/html")


def test_static_files_are_served_with_cache_headers(client):
    html = client.get("/").text
    assets = assets_of(html)
    assert {a.rsplit("/", 1)[1] for a in assets} >= {"leaflet.css", "leaflet.js", "style.css",
                                                      "app.js", "icon.svg"}
    for asset in assets:
        r = client.get("/" + asset)
        assert r.status_code == 200, asset
        assert r.headers["cache-control"] == web.IMMUTABLE, asset
        assert int(r.headers["content-length"]) > 0
    types = {a.rsplit(".", 1)[1]: client.get("/" + a).headers["content-type"] for a in assets}
    assert types["js"].startswith("text/javascript")
    assert types["css"].startswith("text/css")
    # The modules app.js imports resolve next to it; Leaflet's CSS finds its images.
    static = next(a for a in assets if a.endswith("/app.js")).rsplit("/", 1)[0]
    for module in re.findall(r'from "\./([\w.]+)"', client.get(f"/{static}/app.js").text):
        assert client.get(f"/{static}/{module}").status_code == 200, module
    css = client.get(f"/web/leaflet/{web.LEAFLET_VERSION}/leaflet.css").text
    for image in set(re.findall(r"url\((images/[\w-]+\.png)\)", css)):
        assert client.get(f"/web/leaflet/{web.LEAFLET_VERSION}/{image}").status_code == 200


def test_unknown_and_outdated_static_urls(client):
    static = f"/web/static/{web.STATIC_VERSION}"
    assert client.get(f"{static}/nothing.js").status_code == 404
    assert client.get(f"{static}/../page.py").status_code == 404
    assert client.get(f"{static}/%2e%2e/page.py").status_code == 404
    assert client.get(f"/web/leaflet/{web.LEAFLET_VERSION}/../../__init__.py").status_code == 404
    # A page loaded before an upgrade asks for the old version: today's file, not cached.
    r = client.get("/web/static/0ld/app.js")
    assert r.status_code == 200 and r.headers["cache-control"] == "no-cache"


def test_nothing_external_in_the_page_and_its_code(client):
    html = client.get("/").text
    texts = {"/": html}
    static = next(a for a in assets_of(html) if a.endswith("/app.js")).rsplit("/", 1)[0]
    for name in web.STATIC_FILES:
        texts[name] = client.get(f"/{static}/{name}").text
    found = {name: set(URL.findall(text)) - ALLOWED_EXTERNAL for name, text in texts.items()}
    assert not any(found.values()), found
    # Leaflet's own files name leafletjs.com in comments and its attribution link only: the
    # page replaces that prefix (map.js), and Leaflet loads nothing from other hosts.
    assert "setPrefix(" in texts["map.js"]
    for name in ("leaflet.js", "leaflet.css"):
        text = client.get(f"/web/leaflet/{web.LEAFLET_VERSION}/{name}").text
        assert not re.search(r"""url\(["']?https?:|src=["']https?:""", text), name


def test_under_a_path_prefix(tmp_path):
    """Behind a reverse proxy that serves terracube under /tc (TERRACUBE_ROOT_PATH) and strips
    the prefix: the page's URLs resolve below /tc, also when the browser asked for /tc
    without the trailing slash (the <base href>)."""
    settings = Settings(data_dir=tmp_path, root_path="/tc")
    client = TestClient(create_app(settings, catalog=EmptyCatalog(), registry=ProcessRegistry()))
    html = client.get("/").text  # what the proxy forwards for /tc/ (and /tc)
    assert '<base href="/tc/">' in html
    for asset in assets_of(html):
        assert client.get("/" + asset).status_code == 200, asset
    r = client.get("/", headers={"Accept": "application/json"}, follow_redirects=False)
    assert r.headers["location"] == "/tc/openeo/1.2/"
    links = client.get("/openeo/1.2/").json()["links"]
    (page,) = [link for link in links if link["rel"] == "alternate"]
    assert page["href"] == "http://testserver/tc/"


def test_the_csp_names_the_providers_the_page_signs_in_with(tmp_path):
    web_client = {"id": "web", "grant_types": ["authorization_code+pkce"],
                  "redirect_urls": ["https://terracube.example/"]}
    providers = [
        {"id": "uni", "issuer": "https://login.uni.example:8443/realms/teaching", "title": "Uni",
         "default_clients": [web_client]},
        # no client for the page's flow, or no redirect URL: the page cannot use them
        {"id": "cli", "issuer": "https://cli.example", "title": "CLI", "default_clients": [
            {"id": "c", "grant_types": ["urn:ietf:params:oauth:grant-type:device_code+pkce"]}]},
        {"id": "nowhere", "issuer": "https://nowhere.example", "title": "No redirect",
         "default_clients": [{"id": "c", "grant_types": ["authorization_code+pkce"]}]},
        {"id": "same", "issuer": "https://login.uni.example:8443/realms/other", "title": "Same",
         "default_clients": [web_client]},
    ]
    settings = Settings(data_dir=tmp_path, oidc_providers=providers)
    app = create_app(settings, catalog=EmptyCatalog(), registry=ProcessRegistry())
    csp = TestClient(app).get("/").headers["content-security-policy"]
    directives = {d.split()[0]: d.split()[1:] for d in csp.split("; ")}
    assert directives["connect-src"] == ["'self'", "https://login.uni.example:8443"]
    assert directives["script-src"] == ["'self'"] and directives["default-src"] == ["'self'"]
    # without providers: this server only
    assert "connect-src 'self';" in web.content_security_policy([])
