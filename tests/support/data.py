"""Data folders for tests that run the server or workers: each test gets its own folder
(collections, jobs, users, database) that shares the session's generated sample data."""

from __future__ import annotations

from pathlib import Path


def data_dir_with_samples(folder: Path, sample_data_dir: Path) -> Path:
    """`folder` (created if needed) as a data directory of its own whose samples/ is the
    session's generated sample collections (a symbolic link: generated once)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "samples").symlink_to(sample_data_dir / "samples", target_is_directory=True)
    return folder


def sqlite_url(folder: Path) -> str:
    """The URL of a SQLite database file in `folder`."""
    return f"sqlite:///{folder / 'terracube.db'}"
