"""Bearer tokens: random, stored hashed, expiring, revocable."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta

import pytest

from terracube import errors
from terracube.auth.tokens import TokenStore
from terracube.auth.users import UserStore
from terracube.db import Database, open_database
from terracube.settings import Settings


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2025, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(data_dir=tmp_path)


@pytest.fixture
def db(settings) -> Database:
    db = open_database(settings.database_url)
    users = UserStore(db)
    users.add("alice", "wonderland")
    users.add("bob", "builder")
    return db


def test_issue_and_resolve(db):
    tokens = TokenStore(db, ttl_seconds=60)
    a, b = tokens.issue("alice"), tokens.issue("bob")
    assert a != b and len(a) >= 40
    assert tokens.resolve(a).user_id == "alice"
    assert tokens.resolve(b).user_id == "bob"


def test_only_hashes_are_stored(db, settings):
    token = TokenStore(db, ttl_seconds=60).issue("alice")
    with sqlite3.connect(settings.data_dir / "terracube.db") as con:
        rows = con.execute("SELECT token_hash, user_id FROM access_tokens").fetchall()
    assert len(rows) == 1
    assert token not in rows[0][0]


def test_unknown_token(db):
    tokens = TokenStore(db, ttl_seconds=60)
    with pytest.raises(errors.TokenInvalid):
        tokens.resolve("made-up")
    with pytest.raises(errors.TokenInvalid):
        tokens.resolve("")


def test_expiry(db):
    clock = Clock()
    tokens = TokenStore(db, ttl_seconds=60, clock=clock)
    token = tokens.issue("alice")
    clock.now += timedelta(seconds=59)
    assert tokens.resolve(token).user_id == "alice"
    clock.now += timedelta(seconds=1)
    with pytest.raises(errors.TokenInvalid, match="expired"):
        tokens.resolve(token)
    # The expired token is gone for good.
    with pytest.raises(errors.TokenInvalid, match="unknown"):
        tokens.resolve(token)


def test_zero_ttl_expires_at_once(db):
    tokens = TokenStore(db, ttl_seconds=0)
    with pytest.raises(errors.TokenInvalid):
        tokens.resolve(tokens.issue("alice"))


def test_tokens_survive_a_restart(db, settings):
    token = TokenStore(db, ttl_seconds=60).issue("alice")
    again = TokenStore(open_database(settings.database_url), ttl_seconds=60)
    assert again.resolve(token).user_id == "alice"


def test_revoke(db):
    tokens = TokenStore(db, ttl_seconds=60)
    first, second, bobs = tokens.issue("alice"), tokens.issue("alice"), tokens.issue("bob")
    tokens.revoke(first)
    with pytest.raises(errors.TokenInvalid):
        tokens.resolve(first)
    assert tokens.resolve(second).user_id == "alice"
    tokens.revoke_all("alice")
    with pytest.raises(errors.TokenInvalid):
        tokens.resolve(second)
    assert tokens.resolve(bobs).user_id == "bob"


def test_removing_a_user_removes_the_tokens(db, settings):
    tokens = TokenStore(db, ttl_seconds=60)
    token = tokens.issue("alice")
    UserStore(db).remove("alice")
    with pytest.raises(errors.TokenInvalid):
        tokens.resolve(token)
    with sqlite3.connect(settings.data_dir / "terracube.db") as con:
        assert con.execute("SELECT count(*) FROM access_tokens").fetchone()[0] == 0


def test_issuing_drops_expired_tokens(db, settings):
    clock = Clock()
    tokens = TokenStore(db, ttl_seconds=10, clock=clock)
    tokens.issue("alice")
    clock.now += timedelta(seconds=11)
    tokens.issue("bob")
    with sqlite3.connect(settings.data_dir / "terracube.db") as con:
        assert con.execute("SELECT user_id FROM access_tokens").fetchall() == [("bob",)]
