"""`terracube workspaces list|sweep`: retention of the users' workspaces (/files)."""

from __future__ import annotations

import argparse
from typing import Any

from terracube.cli.common import EXIT_OK, settings_from, usage

# The database and the retention module are imported by the handlers: every `terracube`
# command builds this parser (cli/main.py).


def add_commands(commands: Any, data_dir: argparse.ArgumentParser) -> None:
    """Register `workspaces list|sweep`."""
    workspaces = commands.add_parser("workspaces", help="user workspaces (/files): retention")
    workspace_commands = workspaces.add_subparsers(title="workspaces commands", metavar="ACTION")
    ws_list = workspace_commands.add_parser(
        "list", parents=[data_dir],
        help="each user's workspace: space used, last activity, removal date if flagged")
    ws_list.set_defaults(handler=workspaces_list)
    ws_sweep = workspace_commands.add_parser(
        "sweep", parents=[data_dir],
        help="flag workspaces of inactive users, remove those flagged longer than the warning "
             "period (terracube serve also does this every few hours)")
    ws_sweep.set_defaults(handler=workspaces_sweep)
    workspaces.set_defaults(handler=lambda _args: usage(workspaces))


def workspaces_list(args: argparse.Namespace) -> int:
    from terracube.db import open_database
    from terracube.workspace.retention import workspace_status

    settings = settings_from(args)
    rows = workspace_status(settings, open_database(settings.database_url))
    print(f"{'user':<24} {'used bytes':>14} {'quota bytes':>14}  {'last active':<20} "
          "removal due")
    for row in rows:
        due = row.removal_due.strftime("%Y-%m-%d %H:%M") if row.removal_due else "-"
        print(f"{row.user_id:<24} {row.used:>14} {settings.storage_quota_bytes:>14}  "
              f"{row.last_active.strftime('%Y-%m-%d %H:%M'):<20} {due}")
    return EXIT_OK


def workspaces_sweep(args: argparse.Namespace) -> int:
    from terracube.db import open_database
    from terracube.workspace.retention import sweep

    settings = settings_from(args)
    report = sweep(settings, open_database(settings.database_url))
    if settings.workspace_inactive_days <= 0:
        print("retention is off (TERRACUBE_WORKSPACE_INACTIVE_DAYS=0)")
    for label, names in (("flagged", report.flagged), ("removed", report.removed),
                         ("active again", report.unflagged),
                         ("folder of no known user (left alone)", report.orphans)):
        for name in names:
            print(f"{label}: {name}")
    return EXIT_OK
