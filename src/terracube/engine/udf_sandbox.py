"""Running Python UDFs in separate, sandboxed processes (bubblewrap) with resource limits.

A `UdfPool` belongs to one run_udf node of one request or job: its worker processes load the
UDF once and are reused block after block (warm), so module state a UDF sets lives as long as
that evaluation and is never seen by another request. Each worker is `udf_runner.py` started
under `bwrap` with no network, a private /tmp, a fresh /proc and /dev, read-only binds of the
Python runtime only, a clean environment and the rlimits of `UdfLimits`; a block that takes
longer than the wall-clock limit kills its worker. Nothing a worker sends is unpickled: blocks
come back as raw buffers of plain dtypes described in a JSON header. Small blocks go through
the worker's pipes; large ones through a shared-memory file (a memfd) that only the server
and that one worker hold, sealed so the worker cannot shrink it under the server: one copy
in, one copy out, none in the worker when its result is its input (see `_SharedFile`).
"""

from __future__ import annotations

import concurrent.futures
import fcntl
import functools
import json
import mmap
import os
import queue
import random
import select
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
import uuid
import weakref
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from terracube import errors

RUNNER = Path(__file__).with_name("udf_runner.py")
_SANDBOX_RUNNER = "/udf/runner.py"
ENV_PATH = "/udf/env"  # where the UDF's declared packages are bound (appended to sys.path)
_MAX_HEADER = 64 * 1024 * 1024


class UdfRefused(errors.OpenEOError):
    """UDFs are switched off, or cannot be sandboxed on this server and the user is not
    trusted with unsandboxed code."""

    code = "FeatureUnsupported"
    status = 501


@dataclass(frozen=True)
class UdfLimits:
    """Limits of one UDF worker process (settings udf_*; see docs/administration/udf-sandbox.md)."""

    cpu_seconds: int = 600
    memory_bytes: int = 2 * 1024**3
    processes: int = 64
    file_bytes: int = 256 * 1024**2
    tmp_bytes: int = 256 * 1024**2
    timeout_seconds: float = 300.0  # wall-clock time of one block (and of loading the code)
    output_bytes: int = 1024**3
    idle_seconds: float = 300.0  # a warm worker nobody used for this long exits
    block_size: int = 512  # largest side of a spatial block (pixels) in one call
    bwrap: str = "bwrap"  # the bubblewrap executable (name on PATH or path)

    @classmethod
    def from_settings(cls, settings: Any) -> UdfLimits:
        if settings is None:
            return cls()
        return cls(cpu_seconds=settings.udf_cpu_seconds,
                   memory_bytes=settings.udf_memory_bytes,
                   processes=settings.udf_max_processes,
                   file_bytes=settings.udf_file_bytes,
                   tmp_bytes=settings.udf_tmp_bytes,
                   timeout_seconds=settings.udf_timeout_seconds,
                   output_bytes=settings.udf_output_bytes,
                   idle_seconds=settings.udf_idle_seconds, bwrap=settings.udf_bwrap,
                   block_size=settings.udf_block_size)


# --- is bubblewrap there and working? ---------------------------------------------------------
def _bwrap(name: str) -> str | None:
    return shutil.which(name)


def _runtime_binds() -> list[str]:
    """Read-only binds of what the interpreter needs: the system libraries, the Python
    installation and the virtual environment (nothing of /etc but the loader cache)."""
    paths = {"/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin",
             sys.base_prefix, sys.prefix, os.path.dirname(os.path.realpath(sys.executable))}
    args: list[str] = []
    # parents of the binds: bwrap would create them 0700 (unreadable once root is dropped)
    parents = {str(a) for p in paths if os.path.lexists(p) for a in Path(p).parents} - {"/"}
    for d in sorted(parents | {"/udf", "/etc"}, key=lambda d: d.count("/")):
        args += ["--perms", "0755", "--dir", d]
    for p in sorted(paths):
        if os.path.lexists(p):
            if os.path.islink(p):  # e.g. /lib -> usr/lib on merged-/usr systems
                args += ["--symlink", os.readlink(p), p]
            else:
                args += ["--ro-bind", p, p]
    for f in ("/etc/ld.so.cache", "/etc/localtime", "/etc/alternatives"):
        if os.path.exists(f):
            args += ["--ro-bind", f, f]
    return args


def sandbox_command(limits: UdfLimits, env: Path | None = None) -> list[str]:
    """The bwrap command line that runs the runner script; `env`: a folder of packages the UDF
    declared (engine/udf_envs.py), bound read-only at ENV_PATH."""
    bwrap = _bwrap(limits.bwrap)
    assert bwrap is not None
    args = [bwrap, "--die-with-parent", "--new-session", "--unshare-net", "--unshare-pid",
            "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try", "--hostname", "udf",
            "--clearenv", "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "HOME", "/tmp",
            "--setenv", "LANG", "C.UTF-8", "--setenv", "TMPDIR", "/tmp",
            "--setenv", "PYTHONDONTWRITEBYTECODE", "1", "--setenv", "PYTHONNOUSERSITE", "1",
            "--setenv", "OPENBLAS_NUM_THREADS", "1", "--setenv", "OMP_NUM_THREADS", "1",
            "--setenv", "MKL_NUM_THREADS", "1", "--setenv", "MPLCONFIGDIR", "/tmp"]
    if os.getuid() != 0:  # unprivileged: a user namespace makes the mounts possible
        args += ["--unshare-user"]
    args += _runtime_binds()
    args += ["--proc", "/proc", "--dev", "/dev",
             "--perms", "1777", "--size", str(limits.tmp_bytes), "--tmpfs", "/tmp",
             "--ro-bind", str(RUNNER), _SANDBOX_RUNNER,
             *(["--ro-bind", str(env), ENV_PATH] if env is not None else []),
             "--chdir", "/tmp", sys.executable, "-I", _SANDBOX_RUNNER]
    return args


def plain_command() -> list[str]:
    """The runner without a sandbox (trusted users on servers without bubblewrap)."""
    return [sys.executable, "-I", str(RUNNER)]


def _clean_env() -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "LANG": "C.UTF-8",
            "PYTHONDONTWRITEBYTECODE": "1", "OPENBLAS_NUM_THREADS": "1",
            "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@functools.lru_cache(maxsize=8)
def sandbox_problem(bwrap: str = "bwrap") -> str | None:
    """None when bubblewrap (`bwrap`: the executable) can start the runner on this machine,
    else why not (cached)."""
    if _bwrap(bwrap) is None:
        return f"bubblewrap ({bwrap}) is not installed"
    probe = sandbox_command(UdfLimits(bwrap=bwrap))[:-1] + ["-c", "import numpy"]
    try:
        done = subprocess.run(probe, capture_output=True, timeout=60, env=_clean_env(),
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bubblewrap does not start: {exc}"
    if done.returncode != 0:
        reason = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["?"]
        return f"bubblewrap does not work here ({reason[0]})"
    return None


# --- the wire format (the runner has its own copy; it may not import terracube) --------------
def _encode(arr: xr.DataArray, buffers: list) -> dict:
    def npy(values: Any) -> dict:
        values = np.asarray(values)
        if values.dtype == object:
            try:
                values = values.astype(float)
            except (TypeError, ValueError):
                values = values.astype(str)
        values = np.ascontiguousarray(values)
        buffers.append(memoryview(values.reshape(-1).view(np.uint8)))
        return {"i": len(buffers) - 1, "dtype": values.dtype.str, "shape": list(values.shape)}

    coords = {str(n): {"dims": [str(d) for d in c.dims], "data": npy(c.values)}
              for n, c in arr.coords.items()}
    return {"dims": [str(d) for d in arr.dims], "data": npy(arr.values), "coords": coords,
            "name": arr.name if isinstance(arr.name, str) else None}


def _decode(desc: Any, buffers: list, shared: bool = False) -> tuple[xr.DataArray, Any]:
    """The DataArray a worker sent, and the array its values are a view of. `shared`: the
    buffers lie in the worker's shared file, which it can still write: the labels are copied
    (they become indexes), numbers are used in place. Anything malformed is the UDF's
    error."""
    def load(ref: Any, in_place: bool = False) -> tuple[np.ndarray, np.ndarray]:
        dtype = np.dtype(str(ref["dtype"]))
        if dtype.hasobject or dtype.kind not in "biufcmMSU":  # plain values only
            raise ValueError(f"unsupported dtype {dtype}")
        shape = tuple(int(n) for n in ref["shape"])
        raw = np.frombuffer(buffers[int(ref["i"])], dtype=dtype)
        if shared and not (in_place and dtype.kind in "biufc"):
            raw = raw.copy()
        return raw.reshape(shape), raw

    if not isinstance(desc, dict):
        raise ValueError("no array")
    coords = {str(n): ([str(d) for d in c["dims"]], load(c["data"])[0])
              for n, c in dict(desc.get("coords") or {}).items()}
    name = desc.get("name")
    values, base = load(desc["data"], in_place=True)
    return xr.DataArray(values, dims=[str(d) for d in desc["dims"]], coords=coords,
                        name=name if isinstance(name, str) else None), base


def _write(stream: Any, header: dict, buffers: list,
           shm: _SharedFile | None = None) -> None:
    sizes = [memoryview(b).nbytes for b in buffers]
    header = {**header, "buffers": sizes}
    if shm is not None and sum(sizes) >= _SHM_MIN:
        (header["at"], header["out"]), buffers = shm.put(buffers), []
    raw = json.dumps(header, default=str).encode()
    stream.write(struct.pack("<Q", len(raw)) + raw)
    for b in buffers:
        stream.write(b)  # memoryviews of the arrays: no copy
    stream.flush()


_SHM_MIN = 256 * 1024  # smaller requests go through the pipe (mapping costs more there)
_ALIGN = 64


def _aligned(n: int, to: int = _ALIGN) -> int:
    return -(-n // to) * to


class _SharedFile:
    """The server's side of a worker's shared-memory file (a memfd passed to the worker when
    it starts; udf_runner.SharedBlocks is the other side).

    Every request gets a region of the file: its buffers at the start, then room for a
    result twice that size. The result's data is not copied out: the array the server gets
    is a view of the region, and the region returns to the free list when that array (and
    every view of it) is gone; its labels are copied (udf_sandbox._decode). Only this worker
    can write into the file, so all it can change there is its own input and results (of the
    same UDF of the same job). The file is sealed against shrinking, so no access of the
    server can fault; a region is never handed out twice while in use; offsets a worker
    sends must lie in the region of its request."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.size = os.fstat(fd).st_size
        self.mapped: mmap.mmap | None = None
        self._free: list[tuple[int, int]] = []  # (start, length), sorted, coalesced
        self._lock = threading.Lock()
        self.region: tuple[int, int] | None = None  # of the request in flight

    def _allocate(self, length: int) -> int:
        with self._lock:
            for i, (start, size) in enumerate(self._free):
                if size >= length:
                    self._free[i:i + 1] = [(start + length, size - length)] \
                        if size > length else []
                    return start
            start = self.size
            if self._free and sum(self._free[-1]) == self.size:  # grow the last free piece
                start = self._free.pop()[0]
            # the worker may have grown the file (up to its file size limit): never shrink it
            size = max(start + length, os.fstat(self.fd).st_size)
            if size > os.fstat(self.fd).st_size:
                os.ftruncate(self.fd, size)
            self.size = size
            # a new mapping of the whole file; arrays keep the old one alive while they live
            self.mapped = mmap.mmap(self.fd, self.size)
            return start

    def free(self, start: int, length: int) -> None:
        with self._lock:
            pieces = sorted([*self._free, (start, length)])
            merged: list[tuple[int, int]] = []
            for s0, n in pieces:
                if merged and sum(merged[-1]) == s0:
                    merged[-1] = (merged[-1][0], merged[-1][1] + n)
                else:
                    merged.append((s0, n))
            self._free = merged

    def put(self, buffers: list) -> tuple[list[int], list[int]]:
        """Writes a request's buffers into a new region: (their offsets, the region the
        reply may use)."""
        page = mmap.ALLOCATIONGRANULARITY
        at, end = [], 0
        for b in buffers:
            at.append(end)
            end += _aligned(memoryview(b).nbytes)
        end = _aligned(end, page)
        room = 2 * end + (1 << 20)  # e.g. float32 in, float64 out, and the labels
        start = self._allocate(end + room)
        self.region = (start, end + room)
        assert self.mapped is not None
        for offset, b in zip(at, buffers, strict=True):
            data = memoryview(b).cast("B")
            self.mapped[start + offset:start + offset + data.nbytes] = data
        return [start + o for o in at], [start + end, room]

    def take(self, at: Any, sizes: list[int]) -> list[memoryview]:
        """Views of the reply's buffers at the offsets `at` (ValueError unless all lie in the
        region of the request)."""
        assert self.region is not None and self.mapped is not None
        lo, hi = self.region[0], sum(self.region)
        offsets = [int(o) for o in at]
        if len(offsets) != len(sizes) or any(
                o < lo or n < 0 or o + n > hi for o, n in zip(offsets, sizes, strict=True)):
            raise ValueError("buffers outside the shared file")
        view = memoryview(self.mapped)
        return [view[o:o + n] for o, n in zip(offsets, sizes, strict=True)]

    def done(self, result: np.ndarray | None) -> None:
        """The request's region is free again once `result` (a view of it, or None) is."""
        if self.region is None:
            return
        region, self.region = self.region, None
        if result is None:
            self.free(*region)
        else:
            weakref.finalize(result, self.free, *region)

    def close(self) -> None:
        self.mapped = None  # unmapped when the last array of it is gone


class _WorkerDied(Exception):
    pass


class _Worker:
    """One runner process with the UDF loaded."""

    def __init__(self, command: list[str], code: str, limits: UdfLimits, uid: int | None,
                 sys_path: list[str] | None = None):
        self.limits = limits
        # spares have the common binds; a sandbox with a package folder is started for its pool
        self.proc = _start(command) if sys_path else _SPARES.take(command)
        self.shm = _SharedFile(self.proc.shm_fd)
        self.kind: str | None = None
        limits_json = {k: v for k, v in asdict(limits).items()
                       if k in ("cpu_seconds", "memory_bytes", "processes", "file_bytes")}
        limits_json["uid"] = uid
        try:
            _write(self.proc.stdin, {"code": code, "limits": limits_json,
                                     "idle_seconds": limits.idle_seconds,
                                     "sys_path": sys_path or [],
                                     "shm_fd": self.proc.shm_fd}, [])
            header, _ = self._read(limits.timeout_seconds)
        except _WorkerDied as exc:
            self.kill()
            raise errors.ProcessParameterInvalid(
                f"The UDF failed while loading: {exc}", argument="udf") from None
        if not header.get("ok"):
            self.kill()
            raise errors.ProcessParameterInvalid(str(header.get("error")), argument="udf")
        self.kind = str(header.get("kind"))
        self.has_apply_metadata = bool(header.get("apply_metadata"))

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        _kill(self.proc)
        self.shm.close()

    def _read_exact(self, n: int, deadline: float) -> bytearray:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        buf = bytearray(n)
        view, pos = memoryview(buf), 0
        while pos < n:
            wait = deadline - time.monotonic()
            if wait <= 0 or not select.select([fd], [], [], wait)[0]:
                self.kill()
                raise _WorkerDied(f"it ran longer than its time limit of "
                                  f"{self.limits.timeout_seconds:g} s and was stopped")
            got = os.readv(fd, [view[pos:pos + (1 << 20)]])
            if not got:
                raise _WorkerDied(self._death())
            pos += got
        return buf

    def _death(self) -> str:
        try:
            code = self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.kill()
            code = -signal.SIGKILL
        reasons = {-signal.SIGXCPU: f"it used more than its CPU time limit of "
                                    f"{self.limits.cpu_seconds} s",
                   -signal.SIGKILL: "it was killed (CPU time or memory limit exceeded)",
                   -signal.SIGXFSZ: f"it wrote a file larger than its limit of "
                                    f"{self.limits.file_bytes} bytes",
                   -signal.SIGSEGV: "it crashed (segmentation fault)"}
        return reasons.get(code, f"its process ended unexpectedly (exit status {code})")

    def _read(self, timeout: float) -> tuple[dict, list]:
        deadline = time.monotonic() + timeout
        (size,) = struct.unpack("<Q", self._read_exact(8, deadline))
        if size > _MAX_HEADER:
            self.kill()
            raise _WorkerDied("it sent a malformed reply")
        try:
            header = json.loads(self._read_exact(size, deadline))
            sizes = [int(n) for n in header.get("buffers", [])]
        except (ValueError, TypeError, AttributeError):
            self.kill()
            raise _WorkerDied("it sent a malformed reply") from None
        if sum(sizes) > self.limits.output_bytes:
            self.kill()
            raise _WorkerDied(f"its result is larger than the limit of "
                              f"{self.limits.output_bytes} bytes")
        if "at" in header:
            try:
                return header, self.shm.take(header["at"], sizes)
            except (ValueError, TypeError):
                self.kill()
                raise _WorkerDied("it sent a malformed reply") from None
        return header, [self._read_exact(n, deadline) for n in sizes]

    def call(self, arr: xr.DataArray, context: Any, vector: dict | None = None,
             proj: dict | None = None) -> tuple[dict, xr.DataArray | None]:
        buffers: list = []
        desc = _encode(arr, buffers)
        request = {"array": desc, "context": context}
        if proj is not None:  # UdfData.proj, e.g. {"EPSG": 32632}
            request["proj"] = proj
        if vector is not None:  # the geometries of a vector cube (apply_vectorcube)
            request["vector"] = vector
        try:
            _write(self.proc.stdin, request, buffers, self.shm)
        except (BrokenPipeError, OSError):
            raise _WorkerDied(self._death()) from None
        base = None
        try:
            header, out = self._read(self.limits.timeout_seconds)
            if not header.get("ok"):
                return header, None
            try:
                result, base = _decode(header.get("array"), out, shared="at" in header)
            except (ValueError, KeyError, TypeError, IndexError) as exc:
                return {"ok": False, "error": f"The UDF's result could not be read: {exc}",
                        "logs": header.get("logs")}, None
            return header, result
        finally:  # the request's region stays in use while the result's values do
            self.shm.done(base if base is not None and base.base is not None
                          and isinstance(base.base, memoryview) else None)


    def call_metadata(self, described: dict, context: Any) -> dict:
        """The reply of the UDF's apply_metadata for the cube `described`."""
        try:
            _write(self.proc.stdin, {"metadata": described, "context": context}, [])
        except (BrokenPipeError, OSError):
            raise _WorkerDied(self._death()) from None
        header, _ = self._read(self.limits.timeout_seconds)
        return header


_PIPE_BYTES = 1024 * 1024  # blocks are megabytes: 16 x fewer wake-ups than Linux's 64 KiB


class _RunnerProcess(subprocess.Popen):
    """A runner process and the shared-memory file it was given (`shm_fd`, the same number
    in both processes)."""

    shm_fd: int


def _memfd() -> int:
    """A new shared-memory file, empty and sealed against shrinking (growing stays allowed:
    the server grows it for larger blocks; the worker only up to its file size limit)."""
    fd = os.memfd_create("terracube-udf", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_SEAL)
    return fd


def _popen(command: list[str]) -> _RunnerProcess:
    fd = _memfd()
    try:
        proc = _RunnerProcess(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, env=_clean_env(),
                              start_new_session=True, close_fds=True, cwd="/", pass_fds=(fd,))
    except BaseException:
        os.close(fd)
        raise
    proc.shm_fd = fd
    for stream in (proc.stdin, proc.stdout):
        try:  # F_SETPIPE_SZ; limited by /proc/sys/fs/pipe-max-size
            fcntl.fcntl(stream.fileno(), 1031, _PIPE_BYTES)  # type: ignore[union-attr]
        except OSError:
            pass
    return proc


class _Launcher:
    """Starts runner processes from one long-lived thread: bwrap's --die-with-parent follows
    the *thread* that started it, and request threads (e.g. anyio's) end when idle."""

    def __init__(self) -> None:
        self._queue: queue.Queue[tuple[list[str], concurrent.futures.Future]] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def _loop(self) -> None:
        while True:
            command, future = self._queue.get()
            try:
                future.set_result(_popen(command))
            except BaseException as exc:  # e.g. OSError: reported to the caller
                future.set_exception(exc)

    def start(self, command: list[str]) -> _RunnerProcess:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="udf-launcher",
                                                daemon=True)
                self._thread.start()
        future: concurrent.futures.Future = concurrent.futures.Future()
        self._queue.put((command, future))
        proc: _RunnerProcess = future.result(timeout=60)
        return proc


_LAUNCHER = _Launcher()


def _start(command: list[str]) -> _RunnerProcess:
    return _LAUNCHER.start(command)


class _Spares:
    """A few runner processes started ahead, each in its own fresh sandbox, that have imported
    the libraries and wait for their first message (the code): taking one saves the seconds
    of Python start-up and imports. A spare serves one pool only and never returns here, so
    nothing of one user's UDF reaches another's."""

    def __init__(self, size: int = 2) -> None:
        self.size = size
        self._stock: dict[tuple[str, ...], list[_RunnerProcess]] = {}
        self._lock = threading.Lock()

    def take(self, command: list[str]) -> _RunnerProcess:
        key = tuple(command)
        with self._lock:
            stock = self._stock.setdefault(key, [])
            proc = None
            while stock and proc is None:
                candidate = stock.pop(0)
                if candidate.poll() is None:
                    proc = candidate
                else:
                    _kill(candidate)  # closes its pipes and shared file
            missing = self.size - len(stock) - (0 if proc is not None else 1)
            for _ in range(max(missing, 0)):
                stock.append(_start(command))
        return proc if proc is not None else _start(command)

    def fill(self, command: list[str]) -> None:
        """Starts spares for `command` up to the stock size (at server start)."""
        with self._lock:
            stock = self._stock.setdefault(tuple(command), [])
            for _ in range(self.size - len(stock)):
                stock.append(_start(command))

    def close(self) -> None:
        with self._lock:
            for stock in self._stock.values():
                for proc in stock:
                    _kill(proc)
            self._stock.clear()


_SPARES = _Spares()


def prestart(limits: UdfLimits, count: int, now: bool = True) -> None:
    """Keep `count` spare runners (0: none); `now`: start them for `limits` at once if the
    sandbox works here (at the server's start, so its first UDF finds them warm). Spares for
    unsandboxed runs (trusted users, no sandbox) are started on first use only."""
    _SPARES.size = count
    if now and count and sandbox_problem(limits.bwrap) is None:
        _SPARES.fill(sandbox_command(limits))


def _kill(proc: _RunnerProcess) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            proc.kill()
    for stream in (proc.stdin, proc.stdout):
        try:
            if stream:
                stream.close()
        except OSError:
            pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:  # pragma: no cover
        pass
    if proc.shm_fd >= 0:
        os.close(proc.shm_fd)
        proc.shm_fd = -1


def _kill_all(workers: list[_Worker]) -> None:
    for w in list(workers):
        w.kill()
    workers.clear()


_POOLS: weakref.WeakValueDictionary[str, UdfPool] = weakref.WeakValueDictionary()


def _pool_by_id(pool_id: str, code: str, limits: UdfLimits, sandboxed: bool,
                env: Path | None = None, proj: dict | None = None) -> UdfPool:
    """The pool of this process with that id (a dask graph was pickled), or a new one."""
    pool = _POOLS.get(pool_id)
    return pool if pool is not None else UdfPool(code, limits, sandboxed, pool_id=pool_id,
                                                 env=env, proj=proj)


# A caller that finds every worker of a pool busy waits this long for one before it starts
# another: a start costs ~0.8 s of CPU and 1-3 s (Python and the imports), so UDFs with
# short calls are served by one warm worker, and only slow ones get more in parallel.
_SPAWN_AFTER_S = 2.0


def _logs_or_error(header: dict, failed: bool) -> list[dict]:
    """What the UDF logged during a request; when the request `failed`, its error (which
    carries the logs, forwarded before it is raised)."""
    logs: list[dict] = header["logs"] if isinstance(header.get("logs"), list) else []
    if failed:
        error = errors.ProcessParameterInvalid(str(header.get("error"))[:4000], argument="udf")
        error.udf_logs = logs  # type: ignore[attr-defined]
        raise error
    return logs


class UdfPool:
    """Warm runner processes for one UDF of one evaluation; killed when it is collected.
    `load_now`: start the first worker and load the code at once (its errors show before
    anything is computed); a dry run does not, it never calls the UDF."""

    def __init__(self, code: str, limits: UdfLimits, sandboxed: bool,
                 pool_id: str | None = None, env: Path | None = None,
                 load_now: bool = True, proj: dict | None = None) -> None:
        self.code, self.limits, self.sandboxed, self.env = code, limits, sandboxed, env
        self.proj = proj  # the cube's CRS as UdfData.proj ({"EPSG": 32632}), as CDSE gives it
        self.id = pool_id or uuid.uuid4().hex
        self.command = sandbox_command(limits, env) if sandboxed else plain_command()
        self.sys_path = [] if env is None else [ENV_PATH if sandboxed else str(env)]
        # as root, each pool's workers become an unprivileged uid of their own: the process
        # limit then counts only them, and no other sandbox's files are theirs
        self.uid = random.randint(200_000, 260_000) if sandboxed and os.getuid() == 0 else None
        self._idle: list[_Worker] = []
        self._all: list[_Worker] = []
        self._lock = threading.Lock()
        self._freed = threading.Condition(self._lock)
        self._starting = 0  # workers being started
        self._metadata_answers: dict[str, dict] = {}  # apply_metadata's, by described cube
        # what the UDF was seen to change (udf.py _inferred_change), by node and dimensions
        self.inferred: dict[tuple, Any] = {}
        weakref.finalize(self, _kill_all, self._all)
        _POOLS[self.id] = self
        if load_now:
            self._release(self._spawn())

    def __reduce__(self) -> tuple:
        return _pool_by_id, (self.id, self.code, self.limits, self.sandboxed, self.env,
                             self.proj)

    def _spawn(self) -> _Worker:
        with self._lock:
            self._starting += 1
        try:
            worker = _Worker(self.command, self.code, self.limits, self.uid, self.sys_path)
        finally:
            with self._lock:
                self._starting -= 1
        with self._lock:
            self._all.append(worker)
        return worker

    def _release(self, worker: _Worker) -> None:
        with self._lock:
            self._idle.append(worker)
            self._freed.notify()

    def _acquire(self) -> _Worker:
        deadline = time.monotonic() + _SPAWN_AFTER_S
        with self._lock:
            while True:
                while self._idle:
                    worker = self._idle.pop()
                    if worker.alive():
                        return worker
                    self._all.remove(worker)
                wait = deadline - time.monotonic()
                if not (self._all or self._starting) or wait <= 0:
                    break
                self._freed.wait(wait)  # a busy worker may be free before a new one starts
        return self._spawn()

    def _discard(self, worker: _Worker) -> None:
        worker.kill()
        with self._lock:
            if worker in self._all:
                self._all.remove(worker)
            self._freed.notify()  # a waiting caller starts a new one at once

    def _on_worker(self, request: Callable[[_Worker], Any], what: str) -> Any:
        """`request` made of a warm worker; a worker that died (limits, crash) is discarded
        and reported as `what` failing."""
        worker = self._acquire()
        try:
            reply = request(worker)
        except _WorkerDied as exc:
            self._discard(worker)
            raise errors.ProcessParameterInvalid(f"{what} failed: {exc}.",
                                                 argument="udf") from None
        except BaseException:
            self._discard(worker)
            raise
        self._release(worker)
        return reply

    def call(self, arr: xr.DataArray, context: Any) -> tuple[xr.DataArray, list[dict]]:
        """The UDF applied to `arr` by a warm worker: (result, what it logged)."""
        header, out = self._on_worker(
            lambda worker: worker.call(arr, context, proj=self.proj), "The UDF")
        logs = _logs_or_error(header, failed=out is None)
        return out, logs

    def call_vector(self, arr: xr.DataArray, vector: dict,
                    context: Any) -> tuple[xr.DataArray, dict, list[dict]]:
        """apply_vectorcube on a vector cube (its values `arr`, its geometries `vector` as
        GeoJSON features and crs): (values, geometries, what it logged)."""
        header, out = self._on_worker(lambda worker: worker.call(arr, context, vector),
                                      "The UDF")
        logs = _logs_or_error(header, failed=out is None)
        geometries = header.get("vector")
        if not isinstance(geometries, dict):
            raise errors.ProcessParameterInvalid(
                "The UDF returned no geometries: on a vector cube it must define "
                "apply_vectorcube(geometries, cube, context).", argument="udf")
        return out, geometries, logs

    def metadata(self, described: dict, context: Any) -> tuple[dict, list[dict]]:
        """What the UDF's `apply_metadata(metadata, context)` says of its result for the cube
        `described` (udf_runner.apply_metadata gives the format): (answer, what it logged)."""
        # one answer per node: the pieces of apply_neighborhood differ only by their extent
        key = json.dumps([{k: v for k, v in d.items() if k != "extent"}
                          for d in described.get("dimensions", [])] + [context],
                         sort_keys=True, default=str)
        known = self._metadata_answers.get(key)
        if known is not None:
            return known, []
        header = self._on_worker(lambda worker: worker.call_metadata(described, context),
                                 "The UDF's apply_metadata")
        answer = header.get("metadata")
        logs = _logs_or_error(header, failed=not header.get("ok") or not isinstance(answer,
                                                                                     dict))
        self._metadata_answers[key] = answer
        return answer, logs

    def close(self) -> None:
        _kill_all(self._all)
        self._idle.clear()
