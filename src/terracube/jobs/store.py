"""Batch job records and their logs in SQL; every status change is one compare-and-set UPDATE.

The API process and any number of worker processes (on any number of hosts, with PostgreSQL)
share these tables. Nothing reads a row and then writes it back: each transition is a single
`UPDATE ... WHERE <expected state>` whose row count says whether it happened, so two workers
can never claim the same job, and a worker that lost its claim (the job was canceled, deleted,
or re-queued because the worker looked dead) can no longer change the job: every worker-side
write is fenced by the `run_id` of the claim.

Queueing is fair across users: a worker takes the oldest queued job of the user who has the
fewest jobs running (then: whose last job started longest ago), so one user's fifty jobs do
not hold up everyone else's; a user's running jobs (at claim) and queued jobs (at start) are
capped by limits that are part of the same compare-and-set UPDATE.
"""

from __future__ import annotations

import base64
import binascii
import builtins  # annotations in JobStore: its method `list` hides the builtin there
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, overload

from sqlalchemy import (
    JSON,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    and_,
    case,
    delete,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, aliased, mapped_column

from terracube import errors
from terracube.db import Base, Database
from terracube.jobs.logs import DEFAULT_JOB_LOG_LEVEL, level_rank, levels_from

CREATED, QUEUED, RUNNING = "created", "queued", "running"
CANCELED, FINISHED, ERROR = "canceled", "finished", "error"
STATUSES = (CREATED, QUEUED, RUNNING, CANCELED, FINISHED, ERROR)
ACTIVE = (QUEUED, RUNNING)  # "locked": no PATCH, POST /results has no effect
STOPPED = (CANCELED, FINISHED, ERROR)

# A job whose worker vanished is queued again this many times in total, then marked error.
MAX_ATTEMPTS = 2


class Job(Base):
    """A batch job. `run_id` identifies the current claim by a worker (only while running)."""

    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_user_created", "user_id", "created"),
                      Index("ix_jobs_status_queued", "status", "queued_at"))

    job_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("users.user_id", ondelete="CASCADE"))
    title: Mapped[str | None] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text)
    process: Mapped[dict] = mapped_column(JSON)
    plan: Mapped[str | None] = mapped_column(String(200))
    budget: Mapped[float | None] = mapped_column(Float)
    log_level: Mapped[str] = mapped_column(String(8), default=DEFAULT_JOB_LOG_LEVEL)
    status: Mapped[str] = mapped_column(String(16), default=CREATED)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    queued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    started: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    ended: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    worker_id: Mapped[str | None] = mapped_column(String(255))
    run_id: Mapped[str | None] = mapped_column(String(64))
    heartbeat: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    pid: Mapped[int | None] = mapped_column(Integer)  # the process computing the job
    results_run: Mapped[str | None] = mapped_column(String(64))  # folder of the results
    assets: Mapped[list | None] = mapped_column(JSON)
    asset_count: Mapped[int] = mapped_column(Integer, default=0)
    usage: Mapped[dict | None] = mapped_column(JSON)

    def __repr__(self) -> str:
        return f"Job({self.job_id!r}, {self.status})"


class JobLog(Base):
    """One log entry of a job; `id` increases, so it serves as the `offset` of the API."""

    __tablename__ = "job_logs"
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("jobs.job_id", ondelete="CASCADE"), index=True)
    level: Mapped[str] = mapped_column(String(8))
    code: Mapped[str | None] = mapped_column(String(100))
    message: Mapped[str] = mapped_column(Text)
    path: Mapped[list | None] = mapped_column(JSON)
    data: Mapped[Any | None] = mapped_column(JSON)
    usage: Mapped[dict | None] = mapped_column(JSON)
    time: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class JobLimits(Base):
    """Limits a job's own options set (job option `max-seconds`), below the server's settings.

    A table of its own, so that databases created before it gain it by `create_all`."""

    __tablename__ = "job_limits"

    job_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("jobs.job_id", ondelete="CASCADE"), primary_key=True)
    max_seconds: Mapped[float | None] = mapped_column(Float)


@dataclass(frozen=True)
class Claim:
    """A job a worker has claimed: the record as claimed and the fencing token of the run."""

    job: Job
    run_id: str


def new_job_id() -> str:
    return "j-" + secrets.token_hex(10)


@overload
def aware(value: datetime) -> datetime: ...
@overload
def aware(value: None) -> None: ...
def aware(value: datetime | None) -> datetime | None:
    # SQLite returns naive datetimes; everything is stored in UTC.
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class JobStore:
    """Jobs and job logs in the database; all times UTC."""

    def __init__(self, db: Database, clock: Callable[[], datetime] | None = None) -> None:
        self.db = db
        self._now = clock or (lambda: datetime.now(UTC))

    def now(self) -> datetime:
        return self._now()

    # --- the user's side (API) ---------------------------------------------------------------
    def create(self, user_id: str, process: dict, *, title: str | None = None,
               description: str | None = None, plan: str | None = None,
               budget: float | None = None, log_level: str = DEFAULT_JOB_LOG_LEVEL,
               max_seconds: float | None = None) -> Job:
        now = self.now()
        job = Job(job_id=new_job_id(), user_id=user_id, title=title, description=description,
                  process=process, plan=plan, budget=budget, log_level=log_level,
                  status=CREATED, progress=0.0, created=now, updated=now, attempts=0,
                  asset_count=0)
        with self.db.session() as s:
            s.add(job)
            if max_seconds is not None:
                s.flush()  # the job row first: the limits refer to it
                s.add(JobLimits(job_id=job.job_id, max_seconds=max_seconds))
        return job

    def max_seconds(self, job_id: str) -> float | None:
        """The job's own time limit (its job option `max-seconds`), if it set one."""
        with self.db.session() as s:
            limits = s.get(JobLimits, job_id)
        return limits.max_seconds if limits is not None else None

    def get(self, job_id: str, user_id: str | None = None) -> Job:
        """The job; JobNotFound if it does not exist or belongs to someone else."""
        with self.db.session() as s:
            job = s.get(Job, job_id)
        if job is None or (user_id is not None and job.user_id != user_id):
            raise errors.JobNotFound(f"The batch job '{job_id}' does not exist.")
        return job

    def find(self, job_id: str) -> Job | None:
        with self.db.session() as s:
            return s.get(Job, job_id)

    def list(self, user_id: str | None, limit: int | None = None,
             after: str | None = None, status: str | None = None
             ) -> tuple[builtins.list[Job], str | None]:
        """The user's jobs, newest first, and the cursor of the next page (None: last page)."""
        query = select(Job).order_by(Job.created.desc(), Job.job_id.desc())
        if user_id is not None:
            query = query.where(Job.user_id == user_id)
        if status is not None:
            query = query.where(Job.status == status)
        if after:
            created, job_id = decode_cursor(after)
            query = query.where(or_(Job.created < created,
                                    and_(Job.created == created, Job.job_id < job_id)))
        if limit is not None:
            query = query.limit(limit + 1)
        with self.db.session() as s:
            jobs = list(s.scalars(query))
        if limit is not None and len(jobs) > limit:
            jobs = jobs[:limit]
            return jobs, encode_cursor(jobs[-1])
        return jobs, None

    def update(self, job_id: str, user_id: str, changes: dict[str, Any]) -> None:
        """Change title/description/process/plan/budget/log_level; JobLocked while active."""
        allowed = {"title", "description", "process", "plan", "budget", "log_level"}
        unknown = set(changes) - allowed
        if unknown:
            raise ValueError(f"not editable: {', '.join(sorted(unknown))}")
        if not changes:
            self.get(job_id, user_id)
            return
        with self.db.session() as s:
            done = s.execute(update(Job).where(
                Job.job_id == job_id, Job.user_id == user_id, Job.status.not_in(ACTIVE),
            ).values(**changes)).rowcount
        if not done:
            job = self.get(job_id, user_id)
            raise errors.JobLocked(
                f"The batch job '{job_id}' is {job.status} and cannot be modified now; cancel "
                "it first (DELETE /jobs/{job_id}/results).")

    def delete(self, job_id: str, user_id: str) -> Job:
        """Remove the job and its logs; returns the removed record (for its files)."""
        with self.db.session() as s:
            job = s.get(Job, job_id)
            if job is None or job.user_id != user_id:
                raise errors.JobNotFound(f"The batch job '{job_id}' does not exist.")
            s.execute(delete(JobLog).where(JobLog.job_id == job_id))
            s.execute(delete(JobLimits).where(JobLimits.job_id == job_id))
            s.execute(delete(Job).where(Job.job_id == job_id))
        return job

    def start(self, job_id: str, user_id: str, max_queued: int | None = None,
              retry_after: int = 30) -> str | None:
        """Queue the job unless it is queued or running already.

        Returns the run folder of the discarded previous results (None if there were none),
        or raises JobNotFound. Returns "" when nothing changed (already queued or running).
        TooManyRequests if the user has `max_queued` jobs queued already.
        """
        job = self.get(job_id, user_id)
        if job.status in ACTIVE:
            return ""
        now = self.now()
        condition = [Job.job_id == job_id, Job.status.not_in(ACTIVE)]
        if max_queued is not None:
            condition.append(_count_of(job.user_id, QUEUED) < max_queued)
        with self.db.session() as s:
            if max_queued is not None:
                _lock_active_jobs(s, job.user_id)
            done = s.execute(update(Job).where(*condition).values(
                status=QUEUED, progress=0.0, queued_at=now, updated=now, started=None,
                ended=None, attempts=0, worker_id=None, run_id=None, heartbeat=None,
                pid=None, results_run=None, assets=None, asset_count=0,
                usage=None)).rowcount
        if not done:
            if max_queued is not None and self.get(job_id, user_id).status not in ACTIVE:
                raise errors.TooManyRequests(
                    f"You have {max_queued} batch jobs queued already, the most one user "
                    "may have waiting; start this one when some of them have started (or "
                    "cancel some: DELETE /jobs/{job_id}/results).", retry_after=retry_after)
            return ""
        return job.results_run

    def cancel(self, job_id: str, user_id: str) -> Job:
        """Stop a queued or running job (no effect otherwise); returns the record afterwards.

        Per the API: a running job with partial results becomes `canceled` (the results
        stay), every other one goes back to `created`. The worker sees that its run is no
        longer current and kills the computation.
        """
        self.get(job_id, user_id)
        now = self.now()
        keeps = and_(Job.status == RUNNING, Job.asset_count > 0)
        with self.db.session() as s:
            s.execute(update(Job).where(
                Job.job_id == job_id, Job.status.in_(ACTIVE),
            ).values(
                status=case((keeps, CANCELED), else_=CREATED),
                progress=case((keeps, Job.progress), else_=0.0),
                ended=case((keeps, now), else_=None),
                results_run=case((keeps, Job.results_run), else_=None),
                assets=case((keeps, Job.assets), else_=None),
                asset_count=case((keeps, Job.asset_count), else_=0),
                updated=now, run_id=None, worker_id=None, heartbeat=None, pid=None,
            ))
        return self.get(job_id, user_id)

    # --- the worker's side ---------------------------------------------------------------
    def has_queued(self) -> bool:
        """Whether any job waits to be claimed."""
        with self.db.session() as s:
            return s.scalar(select(Job.job_id).where(Job.status == QUEUED).limit(1)) is not None

    def claim(self, worker_id: str, max_running_per_user: int | None = None) -> Claim | None:
        """Take a queued job for `worker_id`, fairly across users; None if there is none.

        The user with the fewest running jobs goes first (then the one whose last job started
        longest ago, then the oldest waiting job), and gets their oldest queued job; users
        with `max_running_per_user` jobs running are skipped.
        """
        with self.db.session() as s:
            waiting = dict(s.execute(
                select(Job.user_id, func.min(Job.queued_at)).where(Job.status == QUEUED)
                .group_by(Job.user_id)).all())
            if not waiting:
                return None
            users = list(waiting)
            running = dict(s.execute(
                select(Job.user_id, func.count()).where(Job.status == RUNNING,
                                                        Job.user_id.in_(users))
                .group_by(Job.user_id)).all())
            last_start = dict(s.execute(
                select(Job.user_id, func.max(Job.started)).where(Job.user_id.in_(users),
                                                                 Job.started.is_not(None))
                .group_by(Job.user_id)).all())
        never = datetime.min.replace(tzinfo=UTC)
        order = sorted(
            (u for u in users
             if max_running_per_user is None or running.get(u, 0) < max_running_per_user),
            key=lambda u: (running.get(u, 0), aware(last_start.get(u)) or never,
                           aware(waiting[u]) or never, u))
        for user_id in order[:5]:
            claim = self._claim_oldest_of(user_id, worker_id, max_running_per_user)
            if claim is not None:
                return claim
        return None

    def _claim_oldest_of(self, user_id: str, worker_id: str,
                         max_running: int | None) -> Claim | None:
        with self.db.session() as s:
            candidates = list(s.scalars(
                select(Job.job_id).where(Job.status == QUEUED, Job.user_id == user_id)
                .order_by(Job.queued_at, Job.created).limit(3)))
        for job_id in candidates:
            run_id = f"run-{secrets.token_hex(6)}"
            now = self.now()
            condition = [Job.job_id == job_id, Job.status == QUEUED]
            if max_running is not None:
                condition.append(_count_of(user_id, RUNNING) < max_running)
            with self.db.session() as s:
                if max_running is not None:
                    _lock_active_jobs(s, user_id)
                done = s.execute(update(Job).where(*condition).values(
                    status=RUNNING, run_id=run_id, worker_id=worker_id, heartbeat=now,
                    started=now, updated=now, attempts=Job.attempts + 1, progress=0.0,
                    results_run=run_id, assets=None, asset_count=0, usage=None,
                    ended=None, pid=None)).rowcount
            if done:
                return Claim(self.get(job_id), run_id)
        return None

    def _fenced(self, job_id: str, current_run: str, /, **values: Any) -> bool:
        """Change the job only while `current_run` is its current, running run."""
        with self.db.session() as s:
            return bool(s.execute(update(Job).where(
                Job.job_id == job_id, Job.run_id == current_run, Job.status == RUNNING,
            ).values(**values)).rowcount)

    def heartbeat(self, job_id: str, run_id: str, progress: float | None = None,
                  pid: int | None = None) -> bool:
        """Say the run is alive (and how far); False if the run is no longer current."""
        values: dict[str, Any] = {"heartbeat": self.now()}
        if progress is not None:
            values["progress"] = max(0.0, min(99.9, float(progress)))
        if pid is not None:
            values["pid"] = pid
        return self._fenced(job_id, run_id, **values)

    def is_current(self, job_id: str, run_id: str) -> bool:
        with self.db.session() as s:
            return s.scalar(select(func.count()).select_from(Job).where(
                Job.job_id == job_id, Job.run_id == run_id, Job.status == RUNNING)) == 1

    def record_assets(self, job_id: str, run_id: str, assets: builtins.list[dict]) -> bool:
        """The result files written so far by this run (also partial results)."""
        return self._fenced(job_id, run_id, assets=list(assets), asset_count=len(assets))

    def finish(self, job_id: str, run_id: str, usage: dict | None) -> bool:
        now = self.now()
        return self._fenced(job_id, run_id, status=FINISHED, progress=100.0, ended=now,
                            updated=now, usage=usage, run_id=None, worker_id=None,
                            heartbeat=None, pid=None)

    def fail(self, job_id: str, run_id: str, usage: dict | None) -> bool:
        now = self.now()
        return self._fenced(job_id, run_id, status=ERROR, ended=now, updated=now, usage=usage,
                            run_id=None, worker_id=None, heartbeat=None, pid=None)

    def requeue(self, job_id: str, run_id: str, count_attempt: bool = True) -> bool:
        """Put a running job back into the queue (at its old place); its run is discarded."""
        now = self.now()
        return self._fenced(
            job_id, run_id, status=QUEUED, progress=0.0, updated=now, started=None,
            run_id=None, worker_id=None, heartbeat=None, pid=None, results_run=None,
            assets=None, asset_count=0, usage=None,
            attempts=Job.attempts if count_attempt else Job.attempts - 1)

    def running(self) -> builtins.list[Job]:
        with self.db.session() as s:
            return list(s.scalars(select(Job).where(Job.status == RUNNING)))

    def stale(self, timeout: timedelta, worker_is_dead: Callable[[str], bool],
              grace: timedelta = timedelta(seconds=6)) -> builtins.list[Job]:
        """Running jobs whose worker is gone: silent for `timeout`, or known to be dead.

        A worker known to be dead must also have missed its last heartbeats (`grace`), so a
        wrong verdict (say, two machines with one host name) never takes a job from a
        worker that is still reporting.
        """
        now = self.now()
        stale = []
        for job in self.running():
            beat = aware(job.heartbeat)
            if beat is None or beat < now - timeout:
                stale.append(job)
            elif beat < now - grace and worker_is_dead(job.worker_id or ""):
                stale.append(job)
        return stale

    def recover(self, job: Job, reason: str) -> str | None:
        """Re-queue a job whose worker vanished, or mark it error after MAX_ATTEMPTS.

        Returns the new status, or None if the run was no longer current (someone else
        recovered, canceled or finished it first).
        """
        if job.run_id is None:
            return None
        percent = f"{job.progress:.0f} %"
        if job.attempts < MAX_ATTEMPTS:
            if not self.requeue(job.job_id, job.run_id):
                return None
            self.add_log(job.job_id, "warning",
                         f"{reason} at {percent}; the job was queued again (attempt "
                         f"{job.attempts + 1} of {MAX_ATTEMPTS}).", code="JobRequeued")
            return QUEUED
        if not self.fail(job.job_id, job.run_id, job.usage):
            return None
        self.add_log(job.job_id, "error",
                     f"{reason} at {percent}, for the {_ordinal(job.attempts)} time; the job "
                     "is not retried again (the log above says why it stopped; a job that "
                     "runs out of memory each time needs a smaller extent or fewer "
                     "bands/dates).",
                     code="JobAbandoned")
        return ERROR

    def expire_results(self, older_than: timedelta) -> builtins.list[tuple[str, str]]:
        """Reset stopped jobs whose results are older than the retention period.

        Returns (job_id, run folder) of the results to remove from disk.
        """
        limit = self.now() - older_than
        with self.db.session() as s:
            rows = list(s.execute(select(Job.job_id, Job.results_run, Job.status).where(
                Job.status.in_(STOPPED), Job.ended < limit, Job.results_run.is_not(None))))
        removed = []
        for job_id, run, status in rows:
            now = self.now()
            with self.db.session() as s:
                done = s.execute(update(Job).where(
                    Job.job_id == job_id, Job.status == status, Job.results_run == run,
                ).values(status=CREATED, progress=0.0, updated=now, results_run=None,
                         assets=None, asset_count=0)).rowcount
            if done:
                days = older_than.total_seconds() / 86400
                self.add_log(job_id, "info",
                             f"The results of this job were removed after the retention period "
                             f"of {days:g} days; start the job again to compute them anew.",
                             code="ResultsExpired")
                removed.append((job_id, run))
        return removed

    # --- logs ------------------------------------------------------------------------------
    def add_log(self, job_id: str, level: str, message: str, *, code: str | None = None,
                path: list | None = None, data: Any = None, usage: dict | None = None,
                min_level: str | None = None) -> int | None:
        """Store a log entry unless it is below the job's log_level; returns its id."""
        if min_level is None:
            with self.db.session() as s:
                min_level = s.scalar(select(Job.log_level).where(Job.job_id == job_id))
            if min_level is None:
                return None  # the job is gone
        if level_rank(level) < level_rank(min_level):
            return None
        entry = JobLog(job_id=job_id, level=level, code=code, message=message, path=path,
                       data=data, usage=usage, time=self.now())
        try:
            with self.db.session() as s:
                s.add(entry)
        except IntegrityError:
            return None  # deleted in the meantime
        return entry.id

    def logs(self, job_id: str, after: int | None = None, min_level: str = "debug",
             limit: int | None = None) -> builtins.list[JobLog]:
        query = (select(JobLog).where(JobLog.job_id == job_id,
                                      JobLog.level.in_(levels_from(min_level)))
                 .order_by(JobLog.id))
        if after is not None:
            query = query.where(JobLog.id > after)
        if limit is not None:
            query = query.limit(limit)
        with self.db.session() as s:
            return list(s.scalars(query))

    def last_error(self, job_id: str) -> JobLog | None:
        with self.db.session() as s:
            return s.scalars(select(JobLog).where(JobLog.job_id == job_id,
                                                  JobLog.level == "error")
                             .order_by(JobLog.id.desc()).limit(1)).first()


def _count_of(user_id: str, status: str) -> Any:
    """SQL: how many jobs of the user have `status` (for the WHERE of a compare-and-set)."""
    other = aliased(Job)
    return (select(func.count()).select_from(other)
            .where(other.user_id == user_id, other.status == status).scalar_subquery())


def _lock_active_jobs(session: Any, user_id: str) -> None:
    """Serialize per-user limit checks: SQLite runs one writer at a time anyway; PostgreSQL
    evaluates a count in a concurrent UPDATE on its own snapshot, so two claims for one user
    could both pass it. Locking the user's queued/running rows (in a fixed order) first makes
    the second wait for the first and count it."""
    if session.get_bind().dialect.name != "sqlite":
        session.execute(select(Job.job_id).where(Job.user_id == user_id, Job.status.in_(ACTIVE))
                        .order_by(Job.job_id).with_for_update())


def encode_cursor(job: Job) -> str:
    created = aware(job.created)
    assert created is not None
    raw = f"{created.isoformat()}|{job.job_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(token: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        stamp, job_id = raw.split("|", 1)
        return datetime.fromisoformat(stamp), job_id
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise ValueError(f"invalid page cursor {token!r}") from None


def _ordinal(n: int) -> str:
    return {1: "first", 2: "second", 3: "third"}.get(n, f"{n}th")
