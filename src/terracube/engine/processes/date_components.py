"""date_replace_component: a date with one calendar or clock component set to a value (the
process CDSE's compositing notebooks call on temporal labels, e.g. the 15th of each month).

Works like the other date processes: an RFC 3339 string gives a string (same offset and
precision; a time component gives a date-time), a datetime64 value or array (temporal labels
inside callbacks, UTC) gives datetime64, computed with numpy on whole arrays.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np

from terracube import errors
from terracube.datacube.values import is_number
from terracube.engine.processes._elementwise import is_array, vectorised
from terracube.engine.processes.dates import _format, _instants, _parse
from terracube.engine.registry import process

COMPONENTS = ("year", "month", "day", "hour", "minute", "second")
_CLOCK = {"hour": 3600, "minute": 60, "second": 1}
_RANGES = {"month": (1, 12), "day": (1, 31), "hour": (0, 23), "minute": (0, 59),
           "second": (0, 59), "year": (1, 9999)}
_US = 1_000_000


def _replace(t: np.ndarray, value: int, component: str) -> np.ndarray:
    """datetime64[us] values with one component replaced; a day the month does not have
    (31 April) is an error, as on CDSE."""
    t = np.asarray(t, dtype="datetime64[us]")
    day = t.astype("datetime64[D]")
    month = t.astype("datetime64[M]")
    year = t.astype("datetime64[Y]")
    clock = (t - day).astype(np.int64)  # microseconds since midnight
    month_index = (month - year).astype(np.int64)
    day_index = (day - month.astype("datetime64[D]")).astype(np.int64)
    if component in _CLOCK:
        unit = _CLOCK[component] * _US
        upper = {"hour": 24 * 3600, "minute": 3600, "second": 60}[component] * _US
        clock = clock - (clock % upper) // unit * unit + value * unit
        return day + clock.astype("timedelta64[us]")
    if component == "year":
        year = np.full(t.shape, np.datetime64(f"{value:04d}", "Y"))
    elif component == "month":
        month_index = np.full(t.shape, value - 1, dtype=np.int64)
    elif component == "day":
        day_index = np.full(t.shape, value - 1, dtype=np.int64)
    new_month = year.astype("datetime64[M]") + month_index.astype("timedelta64[M]")
    new_day = new_month.astype("datetime64[D]") + day_index.astype("timedelta64[D]")
    valid = np.isnat(t) | (new_day.astype("datetime64[M]") == new_month)
    if not np.all(valid):
        raise errors.ProcessParameterInvalid(
            f"Setting the {component} to {value} gives a day that does not exist (e.g. 31 "
            "April or 29 February outside leap years).", argument="value")
    return new_day + clock.astype("timedelta64[us]")


@process("date_replace_component")
def date_replace_component(date: Any, value: Any, component: str) -> Any:
    if component not in COMPONENTS:
        raise errors.ProcessParameterInvalid(
            f"'component' must be one of {', '.join(COMPONENTS)}; got {component!r}.",
            argument="component")
    if not is_number(value) or float(value) != int(value):
        raise errors.ProcessParameterInvalid(
            f"'value' must be an integer, got {value!r}.", argument="value")
    value = int(value)
    lo, hi = _RANGES[component]
    if not lo <= value <= hi:
        raise errors.ProcessParameterInvalid(
            f"A {component} must lie between {lo} and {hi}; got {value}.", argument="value")
    if date is None:
        return None
    if is_array(date) or isinstance(date, np.datetime64):
        instants = _instants(date, "date")
        return vectorised(partial(_replace, value=value, component=component), instants,
                          dtype="datetime64[us]")
    parsed = _parse(date, "date")
    local = _replace(parsed.local, value, component)[()]
    return _format(local, parsed.offset, parsed.has_time or component in _CLOCK)
