"""GET /terracube/admin/overview, the terracube extension for administrators: every user's jobs
and workspace use for an account with the admin role, 403 PermissionsInsufficient for others."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from tests.support.fakes import EmptyCatalog

from terracube.api.app import create_app
from terracube.auth.admins import set_admin
from terracube.settings import Settings

API = "/openeo/1.2"
OVERVIEW = f"{API}/terracube/admin/overview"
QUOTA = 10_000
GRAPH = {"process_graph": {"sum": {"process_id": "add", "arguments": {"x": 1, "y": 2},
                                   "result": True}}}


@pytest.fixture
def client(tmp_path, registry) -> TestClient:
    app = create_app(Settings(data_dir=tmp_path / "data", storage_quota_bytes=QUOTA),
                     catalog=EmptyCatalog(), registry=registry)
    app.state.users.add("alice", "wonderland")
    app.state.users.add("bob", "builder")
    set_admin(app.state.db, "alice")
    return TestClient(app)


def test_an_admin_sees_every_users_jobs_and_workspace(client, alice, bob):
    r = client.post(f"{API}/jobs", json={"title": "bob's job", "process": GRAPH}, headers=bob)
    assert r.status_code == 201, r.text
    bob_job = r.headers["OpenEO-Identifier"]
    r = client.put(f"{API}/files/data/a.bin", content=b"x" * 1234,
                   headers={**bob, "Content-Type": "application/octet-stream"})
    assert r.status_code == 200, r.text

    r = client.get(OVERVIEW, headers=alice)
    assert r.status_code == 200, r.text
    body = r.json()
    users = {u["user_id"]: u for u in body["users"]}
    assert set(users) == {"alice", "bob"}
    assert users["alice"]["admin"] is True and users["bob"]["admin"] is False
    assert users["bob"]["storage"] == {"used": 1234, "quota": QUOTA}
    assert users["bob"]["jobs"]["created"] == 1
    assert sum(users["alice"]["jobs"].values()) == 0
    (job,) = body["jobs"]
    assert (job["id"], job["user_id"], job["title"], job["status"]) == (
        bob_job, "bob", "bob's job", "created")
    assert body["job_count"] == 1


def test_the_job_list_is_limited(client, alice, bob):
    for i in range(3):
        client.post(f"{API}/jobs", json={"title": f"job {i}", "process": GRAPH}, headers=bob)
    body = client.get(OVERVIEW, params={"limit": 2}, headers=alice).json()
    assert [j["title"] for j in body["jobs"]] == ["job 2", "job 1"]  # newest first
    assert body["job_count"] == 3
    r = client.get(OVERVIEW, params={"limit": 0}, headers=alice)
    assert r.status_code == 400 and r.json()["code"] == "BadRequest"


def test_others_get_403_and_anonymous_401(client, bob):
    r = client.get(OVERVIEW, headers=bob)
    assert r.status_code == 403
    assert r.json()["code"] == "PermissionsInsufficient"
    assert "admin role" in r.json()["message"]
    r = client.get(OVERVIEW)
    assert r.status_code == 401 and r.json()["code"] == "AuthenticationRequired"


def test_a_revoked_admin_loses_access(client, alice):
    assert client.get(OVERVIEW, headers=alice).status_code == 200
    set_admin(client.app.state.db, "alice", False)
    assert client.get(OVERVIEW, headers=alice).status_code == 403


def test_listed_in_the_capabilities_of_administrators_only(client, alice, bob):
    """GET / lists what works for the requester (profiles requirement 32: nothing listed that
    fails): the overview for an administrator, not for others or without a token."""
    entry = {"path": "/terracube/admin/overview", "methods": ["GET"]}
    r = client.get(f"{API}/", headers=alice)
    assert entry in r.json()["endpoints"] and "Authorization" in r.headers["vary"]
    assert entry not in client.get(f"{API}/", headers=bob).json()["endpoints"]
    anonymous = client.get(f"{API}/").json()["endpoints"]
    assert entry not in anonymous and {"path": "/jobs", "methods": ["GET", "POST"]} in anonymous
    # A stale token is no error on GET / (it needs none): the public list.
    stale = client.get(f"{API}/", headers={"Authorization": "Bearer basic//expired"})
    assert stale.status_code == 200 and entry not in stale.json()["endpoints"]
