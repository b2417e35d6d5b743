"""The web page in a real browser: Debian's chromium driven by playwright (never a downloaded
browser), against a real `terracube serve` with a teacher (admin role) and a student.

One server and one browser for the module; the tests run in order on one logged-in page.
Screenshots go to the test's temporary output (printed at the end) — look at them.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from tests.support.browser import open_browser
from tests.support.data import data_dir_with_samples, sqlite_url
from tests.support.processes import ServerProcess

from terracube.auth.admins import set_admin
from terracube.auth.users import UserStore
from terracube.db import open_database

pytestmark = pytest.mark.e2e

QUOTA = 5_000_000
# Listed on the login box without a button (no client for the page); never contacted. The
# sign-in with a provider: test_web_page_oidc.py.
SCHOOL_OIDC = {"id": "school", "issuer": "http://127.0.0.1:9/realms/school",
               "title": "School account"}
NDVI = {"process_graph": {
    "load": {"process_id": "load_collection", "arguments": {
        "id": "SENTINEL2_L2A",
        "spatial_extent": {"west": 11.32, "south": 46.48, "east": 11.36, "north": 46.505},
        "temporal_extent": ["2022-06-01", "2022-07-01"], "bands": ["B04", "B08"]}},
    "ndvi": {"process_id": "ndvi", "arguments": {"data": {"from_node": "load"}}},
    "median": {"process_id": "reduce_dimension", "arguments": {
        "data": {"from_node": "ndvi"}, "dimension": "t", "reducer": {"process_graph": {
            "m": {"process_id": "median", "arguments": {"data": {"from_parameter": "data"}},
                  "result": True}}}}},
    "save": {"process_id": "save_result", "arguments": {
        "data": {"from_node": "median"}, "format": "GTiff"}, "result": True}}}


@pytest.fixture(scope="module")
def server(tmp_path_factory, sample_data_dir):
    data = data_dir_with_samples(tmp_path_factory.mktemp("web") / "data", sample_data_dir)
    db = open_database(sqlite_url(data))
    users = UserStore(db)
    users.add("teacher", "teacher-pw")
    users.add("student", "student-pw")
    set_admin(db, "teacher")
    db.dispose()
    srv = ServerProcess(data, {"TERRACUBE_STORAGE_QUOTA_BYTES": str(QUOTA),
                               "TERRACUBE_WORKERS": "1",
                               "TERRACUBE_OIDC_PROVIDERS": json.dumps([SCHOOL_OIDC])})
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("web-screenshots")
    yield folder
    print(f"\nscreenshots of the web page: {folder}")


@pytest.fixture(scope="module")
def browser(server):
    with open_browser(server.url + "/") as b:
        yield b


def api_login(server, name: str, password: str) -> dict[str, str]:
    token = httpx.get(server.api + "credentials/basic", auth=(name, password)).json()
    return {"Authorization": f"Bearer basic//{token['access_token']}"}


def test_log_in_and_see_the_collections(browser, shots):
    page = browser.page
    page.wait_for_selector("#oidc li:has-text('School account')")  # GET /credentials/oidc
    page.fill("input[name=user]", "teacher")
    page.fill("input[name=password]", "wrong")
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("#login-error:has-text('password')")
    page.screenshot(path=str(shots / "web-login.png"))
    page.fill("input[name=password]", "teacher-pw")
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("[data-collection=SENTINEL2_L2A]")
    assert page.is_visible("[data-collection=RADAR_RAINFALL_SYNTHETIC]")
    assert page.inner_text("#user-name") == "teacher"
    assert page.is_hidden("#login")


def test_a_collection_shows_bands_extent_and_preview_tiles(browser, shots):
    page = browser.page
    page.click("[data-collection=SENTINEL2_L2A]")
    page.wait_for_selector("#collection-detail .band")
    bands = page.locator("#collection-detail .band").all_inner_texts()
    assert {"B02", "B03", "B04", "B08", "SCL"} <= set(bands)
    assert "2022-04-03" in page.inner_text("#collection-detail .temporal")
    browser.wait_until(lambda: len(browser.png_tiles("/collections/SENTINEL2_L2A/tiles/")) >= 4,
                       timeout=90, what="four preview tiles (200, PNG)")
    page.wait_for_selector(".preview-status:has-text('on the map')")
    page.wait_for_timeout(1500)  # the tiles fade in
    page.screenshot(path=str(shots / "web-collections.png"))
    assert page.locator(".leaflet-tile-loaded").count() >= 4


def test_a_job_started_through_the_api_turns_finished(browser, server, shots):
    headers = api_login(server, "teacher", "teacher-pw")
    r = httpx.post(server.api + "jobs", json={"title": "NDVI June", "process": NDVI},
                   headers=headers)
    assert r.status_code == 201, r.text
    job_id = r.headers["OpenEO-Identifier"]
    page = browser.page
    page.click("[data-tab=jobs]")
    row = f"#job-table tr[data-job='{job_id}']"
    page.wait_for_selector(f"{row} .status-created")
    httpx.post(server.api + f"jobs/{job_id}/results", headers=headers).raise_for_status()
    # No reload: the page refreshes the list by itself.
    page.wait_for_selector(f"{row} .status-finished", timeout=120_000)
    page.click(f"{row} button")
    page.wait_for_selector("#job-detail .downloads a")
    href = page.get_attribute("#job-detail .downloads a", "href")
    assert httpx.get(href).content.startswith(b"II*\x00")  # the GeoTIFF, signed link
    assert page.locator("#job-detail .log-info").count() >= 1
    browser.wait_until(lambda: len(browser.png_tiles(f"/jobs/{job_id}/")) >= 1, timeout=60,
                       what="a tile of the job's result")
    page.wait_for_timeout(1500)
    page.screenshot(path=str(shots / "web-jobs.png"))


def test_upload_a_file_and_see_the_quota_change(browser, shots):
    page = browser.page
    page.click("[data-tab=workspace]")
    page.wait_for_selector("#quota[data-used]")
    before = int(page.get_attribute("#quota", "data-used"))
    page.set_input_files("#upload-form input[type=file]", files=[
        {"name": "field notes.txt", "mimeType": "text/plain", "buffer": b"n" * 300_000}])
    page.fill("#upload-form input[name=folder]", "course")
    page.click("#upload-form button[type=submit]")
    page.wait_for_selector("tr[data-file='course/field notes.txt']")
    browser.wait_until(lambda: int(page.get_attribute("#quota", "data-used")) == before + 300_000,
                       timeout=10, what="the quota bar to count the upload")
    assert "300 KB" in page.inner_text("tr[data-file='course/field notes.txt']")
    assert "5.0 MB" in page.inner_text("#quota .quota-text")
    page.screenshot(path=str(shots / "web-workspace.png"))
    page.click("tr[data-file='course/field notes.txt'] button.danger")
    page.wait_for_selector("tr[data-file='course/field notes.txt']", state="detached")
    assert int(page.get_attribute("#quota", "data-used")) == before


def test_the_admin_view_shows_another_users_job(browser, server, shots):
    student = api_login(server, "student", "student-pw")
    r = httpx.post(server.api + "jobs", json={"title": "student's NDVI", "process": NDVI},
                   headers=student)
    job_id = r.headers["OpenEO-Identifier"]
    page = browser.page
    page.click("[data-tab=admin]")
    page.wait_for_selector(f"#admin-jobs tr[data-job='{job_id}']")
    row = page.inner_text(f"#admin-jobs tr[data-job='{job_id}']")
    assert "student" in row and "student's NDVI" in row and "created" in row
    assert "1 created" in page.inner_text("#admin-users tr[data-user=student]")
    page.screenshot(path=str(shots / "web-admin.png"))
    # The student: 403 from the admin endpoint, and the page hides the tab.
    r = httpx.get(server.api + "terracube/admin/overview", headers=student)
    assert r.status_code == 403 and r.json()["code"] == "PermissionsInsufficient"
    page.click("#logout")
    page.fill("input[name=user]", "student")
    page.fill("input[name=password]", "student-pw")
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("[data-collection=SENTINEL2_L2A]")
    assert page.is_hidden("[data-tab=admin]")
    assert page.inner_text("#user-name") == "student"


def test_the_page_loaded_nothing_from_elsewhere_and_raised_no_error(browser, server):
    browser.page.wait_for_timeout(500)
    elsewhere = [u for u in browser.requests
                 if not u.startswith(server.url + "/") and not u.startswith("data:")]
    assert not elsewhere, elsewhere
    assert not browser.errors, browser.errors
