"""User accounts in the database: argon2 hashes, add / list / remove / change password."""

from __future__ import annotations

import sqlite3

import pytest

from terracube import errors
from terracube.auth.users import UserExists, UserNotFound, UserStore
from terracube.db import open_database
from terracube.settings import Settings


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(data_dir=tmp_path / "data")


@pytest.fixture
def users(settings) -> UserStore:
    return UserStore(open_database(settings.database_url))


def test_database_is_sqlite_in_wal_mode_in_the_data_dir(users, settings):
    db_file = settings.data_dir / "terracube.db"
    assert db_file.exists()
    with sqlite3.connect(db_file) as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_add_and_authenticate(users):
    user = users.add("alice", "wonderland")
    assert user.user_id == "alice" and user.name == "alice"
    assert user.created is not None
    assert users.authenticate("alice", "wonderland").user_id == "alice"
    assert users.has_password("alice", "wonderland")
    assert not users.has_password("alice", "Wonderland")


def test_passwords_are_stored_as_argon2_hashes(users, settings):
    users.add("alice", "wonderland")
    with sqlite3.connect(settings.data_dir / "terracube.db") as con:
        (stored,) = con.execute("SELECT password_hash FROM users").fetchone()
    assert "wonderland" not in stored
    assert stored.startswith("$argon2id$")


def test_wrong_password_and_unknown_user_are_the_same_error(users):
    users.add("alice", "wonderland")
    with pytest.raises(errors.CredentialsInvalid) as wrong:
        users.authenticate("alice", "nope")
    with pytest.raises(errors.CredentialsInvalid) as unknown:
        users.authenticate("mallory", "nope")
    assert wrong.value.message == unknown.value.message


def test_duplicate_user(users):
    users.add("alice", "wonderland")
    with pytest.raises(UserExists):
        users.add("alice", "other")


@pytest.mark.parametrize("name", ["", "with space", "slash/y", "a" * 65, "colon:x", "ümlaut"])
def test_invalid_user_names(users, name):
    with pytest.raises(ValueError):
        users.add(name, "pw")


def test_empty_password_is_refused(users):
    with pytest.raises(ValueError):
        users.add("alice", "")


def test_list_is_sorted(users):
    for name in ("carol", "alice", "bob"):
        users.add(name, "pw")
    assert [u.user_id for u in users.list()] == ["alice", "bob", "carol"]


def test_remove(users):
    users.add("alice", "wonderland")
    users.remove("alice")
    assert users.list() == []
    assert not users.exists("alice")
    with pytest.raises(UserNotFound):
        users.remove("alice")


def test_set_password(users):
    users.add("alice", "wonderland")
    users.set_password("alice", "looking-glass")
    assert users.has_password("alice", "looking-glass")
    assert not users.has_password("alice", "wonderland")
    with pytest.raises(UserNotFound):
        users.set_password("mallory", "x")


def test_ensure_dev_user(users):
    assert users.ensure_dev_user() is True
    assert users.has_password("demo", "demo")
    assert users.ensure_dev_user() is False


def test_second_store_on_the_same_file_sees_the_users(users, settings):
    users.add("alice", "wonderland")
    other = UserStore(open_database(settings.database_url))
    assert other.has_password("alice", "wonderland")
