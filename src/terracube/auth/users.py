"""User accounts: argon2 password hashes; add, list, remove, change password (table: tables.py)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, select

from terracube import errors
from terracube.auth.tables import AccessToken, OidcIdentity, User
from terracube.db import Database
from terracube.settings import Settings, UnsafeToServe, is_loopback

# openEO user_id pattern (GET /me); the id is also the login name and a folder name.
USER_ID_PATTERN = re.compile(r"^[\w\-.~]{1,64}$", re.ASCII)

DEV_USER = "demo"
DEV_PASSWORD = "demo"


class UserExists(ValueError):
    """A user with that name already exists."""


class UserNotFound(LookupError):
    """No user with that name."""


class UserStore:
    """User accounts in the database."""

    def __init__(self, db: Database, hasher: PasswordHasher | None = None) -> None:
        self.db = db
        self.hasher = hasher or PasswordHasher()
        # Verified against when the user does not exist, so both cases take the same time.
        self._dummy_hash = self.hasher.hash("terracube-no-such-user")

    def add(self, user_id: str, password: str) -> User:
        check_user_id(user_id)
        check_password(password)
        with self.db.session() as s:
            if s.get(User, user_id) is not None:
                raise UserExists(f"user '{user_id}' already exists")
            user = User(user_id=user_id, password_hash=self.hasher.hash(password),
                        created=datetime.now(UTC))
            s.add(user)
        return user

    def get(self, user_id: str) -> User:
        with self.db.session() as s:
            user = s.get(User, user_id)
        if user is None:
            raise UserNotFound(f"no user '{user_id}'")
        return user

    def exists(self, user_id: str) -> bool:
        with self.db.session() as s:
            return s.get(User, user_id) is not None

    def list(self) -> list[User]:
        with self.db.session() as s:
            return list(s.scalars(select(User).order_by(User.user_id)))

    def remove(self, user_id: str) -> None:
        with self.db.session() as s:
            user = s.get(User, user_id)
            if user is None:
                raise UserNotFound(f"no user '{user_id}'")
            s.execute(delete(AccessToken).where(AccessToken.user_id == user_id))
            s.execute(delete(OidcIdentity).where(OidcIdentity.user_id == user_id))
            s.delete(user)

    def set_password(self, user_id: str, password: str) -> None:
        """Change the password; the user's existing tokens stop working."""
        check_password(password)
        with self.db.session() as s:
            user = s.get(User, user_id)
            if user is None:
                raise UserNotFound(f"no user '{user_id}'")
            user.password_hash = self.hasher.hash(password)
            s.execute(delete(AccessToken).where(AccessToken.user_id == user_id))

    def authenticate(self, user_id: str, password: str) -> User:
        """The user if the password is right, else CredentialsInvalid (same for unknown users)."""
        with self.db.session() as s:
            user = s.get(User, user_id) if USER_ID_PATTERN.match(user_id) else None
            stored = user.password_hash if user is not None else self._dummy_hash
            try:
                self.hasher.verify(stored, password)
            except (VerificationError, InvalidHashError):
                user = None
            if user is None:
                raise errors.CredentialsInvalid(
                    "The user name or password is wrong.")
            if self.hasher.check_needs_rehash(stored):
                user.password_hash = self.hasher.hash(password)
        return user

    def has_password(self, user_id: str, password: str) -> bool:
        try:
            self.authenticate(user_id, password)
        except errors.CredentialsInvalid:
            return False
        return True

    def ensure_dev_user(self) -> bool:
        """Create demo/demo if there is no user 'demo'; True if it was created."""
        if self.exists(DEV_USER):
            return False
        try:
            self.add(DEV_USER, DEV_PASSWORD)
        except UserExists:  # created concurrently by another process
            return False
        return True


def check_user_id(user_id: str) -> None:
    if not USER_ID_PATTERN.match(user_id or ""):
        raise ValueError(
            f"invalid user name {user_id!r}: use 1-64 letters, digits, '_', '-', '.' or '~'")


def check_password(password: str) -> None:
    if not password:
        raise ValueError("the password must not be empty")


def check_safe_to_serve(settings: Settings, users: UserStore) -> None:
    """Refuse well-known credentials on a server reachable from other machines."""
    if is_loopback(settings.host):
        return
    if settings.dev_default_user:
        raise UnsafeToServe(
            f"refusing to serve on {settings.host}: the dev default user {DEV_USER}/"
            f"{DEV_PASSWORD} is enabled (TERRACUBE_DEV_DEFAULT_USER); turn it off or serve on "
            "127.0.0.1")
    if users.has_password(DEV_USER, DEV_PASSWORD):
        raise UnsafeToServe(
            f"refusing to serve on {settings.host}: user '{DEV_USER}' still has the default "
            f"password; change it with 'terracube users passwd {DEV_USER}' or remove it with "
            f"'terracube users remove {DEV_USER}'")
