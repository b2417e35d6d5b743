"""`terracube jobs list|show|cancel|delete|sweep`: batch jobs of all users, for administrators."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from terracube.cli.common import EXIT_FAILED, EXIT_OK, settings_from, usage

if TYPE_CHECKING:
    from terracube.settings import Settings

# The job store (SQLAlchemy) is imported by the handler: every `terracube` command builds this
# parser (cli/main.py).


def add_commands(commands: Any, data_dir: argparse.ArgumentParser) -> None:
    """Register `jobs list|show|cancel|delete|sweep`."""
    jobs = commands.add_parser("jobs", help="batch jobs of all users (administration)")
    job_commands = jobs.add_subparsers(title="jobs commands", metavar="ACTION")
    jobs_list = job_commands.add_parser("list", parents=[data_dir],
                                        help="list jobs, newest first")
    jobs_list.add_argument("--user", help="only the jobs of this user")
    jobs_list.add_argument("--status", help="only jobs with this status")
    jobs_list.set_defaults(handler=jobs_command, action="list")
    for action, text in (("show", "a job's record and its log"),
                         ("cancel", "cancel a queued or running job"),
                         ("delete", "delete a job with its logs and result files")):
        sub = job_commands.add_parser(action, parents=[data_dir], help=text)
        sub.add_argument("job_id")
        sub.set_defaults(handler=jobs_command, action=action)
    jobs_sweep = job_commands.add_parser(
        "sweep", parents=[data_dir],
        help="recover jobs of vanished workers and remove results past the retention period "
             "(workers also do this regularly)")
    jobs_sweep.set_defaults(handler=jobs_command, action="sweep")
    jobs.set_defaults(handler=lambda _args: usage(jobs))


def jobs_command(args: argparse.Namespace) -> int:
    return run_admin_command(settings_from(args), args)


def run_admin_command(settings: Settings, args: argparse.Namespace) -> int:
    from terracube import errors
    from terracube.db import open_database
    from terracube.jobs.files import JobFolders
    from terracube.jobs.logs import rfc3339
    from terracube.jobs.store import JobStore

    db = open_database(settings.database_url)
    store = JobStore(db)
    folders = JobFolders(settings.data_dir)
    try:
        if args.action == "list":
            jobs, _ = store.list(args.user, status=args.status)
            for job in jobs:
                print(f"{job.job_id}  {job.user_id:<16} {job.status:<9} "
                      f"{job.progress or 0:5.1f} %  {rfc3339(job.created)}  {job.title or ''}")
            return EXIT_OK
        if args.action == "sweep":
            # The worker imports the engine and the catalog; only this action needs them.
            from terracube.jobs.worker import Worker

            worker = Worker(settings, db)
            for job_id, status in worker.recover_stale():
                print(f"{job_id}: worker gone, now {status}")
            for job_id, _run in worker.remove_expired():
                print(f"{job_id}: results removed (retention)")
            for job_id in worker.remove_orphans():
                print(f"{job_id}: folder without job removed")
            return EXIT_OK
        job = store.get(args.job_id)
        if args.action == "show":
            record = {c.name: getattr(job, c.name) for c in job.__table__.columns}
            record = {k: rfc3339(v) if hasattr(v, "isoformat") else v for k, v in record.items()}
            record["logs"] = [{"id": e.id, "time": rfc3339(e.time), "level": e.level,
                               "code": e.code, "message": e.message, "path": e.path}
                              for e in store.logs(job.job_id)]
            print(json.dumps(record, indent=2, default=str))
        elif args.action == "cancel":
            after = store.cancel(job.job_id, job.user_id)
            if after.status != job.status:
                store.add_log(job.job_id, "info", "Canceled by an administrator.",
                              code="JobCanceled")
            print(f"{job.job_id}: {after.status}")
        elif args.action == "delete":
            store.delete(job.job_id, job.user_id)
            folders.remove_job(job.job_id)
            print(f"{job.job_id}: deleted")
        return EXIT_OK
    except errors.OpenEOError as exc:
        print(f"terracube: {exc.message}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        db.dispose()
