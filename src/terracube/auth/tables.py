"""The account tables: users, the access tokens issued to them and the OpenID Connect
identities signed in as them (ORM models only).

Both stores build on them — users.py (accounts, passwords) and tokens.py (issuing and
resolving tokens) — so a password change can revoke tokens without users.py importing
tokens.py.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from terracube.db import Base


class User(Base):
    """A user account; `user_id` is both the login name and the openEO user id."""

    __tablename__ = "users"

    user_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    @property
    def name(self) -> str:
        return self.user_id

    def __repr__(self) -> str:
        return f"User({self.user_id!r})"



class AccessToken(Base):
    """An issued token; the token itself is never stored, only its SHA-256."""

    __tablename__ = "access_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("users.user_id", ondelete="CASCADE"), index=True)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class OidcIdentity(Base):
    """A person of an OpenID Connect provider (issuer + subject) and the account they use
    (auth/oidc.py). A table of its own: existing databases get it without a migration."""

    __tablename__ = "oidc_identities"

    issuer: Mapped[str] = mapped_column(String(255), primary_key=True)
    subject: Mapped[str] = mapped_column(String(255), primary_key=True)
    user_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("users.user_id", ondelete="CASCADE"), index=True)
    provider_id: Mapped[str] = mapped_column(String(20))
    name: Mapped[str | None] = mapped_column(String(255), nullable=True)
    email: Mapped[str | None] = mapped_column(String(255), nullable=True)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True))
