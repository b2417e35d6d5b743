"""Text processes: text_begins, text_ends, text_contains, text_find, text_concat.

`data` is a string (None is no-data and passes through) or, inside callbacks, an array of
strings that is checked elementwise.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from terracube import errors
from terracube.datacube.values import ArrayValue
from terracube.engine.processes._elementwise import is_array, is_boolean, vectorised
from terracube.engine.registry import kind_of, process


def _search(name: str, data: Any, pattern: Any, case_sensitive: bool,
            on_text: Callable[[str, str], Any], on_array: Callable[[np.ndarray, str], Any],
            dtype: Any) -> Any:
    """Run a pattern test on one text (`on_text`) or elementwise on an array (`on_array`)."""
    if not isinstance(pattern, str):
        raise errors.ProcessParameterInvalid(
            f"{name}: 'pattern' must be a string, got {kind_of(pattern)}.", argument="pattern")
    if is_array(data):
        def run(a: np.ndarray) -> Any:
            a = np.asarray(a, dtype=str)
            if case_sensitive:
                return on_array(a, pattern)
            return on_array(np.char.lower(a), pattern.lower())

        return vectorised(run, data, dtype=dtype)
    if data is None:
        return None
    if not isinstance(data, str):
        raise errors.ProcessParameterInvalid(
            f"{name}: 'data' must be a string or null, got {kind_of(data)}.", argument="data")
    if not case_sensitive:
        data, pattern = data.lower(), pattern.lower()
    return on_text(data, pattern)


@process()
def text_begins(data: Any, pattern: str, case_sensitive: bool = True) -> Any:
    return _search("text_begins", data, pattern, case_sensitive, str.startswith,
                   np.char.startswith, bool)


@process()
def text_ends(data: Any, pattern: str, case_sensitive: bool = True) -> Any:
    return _search("text_ends", data, pattern, case_sensitive, str.endswith,
                   np.char.endswith, bool)


@process()
def text_contains(data: Any, pattern: str, case_sensitive: bool = True) -> Any:
    return _search("text_contains", data, pattern, case_sensitive,
                   lambda t, p: p in t, lambda a, p: np.char.find(a, p) >= 0, bool)


@process()
def text_find(data: Any, pattern: str, case_sensitive: bool = True) -> Any:
    def on_text(text: str, p: str) -> int | None:
        position = text.find(p)
        return None if position < 0 else position

    def on_array(a: np.ndarray, p: str) -> np.ndarray:
        position = np.char.find(a, p)
        return np.where(position < 0, np.nan, position)  # not found is no-data

    return _search("text_find", data, pattern, case_sensitive, on_text, on_array, float)


def _text(value: Any, argument: str) -> str:
    """The text of a value as the spec writes it: null, true/false, 1, -1.5."""
    if value is None:
        return "null"
    if is_boolean(value):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        value = float(value)
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return str(int(value)) if value.is_integer() and abs(value) < 1e21 else repr(value)
    raise errors.ProcessParameterInvalid(
        f"text_concat: '{argument}' holds {kind_of(value)}, which has no text form; only "
        "strings, numbers, booleans and null do.", argument=argument)


@process()
def text_concat(data: Any, separator: Any = "") -> str:
    if isinstance(data, ArrayValue) and data.is_list:
        data = data.data.values.tolist()
    if not isinstance(data, (list, tuple)):
        raise errors.ProcessParameterInvalid(
            f"text_concat: 'data' must be an array, got {kind_of(data)}.", argument="data")
    return _text(separator, "separator").join(_text(v, "data") for v in data)
