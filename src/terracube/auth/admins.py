"""The admin role of user accounts: who administers the server (e.g. the course hub's admin page).

A table of its own rather than a column of `users`: existing databases get it from
`create_tables` without a migration, and removing a user removes the role with it (ON DELETE
CASCADE). `terracube users admin NAME [--revoke]` sets it.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import DateTime, ForeignKey, String, select
from sqlalchemy.orm import Mapped, mapped_column

from terracube.auth.users import User, UserNotFound
from terracube.db import Base, Database


class AdminRole(Base):
    """A user who holds the admin role, and since when."""

    __tablename__ = "user_admins"

    user_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("users.user_id", ondelete="CASCADE"), primary_key=True)
    granted: Mapped[datetime] = mapped_column(DateTime(timezone=True))


def is_admin(db: Database, user_id: str) -> bool:
    with db.session() as s:
        return s.get(AdminRole, user_id) is not None


def set_admin(db: Database, user_id: str, admin: bool = True) -> None:
    """Grant (or with admin=False revoke) the admin role; UserNotFound for unknown users."""
    with db.session() as s:
        if s.get(User, user_id) is None:
            raise UserNotFound(f"no user '{user_id}'")
        row = s.get(AdminRole, user_id)
        if admin and row is None:
            s.add(AdminRole(user_id=user_id, granted=datetime.now(UTC)))
        elif not admin and row is not None:
            s.delete(row)


def admin_ids(db: Database) -> set[str]:
    with db.session() as s:
        return set(s.scalars(select(AdminRole.user_id)))
