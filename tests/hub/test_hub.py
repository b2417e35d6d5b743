"""The course hub end to end: sign in through JupyterHub's login form with a terracube account,
get a JupyterLab with samples/ and mystorage/, run the README's openEO example in a kernel with
the lab's token, and the workspace, isolation, quota and sample rules around it."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import rasterio
from tests.hub.conftest import HubProcess, HubUser, add_users, needs_hub, terracube_cli
from tests.support.data import cloud_free_ndvi_median

from terracube.hub.samples import package_files
from terracube.workspace.files import workspace_folder

pytestmark = [pytest.mark.hub, needs_hub]

USERS = {"alice": "wonderland", "bob": "builder", "carol": "cheshire"}
QUOTA = 2_000_000  # bytes per workspace: small, so the over-quota test needs little data
POLL_S = 3  # the hub's check of running labs (TERRACUBE_HUB_POLL_SECONDS; default 30 s)

README_EXAMPLE = """
import os
import openeo

con = openeo.connect(os.environ["TERRACUBE_URL"])
con.authenticate_bearer_token("basic//" + os.environ["TERRACUBE_TOKEN"])
print("user:", con.describe_account()["user_id"])
s2 = con.load_collection(
    "SENTINEL2_L2A",
    spatial_extent={"west": 679720, "south": 5151080, "east": 680680, "north": 5151920,
                    "crs": "EPSG:32632"},
    temporal_extent=["2022-06-01", "2022-07-01"],
    bands=["B04", "B08", "SCL"],
)
scl = s2.band("SCL")
cloud = (scl == 3) | (scl == 8) | (scl == 9) | (scl == 10)
ndvi = s2.ndvi(nir="B08", red="B04").mask(cloud)
ndvi.reduce_dimension(dimension="t", reducer="median").download("mystorage/ndvi.tif")
print("saved:", os.path.getsize("mystorage/ndvi.tif"))
"""


class Settings:
    """Just what workspace_folder needs."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir


@pytest.fixture(scope="module")
def hub(hub_data_dir: Path, course_samples: Path):
    add_users(hub_data_dir, USERS)
    terracube_cli(hub_data_dir, "users", "admin", "alice")
    hub = HubProcess(hub_data_dir, course_samples, TERRACUBE_STORAGE_QUOTA_BYTES=str(QUOTA),
                     TERRACUBE_HUB_IDLE_TIMEOUT_SECONDS="0",
                     TERRACUBE_HUB_POLL_SECONDS=str(POLL_S))
    yield hub
    hub.stop()


@pytest.fixture(scope="module")
def timings() -> dict[str, float]:
    return {}


@pytest.fixture(scope="module")
def alice(hub: HubProcess, timings: dict[str, float]):
    user = HubUser(hub, "alice")
    start = time.monotonic()
    r = user.sign_in(USERS["alice"])
    assert r.status_code == 200 and user.signed_in, r.text[:500]
    user.open_lab()
    kernel = user.start_kernel()
    assert user.execute(kernel, "print(6 * 7)").strip() == "42"
    timings["sign-in to running kernel (s)"] = time.monotonic() - start
    user.kernel = kernel
    yield user
    user.close()


@pytest.fixture(scope="module")
def bob(hub: HubProcess):
    user = HubUser(hub, "bob")
    assert user.sign_in(USERS["bob"]).status_code == 200 and user.signed_in
    user.open_lab()
    yield user
    user.close()


def api_files(hub: HubProcess, name: str) -> dict[str, int]:
    """GET /files through the hub's port with the user's openEO basic login."""
    api = f"{hub.url}/openeo/1.2"
    token = httpx.get(f"{api}/credentials/basic", auth=(name, USERS[name])).json()
    r = httpx.get(f"{api}/files", headers={
        "Authorization": f"Bearer basic//{token['access_token']}"})
    assert r.status_code == 200, r.text
    return {f["path"]: f["size"] for f in r.json()["files"]}


def test_lab_has_samples_and_mystorage(alice: HubUser, hub: HubProcess,
                                       course_samples: Path, timings: dict) -> None:
    listing = alice.lab_api("GET", "/contents/").json()
    assert {"samples", "mystorage"} <= {item["name"] for item in listing["content"]}
    home = hub.data_dir / "hub" / "home" / "alice"
    package = package_files(course_samples)
    assert package, "the training package is empty"
    for rel, src in package.items():
        assert (home / "samples" / rel).read_bytes() == src.read_bytes(), rel
    names = {item["name"] for item in alice.lab_api("GET", "/contents/samples").json()["content"]}
    assert {rel.split("/")[0] for rel in package} <= names
    assert (home / "mystorage").resolve() == workspace_folder(Settings(hub.data_dir), "alice")
    print(f"\n{timings}")


def test_kernel_runs_the_readme_example_into_mystorage(alice: HubUser, hub: HubProcess,
                                                       sample_data_dir: Path) -> None:
    out = alice.execute(alice.kernel, README_EXAMPLE)
    assert "user: alice" in out, out
    files = api_files(hub, "alice")
    assert "ndvi.tif" in files, files
    assert "ndvi.tif" not in api_files(hub, "bob")
    saved = workspace_folder(Settings(hub.data_dir), "alice") / "ndvi.tif"
    assert files["ndvi.tif"] == saved.stat().st_size
    box = {"west": 679720, "south": 5151080, "east": 680680, "north": 5151920}  # the lab's
    expected = cloud_free_ndvi_median(sample_data_dir, box, "2022-06-01", "2022-07-01",
                                      min_dates=5)
    with rasterio.open(saved) as ds:
        assert (ds.width, ds.height) == (96, 84)
        got = ds.read(1)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    np.testing.assert_allclose(got, expected, rtol=1e-6, equal_nan=True)


def test_the_lab_token_is_a_terracube_token_renewed_into_a_file(alice: HubUser,
                                                                hub: HubProcess) -> None:
    code = ("import os; print(os.environ['TERRACUBE_URL']); "
            "print(open(os.environ['TERRACUBE_TOKEN_FILE']).read().strip() != '')")
    url, has_file = alice.execute(alice.kernel, code).split()
    assert url == hub.url and has_file == "True"
    token = (hub.data_dir / "hub" / "home" / "alice" / ".terracube" / "token").read_text()
    me = httpx.get(f"{hub.url}/openeo/1.2/me",
                   headers={"Authorization": f"Bearer basic//{token.strip()}"})
    assert me.status_code == 200 and me.json()["user_id"] == "alice"


def test_another_user_cannot_reach_the_lab_or_its_mystorage(alice: HubUser, bob: HubUser,
                                                           hub: HubProcess) -> None:
    assert bob.lab_api("GET", "/contents/mystorage").status_code == 200
    # bob's browser, bob's API token: both refused at alice's lab
    assert bob.http.get("/user/alice/api/contents/mystorage").status_code == 403
    assert bob.http.get("/user/alice/lab").status_code == 403
    token = bob.hub_api("POST", "/users/bob/tokens", json={"note": "test"}).json()["token"]
    for path in ("/user/alice/api/contents/mystorage", "/user/alice/api/kernels"):
        r = httpx.get(f"{hub.url}{path}", headers={"Authorization": f"token {token}"})
        assert r.status_code == 403, (path, r.status_code)
    own = {item["name"] for item in
           bob.lab_api("GET", "/contents/mystorage").json()["content"]}
    assert "ndvi.tif" not in own
    assert bob.hub_api("GET", "/users/alice").status_code in (403, 404)


def test_admin_role_comes_from_the_terracube_account(alice: HubUser, bob: HubUser) -> None:
    page = alice.http.get("/hub/admin")
    assert page.status_code == 200 and page.url.path == "/hub/admin"
    assert bob.http.get("/hub/admin").status_code == 403
    users = alice.hub_api("GET", "/users").json()
    assert {u["name"]: u["admin"] for u in users}["alice"] is True


def test_wrong_password_gets_no_lab(hub: HubProcess) -> None:
    user = HubUser(hub, "bob")
    try:
        r = user.sign_in("not-the-password")
        assert r.status_code == 403 and not user.signed_in
        page = user.http.get("/user/bob/api/status")
        assert page.status_code != 200 or "/hub/login" in page.url.path
    finally:
        user.close()


def test_removed_user_cannot_sign_in_and_loses_the_lab(hub: HubProcess, alice: HubUser) -> None:
    first = HubUser(hub, "carol")
    assert first.sign_in(USERS["carol"]).status_code == 200 and first.signed_in
    first.open_lab()
    first.close()
    terracube_cli(hub.data_dir, "users", "remove", "carol")
    again = HubUser(hub, "carol")
    try:
        assert again.sign_in(USERS["carol"]).status_code == 403 and not again.signed_in
    finally:
        again.close()
    # the running lab is stopped at the hub's next poll of it (every POLL_S seconds)
    deadline = time.monotonic() + 75
    while alice.hub_api("GET", "/users/carol").json().get("servers"):
        assert time.monotonic() < deadline, "the removed user's lab still runs"
        time.sleep(2)


def test_over_quota_save_is_refused_and_leaves_nothing(alice: HubUser, hub: HubProcess) -> None:
    workspace = workspace_folder(Settings(hub.data_dir), "alice")
    before = sorted(p.name for p in workspace.rglob("*"))
    used = sum(p.stat().st_size for p in workspace.rglob("*") if p.is_file())
    r = alice.put_file("mystorage/too-big.bin", b"x" * (QUOTA - used + 1))
    assert r.status_code == 507, r.text
    assert "quota" in r.json()["message"]
    # a chunked upload (JupyterLab sends big files in chunks): the refused chunk removes the rest
    assert alice.put_file("mystorage/chunked.bin", b"y" * 1000, chunk=1).status_code in (200, 201)
    r = alice.put_file("mystorage/chunked.bin", b"y" * QUOTA, chunk=2)
    assert r.status_code == 507, r.text
    assert sorted(p.name for p in workspace.rglob("*")) == before
    assert set(api_files(hub, "alice")) == {p for p in before if not p.startswith(".")}
    # what fits is saved, and the API lists it with its size
    notebook = {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    r = alice.lab_api("PUT", "/contents/mystorage/mine.ipynb",
                      json={"type": "notebook", "content": notebook})
    assert r.status_code in (200, 201), r.text
    assert api_files(hub, "alice")["mine.ipynb"] == (workspace / "mine.ipynb").stat().st_size
    assert not (workspace / ".ipynb_checkpoints").exists()  # kept in the home instead


def test_changed_sample_survives_a_restart_beside_the_fresh_copy(
        alice: HubUser, hub: HubProcess, course_samples: Path) -> None:
    rel, src = sorted(package_files(course_samples).items())[0]
    changed = src.read_bytes() + b"\n"
    if rel.endswith(".ipynb"):
        nb = json.loads(src.read_text())
        nb["metadata"]["changed_by"] = "alice"
        changed = json.dumps(nb).encode()
    assert alice.put_file(f"samples/{rel}", changed).status_code in (200, 201)
    alice.stop_lab()
    alice.open_lab()
    folder = hub.data_dir / "hub" / "home" / "alice" / "samples" / Path(rel).parent
    name = Path(rel)
    assert (folder / name.name).read_bytes() == src.read_bytes()
    kept = sorted(folder.glob(f"{name.stem}-changed-*{name.suffix}"))
    assert len(kept) == 1 and kept[0].read_bytes() == changed
    listing = alice.lab_api("GET", f"/contents/samples/{name.parent.as_posix()}".rstrip("/."))
    assert kept[0].name in {item["name"] for item in listing.json()["content"]}


def test_idle_lab_is_culled_and_its_files_kept(tmp_path_factory: pytest.TempPathFactory,
                                               sample_data_dir: Path,
                                               course_samples: Path) -> None:
    from tests.support.data import data_dir_with_samples

    data_dir = data_dir_with_samples(tmp_path_factory.mktemp("hub-cull"), sample_data_dir)
    add_users(data_dir, {"dave": "diver"})
    hub = HubProcess(data_dir, course_samples, api=False,
                     TERRACUBE_HUB_IDLE_TIMEOUT_SECONDS="6", TERRACUBE_HUB_CULL_EVERY_SECONDS="2")
    try:
        dave = HubUser(hub, "dave")
        assert dave.sign_in("diver").status_code == 200
        dave.open_lab()
        assert dave.put_file("mystorage/keep.txt", b"kept").status_code in (200, 201)
        assert dave.server_running()
        deadline = time.monotonic() + 90
        while dave.server_running():
            assert time.monotonic() < deadline, "the idle lab was not culled:\n" + hub.log()
            time.sleep(1)
        assert "Culling server" in hub.log() or "culling server" in hub.log().lower()
        kept = workspace_folder(Settings(data_dir), "dave") / "keep.txt"
        assert kept.read_bytes() == b"kept"
        dave.close()
    finally:
        hub.stop()
