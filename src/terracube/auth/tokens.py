"""Bearer tokens for openEO basic authentication: opaque random strings, stored only as hashes.

GET /credentials/basic checks the HTTP Basic credentials and issues a token; clients then send
`Authorization: Bearer basic//<token>` (openEO API 1.2, "Bearer" security scheme).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete

from terracube import errors
from terracube.auth.tables import AccessToken, User
from terracube.db import Database

# The prefix openEO puts before tokens obtained from /credentials/basic.
BASIC_TOKEN_PREFIX = "basic//"


class TokenStore:
    """Issues and resolves access tokens with a fixed lifetime."""

    def __init__(self, db: Database, ttl_seconds: int,
                 clock: Callable[[], datetime] | None = None) -> None:
        self.db = db
        self.ttl = timedelta(seconds=ttl_seconds)
        self._now = clock or (lambda: datetime.now(UTC))

    def issue(self, user_id: str) -> str:
        """A new token for the user (without the basic// prefix)."""
        token = secrets.token_urlsafe(32)
        now = self._now()
        with self.db.session() as s:
            # Housekeeping: issuing is rare, so drop the expired tokens here.
            s.execute(delete(AccessToken).where(AccessToken.expires <= now))
            s.add(AccessToken(token_hash=_digest(token), user_id=user_id, created=now,
                              expires=now + self.ttl))
        return token

    def resolve(self, token: str) -> User:
        """The user a token belongs to; TokenInvalid if unknown or expired."""
        user = None
        expired = False
        with self.db.session() as s:
            record = s.get(AccessToken, _digest(token)) if token else None
            if record is not None and _aware(record.expires) <= self._now():
                s.delete(record)
                expired = True
            elif record is not None:
                user = s.get(User, record.user_id)
        if expired:
            raise errors.TokenInvalid(
                "The access token has expired; log in again with GET /credentials/basic.")
        if user is None:
            raise errors.TokenInvalid(
                "The access token is unknown or was revoked; log in again with "
                "GET /credentials/basic.")
        return user

    def revoke(self, token: str) -> None:
        with self.db.session() as s:
            s.execute(delete(AccessToken).where(AccessToken.token_hash == _digest(token)))

    def revoke_all(self, user_id: str) -> None:
        with self.db.session() as s:
            s.execute(delete(AccessToken).where(AccessToken.user_id == user_id))


def _digest(token: str) -> str:
    # Tokens are 256 random bits, so a fast unsalted hash is enough to make a leaked
    # database useless for logging in.
    return hashlib.sha256(token.encode()).hexdigest()


def _aware(value: datetime) -> datetime:
    # SQLite returns naive datetimes; everything is stored in UTC.
    return value if value.tzinfo else value.replace(tzinfo=UTC)
