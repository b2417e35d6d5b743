"""`terracube worker`: claims queued jobs and runs each one in a job process it supervises.

One worker runs one job at a time; start several for parallel jobs (`terracube serve` starts
TERRACUBE_WORKERS of them, jobs/pool.py). For each claimed job the worker forks a job process
(runner.py; what it computes: compute.py) and then, every fraction of a second: records the
progress, log entries and result files the job process reports; says in the database that it
is alive (heartbeat); and checks that its run is still the current one — if the job was
canceled, deleted or taken over, it kills the job process (so the computation stops and its
memory is freed) and cleans up.

The worker itself stays single-threaded and computes nothing (that is what makes forking safe
and cheap: the job process starts with the libraries already imported). It also recovers jobs
whose worker vanished (stale heartbeat, or a dead process on this host) and removes results
older than the retention period.
"""

from __future__ import annotations

import json
import logging
import os
import select
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

from sqlalchemy.exc import OperationalError

from terracube.auth.users import UserNotFound, UserStore
from terracube.db import Database, open_database
from terracube.jobs.files import JobFolders
from terracube.jobs.logs import level_rank
from terracube.jobs.store import Claim, JobStore
from terracube.processing import costs as billing
from terracube.settings import Settings

log = logging.getLogger(__name__)

POLL_SECONDS = 0.5  # how often an idle worker looks for queued jobs
CHECK_SECONDS = 0.5  # how often a busy worker checks that its run is still current
HEARTBEAT_SECONDS = 2.0
SWEEP_SECONDS = 5.0  # stale-job recovery
RETENTION_SWEEP_SECONDS = 600.0
KILL_GRACE_SECONDS = 0.0  # cancel means stop now: the job process is killed at once
LOCKED_RETRY_SECONDS = 600.0  # how long the worker retries a write while the database is locked
LOCKED_RETRY_PAUSE = 1.0


# --- identity and liveness of workers -----------------------------------------------------------
def make_worker_id(pid: int | None = None) -> str:
    """host/pid/start-time: unique, and checkable for liveness on the same host."""
    pid = pid or os.getpid()
    return f"{socket.gethostname()}/{pid}/{_start_time(pid) or 0}"


def _start_time(pid: int) -> int | None:
    try:
        import psutil

        return int(psutil.Process(pid).create_time() * 100)
    except Exception:
        return None


def worker_is_dead(worker_id: str) -> bool:
    """True only when certain: a worker on this host whose process is gone (or is another
    process with a reused pid). Workers on other hosts are judged by their heartbeat."""
    try:
        host, pid_text, started = worker_id.rsplit("/", 2)
        pid = int(pid_text)
    except ValueError:
        return False
    if host != socket.gethostname():
        return False
    try:
        import psutil

        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return True
        return started != "0" and str(int(proc.create_time() * 100)) != started
    except ImportError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False
    except Exception:  # psutil.NoSuchProcess
        return True


# --- the worker ---------------------------------------------------------------------------------
@dataclass
class _Run:
    """Book-keeping of the job process of one claim."""

    claim: Claim
    pid: int
    read_fd: int
    out_dir: Path
    started: float = field(default_factory=time.monotonic)
    buffer: bytes = b""
    progress: float = 0.0
    saved_progress: float = 0.0
    assets: list[dict] = field(default_factory=list)
    outcome: dict | None = None
    peak_rss: int = 0  # bytes
    rss_seconds: float = 0.0  # byte-seconds
    last_sample: float = field(default_factory=time.monotonic)
    read_bytes: int = 0
    reaped: bool = False
    cpu_seconds: float = 0.0  # of the job process and its waited-for children, so far
    cpu_limit: float | None = None  # the job's budget / the owner's allowance, in CPU-seconds
    time_limit: float = float("inf")  # wall-clock seconds (job_max_seconds / max-seconds)
    time_limit_source: str = ""  # which setting or option set it, for the log message


class Worker:
    """Runs queued jobs; `run()` until stopped, or `run(once=True)` until the queue is empty."""

    def __init__(self, settings: Settings, db: Database | None = None, *,
                 poll_seconds: float = POLL_SECONDS, watch_stdin: bool = False) -> None:
        self.settings = settings
        self.db = db or open_database(settings.database_url,
                                      settings.database_busy_timeout_seconds)
        # Every database write of the worker waits out a locked database (see _Patient), so
        # that a lock longer than SQLite's busy timeout does not make it give the job up.
        self.store: JobStore = cast(JobStore, _Patient(JobStore(self.db)))
        self.budgets: billing.ComputeBudgets = cast(
            billing.ComputeBudgets, _Patient(billing.ComputeBudgets(self.db)))
        self.folders = JobFolders(settings.data_dir)
        self.worker_id = make_worker_id()
        self.poll_seconds = poll_seconds
        self.watch_stdin = watch_stdin
        self.stopping = False
        self._last_sweep = 0.0
        self._last_retention = 0.0
        self._registry: Any = None
        self._current_run: str | None = None  # the run this worker supervises right now

    # --- main loop ------------------------------------------------------------------------
    def run(self, once: bool = False) -> None:
        self._install_signal_handlers()
        log.info("worker %s ready (data in %s)", self.worker_id, self.settings.data_dir)
        failures = 0
        while not self.stopping:
            try:
                self.sweep()
                if self.run_one():
                    failures = 0
                    continue
                failures = 0
            except Exception:  # e.g. the database is briefly unavailable: keep going
                failures += 1
                log.exception("worker %s: error (%d in a row)", self.worker_id, failures)
                if failures >= 10:
                    raise
            if once and not failures:
                break
            self._idle(self.poll_seconds * (1 + failures))
        log.info("worker %s stopped", self.worker_id)

    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return

        def stop(signum: int, _frame: Any) -> None:
            log.info("worker %s: %s, stopping", self.worker_id, signal.Signals(signum).name)
            self.stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)

    def _prepare(self) -> None:
        """Import everything a job needs (once, before the first job's fork), so that each
        forked job process starts warm.

        Not at start: an idle worker then holds no engine (~280 MB less per worker) and
        starts in 1 CPU-s instead of 3 — a server starts two, and a class's laptop or the
        test suite starts many servers that never run a job. The first queued job waits for
        it (before it is claimed: no claimed job goes without heartbeats meanwhile)."""
        if self._registry is not None:
            return
        from terracube.engine.registry import build_registry

        self._registry = build_registry()
        import odc.stac  # noqa: F401
        import rioxarray  # noqa: F401

        import terracube.catalog.catalog  # noqa: F401
        import terracube.processing.outputs  # noqa: F401
        from terracube.catalog.tiff_tiles import warm_up

        warm_up()

    def _idle(self, seconds: float) -> None:
        if not self.watch_stdin:
            time.sleep(seconds)
            return
        self._check_stdin(seconds)

    def _check_stdin(self, timeout: float) -> None:
        """With --exit-with-parent: stdin is a pipe from the parent; EOF means it is gone."""
        try:
            ready, _, _ = select.select([sys.stdin], [], [], timeout)
        except (OSError, ValueError):
            time.sleep(timeout)
            return
        if ready and not os.read(sys.stdin.fileno(), 4096):
            log.warning("worker %s: the parent process is gone, stopping", self.worker_id)
            self.stopping = True
            self.watch_stdin = False

    # --- housekeeping -----------------------------------------------------------------------
    def sweep(self, force: bool = False) -> None:
        """Recover jobs of vanished workers; remove results past the retention period."""
        now = time.monotonic()
        if force or now - self._last_sweep >= SWEEP_SECONDS:
            self._last_sweep = now
            self.recover_stale()
        if force or now - self._last_retention >= RETENTION_SWEEP_SECONDS:
            self._last_retention = now
            self.remove_expired()

    def recover_stale(self) -> list[tuple[str, str]]:
        timeout = timedelta(seconds=self.settings.job_heartbeat_timeout_seconds)
        recovered = []
        for job in self.store.stale(timeout, worker_is_dead):
            if job.run_id is not None and job.run_id == self._current_run:
                continue
            dead = worker_is_dead(job.worker_id or "") or job.worker_id == self.worker_id
            reason = (f"The worker running this job ({job.worker_id}) stopped without "
                      "finishing it (it was killed or crashed)" if dead else
                      f"The worker running this job ({job.worker_id}) has not reported for "
                      f"more than {timeout.total_seconds():g} s")
            status = self.store.recover(job, reason)
            if status is None:
                continue
            if job.pid and dead:
                _kill_quietly(job.pid)  # an orphaned job process on this host, if any
            self.folders.remove_run(job.job_id, job.run_id)
            log.warning("job %s: %s; now %s", job.job_id, reason, status)
            recovered.append((job.job_id, status))
        return recovered

    def remove_expired(self) -> list[tuple[str, str]]:
        """Results past the retention period; also folders whose job no longer exists."""
        self.remove_orphans()
        days = self.settings.job_retention_days
        if not days:
            return []
        removed = self.store.expire_results(timedelta(days=days))
        for job_id, run in removed:
            self.folders.remove_run(job_id, run)
            log.info("job %s: results removed after %g days", job_id, days)
        return removed

    def remove_orphans(self) -> list[str]:
        """Job folders without a job (e.g. the owner's account was removed)."""
        root = self.folders.root
        if not root.is_dir():
            return []
        removed = []
        for folder in root.iterdir():
            if folder.is_dir() and self.store.find(folder.name) is None:
                self.folders.remove_job(folder.name)
                removed.append(folder.name)
        return removed

    # --- one job ----------------------------------------------------------------------------
    def run_one(self) -> bool:
        """Claim one queued job and run it to its end; False if the queue was empty."""
        if self._registry is None and self.store.has_queued():
            self._prepare()  # before the claim: a claimed job is never left waiting for it
        claim = self.store.claim(self.worker_id, self.settings.max_running_jobs_per_user)
        if claim is None:
            return False
        job = claim.job
        log.info("job %s (user %s): started, run %s", job.job_id, job.user_id, claim.run_id)
        self.folders.remove_runs_except(job.job_id, claim.run_id)
        out_dir = self.folders.run_dir(job.job_id, claim.run_id)
        out_dir.mkdir(parents=True, exist_ok=True)
        self._log(claim, "info", f"Started on worker {self.worker_id} (attempt {job.attempts}).")
        try:
            run = self._fork(claim, out_dir)
        except Exception as exc:
            log.exception("job %s: could not start the job process", job.job_id)
            self._log(claim, "error", f"The job process could not be started: {exc}",
                      code="Internal")
            self.store.fail(job.job_id, claim.run_id, None)
            return True
        self._current_run = claim.run_id
        try:
            self.store.heartbeat(job.job_id, claim.run_id, pid=run.pid)
            self._supervise(run)
        except BaseException:
            # Never leave a computation behind unsupervised: stop it, give the job back.
            _kill_and_reap(run)
            try:
                if self.store.requeue(job.job_id, claim.run_id):
                    self.store.add_log(job.job_id, "warning", "The worker failed while "
                                       "running this job; the job was queued again.",
                                       code="JobRequeued")
            except Exception:
                log.exception("job %s: could not queue it again", job.job_id)
            raise
        finally:
            self._current_run = None
        return True

    def _fork(self, claim: Claim, out_dir: Path) -> _Run:
        if threading.active_count() > 1:
            raise RuntimeError("a worker must run in a single-threaded process to fork jobs "
                               "safely; use `terracube worker`")
        self._prepare()  # done already unless called on its own
        from terracube.catalog import Catalog
        from terracube.jobs.results_access import UserJobResults
        from terracube.jobs.runner import job_process_main
        from terracube.processing import limits
        from terracube.processing.services import build_services

        try:
            user = UserStore(self.db).get(claim.job.user_id)
        except UserNotFound:
            user = None
        settings, registry = self.settings, self._registry
        process = claim.job.process
        cpu_limit = billing.cpu_limit(claim.job.budget, settings,
                                      self.budgets.allowance(claim.job.user_id).remaining)
        time_limit, time_source = limits.job_seconds(settings,
                                                     self.store.max_seconds(claim.job.job_id))
        # load_ml_model(<job id>) and load_result(<job id>) read the owner's finished jobs
        job_results = UserJobResults(self.store, self.folders, claim.job.user_id)

        def services_factory(**extra: Any) -> Any:
            return build_services(settings, Catalog(settings), registry, user,
                                  job_results=job_results, **extra)

        read_fd, write_fd = os.pipe()
        parent = os.getpid()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the job process
            code = 1
            try:
                os.close(read_fd)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_IGN)  # the worker decides on Ctrl-C
                self.db.engine.dispose(close=False)  # never reuse the parent's connections
                code = job_process_main(process=process, services_factory=services_factory,
                                        out_dir=out_dir, write_fd=write_fd, parent_pid=parent)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        os.close(write_fd)
        os.set_blocking(read_fd, False)
        return _Run(claim=claim, pid=pid, read_fd=read_fd, out_dir=out_dir, cpu_limit=cpu_limit,
                    time_limit=time_limit, time_limit_source=time_source)

    def _supervise(self, run: _Run) -> None:
        job_id, run_id = run.claim.job.job_id, run.claim.run_id
        last_check = last_beat = time.monotonic()
        status = rusage = None
        try:
            while True:
                watch = [run.read_fd]
                if self.watch_stdin:
                    watch.append(sys.stdin.fileno())
                try:
                    ready, _, _ = select.select(watch, [], [], 0.2)
                except InterruptedError:
                    ready = []
                if run.read_fd in ready:
                    self._read_messages(run)
                if self.watch_stdin and sys.stdin.fileno() in ready:
                    self._check_stdin(0)
                self._sample(run)
                pid, status, rusage = os.wait4(run.pid, os.WNOHANG)
                if pid == run.pid:
                    run.reaped = True
                    self._read_messages(run, to_end=True)
                    break
                if self.stopping:
                    self._stop_for_shutdown(run)
                    return
                if run.cpu_limit is not None and run.cpu_seconds > run.cpu_limit:
                    self._stop_over_budget(run)
                    return
                now = time.monotonic()
                if now - run.started > run.time_limit:
                    self._stop_over_time(run)
                    return
                if now - last_check >= CHECK_SECONDS:
                    last_check = now
                    if run.progress > run.saved_progress or now - last_beat >= HEARTBEAT_SECONDS:
                        current = self.store.heartbeat(job_id, run_id, progress=run.progress)
                        run.saved_progress, last_beat = run.progress, now
                    else:
                        current = self.store.is_current(job_id, run_id)
                    if not current:
                        self._stop_lost_run(run)
                        return
                    self.sweep()
            self._conclude(run, status, rusage)
        finally:
            try:
                os.close(run.read_fd)
            except OSError:
                pass

    def _read_messages(self, run: _Run, to_end: bool = False) -> None:
        while True:
            try:
                chunk = os.read(run.read_fd, 65536)
            except BlockingIOError:
                break
            except OSError:
                break
            if not chunk:
                break
            run.buffer += chunk
            if not to_end:
                break
        *lines, run.buffer = run.buffer.split(b"\n")
        for line in lines:
            if line.strip():
                try:
                    self._handle(run, json.loads(line))
                except ValueError:
                    log.warning("job %s: unreadable message %r", run.claim.job.job_id, line)

    def _handle(self, run: _Run, message: dict) -> None:
        kind = message.get("kind")
        claim = run.claim
        if kind == "progress":
            run.progress = max(run.progress, min(99.0, float(message["value"])))
        elif kind == "log":
            self._log(claim, message["level"], message["message"], code=message.get("code"),
                      path=message.get("path"), data=message.get("data"),
                      usage=message.get("usage"))
        elif kind == "asset":
            run.assets.append(message["asset"])
            self.store.record_assets(claim.job.job_id, claim.run_id, run.assets)
        elif kind in ("done", "error"):
            run.outcome = message

    def _log(self, claim: Claim, level: str, message: str, **fields: Any) -> None:
        if level_rank(level) < level_rank(claim.job.log_level or "info"):
            return
        self.store.add_log(claim.job.job_id, level, message, min_level=claim.job.log_level,
                           **fields)

    def _sample(self, run: _Run) -> None:
        """Memory and I/O of the job process (Linux /proc; elsewhere only the peak at exit)."""
        now = time.monotonic()
        rss = _rss_bytes(run.pid)
        if rss is not None:
            run.peak_rss = max(run.peak_rss, rss)
            run.rss_seconds += rss * (now - run.last_sample)
        from terracube.jobs.compute import read_bytes  # imported by _prepare already

        read = read_bytes(run.pid)
        if read is not None:
            run.read_bytes = max(run.read_bytes, read)
        cpu = _cpu_seconds(run.pid)
        if cpu is not None:
            run.cpu_seconds = max(run.cpu_seconds, cpu)
        run.last_sample = now

    def _usage(self, run: _Run, rusage: Any) -> dict[str, Any]:
        duration = time.monotonic() - run.started
        cpu = (rusage.ru_utime + rusage.ru_stime) if rusage is not None else None
        if rusage is not None:
            # ru_maxrss is in KiB on Linux, bytes on macOS.
            scale = 1 if sys.platform == "darwin" else 1024
            run.peak_rss = max(run.peak_rss, int(rusage.ru_maxrss) * scale)
        written = sum(int(a.get("size", 0)) for a in run.assets)
        usage: dict[str, Any] = {
            "duration": {"value": round(duration, 3), "unit": "seconds"},
            "memory": {"value": round(run.rss_seconds / 1e6, 1), "unit": "mb-seconds"},
            "peak_memory": {"value": round(run.peak_rss / 1e6, 1), "unit": "mb"},
            "storage": {"value": written, "unit": "b"},
            "bytes_written": {"value": written, "unit": "b"},
            "bytes_read": {"value": run.read_bytes, "unit": "b"},
            "disk": {"value": run.read_bytes + written, "unit": "b"},
        }
        cpu = max(cpu or 0.0, run.cpu_seconds)
        if cpu or rusage is not None:
            usage["cpu"] = {"value": round(cpu, 3), "unit": "cpu-seconds"}
        return usage

    def _account(self, run: _Run, usage: dict[str, Any]) -> None:
        """Count the run's CPU time against its owner's weekly allowance."""
        job = run.claim.job
        try:
            self.budgets.record(job.user_id, "job", job.job_id, billing.cpu_seconds(usage),
                                billing.costs_of(usage, self.settings))
        except Exception:  # accounting must never lose a job's outcome
            log.exception("job %s: could not record its usage", job.job_id)

    def _stop_over_budget(self, run: _Run) -> None:
        """The run used the CPU time its budget or its owner's allowance allows: stop it."""

        def why(usage: dict[str, Any]) -> str:
            costs = billing.costs_of(usage, self.settings)
            return (f"Stopped after {run.cpu_seconds:.1f} CPU-seconds (costs {costs:g} "
                    f"{self.settings.billing_currency}): that is all the job's budget or your "
                    "weekly compute allowance (GET /me) permits. Raise the budget, or wait "
                    "for the allowance.")

        self._stop_failed(run, why, "PaymentRequired", "stopped over budget")

    def _stop_over_time(self, run: _Run) -> None:
        """The run is over its wall-clock limit: stop it; the job ends as error saying which
        limit and how to raise it. The worker then takes the next queued job."""
        server = self.settings.job_max_seconds

        def why(usage: dict[str, Any]) -> str:
            return (f"Stopped after {usage['duration']['value']:.1f} s at {run.progress:.0f} "
                    f"%: the job may run for {run.time_limit:g} s ({run.time_limit_source}). "
                    "Make it smaller (a smaller extent, fewer dates or bands, a coarser "
                    "resolution) or split it into several jobs; a job may set its job option "
                    f"max-seconds up to {server:g} s, and an administrator can raise that "
                    "(setting TERRACUBE_JOB_MAX_SECONDS).")

        self._stop_failed(run, why, "ProcessGraphComplexity",
                          f"stopped after its time limit of {run.time_limit:g} s")

    def _stop_failed(self, run: _Run, why: Any, code: str, outcome: str) -> None:
        """Stop a run over one of its limits now: its usage is recorded and charged, the job
        ends as error with one log entry (`why(usage)`, `code`), its partial files go."""
        _kill_and_reap(run)
        job_id, run_id = run.claim.job.job_id, run.claim.run_id
        usage = self._usage(run, None)
        self._account(run, usage)
        if not self.store.is_current(job_id, run_id):
            self._cleanup_lost(run)
            return
        self.store.add_log(job_id, "error", why(usage), code=code, usage=usage)
        _remove_partial_files(run.out_dir)
        if self.store.fail(job_id, run_id, usage):
            log.info("job %s: %s", job_id, outcome)
        else:
            self._cleanup_lost(run)

    # --- how a run ends -------------------------------------------------------------------------
    def _conclude(self, run: _Run, status: int, rusage: Any) -> None:
        claim = run.claim
        job_id, run_id = claim.job.job_id, claim.run_id
        usage = self._usage(run, rusage)
        self._account(run, usage)
        outcome = run.outcome or {}
        if outcome.get("kind") == "done" and os.waitstatus_to_exitcode(status) == 0:
            size = usage["bytes_written"]["value"]
            if not self.store.is_current(job_id, run_id):
                self._cleanup_lost(run)
                return
            cpu = usage.get("cpu", {}).get("value", 0)
            self._log(claim, "info",
                      f"Finished: {len(run.assets)} file(s), {size / 1e6:.2f} MB, in "
                      f"{usage['duration']['value']:.1f} s (CPU {cpu:.1f} s, peak memory "
                      f"{usage['peak_memory']['value']:.0f} MB).", usage=usage)
            if self.store.finish(job_id, run_id, usage):
                log.info("job %s: finished", job_id)
            else:
                self._cleanup_lost(run)
            return
        if outcome.get("kind") == "error":
            entry = dict(outcome.get("entry") or {})
        else:
            entry = {"level": "error", "code": "Internal",
                     "message": _death_message(status, run.progress, run.peak_rss)}
        if not self.store.is_current(job_id, run_id):
            self._cleanup_lost(run)
            return
        entry.pop("level", None)
        message = entry.pop("message", "The job failed.")
        self.store.add_log(job_id, "error", message, usage=usage, **entry)
        _remove_partial_files(run.out_dir)
        if self.store.fail(job_id, run_id, usage):
            log.info("job %s: error: %s", job_id, message)
        else:
            self._cleanup_lost(run)

    def _stop_lost_run(self, run: _Run) -> None:
        """The run is no longer current (canceled, deleted, taken over): stop it now."""
        _kill_and_reap(run)
        log.info("job %s: run %s stopped (canceled, deleted or taken over)",
                 run.claim.job.job_id, run.claim.run_id)
        self._cleanup_lost(run)

    def _cleanup_lost(self, run: _Run) -> None:
        job_id, run_id = run.claim.job.job_id, run.claim.run_id
        job = self.store.find(job_id)
        if job is None:
            self.folders.remove_job(job_id)
        elif job.results_run == run_id:
            _remove_partial_files(run.out_dir)  # canceled with partial results: keep those
        else:
            self.folders.remove_run(job_id, run_id)

    def _stop_for_shutdown(self, run: _Run) -> None:
        _kill_and_reap(run)
        claim = run.claim
        if self.store.requeue(claim.job.job_id, claim.run_id, count_attempt=False):
            self.store.add_log(claim.job.job_id, "info",
                               "The worker was shut down; the job was queued again and starts "
                               "from the beginning on the next worker.", code="JobRequeued")
            log.info("job %s: queued again (worker shutdown)", claim.job.job_id)
        self._cleanup_lost(run)


# --- a locked database -------------------------------------------------------------------------
class _Patient:
    """Calls the methods of a store again while the database is locked.

    SQLite waits for a lock for its busy timeout (30 s, db.py), then fails with "database is
    locked"; PostgreSQL fails on a lock or serialization conflict only with errors it names
    likewise. Giving up then would make the worker abandon a job that is running fine (it
    was re-queued and ran twice): instead the worker keeps retrying, up to
    LOCKED_RETRY_SECONDS. Every store operation is a single transaction (rolled back when it
    fails), so repeating it is safe; the job process meanwhile computes on (its messages wait
    in the pipe)."""

    def __init__(self, target: Any) -> None:
        self._target = target

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        if not callable(value):
            return value

        def patiently(*args: Any, **kwargs: Any) -> Any:
            deadline = time.monotonic() + LOCKED_RETRY_SECONDS
            while True:
                try:
                    return value(*args, **kwargs)
                except OperationalError as exc:
                    if not _is_locked(exc) or time.monotonic() > deadline:
                        raise
                    log.warning("the database is locked (%s); retrying %s", exc.orig, name)
                    time.sleep(LOCKED_RETRY_PAUSE)

        return patiently


def _is_locked(exc: OperationalError) -> bool:
    text = str(exc.orig).lower()
    return "locked" in text or "busy" in text or "could not obtain lock" in text


# --- helpers ----------------------------------------------------------------------------------
def _kill_and_reap(run: _Run) -> None:
    """Kill the job process now (its memory is freed at once) and collect it."""
    if run.reaped:
        return  # never signal a pid that may belong to another process by now
    _kill_quietly(run.pid)
    try:
        os.waitpid(run.pid, 0)
    except ChildProcessError:
        pass
    run.reaped = True


def _kill_quietly(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _remove_partial_files(folder: Path) -> None:
    """Temporary files of writes that were interrupted (writers use .name.part etc.)."""
    if not folder.is_dir():
        return
    for path in folder.iterdir():
        if path.name.startswith(".") or path.name.endswith((".part", ".plain.tif")):
            if path.is_file():
                path.unlink(missing_ok=True)


def _death_message(status: int, progress: float, peak_rss: int) -> str:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        hint = ""
        if sig == signal.SIGKILL:
            # SIGKILL comes from the kernel's out-of-memory killer or from a person (kill -9);
            # memory is named as the cause only when the job held much of the machine's.
            total = _physical_memory()
            if total and peak_rss >= total / 2:
                hint = (" It held most of the machine's memory, so the system most likely "
                        "stopped it for running out of memory: try a smaller extent, fewer "
                        "dates or fewer bands.")
            else:
                hint = (" Memory was not short, so it was stopped from outside (an "
                        "administrator or another process); running it again may succeed.")
        return (f"The job process was killed by {name} at {progress:.0f} % (peak memory "
                f"{peak_rss / 1e6:.0f} MB).{hint}")
    code = os.waitstatus_to_exitcode(status)
    return (f"The job process ended unexpectedly with exit code {code} at {progress:.0f} % "
            "without reporting a result; the server log has the details.")


def _physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return None


def _rss_bytes(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process and its waited-for children (Linux /proc)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        # after the ")": state is field 3, utime/stime/cutime/cstime are fields 14-17
        ticks = sum(int(x) for x in fields[11:15])
        return ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None
