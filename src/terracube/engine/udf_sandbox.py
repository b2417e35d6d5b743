"""Running Python UDFs in separate, sandboxed processes (bubblewrap) with resource limits.

A `UdfPool` belongs to one run_udf node of one request or job: its worker processes load the
UDF once and are reused block after block (warm), so module state a UDF sets lives as long as
that evaluation and is never seen by another request. Each worker is `udf_runner.py` started
under `bwrap` with no network, a private /tmp, a fresh /proc and /dev, read-only binds of the
Python runtime only, a clean environment and the rlimits of `UdfLimits`; a block that takes
longer than the wall-clock limit kills its worker. Nothing a worker sends is unpickled: blocks
come back as raw buffers of plain dtypes described in a JSON header: nothing is unpickled.
"""

from __future__ import annotations

import concurrent.futures
import fcntl
import functools
import json
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


def _decode(desc: Any, buffers: list) -> xr.DataArray:
    """The DataArray a worker sent; anything malformed is the UDF's error."""
    def load(ref: Any) -> np.ndarray:
        dtype = np.dtype(str(ref["dtype"]))
        if dtype.hasobject or dtype.kind not in "biufcmMSU":  # plain values only
            raise ValueError(f"unsupported dtype {dtype}")
        shape = tuple(int(n) for n in ref["shape"])
        return np.frombuffer(buffers[int(ref["i"])], dtype=dtype).reshape(shape)

    if not isinstance(desc, dict):
        raise ValueError("no array")
    coords = {str(n): ([str(d) for d in c["dims"]], load(c["data"]))
              for n, c in dict(desc.get("coords") or {}).items()}
    name = desc.get("name")
    return xr.DataArray(load(desc["data"]), dims=[str(d) for d in desc["dims"]],
                        coords=coords, name=name if isinstance(name, str) else None)


def _write(stream: Any, header: dict, buffers: list) -> None:
    raw = json.dumps({**header, "buffers": [memoryview(b).nbytes for b in buffers]},
                     default=str).encode()
    stream.write(struct.pack("<Q", len(raw)) + raw)
    for b in buffers:
        stream.write(b)  # memoryviews of the arrays: no copy
    stream.flush()


class _WorkerDied(Exception):
    pass


class _Worker:
    """One runner process with the UDF loaded."""

    def __init__(self, command: list[str], code: str, limits: UdfLimits, uid: int | None,
                 sys_path: list[str] | None = None):
        self.limits = limits
        # spares have the common binds; a sandbox with a package folder is started for its pool
        self.proc = _start(command) if sys_path else _SPARES.take(command)
        self.kind: str | None = None
        limits_json = {k: v for k, v in asdict(limits).items()
                       if k in ("cpu_seconds", "memory_bytes", "processes", "file_bytes")}
        limits_json["uid"] = uid
        try:
            _write(self.proc.stdin, {"code": code, "limits": limits_json,
                                     "idle_seconds": limits.idle_seconds,
                                     "sys_path": sys_path or []}, [])
            header, _ = self._read(limits.timeout_seconds)
        except _WorkerDied as exc:
            self.kill()
            raise errors.ProcessParameterInvalid(
                f"The UDF failed while loading: {exc}", argument="udf") from None
        if not header.get("ok"):
            self.kill()
            raise errors.ProcessParameterInvalid(str(header.get("error")), argument="udf")
        self.kind = str(header.get("kind"))

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        _kill(self.proc)

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
        return header, [self._read_exact(n, deadline) for n in sizes]

    def call(self, arr: xr.DataArray, context: Any) -> tuple[dict, xr.DataArray | None]:
        buffers: list = []
        desc = _encode(arr, buffers)
        try:
            _write(self.proc.stdin, {"array": desc, "context": context}, buffers)
        except (BrokenPipeError, OSError):
            raise _WorkerDied(self._death()) from None
        header, out = self._read(self.limits.timeout_seconds)
        if not header.get("ok"):
            return header, None
        try:
            return header, _decode(header.get("array"), out)
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            return {"ok": False, "error": f"The UDF's result could not be read: {exc}",
                    "logs": header.get("logs")}, None


_PIPE_BYTES = 1024 * 1024  # blocks are megabytes: 16 x fewer wake-ups than Linux's 64 KiB


def _popen(command: list[str]) -> subprocess.Popen:
    proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, env=_clean_env(),
                            start_new_session=True, close_fds=True, cwd="/")
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

    def start(self, command: list[str]) -> subprocess.Popen:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="udf-launcher",
                                                daemon=True)
                self._thread.start()
        future: concurrent.futures.Future = concurrent.futures.Future()
        self._queue.put((command, future))
        proc: subprocess.Popen = future.result(timeout=60)
        return proc


_LAUNCHER = _Launcher()


def _start(command: list[str]) -> subprocess.Popen:
    return _LAUNCHER.start(command)


class _Spares:
    """A few runner processes started ahead, each in its own fresh sandbox, that have imported
    the libraries and wait for their first message (the code): taking one saves the seconds
    of Python start-up and imports. A spare serves one pool only and never returns here, so
    nothing of one user's UDF reaches another's."""

    def __init__(self, size: int = 2) -> None:
        self.size = size
        self._stock: dict[tuple[str, ...], list[subprocess.Popen]] = {}
        self._lock = threading.Lock()

    def take(self, command: list[str]) -> subprocess.Popen:
        key = tuple(command)
        with self._lock:
            stock = self._stock.setdefault(key, [])
            proc = None
            while stock and proc is None:
                candidate = stock.pop(0)
                proc = candidate if candidate.poll() is None else None
            missing = self.size - len(stock) - (0 if proc is not None else 1)
            for _ in range(max(missing, 0)):
                stock.append(_start(command))
        return proc if proc is not None else _start(command)

    def close(self) -> None:
        with self._lock:
            for stock in self._stock.values():
                for proc in stock:
                    _kill(proc)
            self._stock.clear()


_SPARES = _Spares()


def _kill(proc: subprocess.Popen) -> None:
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


def _kill_all(workers: list[_Worker]) -> None:
    for w in list(workers):
        w.kill()
    workers.clear()


_POOLS: weakref.WeakValueDictionary[str, UdfPool] = weakref.WeakValueDictionary()


def _pool_by_id(pool_id: str, code: str, limits: UdfLimits, sandboxed: bool,
                env: Path | None = None) -> UdfPool:
    """The pool of this process with that id (a dask graph was pickled), or a new one."""
    pool = _POOLS.get(pool_id)
    return pool if pool is not None else UdfPool(code, limits, sandboxed, pool_id=pool_id,
                                                 env=env)


class UdfPool:
    """Warm runner processes for one UDF of one evaluation; killed when it is collected."""

    def __init__(self, code: str, limits: UdfLimits, sandboxed: bool,
                 pool_id: str | None = None, env: Path | None = None) -> None:
        self.code, self.limits, self.sandboxed, self.env = code, limits, sandboxed, env
        self.id = pool_id or uuid.uuid4().hex
        self.command = sandbox_command(limits, env) if sandboxed else plain_command()
        self.sys_path = [] if env is None else [ENV_PATH if sandboxed else str(env)]
        # as root, each pool's workers become an unprivileged uid of their own: the process
        # limit then counts only them, and no other sandbox's files are theirs
        self.uid = random.randint(200_000, 260_000) if sandboxed and os.getuid() == 0 else None
        self._idle: list[_Worker] = []
        self._all: list[_Worker] = []
        self._lock = threading.Lock()
        weakref.finalize(self, _kill_all, self._all)
        _POOLS[self.id] = self
        self.kind = self._release(self._spawn())  # load now: code errors show at once

    def __reduce__(self) -> tuple:
        return _pool_by_id, (self.id, self.code, self.limits, self.sandboxed, self.env)

    def _spawn(self) -> _Worker:
        worker = _Worker(self.command, self.code, self.limits, self.uid, self.sys_path)
        with self._lock:
            self._all.append(worker)
        return worker

    def _release(self, worker: _Worker) -> str:
        with self._lock:
            self._idle.append(worker)
        return str(worker.kind)

    def _acquire(self) -> _Worker:
        with self._lock:
            while self._idle:
                worker = self._idle.pop()
                if worker.alive():
                    return worker
                self._all.remove(worker)
        return self._spawn()

    def _discard(self, worker: _Worker) -> None:
        worker.kill()
        with self._lock:
            if worker in self._all:
                self._all.remove(worker)

    def call(self, arr: xr.DataArray, context: Any) -> tuple[xr.DataArray, list[dict]]:
        """The UDF applied to `arr` by a warm worker: (result, what it logged)."""
        worker = self._acquire()
        try:
            header, out = worker.call(arr, context)
        except _WorkerDied as exc:
            self._discard(worker)
            raise errors.ProcessParameterInvalid(f"The UDF failed: {exc}.",
                                                 argument="udf") from None
        except BaseException:
            self._discard(worker)
            raise
        self._release(worker)
        logs: list[dict] = header["logs"] if isinstance(header.get("logs"), list) else []
        if out is None:
            error = errors.ProcessParameterInvalid(str(header.get("error"))[:4000],
                                                   argument="udf")
            error.udf_logs = logs  # type: ignore[attr-defined]  # forwarded before raising
            raise error
        return out, logs

    def close(self) -> None:
        _kill_all(self._all)
        self._idle.clear()
