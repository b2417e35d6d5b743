"""Retention of inactive users' workspaces: flag, warn, remove; logging in again keeps them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from terracube import cli
from terracube.auth.tokens import TokenStore
from terracube.auth.users import UserStore
from terracube.db import open_database
from terracube.settings import Settings
from terracube.workspace.retention import (
    WorkspaceActivity,
    last_activity,
    record_activity,
    remove_workspace,
    sweep,
    workspace_status,
)

DAY = timedelta(days=1)


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(data_dir=tmp_path, workspace_inactive_days=15, workspace_warning_days=7)


@pytest.fixture
def db(settings):
    database = open_database(settings.database_url)
    yield database
    database.dispose()


def make_user(db, settings, name: str, created: datetime, files: bool = True):
    UserStore(db).add(name, "pw")
    from terracube.auth.users import User

    with db.session() as s:
        s.get(User, name).created = created
    folder = settings.data_dir / "workspaces" / name
    if files:
        (folder / "sub").mkdir(parents=True)
        (folder / "sub" / "data.tif").write_bytes(b"x" * 10)
    return folder


def test_inactive_workspace_is_flagged_then_removed(settings, db):
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    folder = make_user(db, settings, "old", t0)
    assert sweep(settings, db, now=t0 + 14 * DAY).flagged == []
    report = sweep(settings, db, now=t0 + 16 * DAY)
    assert report.flagged == ["old"] and folder.exists()
    (status,) = workspace_status(settings, db)
    assert status.flagged == t0 + 16 * DAY and status.removal_due == t0 + 23 * DAY
    assert status.used == 10
    assert sweep(settings, db, now=t0 + 22 * DAY).removed == []  # still warning
    report = sweep(settings, db, now=t0 + 23 * DAY)
    assert report.removed == ["old"] and not folder.exists()
    assert UserStore(db).exists("old")  # the account stays; only the files go
    assert sweep(settings, db, now=t0 + 40 * DAY).flagged == []  # nothing left to flag


def test_logging_in_during_the_warning_keeps_the_files(settings, db):
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    folder = make_user(db, settings, "back", t0)
    assert sweep(settings, db, now=t0 + 16 * DAY).flagged == ["back"]
    tokens = TokenStore(db, 3600, clock=lambda: t0 + 18 * DAY)
    tokens.issue("back")
    report = sweep(settings, db, now=t0 + 30 * DAY)
    assert report.unflagged == ["back"] and report.removed == []
    assert folder.exists()


def test_recorded_activity_counts(settings, db):
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    folder = make_user(db, settings, "busy", t0)
    record_activity(db, "busy", now=t0 + 10 * DAY)
    assert last_activity(db)["busy"] == t0 + 10 * DAY
    assert sweep(settings, db, now=t0 + 20 * DAY).flagged == []
    assert sweep(settings, db, now=t0 + 26 * DAY).flagged == ["busy"]
    record_activity(db, "busy", now=t0 + 27 * DAY)  # a request clears the flag at once
    with db.session() as s:
        assert s.get(WorkspaceActivity, "busy").flagged is None
    assert sweep(settings, db, now=t0 + 35 * DAY).removed == []
    assert folder.exists()


def test_activity_is_not_written_on_every_request(settings, db):
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    make_user(db, settings, "u", t0)
    record_activity(db, "u", now=t0)
    record_activity(db, "u", now=t0 + timedelta(minutes=5))
    assert last_activity(db)["u"] == t0
    record_activity(db, "u", now=t0 + timedelta(hours=1))
    assert last_activity(db)["u"] == t0 + timedelta(hours=1)
    record_activity(db, "nobody", now=t0)  # unknown users are ignored
    assert "nobody" not in last_activity(db)


def test_empty_workspaces_are_not_flagged(settings, db):
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    make_user(db, settings, "nofiles", t0, files=False)
    assert sweep(settings, db, now=t0 + 100 * DAY).flagged == []


def test_retention_off(settings, db):
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    folder = make_user(db, settings, "old", t0)
    off = settings.model_copy(update={"workspace_inactive_days": 0})
    assert sweep(off, db, now=t0 + 1000 * DAY).flagged == []
    assert folder.exists()


def test_folders_of_unknown_users_are_reported_not_removed(settings, db):
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    make_user(db, settings, "known", t0)
    stray = settings.data_dir / "workspaces" / "ghost"
    stray.mkdir(parents=True)
    report = sweep(settings, db, now=t0 + DAY)
    assert report.orphans == ["ghost"] and stray.exists()


def test_no_users_means_nothing_is_touched(settings, db):
    folder = settings.data_dir / "workspaces" / "someone"
    folder.mkdir(parents=True)
    (folder / "f").write_bytes(b"1")
    report = sweep(settings, db, now=datetime(2030, 1, 1, tzinfo=UTC))
    assert report.flagged == report.removed == [] and folder.exists()


def test_remove_workspace(settings, db):
    folder = make_user(db, settings, "gone", datetime(2024, 1, 1, tzinfo=UTC))
    assert remove_workspace(settings, "gone") and not folder.exists()
    assert not remove_workspace(settings, "gone")


def test_cli_sweep_list_and_user_removal(settings, db, tmp_path, capsys, monkeypatch):
    long_ago = datetime.now(UTC) - 20 * DAY
    folder = make_user(db, settings, "idle", long_ago)
    monkeypatch.delenv("TERRACUBE_WORKSPACE_INACTIVE_DAYS", raising=False)
    args = ["--data-dir", str(tmp_path)]
    assert cli.main(["workspaces", "sweep", *args]) == 0
    assert "flagged: idle" in capsys.readouterr().out
    assert cli.main(["workspaces", "list", *args]) == 0
    out = capsys.readouterr().out
    assert "idle" in out and (datetime.now(UTC) + 7 * DAY).strftime("%Y-%m-%d") in out
    assert cli.main(["users", "remove", "idle", *args]) == 0
    assert "workspace of 'idle' removed" in capsys.readouterr().out
    assert not folder.exists()
