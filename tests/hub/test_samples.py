"""samples/ re-created at every start: the package fresh, a student's changes kept beside."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from terracube.hub.samples import main, package_files, sync_samples

T1 = datetime(2026, 12, 3, 14, 16, tzinfo=UTC)
T2 = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)


def make_package(folder: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(text)
    return folder


def test_package_leaves_out_hidden_caches_and_gitignored(tmp_path: Path) -> None:
    src = make_package(tmp_path / "nb", {
        "01.ipynb": "{}", "data/a.csv": "1", ".hidden": "x", "__pycache__/m.pyc": "",
        "work/out.tif": "", "output/o.json": "", "x.pyc": "", ".gitignore": "work/\n/output/\n"})
    assert sorted(package_files(src)) == ["01.ipynb", "data/a.csv"]


def test_changed_sample_kept_beside_and_fresh_copy_installed(tmp_path: Path) -> None:
    src = make_package(tmp_path / "nb", {"01.ipynb": "lesson 1", "sub/02.py": "lesson 2",
                                         "old.md": "old"})
    home = tmp_path / "home"
    first = sync_samples(src, home, now=T1)
    assert sorted(first.installed) == ["01.ipynb", "old.md", "sub/02.py"]
    samples = home / "samples"
    (samples / "01.ipynb").write_text("lesson 1 with my notes")
    (samples / "mine.ipynb").write_text("my own notebook")
    (src / "sub" / "02.py").write_text("lesson 2, new edition")
    (src / "old.md").unlink()

    second = sync_samples(src, home, now=T2)
    assert second.kept_changed == {"01.ipynb": "01-changed-2026-12-04-090000.ipynb"}
    assert (samples / "01.ipynb").read_text() == "lesson 1"
    assert (samples / "01-changed-2026-12-04-090000.ipynb").read_text() == \
        "lesson 1 with my notes"
    assert (samples / "sub" / "02.py").read_text() == "lesson 2, new edition"
    assert (samples / "mine.ipynb").read_text() == "my own notebook"  # not the package's
    assert not (samples / "old.md").exists() and second.removed == ["old.md"]
    # nothing changed since: a third start keeps everything as it is
    third = sync_samples(src, home, now=T2)
    assert third.kept_changed == {} and third.removed == []
    assert len(list(samples.glob("01-changed-*"))) == 1


def test_a_student_file_named_like_a_new_sample_is_kept(tmp_path: Path) -> None:
    src = make_package(tmp_path / "nb", {"01.ipynb": "lesson 1"})
    home = tmp_path / "home"
    sync_samples(src, home, now=T1)
    (home / "samples" / "02.ipynb").write_text("a student's file")
    (src / "02.ipynb").write_text("lesson 2")
    report = sync_samples(src, home, now=T2)
    assert (home / "samples" / "02.ipynb").read_text() == "lesson 2"
    kept = home / "samples" / report.kept_changed["02.ipynb"]
    assert kept.read_text() == "a student's file"


def test_command_line(tmp_path: Path, capsys) -> None:
    src = make_package(tmp_path / "nb", {"01.ipynb": "lesson 1"})
    assert main([str(src), str(tmp_path / "home")]) == 0
    assert (tmp_path / "home" / "samples" / "01.ipynb").read_text() == "lesson 1"
    assert "1 sample files installed" in capsys.readouterr().out
