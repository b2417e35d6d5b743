"""`terracube udf run FILE.py`: run a Python UDF on a small piece of a collection, locally.

The UDF runs as it would on the server: load_collection, then run_udf (on the cube, or as
the process of apply_dimension / reduce_dimension with --dimension), evaluated by the same
engine with the same sandbox and limits (the TERRACUBE_UDF_* settings). The result's
dimensions, shape, a summary of its values and a few of them are printed; --output writes it
as NetCDF for a closer look (e.g. with `openeo.udf.run_code.execute_local_udf`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from terracube import errors
from terracube.cli.common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, settings_from, usage

# The engine and catalog are imported inside the handler (numpy too): they load xarray, dask
# and rasterio, which the other commands of the CLI do not need.


def add_commands(commands: Any, data_dir: argparse.ArgumentParser) -> None:
    """Register `udf run`."""
    udf = commands.add_parser("udf", help="run a Python UDF locally, in the server's sandbox")
    actions = udf.add_subparsers(title="udf commands", metavar="ACTION")
    run = actions.add_parser(
        "run", parents=[data_dir], help="run a UDF on a small piece of a collection",
        description="Load a small piece of a collection and run the UDF of FILE on it under "
                    "the same sandbox and limits as the server; print the result's shape "
                    "and values.")
    run.add_argument("file", type=Path, help="the UDF's Python file")
    run.add_argument("--collection", required=True, help="collection id, e.g. SENTINEL2_L2A")
    run.add_argument("--bbox", required=True, metavar="W,S,E,N",
                     help="west,south,east,north (in --crs; default WGS84 degrees)")
    run.add_argument("--crs", type=int, default=4326, help="EPSG code of --bbox (default 4326)")
    run.add_argument("--dates", required=True, metavar="START/END",
                     help="temporal extent, e.g. 2022-04-01/2022-06-01 (END excluded)")
    run.add_argument("--bands", help="comma-separated band names (default: all)")
    run.add_argument("--dimension", help="run the UDF as the process of apply_dimension over "
                                         "this dimension (e.g. t or bands)")
    run.add_argument("--reduce", action="store_true",
                     help="with --dimension: reduce_dimension instead of apply_dimension")
    run.add_argument("--context", default="{}", help="the UDF's context (JSON)")
    run.add_argument("--output", type=Path, help="also write the result to this NetCDF file")
    run.set_defaults(handler=udf_run)
    udf.set_defaults(handler=lambda _args: usage(udf))


def _graph(args: argparse.Namespace, code: str, context: Any) -> dict[str, Any]:
    west, south, east, north = (float(v) for v in args.bbox.split(","))
    start, end = args.dates.split("/")
    load: dict[str, Any] = {"id": args.collection, "temporal_extent": [start, end],
                            "spatial_extent": {"west": west, "south": south, "east": east,
                                               "north": north, "crs": args.crs}}
    if args.bands:
        load["bands"] = [b.strip() for b in args.bands.split(",") if b.strip()]
    udf = {"udf": code, "runtime": "Python", "context": context}
    nodes: dict[str, Any] = {"load": {"process_id": "load_collection", "arguments": load}}
    if args.dimension:
        inner = {"run": {"process_id": "run_udf", "result": True,
                         "arguments": {"data": {"from_parameter": "data"}, **udf}}}
        process_id, callback = ("reduce_dimension", "reducer") if args.reduce \
            else ("apply_dimension", "process")
        nodes["udf"] = {"process_id": process_id, "result": True, "arguments": {
            "data": {"from_node": "load"}, "dimension": args.dimension,
            callback: {"process_graph": inner}}}
    else:
        nodes["udf"] = {"process_id": "run_udf", "result": True,
                        "arguments": {"data": {"from_node": "load"}, **udf}}
    return {"process_graph": nodes}


def udf_run(args: argparse.Namespace) -> int:
    from terracube.catalog import Catalog
    from terracube.datacube.cube import RasterCube
    from terracube.engine.registry import build_registry
    from terracube.processing.run import evaluate_result
    from terracube.processing.services import build_services

    try:
        code = args.file.read_text()
        context = json.loads(args.context)
        graph = _graph(args, code, context)
    except (OSError, ValueError) as exc:
        print(f"terracube: {exc}", file=sys.stderr)
        return EXIT_USAGE
    settings = settings_from(args)
    services = build_services(settings, Catalog(settings), build_registry())
    try:
        value = evaluate_result(graph, services)
        if not isinstance(value, RasterCube):
            print(json.dumps(value, default=str))
            return EXIT_OK
        data = value.data.compute()
    except errors.OpenEOError as exc:
        print(f"terracube: {exc.code}: {exc.message}", file=sys.stderr)
        return EXIT_FAILED
    _describe(data)
    if args.output:
        data.to_dataset(name="result").to_netcdf(args.output)
        print(f"written to {args.output}")
    return EXIT_OK


def _describe(data: Any) -> None:
    """Dimensions, shape, labels (short ones), statistics and the first values."""
    import numpy as np

    print("dimensions: " + ", ".join(f"{d} ({n})" for d, n in data.sizes.items()))
    print(f"shape: {tuple(data.shape)}")
    print(f"dtype: {data.dtype}")
    for d in data.dims:
        if d in data.coords and d not in ("x", "y") and data.sizes[d] <= 50:
            print(f"{d}: {', '.join(str(v) for v in np.asarray(data.coords[d].values))}")
    values = np.asarray(data.values, dtype=float)
    finite = values[np.isfinite(values)]
    if finite.size:
        print(f"values: min {finite.min():.6g}, mean {finite.mean():.6g}, max "
              f"{finite.max():.6g}, {values.size - finite.size} no-data of {values.size}")
    else:
        print(f"values: all {values.size} are no-data")
    print(f"first values: {np.array2string(values.ravel()[:8], precision=6)}")
