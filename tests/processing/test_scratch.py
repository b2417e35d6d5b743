"""Where synchronous results are written (processing/scratch.py): in the RAM folder while they
fit its budget, else on disk; deleted after the response, when the client leaves, and at the
next start after a kill. Real servers, real downloads, values checked with scipy."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
import scipy.ndimage
import xarray as xr
from tests.support.data import data_dir_with_samples, sample_series
from tests.support.processes import ServerProcess, wait_for

from terracube.catalog.samples.sentinel2_synthetic import SAMPLE_BOUNDS
from terracube.processing.scratch import (
    RESULT_FOLDER_PREFIX,
    ResultScratch,
    expected_result_bytes,
)

# B08 of every date of the sample, smoothed: 36 x 384² float32, 21 MB, more than a loopback
# connection buffers, so the server is still sending when the test looks.
_BOX = dict(zip(("west", "south", "east", "north"), SAMPLE_BOUNDS))
_GRAPH = {
    "load": {"process_id": "load_collection", "arguments": {
        "id": "SENTINEL2_L2A", "bands": ["B08"],
        "spatial_extent": {**_BOX, "crs": "EPSG:32632"}}},
    "smooth": {"process_id": "apply_kernel", "arguments": {
        "data": {"from_node": "load"}, "kernel": [[1, 1, 1]] * 3, "factor": 1 / 9}},
    "save": {"process_id": "save_result", "arguments": {
        "data": {"from_node": "smooth"}, "format": "netCDF"}, "result": True}}


def _folders(parent: Path) -> list[Path]:
    return sorted(parent.glob(f"{RESULT_FOLDER_PREFIX}*"))


def _start(tmp_path: Path, sample_data_dir: Path, ram_bytes: int) -> tuple[ServerProcess,
                                                                            Path, Path]:
    ram, disk = tmp_path / "ram", tmp_path / "disk"
    ram.mkdir()
    disk.mkdir()
    data = data_dir_with_samples(tmp_path / "data", sample_data_dir)
    server = ServerProcess(data, {"TERRACUBE_SYNC_RESULT_RAM_DIR": str(ram),
                                  "TERRACUBE_SYNC_RESULT_RAM_BYTES": str(ram_bytes),
                                  "TMPDIR": str(disk)})
    return server, ram, disk


def _auth(server: ServerProcess) -> dict[str, str]:
    token = httpx.get(f"{server.api}credentials/basic", auth=("demo", "demo")).json()
    return {"Authorization": f"Bearer basic//{token['access_token']}"}


@pytest.mark.parametrize("ram_bytes", [4 * 1024**3, 1000])
def test_a_result_is_written_where_it_fits_sent_and_deleted(tmp_path, sample_data_dir,
                                                            ram_bytes):
    server, ram, disk = _start(tmp_path, sample_data_dir, ram_bytes)
    try:
        out = tmp_path / "result.nc"
        with httpx.stream("POST", f"{server.api}result", json={"process": {
                "process_graph": _GRAPH}}, headers=_auth(server), timeout=300) as r:
            assert r.status_code == 200, r.read()
            assert r.headers["content-type"] == "application/x-netcdf"
            assert "openeo-costs" in r.headers
            size = int(r.headers["content-length"])
            # the response has started: its file is where the budget put it
            used, unused = (ram, disk) if ram_bytes > 1000 else (disk, ram)
            (folder,) = _folders(used)
            assert _folders(unused) == []
            assert (folder / "result.nc").stat().st_size == size
            with open(out, "wb") as f:
                for chunk in r.iter_bytes():
                    f.write(chunk)
        assert out.stat().st_size == size
        wait_for(lambda: not _folders(ram) and not _folders(disk), timeout=30,
                 what="the result folder deleted after the response")
    finally:
        server.stop()
    # the values: scipy's 3x3 mean (no-data as 0, zeros beyond the edge) of the sample files
    with xr.open_dataset(out) as ds:
        for band in ("B08",):
            series = sample_series(sample_data_dir, band, _BOX, "2022-01-01", "2023-01-01")
            assert ds.sizes["t"] == len(series)
            for i, values in enumerate(series.values()):
                clean = np.nan_to_num(values.astype(np.float32), nan=0.0)
                expected = scipy.ndimage.correlate(clean, np.ones((3, 3)), mode="constant")
                expected *= np.float32(1 / 9)
                np.testing.assert_array_equal(ds[band].values[i], expected)


def test_a_client_that_leaves_during_the_download_leaves_no_file(tmp_path, sample_data_dir):
    server, ram, disk = _start(tmp_path, sample_data_dir, 4 * 1024**3)
    try:
        with httpx.stream("POST", f"{server.api}result", json={"process": {
                "process_graph": _GRAPH}}, headers=_auth(server), timeout=300) as r:
            assert r.status_code == 200
            next(r.iter_raw(65536))
            assert len(_folders(ram)) == 1
        # the connection is closed with most of the file unsent
        wait_for(lambda: not _folders(ram) and not _folders(disk), timeout=30,
                 what="the result folder deleted after the client left")
        # the RAM it held is free again: the next result fits
        with httpx.stream("POST", f"{server.api}result", json={"process": {
                "process_graph": _GRAPH}}, headers=_auth(server), timeout=300) as r:
            assert r.status_code == 200
            assert len(_folders(ram)) == 1 and _folders(disk) == []
            r.read()
    finally:
        server.stop()


def test_a_start_removes_result_folders_of_killed_servers_from_ram(tmp_path,
                                                                   sample_data_dir):
    ram = tmp_path / "ram"
    ram.mkdir()
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    stale = ram / f"{RESULT_FOLDER_PREFIX}{int(gone.stdout)}-abc"
    live = ram / f"{RESULT_FOLDER_PREFIX}{os.getpid()}-def"
    for folder in (stale, live):
        folder.mkdir()
        (folder / "result.nc").write_bytes(b"x" * 1000)
    data = data_dir_with_samples(tmp_path / "data", sample_data_dir)
    server = ServerProcess(data, {"TERRACUBE_SYNC_RESULT_RAM_DIR": str(ram)})
    try:
        assert httpx.get(server.api).status_code == 200
        assert not stale.exists()
        assert live.exists()
    finally:
        server.stop()


# --- the budget -----------------------------------------------------------------------------
def test_the_budget_decides_and_released_folders_give_it_back(tmp_path):
    ram, disk = tmp_path / "ram", tmp_path / "disk"
    ram.mkdir()
    disk.mkdir()
    scratch = ResultScratch(ram, 100 * 1024**2, disk)
    first = scratch.folder(50 * 1024**2)
    assert first.in_ram and first.path.parent == ram and first.path.is_dir()
    second = scratch.folder(50 * 1024**2)  # 2 x (50 MB + headroom) > 100 MB: on disk
    assert not second.in_ram and second.path.parent == disk
    unsized = scratch.folder(None)  # not sized by the dry run: disk
    assert not unsized.in_ram
    first.release()
    first.release()  # twice is once
    assert not first.path.exists() and scratch.reserved == 0
    third = scratch.folder(50 * 1024**2)
    assert third.in_ram
    for folder in (second, third, unsized):
        folder.release()
    assert _folders(ram) == [] and _folders(disk) == [] and scratch.reserved == 0


def test_no_usable_ram_folder_means_the_disk(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    for ram in (tmp_path / "missing", None):
        scratch = ResultScratch(ram, 100 * 1024**2, disk)
        folder = scratch.folder(1000)
        assert not folder.in_ram and folder.path.parent == disk
        folder.release()
    # a budget larger than the file system's free space: the free space decides
    ram = tmp_path / "ram"
    ram.mkdir()
    scratch = ResultScratch(ram, 2**62, disk)
    assert not scratch.folder(2**61).in_ram


def test_expected_bytes_count_the_writers_second_files():
    assert expected_result_bytes([]) is None
    assert expected_result_bytes([{"format": "netCDF", "bytes": 100}]) == 100
    assert expected_result_bytes([{"format": "GTiff", "bytes": 100}]) == 200  # scratch + COG
    assert expected_result_bytes([{"format": "netCDF", "bytes": 100},
                                  {"format": "JSON", "bytes": 10}]) == 220  # files + tar
