"""Retention of workspaces: flag those of users inactive for N days, remove them after a warning.

A user's last activity is the latest of: the account's creation, the latest access token
issued to the user (a login), and the last use of /me, /files or /process_graphs recorded
here. `sweep` (run by `terracube serve` periodically and by `terracube workspaces sweep`)
flags the non-empty workspaces of users inactive for `workspace_inactive_days`, and removes
the files of those still flagged `workspace_warning_days` later. Logging in again clears the
flag. Folders of users that no longer exist are only reported: `terracube users remove`
deletes the workspace with the account, and a folder without a user more likely means a
wrong database setting than an account to clean up.
"""

from __future__ import annotations

import logging
import shutil
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import DateTime, ForeignKey, String, func, select
from sqlalchemy.orm import Mapped, mapped_column

from terracube.auth.tables import AccessToken
from terracube.auth.users import User
from terracube.db import Base, Database
from terracube.workspace.files import Workspace, folder_name, workspaces_root

log = logging.getLogger(__name__)

# Activity is written at most this often per user, so busy users cost no extra writes.
ACTIVITY_RESOLUTION = timedelta(minutes=30)
SWEEP_INTERVAL_SECONDS = 6 * 3600


class WorkspaceActivity(Base):
    """When a user was last seen, and since when the workspace is flagged for removal."""

    __tablename__ = "workspace_activity"

    user_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("users.user_id", ondelete="CASCADE"), primary_key=True)
    last_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    flagged: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


def record_activity(db: Database, user_id: str, now: datetime | None = None) -> None:
    """Note that the user is active (and so keeps the workspace)."""
    now = now or datetime.now(UTC)
    with db.session() as s:
        row = s.get(WorkspaceActivity, user_id)
        if row is None:
            if s.get(User, user_id) is not None:
                s.add(WorkspaceActivity(user_id=user_id, last_seen=now, flagged=None))
        elif _aware(row.last_seen) <= now - ACTIVITY_RESOLUTION or row.flagged is not None:
            row.last_seen = max(_aware(row.last_seen), now)
            row.flagged = None


@dataclass
class WorkspaceStatus:
    """One user's workspace as `terracube workspaces list` shows it."""

    user_id: str
    folder: Path
    used: int
    last_active: datetime
    flagged: datetime | None
    removal_due: datetime | None


@dataclass
class SweepReport:
    flagged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unflagged: list[str] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)  # folders of no (known) user


def last_activity(db: Database) -> dict[str, datetime]:
    """The last activity of every user (creation, latest login, recorded use)."""
    with db.session() as s:
        seen = {u.user_id: _aware(u.created) for u in s.scalars(select(User))}
        logins = s.execute(select(AccessToken.user_id, func.max(AccessToken.created))
                           .group_by(AccessToken.user_id))
        for user_id, created in logins:
            if user_id in seen and created is not None:
                seen[user_id] = max(seen[user_id], _aware(created))
        for row in s.scalars(select(WorkspaceActivity)):
            if row.user_id in seen:
                seen[row.user_id] = max(seen[row.user_id], _aware(row.last_seen))
    return seen


def workspace_status(settings: Any, db: Database) -> list[WorkspaceStatus]:
    active = last_activity(db)
    with db.session() as s:
        flags = {row.user_id: row.flagged for row in s.scalars(select(WorkspaceActivity))}
    root = workspaces_root(settings.data_dir)
    warning = timedelta(days=settings.workspace_warning_days)
    out = []
    for user_id in sorted(active):
        folder = root / folder_name(user_id)
        flagged_at = flags.get(user_id)
        flagged = _aware(flagged_at) if flagged_at else None
        out.append(WorkspaceStatus(
            user_id, folder, Workspace(folder, settings.storage_quota_bytes).usage(),
            active[user_id], flagged, flagged + warning if flagged else None))
    return out


def sweep(settings: Any, db: Database, now: datetime | None = None) -> SweepReport:
    """Flag, unflag and remove workspaces according to the retention settings."""
    now = now or datetime.now(UTC)
    report = SweepReport()
    root = workspaces_root(settings.data_dir)
    active = last_activity(db)
    report.orphans = _orphans(root, {folder_name(u) for u in active})
    for name in report.orphans:
        log.warning("workspace folder %s belongs to no user of the database; not touched",
                    root / name)
    if settings.workspace_inactive_days <= 0 or not active:
        return report
    inactive_since = now - timedelta(days=settings.workspace_inactive_days)
    warning = timedelta(days=settings.workspace_warning_days)
    for user_id, last in sorted(active.items()):
        folder = root / folder_name(user_id)
        has_files = folder.is_dir() and any(folder.iterdir())
        with db.session() as s:
            row = s.get(WorkspaceActivity, user_id)
            if row is None:
                row = WorkspaceActivity(user_id=user_id, last_seen=last, flagged=None)
                s.add(row)
            row.last_seen = max(_aware(row.last_seen), last)
            flagged = _aware(row.flagged) if row.flagged else None
            if last > inactive_since or (flagged is not None and last > flagged):
                if flagged is not None:
                    row.flagged = None
                    report.unflagged.append(user_id)
                continue
            if not has_files:
                row.flagged = None
                continue
            if flagged is None:
                row.flagged = now
                report.flagged.append(user_id)
                log.warning("workspace of %s flagged: no login since %s; its files will be "
                            "removed after %s unless the user logs in", user_id,
                            last.isoformat(timespec="seconds"),
                            (now + warning).isoformat(timespec="seconds"))
            elif now - flagged >= warning:
                shutil.rmtree(folder, ignore_errors=True)
                row.flagged = None
                report.removed.append(user_id)
                log.warning("workspace of %s removed: no login since %s", user_id,
                            last.isoformat(timespec="seconds"))
    return report


def remove_workspace(settings: Any, user_id: str) -> bool:
    """Delete a user's workspace folder; True if there was one."""
    folder = workspaces_root(settings.data_dir) / folder_name(user_id)
    if not folder.exists():
        return False
    shutil.rmtree(folder)
    return True


def _orphans(root: Path, expected: set[str]) -> list[str]:
    if not root.is_dir():
        return []
    return [entry.name for entry in sorted(root.iterdir())
            if entry.name not in expected and entry.is_dir() and not entry.is_symlink()]


class RetentionThread(threading.Thread):
    """Runs `sweep` in the background every `interval` seconds (started by `terracube serve`)."""

    def __init__(self, settings: Any, db: Database,
                 interval: float = SWEEP_INTERVAL_SECONDS) -> None:
        super().__init__(name="terracube-workspace-retention", daemon=True)
        self.settings = settings
        self.db = db
        self.interval = interval
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            try:
                sweep(self.settings, self.db)
            except Exception:  # keep serving; the next round tries again
                log.exception("workspace retention sweep failed")
            self.stopped.wait(self.interval)

    def stop(self) -> None:
        self.stopped.set()


def _aware(value: datetime) -> datetime:
    # SQLite returns naive datetimes; everything is stored in UTC.
    return value if value.tzinfo else value.replace(tzinfo=UTC)
