"""The `terracube` command: serve the API, manage user accounts."""

from __future__ import annotations

import argparse
import getpass
import logging
import sys
from pathlib import Path
from typing import Any

from terracube.settings import Settings, UnsafeToServe

log = logging.getLogger("terracube")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2  # also: refused to start with unsafe settings


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="terracube", description="terracube: your own openEO API 1.2 back-end.")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    data_dir = argparse.ArgumentParser(add_help=False)
    data_dir.add_argument("--data-dir", type=Path,
                          help="data folder (default: $TERRACUBE_DATA_DIR or ./var)")

    serve = commands.add_parser("serve", parents=[data_dir], help="run the openEO API server")
    serve.add_argument("--host", help="interface to bind (default: $TERRACUBE_HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, help="TCP port (default: $TERRACUBE_PORT or 8000)")
    serve.set_defaults(handler=serve_command)

    users = commands.add_parser("users", help="manage user accounts")
    user_commands = users.add_subparsers(title="users commands", metavar="ACTION")
    add = user_commands.add_parser(
        "add", parents=[data_dir],
        help="add a user; the password is prompted for, or read from stdin if not a terminal")
    add.add_argument("name")
    add.set_defaults(handler=users_add)
    listing = user_commands.add_parser("list", parents=[data_dir], help="list the users")
    listing.set_defaults(handler=users_list)
    remove = user_commands.add_parser("remove", parents=[data_dir], help="remove a user")
    remove.add_argument("name")
    remove.set_defaults(handler=users_remove)
    passwd = user_commands.add_parser(
        "passwd", parents=[data_dir],
        help="change a user's password (prompted for, or read from stdin); logs the user out")
    passwd.add_argument("name")
    passwd.set_defaults(handler=users_passwd)
    users.set_defaults(handler=lambda _args: _usage(users))

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
    workspaces.set_defaults(handler=lambda _args: _usage(workspaces))
    return parser


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return EXIT_USAGE


def _settings(args: argparse.Namespace, **fields: Any) -> Settings:
    """Settings from the environment, overridden by the command-line flags that were given."""
    overrides = {k: v for k, v in fields.items() if v is not None}
    if getattr(args, "data_dir", None) is not None:
        overrides["data_dir"] = args.data_dir
    return Settings(**overrides)


# --- serve ----------------------------------------------------------------------------------------
def serve_command(args: argparse.Namespace) -> int:
    import uvicorn

    from terracube.api.app import create_app

    settings = _settings(args, host=args.host, port=args.port)
    try:
        app = create_app(settings)
    except UnsafeToServe as exc:
        print(f"terracube: {exc}", file=sys.stderr)
        return EXIT_USAGE
    from terracube.catalog.sample import ensure_sample_data

    ensure_sample_data(settings.data_dir)
    log.info("terracube serving openEO API 1.2 at http://%s:%d/openeo/1.2/",
             settings.host, settings.port)
    if settings.public_url:
        log.info("public URL: %s/openeo/1.2/", settings.public_url)
    from terracube.workspace.retention import RetentionThread

    retention = RetentionThread(settings, app.state.db)
    retention.start()
    try:
        uvicorn.run(app, host=settings.host, port=settings.port, log_level="info")
    finally:
        retention.stop()
    return EXIT_OK


# --- users ----------------------------------------------------------------------------------------
def _user_store(args: argparse.Namespace):
    from terracube.auth.users import UserStore
    from terracube.db import open_database

    settings = _settings(args)
    return UserStore(open_database(settings.database_url))


def _read_password(confirm: bool = True) -> str:
    if sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if confirm and getpass.getpass("Repeat password: ") != password:
            raise ValueError("the passwords do not match")
        return password
    line = sys.stdin.readline()
    return line[:-1] if line.endswith("\n") else line


def users_add(args: argparse.Namespace) -> int:
    from terracube.auth.users import UserExists, check_user_id

    try:
        check_user_id(args.name)
        store = _user_store(args)
        store.add(args.name, _read_password())
    except (ValueError, UserExists) as exc:
        print(f"terracube: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"user '{args.name}' added")
    return EXIT_OK


def users_list(args: argparse.Namespace) -> int:
    for user in _user_store(args).list():
        print(user.user_id)
    return EXIT_OK


def users_remove(args: argparse.Namespace) -> int:
    from terracube.auth.users import UserNotFound

    from terracube.workspace.retention import remove_workspace

    try:
        _user_store(args).remove(args.name)
    except UserNotFound as exc:
        print(f"terracube: {exc}", file=sys.stderr)
        return EXIT_FAILED
    # The files go with the account: a new user of the same name must not find them.
    if remove_workspace(_settings(args), args.name):
        print(f"workspace of '{args.name}' removed")
    print(f"user '{args.name}' removed")
    return EXIT_OK


def users_passwd(args: argparse.Namespace) -> int:
    from terracube.auth.users import UserNotFound

    try:
        store = _user_store(args)
        if not store.exists(args.name):
            raise UserNotFound(f"no user '{args.name}'")
        store.set_password(args.name, _read_password())
    except (ValueError, UserNotFound) as exc:
        print(f"terracube: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"password of '{args.name}' changed")
    return EXIT_OK


# --- workspaces -----------------------------------------------------------------------------------
def workspaces_list(args: argparse.Namespace) -> int:
    from terracube.db import open_database
    from terracube.workspace.retention import workspace_status

    settings = _settings(args)
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

    settings = _settings(args)
    report = sweep(settings, open_database(settings.database_url))
    if settings.workspace_inactive_days <= 0:
        print("retention is off (TERRACUBE_WORKSPACE_INACTIVE_DAYS=0)")
    for label, names in (("flagged", report.flagged), ("removed", report.removed),
                         ("active again", report.unflagged),
                         ("folder of no known user (left alone)", report.orphans)):
        for name in names:
            print(f"{label}: {name}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
