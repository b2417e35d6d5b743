"""Date and time processes: date_shift, date_between, date_difference.

Dates are RFC 3339 strings (date-only `2020-01-31` or date-time with an offset) or, inside
callbacks over temporal labels, numpy datetime64 values/arrays (UTC). One numpy
implementation serves both: strings are parsed to datetime64 first.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from terracube import errors
from terracube.datacube.values import is_number
from terracube.engine.processes._elementwise import is_array, python_number, vectorised
from terracube.engine.registry import process

UNITS = ("millisecond", "second", "minute", "hour", "day", "week", "month", "year")
_FIXED_UNITS = {"millisecond": (1, "ms"), "second": (1, "s"), "minute": (1, "m"),
                "hour": (1, "h"), "day": (1, "D"), "week": (7, "D")}

_DATE_TIME = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})"
    r"(?:[Tt ](?P<hm>\d{2}:\d{2}):(?P<s>\d{2})(?P<frac>\.\d+)?(?P<tz>[Zz]|[+-]\d{2}:\d{2})?)?")
_TIME = re.compile(r"(\d{2}):(\d{2}):(\d{2})")


@dataclass(frozen=True)
class _Date:
    """A parsed date string: wall-clock time at its offset, the offset, and its precision."""

    local: np.datetime64  # microseconds
    offset: int  # minutes east of UTC
    has_time: bool

    @property
    def utc(self) -> np.datetime64:
        return self.local - np.timedelta64(self.offset, "m")


def _parse(text: Any, name: str) -> _Date:
    m = _DATE_TIME.fullmatch(text.strip()) if isinstance(text, str) else None
    if m is None:
        raise ValueError(f"'{name}' must be an RFC 3339 date or date-time, got {text!r}")
    if not m["hm"]:
        return _Date(np.datetime64(m["date"], "us"), 0, False)
    seconds = min(int(m["s"]), 59)  # a leap second (:60) is taken as :59; never returned
    fraction = (m["frac"] or ".")[1:7].ljust(6, "0")
    local = np.datetime64(f"{m['date']}T{m['hm']}:{seconds:02d}.{fraction}", "us")
    tz = m["tz"] or "Z"
    offset = 0 if tz in "Zz" else (1 if tz[0] == "+" else -1) * (int(tz[1:3]) * 60 + int(tz[4:]))
    return _Date(local, offset, True)


def _format(local: np.datetime64, offset: int, has_time: bool) -> str:
    if not has_time:
        return str(local.astype("datetime64[D]"))
    text = np.datetime_as_string(local, unit="s")
    micro = int(local.astype("datetime64[us]").astype(np.int64) % 1_000_000)
    if micro:
        text += f".{micro // 1000:03d}" if micro % 1000 == 0 else f".{micro:06d}"
    if offset == 0:
        return text + "Z"
    sign = "+" if offset > 0 else "-"
    return f"{text}{sign}{abs(offset) // 60:02d}:{abs(offset) % 60:02d}"


def _instants(value: Any, name: str) -> Any:
    """UTC datetime64 (scalar or array) for a date string, datetime64 value/array or datetime."""
    if is_array(value):
        if value.dtype.kind in "UOS":
            # Temporal labels reach callbacks (array_apply's `label`, array_labels) as
            # RFC 3339 strings: parse them elementwise (issue 11, defect 12).
            return vectorised(partial(_parse_strings, name=name), value,
                              dtype="datetime64[us]")
        if value.dtype.kind != "M":
            raise errors.ProcessParameterInvalid(
                f"'{name}' must hold dates, got values of type {value.dtype}.", argument=name)
        return value
    if isinstance(value, np.datetime64):
        return value
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        return np.datetime64(value, "us")
    return _parse(value, name).utc


def _parse_strings(values: np.ndarray, name: str) -> np.ndarray:
    """UTC datetime64 for an array of date strings (null: NaT)."""
    flat = [np.datetime64("NaT", "us") if v is None or (isinstance(v, float) and v != v)
            else _parse(str(v), name).utc for v in np.asarray(values, dtype=object).ravel()]
    return np.array(flat, dtype="datetime64[us]").reshape(np.shape(values))


def _check_unit(unit: Any) -> None:
    if unit not in UNITS:
        raise ValueError(f"'unit' must be one of {', '.join(UNITS)}; got {unit!r}")


# --- calendar arithmetic on datetime64 arrays -------------------------------------------------
def _add_months(t: Any, months: Any) -> Any:
    """Shift by whole months keeping day and time; days past the month's end become its last."""
    month = t.astype("datetime64[M]")
    day = t.astype("datetime64[D]")
    time_of_day = t - day
    day_index = day - month.astype("datetime64[D]")
    target = month + np.asarray(months).astype("timedelta64[M]")
    first = target.astype("datetime64[D]")
    last = (target + np.timedelta64(1, "M")).astype("datetime64[D]") - np.timedelta64(1, "D")
    return np.minimum(first + day_index, last) + time_of_day


def _shift(t: Any, value: int, unit: str) -> Any:
    if unit in _FIXED_UNITS:
        factor, code = _FIXED_UNITS[unit]
        return t + np.timedelta64(value * factor, code)
    return _add_months(t, value * 12 if unit == "year" else value)


def _months_between(d1: Any, d2: Any) -> Any:
    """Calendar months from d1 to d2: whole months plus the elapsed part of the next one."""
    n = (d2.astype("datetime64[M]") - d1.astype("datetime64[M]")).astype(np.int64)
    forward = d2 >= d1
    anchor = _add_months(d1, n)
    n = np.where(forward & (anchor > d2), n - 1, np.where(~forward & (anchor < d2), n + 1, n))
    anchor = _add_months(d1, n)
    following = _add_months(d1, n + np.where(forward, 1, -1))
    return n + (d2 - anchor) / np.abs(following - anchor)


def _difference(d1: Any, d2: Any, unit: str) -> Any:
    if unit in _FIXED_UNITS:
        factor, code = _FIXED_UNITS[unit]
        return (d2 - d1) / np.timedelta64(factor, code)
    months = _months_between(np.asarray(d1), np.asarray(d2))
    return months / 12 if unit == "year" else months


# --- processes --------------------------------------------------------------------------------
@process()
def date_shift(date: Any, value: Any, unit: str) -> Any:
    if not is_number(value) or float(value) != int(value):
        raise errors.ProcessParameterInvalid(f"'value' must be an integer, got {value!r}.",
                                             argument="value")
    _check_unit(unit)
    value = int(value)
    if date is None:
        return None
    if is_array(date) or isinstance(date, np.datetime64):
        return vectorised(partial(_shift, value=value, unit=unit), _instants(date, "date"))
    parsed = _parse(date, "date")
    # Day and longer units move the wall-clock date at the given offset, never the time.
    shifted = _shift(parsed.local, value, unit)
    return _format(shifted, parsed.offset, parsed.has_time)


def _time_of_day(value: Any, name: str) -> Any:
    """Seconds since midnight (UTC) as timedelta64 for `HH:MM:SS` strings or dates."""
    if isinstance(value, str) and _TIME.fullmatch(value.strip()):
        h, m, s = (int(g) for g in _TIME.fullmatch(value.strip()).groups())
        return np.timedelta64(h * 3600 + m * 60 + min(s, 59), "s")
    t = _instants(value, name)
    return t - t.astype("datetime64[D]")


def _is_time(value: Any) -> bool:
    return isinstance(value, str) and _TIME.fullmatch(value.strip()) is not None


@process()
def date_between(x: Any, min: Any, max: Any, exclude_max: bool = False) -> Any:
    if x is None:
        return None
    if _is_time(min) and _is_time(max):  # time-only bounds compare the time of day
        convert = _time_of_day
    elif _is_time(min) or _is_time(max) or _is_time(x):
        raise ValueError("date_between: times (HH:MM:SS) can only be compared with time bounds")
    else:
        convert = _instants
    lo, hi = convert(min, "min"), convert(max, "max")

    def check(t: Any) -> Any:
        if lo > hi:
            return np.zeros(np.shape(t), dtype=bool)
        return (t >= lo) & ((t < hi) if exclude_max else (t <= hi))

    if is_array(x):
        return vectorised(lambda t: check(convert(t, "x")), x, dtype=bool)
    return bool(check(convert(x, "x")))


@process()
def date_difference(date1: Any, date2: Any, unit: str = "second") -> Any:
    _check_unit(unit)
    if date1 is None or date2 is None:
        return None
    d1, d2 = _instants(date1, "date1"), _instants(date2, "date2")
    if is_array(d1) or is_array(d2):
        return vectorised(partial(_difference, unit=unit), d1, d2, dtype=float)
    return python_number(_difference(d1, d2, unit), keep_int=True)
