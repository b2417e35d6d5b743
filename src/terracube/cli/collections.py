"""`terracube collections add|list|show|remove`: register your own data as collections."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from terracube import errors
from terracube.cli.common import EXIT_FAILED, EXIT_OK, crs_label, settings_from, usage

# The catalog modules are imported inside the handlers: `terracube.catalog` loads xarray,
# odc-stac and rasterio, which the other commands of the CLI do not need.


def add_commands(commands: Any, data_dir: argparse.ArgumentParser) -> None:
    """Register `collections add|list|show|remove`."""
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
    collections.set_defaults(handler=lambda _args: usage(collections))


def collections_add(args: argparse.Namespace) -> int:
    from terracube.catalog.metadata import CollectionInputError
    from terracube.catalog.registry import add_collection

    settings = settings_from(args)
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
          f"CRS {crs_label(dims['x']['reference_system'])}")
    return EXIT_OK


def _collections_catalog(args: argparse.Namespace) -> Any:
    from terracube.catalog import Catalog

    return Catalog(settings_from(args))


def collections_list(args: argparse.Namespace) -> int:
    from terracube.catalog.registry import BUILT_IN_COLLECTIONS, CollectionRegistry

    settings = settings_from(args)
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
    from terracube.catalog.registry import (
        CollectionNotRegistered,
        CollectionRegistry,
        source_from_record,
    )

    try:
        record = CollectionRegistry(settings_from(args).data_dir).get(args.id)
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
        CollectionRegistry(settings_from(args).data_dir).remove(args.id)
    except CollectionNotRegistered:
        print(f"terracube: no registered collection '{args.id}' (terracube collections list "
              "shows them)", file=sys.stderr)
        return EXIT_FAILED
    print(f"collection '{args.id}' removed (its data was not touched)")
    return EXIT_OK
