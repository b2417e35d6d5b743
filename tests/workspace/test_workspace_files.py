"""Workspace folders on a real file system: path safety, quota, uploads, listing, deleting."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from terracube import errors
from terracube.settings import Settings
from terracube.workspace import files as ws_files
from terracube.workspace.files import (
    UPLOAD_PREFIX,
    Workspace,
    folder_name,
    split_path,
    workspace_folder,
)


@pytest.fixture
def ws(tmp_path) -> Workspace:
    return Workspace(tmp_path / "workspaces" / "alice", quota=1000)


def upload(ws: Workspace, path: str, data: bytes, chunk: int = 7):
    up = ws.begin_upload(path, None)
    for i in range(0, len(data), chunk):
        up.write(data[i:i + chunk])
    return up.commit()


def leftovers(ws: Workspace) -> list[str]:
    return sorted(p.name for p in ws.root.rglob(f"{UPLOAD_PREFIX}*"))


# --- paths -----------------------------------------------------------------------------------
@pytest.mark.parametrize("path, parts", [
    ("a.txt", ("a.txt",)),
    ("borders/europe.geojson", ("borders", "europe.geojson")),
    ("europe/österreich/münster.shp", ("europe", "österreich", "münster.shp")),
    (".hidden", (".hidden",)),
    ("a b/c..d", ("a b", "c..d")),
])
def test_valid_paths(path, parts):
    assert split_path(path) == parts


@pytest.mark.parametrize("path", [
    "", "/etc/passwd", "../x", "a/../../x", "a/..", "./a", "a/./b", "a//b", "a/", "..",
    "c:/x", "a\\b", "it's", 'say"hi"', "a\nb", "a\rb", "a\0b",
    "x" * 256, "a/" * 600 + "b", f"{UPLOAD_PREFIX}1.part", f"d/{UPLOAD_PREFIX}x",
])
def test_invalid_paths(path):
    with pytest.raises(errors.FilePathInvalid):
        split_path(path)


def test_symlinks_are_not_followed(tmp_path, ws):
    outside = tmp_path / "secret"
    outside.mkdir()
    (outside / "key.txt").write_text("secret")
    upload(ws, "real/file.txt", b"ok")
    (ws.root / "out").symlink_to(outside)
    (ws.root / "link.txt").symlink_to(outside / "key.txt")
    (ws.root / "inner.txt").symlink_to(ws.root / "real" / "file.txt")
    for path in ("out/key.txt", "link.txt", "inner.txt"):
        with pytest.raises(errors.FilePathInvalid, match="symbolic link"):
            ws.file_to_read(path)
        with pytest.raises(errors.FilePathInvalid):
            ws.delete(path)
    with pytest.raises(errors.FilePathInvalid):
        ws.begin_upload("out/new.txt")
    assert [f.path for f in ws.list_files()] == ["real/file.txt"]
    assert ws.usage() == 2  # the linked file is not counted
    assert (outside / "key.txt").read_text() == "secret"
    assert not (outside / "new.txt").exists()


def test_folder_names_are_safe_and_distinct():
    ids = ["alice", "Alice", "ALICE", ".", "..", ".x", "^.x", "a.b", "a~b", "x" * 64]
    names = [folder_name(u) for u in ids if "^" not in u]
    assert len(set(names)) == len(names)
    assert len({n.lower() for n in names}) == len(names)  # case-insensitive file systems
    assert folder_name("alice") == "alice"
    for name in names:
        assert name not in (".", "..") and not name.startswith(".") and "/" not in name


def test_workspace_folder_is_below_data_dir(tmp_path):
    settings = Settings(data_dir=tmp_path)
    assert workspace_folder(settings, "..") .parent == tmp_path / "workspaces"
    assert workspace_folder(settings, "bob") == tmp_path / "workspaces" / "bob"


# --- uploads ---------------------------------------------------------------------------------
def test_upload_list_read(ws):
    info = upload(ws, "dir/sub/data.bin", b"0123456789")
    assert (info.path, info.size) == ("dir/sub/data.bin", 10)
    assert info.to_json()["modified"].endswith("Z")
    upload(ws, "a.txt", b"abc")
    assert [(f.path, f.size) for f in ws.list_files()] == [("a.txt", 3),
                                                            ("dir/sub/data.bin", 10)]
    path, st = ws.file_to_read("dir/sub/data.bin")
    assert path.read_bytes() == b"0123456789" and st.st_size == 10
    assert ws.usage() == 13 and ws.free() == 987
    assert leftovers(ws) == []


def test_replacing_a_file_frees_its_old_size(ws):
    upload(ws, "f", b"x" * 600)
    upload(ws, "f", b"y" * 900)  # 600 + 900 > 1000, but the old 600 go away
    assert ws.usage() == 900
    assert (ws.root / "f").read_bytes() == b"y" * 900


def test_quota_exceeded_while_streaming_leaves_nothing(ws):
    upload(ws, "keep.txt", b"k" * 500)
    up = ws.begin_upload("big.bin")
    up.write(b"x" * 400)
    with pytest.raises(errors.StorageQuotaExceeded) as info:
        up.write(b"x" * 200)
    assert info.value.status == 400
    assert "500 of your 1000 bytes are free" in info.value.message
    assert leftovers(ws) == [] and not (ws.root / "big.bin").exists()
    assert [f.path for f in ws.list_files()] == ["keep.txt"]


def test_quota_refused_up_front_with_a_size_hint(ws):
    with pytest.raises(errors.StorageQuotaExceeded):
        ws.begin_upload("big.bin", size_hint=1001)
    assert leftovers(ws) == []


def test_exactly_the_quota_fits(ws):
    upload(ws, "full", b"x" * 1000)
    assert ws.free() == 0
    with pytest.raises(errors.StorageQuotaExceeded):
        upload(ws, "one_more", b"x")
    assert upload(ws, "empty", b"").size == 0


def test_replacing_keeps_the_old_file_until_complete(ws):
    upload(ws, "f", b"old")
    up = ws.begin_upload("f")
    up.write(b"new content")
    assert (ws.root / "f").read_bytes() == b"old"  # readers see the old file meanwhile
    assert [f.path for f in ws.list_files()] == ["f"]  # the temporary file is not listed
    up.abort()
    assert (ws.root / "f").read_bytes() == b"old" and leftovers(ws) == []


def test_concurrent_uploads_count_against_each_other(ws, monkeypatch):
    monkeypatch.setattr(ws_files, "RESERVE_STEP_BYTES", 100)
    first = ws.begin_upload("one")
    second = ws.begin_upload("two")
    first.write(b"x" * 600)
    with pytest.raises(errors.StorageQuotaExceeded):
        second.write(b"y" * 200)
        second.write(b"y" * 300)  # the 600 bytes of `first` count
    first.commit()
    assert ws.usage() == 600 and leftovers(ws) == []


def test_announced_sizes_are_reserved(ws):
    first = ws.begin_upload("one", size_hint=600)
    assert ws.usage() == 600  # reserved before a byte arrived
    with pytest.raises(errors.StorageQuotaExceeded, match="400 of your 1000 bytes are free"):
        ws.begin_upload("two", size_hint=600)
    second = ws.begin_upload("two", size_hint=400)
    first.write(b"x" * 300)
    first.abort()  # releases its 600 bytes
    assert ws.usage() == 400
    second.write(b"y" * 400)
    assert second.commit().size == 400
    assert ws.usage() == 400 and leftovers(ws) == []


def test_a_shorter_body_than_announced_keeps_its_real_size(ws):
    up = ws.begin_upload("f", size_hint=900)
    up.write(b"abc")
    assert up.commit().size == 3 and (ws.root / "f").read_bytes() == b"abc"
    assert ws.usage() == 3


def test_temporary_files_of_dead_uploads_are_removed(ws):
    ws.root.mkdir(parents=True)
    orphan = ws.root / f"{UPLOAD_PREFIX}dead.part"
    with open(orphan, "wb") as f:  # nobody holds its lock: its process died
        f.truncate(900)
    up = ws.begin_upload("f", size_hint=500)
    assert not orphan.exists()
    up.abort()


def test_upload_onto_a_folder_or_through_a_file(ws):
    upload(ws, "dir/file.txt", b"1")
    with pytest.raises(errors.FilePathInvalid, match="existing folder"):
        ws.begin_upload("dir")
    with pytest.raises(errors.FilePathInvalid, match="is a file"):
        ws.begin_upload("dir/file.txt/inner.txt")
    assert leftovers(ws) == []


def test_disk_errors_become_storage_failure(ws, monkeypatch):
    up = ws.begin_upload("f", size_hint=3)

    class FullDisk:
        def write(self, _data):
            raise OSError(28, "No space left on device")

        def close(self):
            pass

    up._file.close()
    up._file = FullDisk()
    with pytest.raises(errors.StorageFailure, match="No space left"):
        up.write(b"abc")
    assert leftovers(ws) == []


# --- reading and deleting ------------------------------------------------------------------------
def test_missing_files_and_folders(ws):
    upload(ws, "dir/file.txt", b"1")
    for path in ("nope.txt", "dir/nope", "dir/file.txt/deeper", "nodir/x"):
        with pytest.raises(errors.FileNotFound):
            ws.file_to_read(path)
        with pytest.raises(errors.FileNotFound):
            ws.delete(path)
    with pytest.raises(errors.FileOperationUnsupported):
        ws.file_to_read("dir")
    with pytest.raises(errors.FileOperationUnsupported):
        ws.delete("dir")
    assert (ws.root / "dir" / "file.txt").exists()


def test_delete_removes_empty_folders_but_not_the_workspace(ws):
    upload(ws, "a/b/c/one.txt", b"1")
    upload(ws, "a/two.txt", b"2")
    ws.delete("a/b/c/one.txt")
    assert not (ws.root / "a" / "b").exists()
    assert (ws.root / "a" / "two.txt").exists()
    ws.delete("a/two.txt")
    assert ws.root.is_dir() and list(ws.root.iterdir()) == []


def test_empty_workspace(ws):
    assert not ws.root.exists()
    assert ws.list_files() == [] and ws.usage() == 0 and ws.free() == 1000


def test_listing_skips_special_files(ws):
    upload(ws, "f", b"1")
    os.mkfifo(ws.root / "pipe")
    (ws.root / "emptydir").mkdir()
    assert [f.path for f in ws.list_files()] == ["f"]


def test_temporary_names_cannot_be_addressed(ws):
    up = ws.begin_upload("f")
    temp = Path(up.temp).name
    with pytest.raises(errors.FilePathInvalid):
        ws.file_to_read(temp)
    with pytest.raises(errors.FilePathInvalid):
        ws.delete(temp)
    up.abort()
