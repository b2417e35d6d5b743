"""The data directory of `terracube serve` is private to its account (issue 16, item 8): the
database, workspaces and uploaded files are not readable by other local users."""

from __future__ import annotations

import stat

import httpx
from tests.support.data import data_dir_with_samples


def test_database_workspaces_and_uploads_are_private(tmp_path, sample_data_dir, start_server):
    data = data_dir_with_samples(tmp_path / "data", sample_data_dir)
    data.chmod(0o755)  # as an earlier version (umask 022) left it
    srv = start_server(data)
    token = httpx.get(f"{srv.api}credentials/basic", auth=("demo", "demo")).json()
    auth = {"Authorization": f"Bearer basic//{token['access_token']}"}
    r = httpx.put(f"{srv.api}files/notes/private.txt", content=b"secret", headers=auth)
    assert r.status_code == 200, r.text

    def mode(path) -> int:
        return stat.S_IMODE(path.stat().st_mode)

    assert mode(data) == 0o700
    assert mode(data / "terracube.db") == 0o600
    (uploaded,) = [p for p in data.rglob("private.txt") if "samples" not in p.parts]
    assert mode(uploaded) == 0o600
    folder = uploaded.parent
    while folder != data:
        assert mode(folder) == 0o700, folder
        folder = folder.parent


def test_a_start_removes_result_folders_of_killed_servers(tmp_path, sample_data_dir,
                                                          start_server):
    import os
    import subprocess
    import sys

    tmp = tmp_path / "tmp"
    tmp.mkdir()
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead_pid = int(gone.stdout)
    stale = tmp / f"terracube-result-{dead_pid}-abc"
    live = tmp / f"terracube-result-{os.getpid()}-def"
    other = tmp / "terracube-result-xyz"  # not named by a pid: not ours to judge
    for folder in (stale, live, other):
        folder.mkdir()
        (folder / "result.tif").write_bytes(b"x")
    data = data_dir_with_samples(tmp_path / "data", sample_data_dir)
    srv = start_server(data, {"TMPDIR": str(tmp)})
    assert httpx.get(srv.api).status_code == 200
    assert not stale.exists()
    assert live.exists() and other.exists()
