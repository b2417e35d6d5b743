"""Hostile UDFs: each is contained by the sandbox (bubblewrap + rlimits) and ends in an openEO
error or sees nothing, while the calling process carries on. Run through run_udf on small arrays."""

from __future__ import annotations

import os
import socket
import subprocess
import time

import numpy as np
import pytest
import xarray as xr
from tests.support.markers import needs_sandbox

from terracube import errors
from terracube.engine.evaluate import Evaluator, Services
from terracube.engine.udf_sandbox import UdfLimits, UdfPool, UdfRefused
from terracube.settings import Settings

pytestmark = needs_sandbox


def udf(body: str) -> str:
    """A UDF that runs `body` (which sets `result`, a number) and returns it."""
    indented = "\n".join("    " + line for line in body.strip().splitlines())
    return ("import os, time\nimport numpy as np\nimport xarray\n\n"
            "def apply_datacube(cube: xarray.DataArray, context: dict) -> xarray.DataArray:\n"
            "    result = 0.0\n" + indented + "\n    return cube * 0 + float(result)\n")


@pytest.fixture()
def server_dir(tmp_path, monkeypatch):
    """A server data directory with a database, a signing key and two users' workspaces."""
    (tmp_path / "terracube.db").write_text("users table")
    (tmp_path / "secret.key").write_text("signing key")
    (tmp_path / "workspaces" / "alice").mkdir(parents=True)
    (tmp_path / "workspaces" / "alice" / "private.txt").write_text("alice's data")
    monkeypatch.setenv("TERRACUBE_SECRET_KEY", "server-secret-value")
    return tmp_path


def run(registry, code: str, context: dict | None = None, **settings) -> list:
    s = Settings(data_dir=settings.pop("data_dir", "/tmp"), **settings)
    graph = {"u": {"process_id": "run_udf", "arguments": {
        "data": [1.0], "udf": code, "runtime": "Python", "context": context or {}},
        "result": True}}
    return Evaluator(Services(registry=registry, settings=s)).run(graph, {})


READ = """
try:
    with open(context["path"], "rb") as f:
        result = len(f.read()) + 1
except Exception:
    result = 0
"""


@pytest.mark.parametrize("name", ["terracube.db", "secret.key", "workspaces/alice/private.txt",
                                  "/etc/shadow", "/etc/passwd"])
def test_server_files_are_invisible(registry, server_dir, name) -> None:
    path = name if name.startswith("/") else str(server_dir / name)
    assert run(registry, udf(READ), {"path": path}) == [0.0]


def test_server_environment_is_invisible(registry, server_dir) -> None:
    code = udf("""
import glob
names = [k for k in os.environ if k.startswith(("TERRACUBE", "AWS", "OPENEO_"))]
seen = 0
for f in glob.glob("/proc/*/environ"):
    try:
        seen += b"server-secret-value" in open(f, "rb").read()
    except OSError:
        pass
result = len(names) * 1000 + seen
""")
    assert run(registry, code) == [0.0]


def test_writing_into_another_workspace_fails(registry, server_dir) -> None:
    target = server_dir / "workspaces" / "alice" / "planted.txt"
    code = udf("""
try:
    with open(context["path"], "w") as f:
        f.write("x")
    result = 1
except Exception:
    result = 0
""")
    assert run(registry, code, {"path": str(target)}) == [0.0]
    assert not target.exists()


def test_module_state_is_not_shared_between_requests(registry) -> None:
    code = udf("""
import builtins
result = getattr(builtins, "_planted", 0) + (1000 if os.path.exists("/tmp/planted") else 0)
builtins._planted = 1
open("/tmp/planted", "w").write("x")
""")
    assert run(registry, code) == [0.0]
    assert run(registry, code) == [0.0]  # the next request: a fresh process and /tmp


def test_no_network_not_even_the_servers_port(registry) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    code = udf("""
import socket
for host, port in (("127.0.0.1", context["port"]), ("1.1.1.1", 53)):
    try:
        socket.create_connection((host, port), timeout=2).close()
        result += 1
    except OSError:
        pass
""")
    try:
        assert run(registry, code, {"port": port}) == [0.0]
    finally:
        listener.close()


def test_allocating_10_gb_is_a_clear_error(registry) -> None:
    code = udf("big = np.ones(10 * 1024**3 // 8)\nresult = big.sum()")
    with pytest.raises(errors.ProcessParameterInvalid, match="memory"):
        run(registry, code)


def test_endless_loop_times_out(registry) -> None:
    start = time.monotonic()
    with pytest.raises(errors.ProcessParameterInvalid, match="time limit of 3 s"):
        run(registry, udf("while True:\n    pass"), udf_timeout_seconds=3)
    assert time.monotonic() - start < 20


def test_fork_bomb_is_contained(registry) -> None:
    code = udf("""
for i in range(500):
    try:
        pid = os.fork()
    except OSError:
        break
    if pid == 0:
        time.sleep(30)
        os._exit(0)
    result += 1
""")
    (forked,) = run(registry, code, udf_max_processes=16)
    assert forked < 16
    assert subprocess.run(["true"]).returncode == 0  # we can still start processes


def test_filling_tmp_is_contained(registry) -> None:
    code = udf("""
chunk = b"x" * 1024**2
try:
    with open("/tmp/fill", "wb") as f:
        for i in range(5 * 1024):
            f.write(chunk)
            result += 1
except OSError:
    pass
""")
    (written_mb,) = run(registry, code, udf_tmp_bytes=32 * 1024**2)
    assert written_mb <= 32


def test_killing_the_parent_does_nothing(registry) -> None:
    code = udf("""
import signal
for pid in (os.getppid(), 1, context["server"]):
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass
result = 1
""")
    try:
        run(registry, code, {"server": os.getpid()})
    except errors.ProcessParameterInvalid:
        pass  # its own sandbox may go down with it
    assert run(registry, udf("result = 7")) == [7.0]


def test_udfs_can_be_switched_off(registry) -> None:
    with pytest.raises(UdfRefused, match="switched off"):
        run(registry, udf("result = 1"), udf_enabled=False)


def test_udf_traceback_shows_only_the_users_lines(registry) -> None:
    with pytest.raises(errors.ProcessParameterInvalid) as info:
        run(registry, udf("result = 1 / 0"))
    message = str(info.value)
    assert "ZeroDivisionError" in message and "line " in message
    assert "udf_runner" not in message and "terracube" not in message


def test_udf_over_a_dimension_gets_it_whole(registry) -> None:
    """Issue 12, semantics 1: interpolate_na/apply_ufunc over t work on a cube chunked per date."""
    import numpy as np
    import xarray as xr

    from terracube.datacube.cube import BANDS, SPATIAL, TEMPORAL, Dimension, RasterCube

    values = np.arange(4 * 2 * 3 * 3, dtype=float).reshape(4, 2, 3, 3)
    values[1] = np.nan
    data = xr.DataArray(values, dims=["t", "bands", "y", "x"], coords={
        "t": np.array(["2020-01-01", "2020-01-02", "2020-01-03", "2020-01-04"],
                      dtype="datetime64[ns]"), "bands": ["a", "b"],
        "y": [3.0, 2.0, 1.0], "x": [1.0, 2.0, 3.0]}).chunk({"t": 1, "y": 2})
    cube = RasterCube(data, (Dimension("t", TEMPORAL), Dimension("bands", BANDS),
                             Dimension("y", SPATIAL, "y", 4326),
                             Dimension("x", SPATIAL, "x", 4326)))
    code = ("import xarray\n\ndef apply_datacube(cube: xarray.DataArray, context):\n"
            "    return cube.interpolate_na(dim='t')\n")
    graph = {"a": {"process_id": "apply_dimension", "arguments": {
        "data": {"from_parameter": "cube"}, "dimension": "t", "process": {"process_graph": {
            "u": {"process_id": "run_udf", "arguments": {
                "data": {"from_parameter": "data"}, "udf": code, "runtime": "Python"},
                "result": True}}}}, "result": True}}
    out = Evaluator(Services(registry=registry)).run(graph, {"cube": cube})
    expected = data.compute().interpolate_na(dim="t")
    np.testing.assert_allclose(out.data.transpose(*expected.dims).values, expected.values)


def test_runtimes_list_what_a_udf_can_import(registry) -> None:
    from terracube.engine.processes.udf import udf_runtimes

    python = udf_runtimes(Settings(data_dir="/tmp"))["Python"]
    libraries = python["versions"][python["default"]]["libraries"]
    assert {"numpy", "scipy", "pandas", "xarray", "dask", "statsmodels", "scikit-learn",
            "shapely", "geopandas", "rasterio", "pyproj"} <= set(libraries)
    assert "sandbox (bubblewrap)" in python["description"]
    code = udf("""
import importlib
for name in ("scipy.signal", "statsmodels.api", "sklearn", "shapely", "pyproj", "dask"):
    importlib.import_module(name)
    result += 1
""")
    assert run(registry, code) == [6.0]
    off = udf_runtimes(Settings(data_dir="/tmp", udf_enabled=False))["Python"]
    assert "switched off" in off["description"]


def test_without_a_sandbox_only_trusted_users_run_udfs(registry) -> None:
    from dataclasses import dataclass

    from terracube.engine.processes.udf import udf_runtimes

    @dataclass
    class User:
        user_id: str

    no_bwrap = {"udf_bwrap": "/nonexistent/bwrap", "udf_trusted_users": "teacher, admin"}
    s = Settings(data_dir="/tmp", **no_bwrap)
    graph = {"u": {"process_id": "run_udf", "arguments": {
        "data": [1.0], "udf": udf("result = 5"), "runtime": "Python"}, "result": True}}
    with pytest.raises(UdfRefused, match="need a sandbox.*trusted"):
        Evaluator(Services(registry=registry, settings=s, user=User("student"))).run(graph, {})
    with pytest.raises(UdfRefused):
        Evaluator(Services(registry=registry, settings=s)).run(graph, {})
    ok = Evaluator(Services(registry=registry, settings=s, user=User("teacher"))).run(graph, {})
    assert ok == [5.0]
    assert "No sandbox is available" in udf_runtimes(s)["Python"]["description"]


# --- blocks through shared memory (large blocks: a sealed memfd, not the pipes) -------------
def big_block(seed: int) -> xr.DataArray:
    """A 12 x 2 x 128 x 128 float32 block (1.5 MB: through the shared file)."""
    values = np.random.default_rng(seed).random((12, 2, 128, 128), dtype=np.float32)
    return xr.DataArray(values, dims=["t", "bands", "y", "x"],
                        coords={"t": np.arange(12).astype("datetime64[D]"), "bands": ["a", "b"],
                                "y": np.arange(128.0), "x": np.arange(128.0)})


def pool_for(body: str) -> UdfPool:
    code = ("import os\nimport numpy as np\nimport xarray\n\n"
            "def apply_datacube(cube: xarray.DataArray, context: dict) -> xarray.DataArray:\n"
            + "\n".join("    " + line for line in body.strip().splitlines()) + "\n")
    return UdfPool(code, UdfLimits(), sandboxed=True)


@pytest.mark.parametrize(("body", "expected"), [
    ("return cube", lambda a: a),  # the input itself: not copied by the worker
    ("cube.values *= 2\nreturn cube", lambda a: a * 2),  # changed in place
    ("return cube.astype('float64') + 1", lambda a: a.astype("float64") + 1),  # larger
    ("return xarray.concat([cube] * 4, 't')",  # 4 x larger: through the pipe
     lambda a: np.concatenate([a] * 4, axis=0)),
    ("return cube.isel(t=slice(2, 5))", lambda a: a[2:5]),  # a piece of the input
])
def test_large_blocks_keep_their_values(body, expected) -> None:
    pool = pool_for(body)
    try:
        # results stay valid while later blocks use the same worker and shared file
        blocks = [big_block(seed) for seed in range(4)]
        inputs = [b.values.copy() for b in blocks]
        results = [pool.call(b, {})[0] for b in blocks]
        for got, arr in zip(results, inputs, strict=True):
            np.testing.assert_array_equal(got.values, expected(arr))
        assert list(results[0].coords["bands"].values) == ["a", "b"]
        assert len(pool._all) == 1  # noqa: SLF001 - one warm worker served every block
    finally:
        pool.close()


def test_the_shared_file_cannot_be_shrunk_under_the_server() -> None:
    # a worker that truncates every descriptor it has (the shared file among them) and
    # scribbles over it after replying: it is sealed, the server reads nothing outside it
    pool = pool_for("""
shrunk = 0
for fd in range(3, 64):
    try:
        os.ftruncate(fd, 0)
        shrunk += 1
    except OSError:
        pass
return cube * 0 + shrunk
""")
    try:
        out, _ = pool.call(big_block(0), {})
        assert float(out.max()) == 0.0 and float(out.min()) == 0.0
        out, _ = pool.call(big_block(1), {})  # and the next block works as well
        assert out.shape == (12, 2, 128, 128)
    finally:
        pool.close()


def test_a_dry_run_starts_no_udf_process(registry) -> None:
    from terracube.datacube.dryrun import dry_run
    from terracube.engine.processes.udf import _pool

    with dry_run():
        pool = _pool(udf("result = 1"), None)
    assert pool._all == []  # noqa: SLF001 - nothing started until a block is computed
    pool.close()


def test_a_worker_growing_the_shared_file_changes_nothing() -> None:
    pool = pool_for("""
for fd in range(3, 64):
    try:
        os.ftruncate(fd, 200 * 1024**2)
    except OSError:
        pass
return cube + 1
""")
    try:
        for seed in range(3):  # later regions of the server lie in the grown part
            block = big_block(seed)
            out, _ = pool.call(block, {})
            np.testing.assert_array_equal(out.values, block.values + 1)
    finally:
        pool.close()
