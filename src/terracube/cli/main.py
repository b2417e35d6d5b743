"""The `terracube` command line: the parser built from the command modules, and `main`."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from terracube.allocator import limit_arenas
from terracube.cli import collections, explain, jobs, samples, serve, udf, users, workspaces
from terracube.cli.common import EXIT_USAGE
from terracube.hub import command as hub  # `terracube hub`: the course hub


def main(argv: list[str] | None = None) -> int:
    limit_arenas()  # before any thread exists (terracube/allocator.py)
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
    # The order of the commands in `terracube --help`.
    for group in (serve, jobs, users, workspaces, collections, samples, udf, explain, hub):
        group.add_commands(commands, data_dir)
    return parser
