"""What every command of the `terracube` CLI shares: exit codes, settings from the flags."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from terracube.settings import Settings

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2  # also: refused to start with unsafe settings


def usage(parser: argparse.ArgumentParser) -> int:
    """Print a command group's help (it was called without an action)."""
    parser.print_help(sys.stderr)
    return EXIT_USAGE


def settings_from(args: argparse.Namespace, **fields: Any) -> Settings:
    """Settings from the environment, overridden by the command-line flags that were given."""
    from terracube.settings import Settings  # pydantic: not for `terracube --help`

    overrides = {k: v for k, v in fields.items() if v is not None}
    if getattr(args, "data_dir", None) is not None:
        overrides["data_dir"] = args.data_dir
    return Settings(**overrides)


def crs_label(ref: Any) -> str:
    """A short label for a CRS: EPSG:32633, or the start of a WKT."""
    return f"EPSG:{ref}" if isinstance(ref, int) else str(ref).split("[", 1)[0] + "[…]"
