"""samples/ in each lab: a fresh copy of the training package at every start, edits kept beside.

At each start the files of the package replace those in `samples/`. A student's changes are
never lost and never block the update: a file that differs from what was installed last time
(recorded by hash in `.terracube/samples.json` of the home) is first renamed beside, e.g.
`01-intro.ipynb` -> `01-intro-changed-2026-12-03-1416.ipynb`. Files the student added to
`samples/` (and the renamed copies) are left alone; package files that were removed from the
package and not changed are removed.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

MANIFEST = Path(".terracube") / "samples.json"
# Never part of the package: editor and build leftovers of the repository's notebooks/ folder.
SKIPPED_NAMES = frozenset({"__pycache__", ".ipynb_checkpoints", ".pytest_cache", ".git"})


@dataclass
class SamplesReport:
    """What a sync did (relative paths below samples/)."""

    installed: list[str] = field(default_factory=list)
    kept_changed: dict[str, str] = field(default_factory=dict)  # file -> its renamed copy
    removed: list[str] = field(default_factory=list)


def package_files(source: Path) -> dict[str, Path]:
    """The files of the training package by their '/'-separated path below `source`.

    Hidden files, caches and what the folder's own .gitignore names (e.g. the outputs of
    running the notebooks in the repository) are not part of it.
    """
    out: dict[str, Path] = {}
    if not source.is_dir():
        return out
    ignored = _gitignore_patterns(source)
    for folder, dirs, files in os.walk(source):
        rel_folder = Path(folder).relative_to(source).as_posix()
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_NAMES and not d.startswith(".")
                         and not _ignored(_join(rel_folder, d), True, ignored))
        for name in sorted(files):
            rel = _join(rel_folder, name)
            if (name.startswith(".") or name.endswith((".pyc", ".pyo"))
                    or _ignored(rel, False, ignored)):
                continue
            out[rel] = Path(folder) / name
    return out


def _join(folder: str, name: str) -> str:
    return name if folder == "." else f"{folder}/{name}"


def _gitignore_patterns(source: Path) -> list[str]:
    try:
        lines = (source / ".gitignore").read_text().splitlines()
    except OSError:
        return []
    return [line.strip() for line in lines if line.strip() and not line.startswith(("#", "!"))]


def _ignored(rel: str, is_dir: bool, patterns: list[str]) -> bool:
    """A simple reading of .gitignore: 'name', 'name/' (folders only), '/anchored', globs."""
    name = rel.rsplit("/", 1)[-1]
    for pattern in patterns:
        if pattern.endswith("/"):
            if not is_dir:
                continue
            pattern = pattern[:-1]
        if pattern.startswith("/") or "/" in pattern:
            if fnmatch.fnmatchcase(rel, pattern.lstrip("/")):
                return True
        elif fnmatch.fnmatchcase(name, pattern):
            return True
    return False


def sync_samples(source: Path, home: Path, folder: str = "samples",
                 now: datetime | None = None) -> SamplesReport:
    """Re-create `home/folder` from `source`, keeping changed files beside (renamed)."""
    now = now or datetime.now(UTC)
    target = home / folder
    manifest_path = home / MANIFEST
    try:
        installed: dict[str, str] = json.loads(manifest_path.read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        installed = {}
    report = SamplesReport()
    package = package_files(source)
    target.mkdir(parents=True, exist_ok=True)
    stamp = now.strftime("%Y-%m-%d-%H%M%S")
    # 1. Keep what the student changed: rename it out of the way before anything is replaced.
    for rel in sorted(set(installed) | set(package)):
        current = target / rel
        if not current.is_file() or current.is_symlink():
            continue
        digest = _sha256(current)
        expected = installed.get(rel)
        if expected is None:
            # Not installed by us before (first start, or a file the student made under the
            # same name as a new package file): keep it unless it is the package's content.
            if rel in package and digest == _sha256(package[rel]):
                continue
        elif digest == expected:
            if rel not in package:  # an unchanged file the package no longer has
                current.unlink()
                report.removed.append(rel)
            continue
        renamed = _free_name(current, stamp)
        current.rename(renamed)
        report.kept_changed[rel] = renamed.relative_to(target).as_posix()
    # 2. A fresh copy of every package file.
    hashes: dict[str, str] = {}
    for rel, src in package.items():
        dest = target / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.is_symlink() or (dest.exists() and not dest.is_file()):
            _remove(dest)
        tmp = dest.with_name(f".{dest.name}.tc-new")
        shutil.copyfile(src, tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
        hashes[rel] = _sha256(dest)
        report.installed.append(rel)
    manifest_path.parent.mkdir(parents=True, exist_ok=True)
    manifest_path.write_text(json.dumps({"source": str(source), "installed": now.isoformat(),
                                         "files": hashes}, indent=1))
    return report


def _free_name(path: Path, stamp: str) -> Path:
    candidate = path.with_name(f"{path.stem}-changed-{stamp}{path.suffix}")
    n = 2
    while candidate.exists():
        candidate = path.with_name(f"{path.stem}-changed-{stamp}-{n}{path.suffix}")
        n += 1
    return candidate


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def main(argv: list[str] | None = None) -> int:
    """`python -m terracube.hub.samples SOURCE HOME`: the sync a container's start hook runs
    (KubeSpawner/DockerSpawner, docs/administration/hub.md)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m terracube.hub.samples",
                                     description=main.__doc__)
    parser.add_argument("source", type=Path, help="the training package (notebooks/)")
    parser.add_argument("home", type=Path, help="the user's home; samples/ is made there")
    args = parser.parse_args(argv)
    report = sync_samples(args.source, args.home)
    for original, kept in report.kept_changed.items():
        print(f"samples/{original} was changed: kept as samples/{kept}")
    print(f"{len(report.installed)} sample files installed in {args.home / 'samples'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
