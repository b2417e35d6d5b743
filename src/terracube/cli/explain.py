"""`terracube explain graph.json`: the dry run of a process graph against this server's data.

The same dry run as POST /explain (processing/explain.py), run locally on the collections of
the data folder: every node's dimensions, shape, dtype and bytes, from metadata only.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from terracube.cli.common import EXIT_FAILED, EXIT_OK, settings_from


def add_commands(commands: Any, data_dir: argparse.ArgumentParser) -> None:
    """Register `explain`."""
    explain = commands.add_parser(
        "explain", parents=[data_dir],
        help="dry-run a process graph: every node's dimensions, shape and bytes (no pixels)",
        description="Dry-run a process graph (a JSON file: a POST /result body, a process or "
                    "a bare graph; - reads standard input) on the collections of the data "
                    "folder. Nothing is computed and no pixel is read.")
    explain.add_argument("graph", help="JSON file with the process graph, or -")
    explain.add_argument("--json", action="store_true", help="print the full JSON answer")
    explain.set_defaults(handler=explain_graph)


def explain_graph(args: argparse.Namespace) -> int:
    # Imported here: the engine loads xarray, dask and rasterio, which other commands skip.
    from terracube.catalog.catalog import Catalog
    from terracube.engine.registry import build_registry
    from terracube.processing.explain import explain_process
    from terracube.processing.services import build_services

    try:
        text = sys.stdin.read() if args.graph == "-" else Path(args.graph).read_text("utf-8")
        body = json.loads(text)
    except (OSError, ValueError) as exc:
        print(f"terracube: cannot read the process graph: {exc}", file=sys.stderr)
        return EXIT_FAILED
    settings = settings_from(args)
    services = build_services(settings, Catalog(settings), build_registry())
    from terracube import errors

    try:
        answer = explain_process(body, services).to_json()
    except errors.OpenEOError as exc:
        print(f"terracube: {exc.code}: {exc.message}", file=sys.stderr)
        return EXIT_FAILED
    if args.json:
        print(json.dumps(answer, indent=2, default=str))
    else:
        print(render(answer))
    return EXIT_OK if answer["valid"] else EXIT_FAILED


def render(answer: dict[str, Any]) -> str:
    """The dry run as text: one block per node, then the totals and the errors."""
    lines = []
    for node in answer["nodes"]:
        head = f"{node['id']} ({node['process_id']}): {node.get('kind', '?')}"
        if "dtype" in node:
            head += f" {node['dtype']}, {human(node.get('bytes_to_hold', 0))} held"
        if node.get("bytes_to_read"):
            head += f", {human(node['bytes_to_read'])} to read"
        lines.append(head)
        for dim in node.get("dimensions", []):
            text = f"    {dim['name']} ({dim['type']}): {dim['count']}"
            if "first" in dim:
                text += f" labels, {dim['first']} .. {dim['last']}"
            if "step" in dim:
                text += f", step {dim['step']:g}"
            lines.append(text)
        if node.get("crs") is not None:
            lines.append(f"    CRS {node['crs']}")
    lines.append(f"to read: {human(answer['bytes_to_read'])} "
                 f"({answer['pixels_to_read']:,} values); output: "
                 f"{human(answer['output_bytes'])}")
    for output in answer["outputs"]:
        lines.append(f"    output of {output['node']}: {output['format']}, "
                     f"{human(output['bytes'])}")
    if not answer["estimable"]:
        lines.append("duration cannot be estimated: " + "; ".join(
            answer["not_estimable_because"]))
    for error in answer["errors"]:
        lines.append(f"ERROR {error['code']}: {error['message']}")
    return "\n".join(lines)


def human(n: float) -> str:
    """A byte count for people: 1.2 GB."""
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} PB"
