"""`terracube serve` (the API server) and `terracube worker` (a batch job worker)."""

from __future__ import annotations

import argparse
import gc
import logging
import os
import sys
from pathlib import Path
from typing import Any

from terracube.cli.common import EXIT_OK, EXIT_USAGE, settings_from

log = logging.getLogger("terracube")

# The web app, the catalog and the worker (FastAPI, the engine, dask) are imported inside the
# handlers: the other commands of the CLI import this module too, and must start fast.


def add_commands(commands: Any, data_dir: argparse.ArgumentParser) -> None:
    """Register `serve` and `worker`."""
    serve = commands.add_parser("serve", parents=[data_dir], help="run the openEO API server")
    serve.add_argument("--host", help="interface to bind (default: $TERRACUBE_HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, help="TCP port (default: $TERRACUBE_PORT or 8000)")
    serve.add_argument("--workers", type=int,
                       help="batch job worker processes to start (default: $TERRACUBE_WORKERS "
                            "or 2; 0: run `terracube worker` separately)")
    serve.add_argument("--root-path",
                       help="path prefix a reverse proxy publishes the server under, e.g. "
                            "/openeo-proxy (default: $TERRACUBE_ROOT_PATH or none)")
    serve.add_argument("--forwarded-allow-ips",
                       help="comma-separated addresses/networks of proxies whose "
                            "X-Forwarded-* headers are honoured (default: "
                            "$TERRACUBE_FORWARDED_ALLOW_IPS or none)")
    serve.set_defaults(handler=serve_command)

    worker = commands.add_parser(
        "worker", parents=[data_dir],
        help="run batch jobs: claim queued jobs from the database and compute them")
    worker.add_argument("--once", action="store_true",
                        help="stop when the queue is empty instead of waiting for jobs")
    worker.add_argument("--exit-with-parent", action="store_true",
                        help="stop when standard input closes (used by `terracube serve`)")
    worker.set_defaults(handler=worker_command)


def private_data(data_dir: Path) -> None:
    """Files the server and its workers create (database, results, workspaces) are for this
    account only: 0600 files, 0700 folders; the data folder and the database are made so if
    an earlier version left them readable to others."""
    os.umask(0o077)
    data_dir.mkdir(parents=True, exist_ok=True)
    for path in (data_dir, data_dir / "terracube.db"):
        try:
            if path.exists() and path.stat().st_uid == os.getuid():
                path.chmod(0o700 if path.is_dir() else 0o600)
        except OSError as exc:  # e.g. a read-only mount: serve anyway, but say it
            log.warning("could not make %s private: %s", path, exc)


def serve_command(args: argparse.Namespace) -> int:
    import uvicorn

    from terracube.api.app import create_app
    from terracube.settings import UnsafeToServe

    settings = settings_from(args, host=args.host, port=args.port, workers=args.workers,
                             root_path=args.root_path,
                             forwarded_allow_ips=args.forwarded_allow_ips)
    private_data(settings.data_dir)
    try:
        app = create_app(settings, start_workers=True)
    except UnsafeToServe as exc:
        print(f"terracube: {exc}", file=sys.stderr)
        return EXIT_USAGE
    from terracube.catalog.samples.sentinel2_synthetic import ensure_sample_data

    ensure_sample_data(settings.data_dir)
    from terracube.processing.scratch import ResultScratch, remove_stale_result_folders

    if stale := remove_stale_result_folders(ResultScratch.from_settings(settings).folders()):
        log.info("removed %d result folders of server processes that were killed", stale)
    log.info("terracube serving openEO API 1.2 at http://%s:%d/openeo/1.2/",
             settings.host, settings.port)
    if settings.public_url:
        log.info("public URL: %s/openeo/1.2/", settings.public_url)
    elif settings.root_path:
        log.info("published under the path prefix %s", settings.root_path)
    if settings.forwarded_allow_ips:
        log.info("X-Forwarded-* headers honoured from %s", settings.forwarded_allow_ips)
    from terracube.catalog.tiff_tiles import warm_up

    # The GeoTIFF decoder's compiled loops (~0.75 s once): before the first request, not in
    # it, and before the freeze below (numba's objects are start-up objects too).
    warm_up()
    from terracube.workspace.retention import RetentionThread

    retention = RetentionThread(settings, app.state.db)
    retention.start()
    # What is loaded by now (the app, the processes' libraries, the catalog) lives as long as
    # the server: frozen out of the cyclic collector, the full collections that a request's
    # allocations trigger walk only what was made since (0.04-0.16 CPU-s each before).
    gc.collect()
    gc.freeze()
    try:
        # Keep idle connections longer than uvicorn's 5 s: a client (requests' pool) that
        # sends on a connection the server is just closing gets "Remote end closed
        # connection" for a POST, which is not retried — seen between notebook cells and on
        # a loaded machine.
        # Proxy headers and the root path are applied by the app (api/proxy.py), from the
        # trusted proxies of the settings only: uvicorn's own handling trusts 127.0.0.1.
        uvicorn.run(app, host=settings.host, port=settings.port, log_level="info",
                    timeout_keep_alive=75, proxy_headers=False)
    finally:
        retention.stop()
    return EXIT_OK


def worker_command(args: argparse.Namespace) -> int:
    from terracube.jobs.worker import Worker

    settings = settings_from(args)
    private_data(settings.data_dir)
    Worker(settings, watch_stdin=args.exit_with_parent).run(once=args.once)
    return EXIT_OK
