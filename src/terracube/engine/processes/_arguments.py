"""Checks of plain JSON arguments (strings, arrays, numbers, labels) shared by process modules.

A process graph can put any JSON value anywhere; these turn a value of the wrong kind into the
user's error (ProcessParameterInvalid naming the argument) before library code trips over it.
Cube and callback arguments are checked by the registry from the function's annotations.
"""

from __future__ import annotations

from typing import Any

from terracube import errors
from terracube.datacube.values import ArrayValue, is_number, to_list
from terracube.engine.registry import kind_of


def text_argument(value: Any, argument: str) -> str:
    """A string argument (e.g. a dimension name)."""
    if not isinstance(value, str):
        raise errors.ProcessParameterInvalid(
            f"'{argument}' must be a string, got {kind_of(value)}.", argument=argument)
    return value


def list_argument(value: Any, argument: str) -> list[Any]:
    """An array argument as a Python list (a JSON list, or a plain array a process returned)."""
    if isinstance(value, ArrayValue) and value.is_list:
        return to_list(value)
    if not isinstance(value, (list, tuple)):
        raise errors.ProcessParameterInvalid(
            f"'{argument}' must be an array, got {kind_of(value)}.", argument=argument)
    return list(value)


def number_argument(value: Any, argument: str) -> float:
    """A number argument (booleans are not numbers in openEO)."""
    if not is_number(value):
        raise errors.ProcessParameterInvalid(
            f"'{argument}' must be a number, got {kind_of(value)}.", argument=argument)
    return float(value)


def label_argument(value: Any, argument: str) -> Any:
    """A dimension label: a number, a string (dates too) or null."""
    if value is not None and not isinstance(value, str) and not is_number(value):
        raise errors.ProcessParameterInvalid(
            f"'{argument}' must be a number or a string, got {kind_of(value)}.",
            argument=argument)
    return value
