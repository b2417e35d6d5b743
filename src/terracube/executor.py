"""Where dask computations run: one executor per process, built from the settings.

- `TERRACUBE_DASK_SCHEDULER=tcp://host:8786`: a `dask.distributed` cluster (the workers must
  read the same data paths); blocks are computed on the workers and streamed back to the
  process that writes the result file, one block at a time.
- `TERRACUBE_MEMORY_LIMIT=4GB` (without a scheduler): an in-process `LocalCluster` (threads,
  no extra processes) whose worker spills to disk and pauses instead of exceeding the limit.
- neither: dask's local threaded scheduler with one thread per CPU available to the process.

Writers get the executor with `current()`; the code that runs a graph makes its executor
current with `with executor.active(): ...` (a context variable, so concurrent requests in
other threads are not affected). Process graphs never change between the three set-ups.

Computations can be stopped: code that runs them under `with cancellable(cancel): ...` has
every computation of that block checked against `cancel` (a `Cancel`, set from any thread):
on local threads before each task starts (no new task starts once it is set; running tasks
finish), on a cluster by cancelling the futures. The computation then raises `Cancelled` (sync
requests: over their time limit, or the client went away). A `Cancel` with a memory limit also
stops a computation on local threads whose finished task results held at once exceed it.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import dask
import dask.array as dsa
import numpy as np
from dask.callbacks import Callback
from dask.sizeof import sizeof

log = logging.getLogger(__name__)

Progress = Callable[[float], None]
"""Called with the finished fraction of a computation (0..1), at most a few times a second."""

_PROGRESS_INTERVAL_S = 0.5
_CANCEL_POLL_S = 0.2


class Cancelled(BaseException):
    """A computation was stopped because its `Cancel` was set; the message says why.

    A BaseException (like KeyboardInterrupt) so that the `except Exception` of processes and
    writers, which turn failures into openEO errors, let it through to the code that set it."""


class Cancel:
    """A flag that stops the computations run under `cancellable(flag)`, set from any thread.

    With a `memory_limit` (bytes) it also sets itself, with the reason "memory", when the task
    results one computation on local threads holds at once exceed it (checked as each task
    finishes; `held` is the most it held)."""

    def __init__(self, memory_limit: float | None = None) -> None:
        self._event = threading.Event()
        self.reason = ""
        self.memory_limit = memory_limit
        self.held = 0  # bytes: the most the task results of one computation held at once

    def set(self, reason: str) -> None:
        if not self._event.is_set():
            self.reason = reason
            self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        """Raise `Cancelled` when the flag is set."""
        if self._event.is_set():
            raise Cancelled(self.reason or "cancelled")


# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD = 32 << 20  # glibc's largest: blocks up to 32 MB are reused from the heap
# Free memory the allocator keeps at the heap's top during a computation before it gives it
# back: a request's working set comes and goes by more than 128 MB, and each time it was
# given back and page-faulted in again (W1 large, one arena: 260-430 k minor faults and
# 0.8-1.4 system CPU-s per request at 128 MB, 20-25 k and 0.3-0.4 s at 512 MB). What is
# kept is given back after each synchronous response (`release_free_memory`).
_TRIM_THRESHOLD = 512 << 20
_TRIM_THRESHOLD_LIMITED = 128 << 20
_memory_tuned = threading.Event()


def tune_process_memory(memory_limited: bool = False) -> None:
    """How this process allocates the blocks a computation makes and drops (once a process).

    Chunks of 8-32 MB are allocated and freed by the hundred per request. By default glibc
    maps each anew (or gives the heap's top back) and numpy asks the kernel for 2 MB pages
    for them: every block was then page faults, with the kernel compacting memory for huge
    pages on a busy machine. Measured on W1 medium (first request of a process, 2 CPUs,
    loaded machine): 0.5-1.4 system CPU-s of 2.3-3.4; with the heap kept and 4 KB pages
    0.4-0.5 of 2.3-2.5, peak RSS the same. Settings in the environment win
    (MALLOC_MMAP_THRESHOLD_, MALLOC_TRIM_THRESHOLD_, NUMPY_MADVISE_HUGEPAGE).

    The arenas: `terracube.allocator` (set before any thread exists, in `main`).
    `memory_limited` (TERRACUBE_MEMORY_LIMIT, whose cluster measures the process's memory):
    free memory is given back from 128 MB, not 512, so kept memory does not count as used.
    """
    if _memory_tuned.is_set():
        return
    _memory_tuned.set()
    if "NUMPY_MADVISE_HUGEPAGE" not in os.environ:
        try:
            from numpy._core.multiarray import (  # type: ignore[attr-defined]
                _set_madvise_hugepage,
            )

            _set_madvise_hugepage(False)
        except ImportError:  # another numpy: its default stays
            pass
    if any(k in os.environ for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to tune
        return
    mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)
    mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD_LIMITED if memory_limited else _TRIM_THRESHOLD)


def release_free_memory() -> None:
    """Give the heap's free memory back to the system now (glibc's malloc_trim; ~10 ms
    for 512 MB): after a computation, so an idle server does not hold what its last
    request freed. Memory other computations use stays theirs."""
    try:
        import ctypes

        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: its allocator decides
        pass


def local_threads() -> int:
    """The number of CPUs this process may use (cgroup/affinity aware where possible)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


class Executor:
    """Runs dask computations, either on local threads or through a dask.distributed Client."""

    def __init__(self, client: Any = None, threads: int | None = None,
                 cluster: Any = None, local_scheduler: str = "threads") -> None:
        self.client = client
        self.cluster = cluster  # owned LocalCluster (closed with the executor), if any
        self.threads = threads or local_threads()
        # "sync" (one thread, in order) is for profiling and debugging
        self.local_scheduler = local_scheduler

    # --- construction ---------------------------------------------------------------------
    @classmethod
    def from_settings(cls, settings: Any) -> Executor:
        address = getattr(settings, "dask_scheduler", None)
        memory_limit = getattr(settings, "memory_limit", None)
        # the server's and the job workers' executor: a computing process
        tune_process_memory(memory_limited=bool(memory_limit) and not address)
        if address:
            from distributed import Client

            # The default client of the process: dask computations that processes start
            # themselves (e.g. model training) run on the cluster too.
            try:
                client = Client(address, set_as_default=True, timeout=30)
            except (OSError, TimeoutError) as exc:
                raise RuntimeError(
                    f"cannot reach the dask scheduler at {address} (TERRACUBE_DASK_SCHEDULER): "
                    f"{exc}") from exc
            log.info("computing on the dask cluster at %s (%d workers)", address,
                     len(client.scheduler_info().get("workers", {})))
            return cls(client=client)
        if memory_limit:
            from distributed import Client, LocalCluster

            threads = local_threads()
            # The in-process worker measures the whole server process. Pausing when that passes
            # 80 % would wait forever if the server itself holds the memory (nothing the worker
            # can spill): it spills its results to disk instead and keeps running.
            with dask.config.set({"distributed.worker.memory.pause": False}):
                cluster = LocalCluster(n_workers=1, threads_per_worker=threads,
                                       processes=False, memory_limit=memory_limit,
                                       dashboard_address=None)
            client = Client(cluster, set_as_default=True)
            log.info("computing on %d local threads with a memory limit of %s", threads,
                     memory_limit)
            return cls(client=client, threads=threads, cluster=cluster)
        executor = cls()
        log.info("computing on %d local threads", executor.threads)
        return executor

    @property
    def distributed(self) -> bool:
        return self.client is not None

    def describe(self) -> str:
        if self.client is None:
            return f"local threads ({self.threads})"
        return f"dask.distributed at {self.client.scheduler.address}"

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()
        self.client = self.cluster = None

    # --- making it current ------------------------------------------------------------------
    @contextlib.contextmanager
    def active(self) -> Iterator[Executor]:
        """Make this the executor `current()` returns in this thread/task."""
        token = _CURRENT.set(self)
        try:
            yield self
        finally:
            _CURRENT.reset(token)

    # --- computing ------------------------------------------------------------------------
    def compute(self, *collections: Any, progress: Progress | None = None) -> tuple:
        """dask.compute on this executor (non-dask values are returned as they are).

        `progress` defaults to the callback of `progress_to()`."""
        progress = progress or _PROGRESS.get()
        if self.client is not None:
            lazy = [i for i, c in enumerate(collections) if dask.is_dask_collection(c)]
            futures = self.client.compute([collections[i] for i in lazy])
            if progress is not None:
                _report_futures(futures, progress, self.client.loop)
            self._wait_or_cancel(futures)
            results = list(collections)
            for i, value in zip(lazy, self.client.gather(futures)):
                results[i] = value
            return tuple(results)
        cancel = _CANCEL.get()
        if cancel is not None:
            cancel.check()
        results = dask.compute(*collections, **self._local_kwargs(progress, cancel))
        if cancel is not None:
            cancel.check()  # e.g. over its memory limit with its last task
        return results

    def _local_kwargs(self, progress: Progress | None, cancel: Cancel | None) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"scheduler": self.local_scheduler,
                                  "num_workers": self.threads}
        # dask uses either the callbacks it is given or the global ones (`with Callback():`,
        # e.g. the dry run's guard that refuses any computation): keep the global ones too.
        callbacks: list[tuple] = list(Callback.active)
        if progress is not None:
            callbacks.append(_task_progress(progress))
        if cancel is not None:
            callbacks.append(_task_cancel(cancel))
            if cancel.memory_limit is not None:
                callbacks.append(_task_memory(cancel, cancel.memory_limit))
        if callbacks:
            kwargs["callbacks"] = callbacks
        return kwargs

    def store(self, sources: Sequence[dsa.Array], targets: Sequence[Any],
              progress: Progress | None = None) -> None:
        """Write every block of each source array into its target (`target[slices] = block`).

        Targets stay in this process (open files need not be picklable): with local threads
        dask calls them from its worker threads (targets lock themselves), with a cluster
        the blocks are computed on the workers from one graph — shared inputs once — and
        written here as they arrive. `progress` defaults to the callback of `progress_to()`.
        """
        progress = progress or _PROGRESS.get()
        sources = [dsa.asarray(s) for s in sources]
        if not sources:
            return
        cancel = _CANCEL.get()
        if cancel is not None:
            cancel.check()
        if self.client is None:
            dsa.store(sources, list(targets), lock=False, **self._local_kwargs(progress, cancel))
            if cancel is not None:
                cancel.check()
            return
        if self.cluster is not None:  # our in-process cluster: its workers can write too
            self._store_in_process(sources, targets, progress)
            return
        self._stream(sources, targets, progress)

    def _store_in_process(self, sources: Sequence[dsa.Array], targets: Sequence[Any],
                          progress: Progress | None) -> None:
        """The workers of the in-process cluster write each block as soon as it is computed
        (as local threads do), instead of sending it to this thread: no queue of finished
        blocks builds up while one thread writes, so the memory limit is not approached."""
        import dask

        keys = [f"{uuid.uuid4().hex}" for _ in targets]
        writes = []
        for source, key in zip(sources, keys):
            offsets = [np.concatenate([[0], np.cumsum(c)]) for c in source.chunks]
            delayed = source.to_delayed(optimize_graph=True)
            proxy = _InProcessTarget(key)
            for index in np.ndindex(*source.numblocks):
                where = tuple(slice(int(o[i]), int(o[i + 1])) for o, i in zip(offsets, index))
                writes.append(dask.delayed(_put, pure=False)(proxy, where, delayed[index]))
        with _TARGETS_LOCK:
            _TARGETS.update(zip(keys, targets))
        try:
            futures = self.client.compute(writes)
            if progress is not None:
                _report_futures(futures, progress, self.client.loop)
            self._wait_or_cancel(futures)
            self.client.gather(futures)
        finally:
            with _TARGETS_LOCK:
                for key in keys:
                    _TARGETS.pop(key, None)

    def _wait_or_cancel(self, futures: list) -> None:
        """Wait for the futures; cancel them (and raise `Cancelled`) when the active `Cancel`
        is set meanwhile."""
        cancel = _CANCEL.get()
        if cancel is None:
            return
        from distributed import wait

        while True:
            if cancel.is_set():
                self.client.cancel(futures)
                cancel.check()
            try:
                wait(futures, timeout=_CANCEL_POLL_S)
                return
            except TimeoutError:
                continue

    def _stream(self, sources: Sequence[dsa.Array], targets: Sequence[Any],
                progress: Progress | None) -> None:
        from distributed import as_completed

        blocks = []
        where: list[tuple[Any, tuple[slice, ...]]] = []
        for source, target in zip(sources, targets):
            offsets = [np.concatenate([[0], np.cumsum(c)]) for c in source.chunks]
            delayed = source.to_delayed(optimize_graph=True)
            for index in np.ndindex(*source.numblocks):
                blocks.append(delayed[index])
                where.append((target, tuple(slice(int(o[i]), int(o[i + 1]))
                                            for o, i in zip(offsets, index))))
        futures = self.client.compute(blocks)
        cancel = _CANCEL.get()
        position = {f.key: i for i, f in enumerate(futures)}
        done, total, last = 0, len(futures), 0.0
        for future, block in as_completed(futures, loop=self.client.loop,
                                          with_results=True):
            target, key = where[position[future.key]]
            target[key] = block
            future.release()
            if cancel is not None and cancel.is_set():
                self.client.cancel(futures)
                cancel.check()
            done += 1
            if progress is not None and (time.monotonic() - last > _PROGRESS_INTERVAL_S
                                         or done == total):
                last = time.monotonic()
                progress(done / total)


# Write targets of this process by key, for the workers of an in-process cluster (a target,
# e.g. an open file, cannot be pickled into a task; its key can).
_TARGETS: dict[str, Any] = {}
_TARGETS_LOCK = threading.Lock()


class _InProcessTarget:
    def __init__(self, key: str) -> None:
        self.key = key

    def __setitem__(self, where: tuple[slice, ...], block: Any) -> None:
        _TARGETS[self.key][where] = block


def _put(target: _InProcessTarget, where: tuple[slice, ...], block: Any) -> None:
    target[where] = block


_CURRENT: contextvars.ContextVar[Executor | None] = contextvars.ContextVar(
    "terracube_executor", default=None)
_PROGRESS: contextvars.ContextVar[Progress | None] = contextvars.ContextVar(
    "terracube_progress", default=None)
_CANCEL: contextvars.ContextVar[Cancel | None] = contextvars.ContextVar(
    "terracube_cancel", default=None)
_FALLBACK_LOCK = threading.Lock()
_FALLBACK: Executor | None = None


def current() -> Executor:
    """The executor made active with `Executor.active()`, else the local threaded one."""
    executor = _CURRENT.get()
    if executor is not None:
        return executor
    global _FALLBACK
    with _FALLBACK_LOCK:
        if _FALLBACK is None:
            _FALLBACK = Executor()
        return _FALLBACK


@contextlib.contextmanager
def progress_to(callback: Progress) -> Iterator[None]:
    """Report the progress of the computations started in this block (e.g. by a writer) to
    `callback`, on local threads and on a cluster alike (batch job progress)."""
    token = _PROGRESS.set(callback)
    try:
        yield
    finally:
        _PROGRESS.reset(token)


@contextlib.contextmanager
def cancellable(cancel: Cancel) -> Iterator[Cancel]:
    """Stop the computations started in this block (in this thread) when `cancel` is set:
    they raise `Cancelled`."""
    token = _CANCEL.set(cancel)
    try:
        yield cancel
    finally:
        _CANCEL.reset(token)


def _task_cancel(cancel: Cancel) -> tuple:
    """A dask local-scheduler callback tuple that raises `Cancelled` before a task starts once
    `cancel` is set: the scheduler then stops handing out tasks and re-raises it."""

    def pretask(key: Any, dsk: Any, state: dict) -> None:
        cancel.check()

    return (None, None, pretask, None, None)


def _task_memory(cancel: Cancel, limit: float) -> tuple:
    """A dask local-scheduler callback tuple that measures the task results the computation
    holds (dask's `sizeof` of each result still in the scheduler's cache, i.e. not yet
    released by the tasks that need it) as each task finishes, and sets `cancel` ("memory")
    when they exceed `limit`: no further task starts. Memory inside running tasks and
    outside dask is not seen."""
    held: dict[Any, int] = {}
    total = 0

    def posttask(key: Any, result: Any, dsk: Any, state: dict, worker_id: Any) -> None:
        # Called by the scheduler's own thread, after it released what `key` no longer
        # needs: the only results that can have gone are `key`'s dependencies (and `key`).
        nonlocal total
        cache = state["cache"]
        if key in cache:
            held[key] = int(sizeof(result))
            total += held[key]
        for dep in state["dependencies"].get(key, ()):
            if dep in held and dep not in cache:
                total -= held.pop(dep)
        cancel.held = max(cancel.held, total)
        if total > limit:
            cancel.set("memory")

    return (None, None, None, posttask, None)


def _task_progress(progress: Progress) -> tuple:
    """A dask local-scheduler callback tuple reporting finished tasks / all tasks."""
    state_total = {"total": 0, "done": 0, "last": 0.0}
    lock = threading.Lock()

    def start_state(dsk: Any, state: dict) -> None:
        state_total["total"] = sum(len(state[k]) for k in ("ready", "waiting", "running",
                                                             "finished"))

    def posttask(key: Any, result: Any, dsk: Any, state: dict, worker_id: Any) -> None:
        with lock:
            state_total["done"] += 1
            now = time.monotonic()
            if now - state_total["last"] < _PROGRESS_INTERVAL_S:
                return
            state_total["last"] = now
            total = state_total["total"] or 1
            fraction = min(1.0, state_total["done"] / total)
        progress(fraction)

    def finish(dsk: Any, state: dict, errored: bool) -> None:
        if not errored:
            progress(1.0)

    return (None, start_state, None, posttask, finish)


def _report_futures(futures: list, progress: Progress, loop: Any) -> None:
    from distributed import as_completed

    total = len(futures) or 1
    for i, _ in enumerate(as_completed(futures, loop=loop), start=1):
        progress(i / total)
