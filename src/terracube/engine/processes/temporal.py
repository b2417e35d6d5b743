"""Temporal aggregation and alignment: aggregate_temporal(_period), normals, anomaly, resampling.

Groups of dates are found from the dimension labels (small numpy arrays); the reducer callback
is then called once per group on the whole lazy cube slice of that group, with the temporal
dimension kept as the array axis. Cube values are never computed here.
"""

from __future__ import annotations

import datetime as dt
import re
import warnings
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from terracube import errors
from terracube.datacube.cube import TEMPORAL, Dimension, RasterCube
from terracube.datacube.periods import period_start_times
from terracube.engine.evaluate import Callback
from terracube.engine.processes._arguments import list_argument
from terracube.engine.processes._reducing import drop_dim_coords, is_valid_mask, reduce_groups
from terracube.engine.registry import process
from terracube.process_errors import (
    DimensionMismatch,
    DimensionNotAvailable,
    DistinctDimensionLabelsRequired,
    TemporalExtentEmpty,
    TooManyDimensions,
)


# --- dimension and label helpers --------------------------------------------------------------
def temporal_dimension(cube: RasterCube, dimension: str | None,
                       argument: str = "dimension") -> Dimension:
    """The temporal dimension to work on: the named one, or the only one (spec rules)."""
    if not isinstance(cube, RasterCube):
        raise errors.ProcessParameterInvalid(
            f"'data' must be a raster data cube, got {type(cube).__name__}.", argument="data")
    if dimension is not None:
        dim = cube.dim(dimension)
        if dim is None:
            names = ", ".join(d.name for d in cube.dimensions)
            raise DimensionNotAvailable(
                f"The data cube has no dimension '{dimension}' (it has: {names}).",
                argument=argument)
        if dim.type != TEMPORAL:
            raise DimensionNotAvailable(
                f"Dimension '{dimension}' is of type {dim.type}, not temporal.",
                argument=argument)
        return dim
    found = cube.dims_of_type(TEMPORAL)
    if not found:
        raise DimensionNotAvailable(
            "The data cube has no temporal dimension.", argument=argument)
    if len(found) > 1:
        names = ", ".join(d.name for d in found)
        raise TooManyDimensions(
            f"The data cube has several temporal dimensions ({names}); set '{argument}' to "
            "choose one.", argument=argument)
    return found[0]


def label_times(cube: RasterCube, dim: str, argument: str = "data") -> pd.DatetimeIndex:
    """The labels of a temporal dimension as UTC-naive timestamps."""
    values = np.asarray(cube.data.coords[dim].values) if dim in cube.data.coords else None
    if values is None:
        raise errors.ProcessParameterInvalid(
            f"The temporal dimension '{dim}' has no labels.", argument=argument)
    if np.issubdtype(values.dtype, np.datetime64):
        return pd.DatetimeIndex(values)
    dimension = cube.dim(dim)
    starts = period_start_times(dimension, values) if dimension is not None else None
    if starts is not None:  # periods of aggregate_temporal_period: their first days (CDSE's)
        return pd.DatetimeIndex(starts)
    try:
        return pd.DatetimeIndex([_to_timestamp(v) for v in values])
    except (TypeError, ValueError):
        raise errors.ProcessParameterInvalid(
            f"The labels of dimension '{dim}' are not dates and times "
            f"(e.g. {values[0]!r} ...).", argument=argument) from None


def _to_timestamp(value: Any) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return ts


_TIME_ONLY = re.compile(r"^(\d{2}):(\d{2}):(\d{2})$")
_DATE_LIKE = re.compile(r"^\d{4}-\d{2}-\d{2}")


def _as_label_array(labels: Sequence[Any]) -> np.ndarray:
    """Labels for a coordinate: datetime64 if all are dates/date-times, else as given."""
    labels = list(labels)
    if labels and all(isinstance(v, str) and _DATE_LIKE.match(v) for v in labels):
        try:
            return np.array([_to_timestamp(v).to_datetime64() for v in labels],
                            dtype="datetime64[ns]")
        except (TypeError, ValueError):
            pass
    if labels and all(isinstance(v, (np.datetime64, pd.Timestamp, dt.datetime)) for v in labels):
        return np.array([pd.Timestamp(v).to_datetime64() for v in labels],
                        dtype="datetime64[ns]")
    if labels and all(isinstance(v, str) for v in labels):
        return np.array(labels, dtype=str)
    out = np.empty(len(labels), dtype=object)
    out[:] = labels
    return out


# --- aggregate_temporal -----------------------------------------------------------------------
def _parse_instant(value: Any, argument: str) -> tuple[str, Any] | None:
    """('time', seconds of day) for HH:MM:SS, ('datetime', Timestamp) for dates, None for null."""
    if value is None:
        return None
    if isinstance(value, str):
        m = _TIME_ONLY.match(value)
        if m:
            h, mi, s = map(int, m.groups())
            if h > 24 or mi > 59 or s > 60:
                raise errors.ProcessParameterInvalid(f"Invalid time of day {value!r}.",
                                                     argument=argument)
            return "time", h * 3600 + mi * 60 + s
    try:
        return "datetime", _to_timestamp(value)
    except (TypeError, ValueError):
        raise errors.ProcessParameterInvalid(
            f"{value!r} is neither a date, a date-time (RFC 3339) nor a time (HH:MM:SS).",
            argument=argument) from None


def _interval_positions(times: pd.DatetimeIndex, start: tuple | None,
                        end: tuple | None) -> np.ndarray:
    """Positions of the labels in the left-closed interval [start, end)."""
    kinds = {x[0] for x in (start, end) if x is not None}
    if kinds == {"time"}:
        secs = (times - times.normalize()).total_seconds().to_numpy()
        lo = start[1] if start is not None else 0
        hi = end[1] if end is not None else 86400
        if start is not None and end is not None and hi <= lo:  # wraps around midnight
            inside = (secs >= lo) | (secs < hi)
        else:
            inside = (secs >= lo) & (secs < hi)
        return np.flatnonzero(inside)
    values = times.to_numpy()
    inside = np.ones(len(values), dtype=bool)
    if start is not None:
        inside &= values >= start[1].to_datetime64()
    if end is not None:
        inside &= values < end[1].to_datetime64()
    return np.flatnonzero(inside)


@process("aggregate_temporal")
def aggregate_temporal(data: RasterCube, intervals: list, reducer: Callback,
                       labels: list | None = None, dimension: str | None = None,
                       context: Any = None) -> RasterCube:
    dim = temporal_dimension(data, dimension)
    if not isinstance(intervals, list) or not intervals:
        raise errors.ProcessParameterInvalid(
            "'intervals' must be a non-empty list of [start, end] pairs.", argument="intervals")
    if labels is not None:
        labels = list_argument(labels, "labels")
    parsed = []
    for i, interval in enumerate(intervals):
        if not isinstance(interval, (list, tuple)) or len(interval) != 2:
            raise errors.ProcessParameterInvalid(
                f"Interval #{i} must have exactly two elements [start, end], got {interval!r}.",
                argument="intervals")
        start = _parse_instant(interval[0], "intervals")
        end = _parse_instant(interval[1], "intervals")
        if start is not None and end is not None:
            if start[0] != end[0]:
                raise errors.ProcessParameterInvalid(
                    f"Interval #{i} mixes a time of day with a date: {interval!r}.",
                    argument="intervals")
            if start[0] == "datetime" and end[1] <= start[1]:
                raise TemporalExtentEmpty(
                    f"Interval #{i} {interval!r} is empty: its end must be later than its "
                    "start.", argument="intervals")
        parsed.append((start, end))

    if labels:
        if len(labels) != len(intervals):
            raise errors.ProcessParameterInvalid(
                f"{len(labels)} labels were given for {len(intervals)} intervals; the numbers "
                "must be equal.", argument="labels")
        new_labels = list(labels)
    else:
        new_labels = []
        for (start, _end), raw in zip(parsed, intervals):
            if start is None:
                raise errors.ProcessParameterInvalid(
                    "An interval with an open start has no default label; give 'labels'.",
                    argument="labels")
            new_labels.append(raw[0])
    keys = [str(v) if not isinstance(v, str) else v for v in new_labels]
    label_array = _as_label_array(new_labels)
    if len(set(keys)) != len(keys) or len(set(label_array.tolist())) != len(label_array):
        raise DistinctDimensionLabelsRequired(
            "The interval starts are not distinct, so the default labels would repeat; give "
            "distinct 'labels'." if not labels else "The given 'labels' are not distinct.",
            argument="labels")

    times = label_times(data, dim.name)
    groups = [_interval_positions(times, s, e) for s, e in parsed]
    return reduce_groups(data, dim.name, groups, label_array, reducer, context)


# --- calendar periods -------------------------------------------------------------------------
_SEASONS = {12: "djf", 3: "mam", 6: "jja", 9: "son"}
_TROPICAL_SEASONS = {11: "ndjfma", 5: "mjjaso"}


def _period_ordinals(times: pd.DatetimeIndex, period: str) -> np.ndarray:
    """An integer per label that is equal for labels in the same period and increases by one
    from one period to the next."""
    y = times.year.to_numpy().astype(np.int64)
    m = times.month.to_numpy().astype(np.int64)
    d = times.day.to_numpy().astype(np.int64)
    values = times.to_numpy()
    if period == "hour":
        return values.astype("datetime64[h]").astype(np.int64)
    if period == "day":
        return values.astype("datetime64[D]").astype(np.int64)
    if period == "week":  # 1970-01-01 is a Thursday; ISO weeks start on Monday
        return (values.astype("datetime64[D]").astype(np.int64) + 3) // 7
    if period == "dekad":
        return y * 36 + (m - 1) * 3 + np.minimum((d - 1) // 10, 2)
    if period == "month":
        return y * 12 + m - 1
    if period == "season":  # December belongs to the next year's winter ordinal
        return (y * 12 + m) // 3
    if period == "tropical-season":
        return (y * 12 + m + 1) // 6
    if period == "year":
        return y
    if period == "decade":
        return y // 10
    if period == "decade-ad":
        return (y - 1) // 10
    raise errors.ProcessParameterInvalid(
        f"Unknown period {period!r}; use one of hour, day, week, dekad, month, season, "
        "tropical-season, year, decade, decade-ad.", argument="period")


def _period_label(ordinal: int, period: str) -> str:
    """The spec's label (e.g. 2020-06-01-13, 2020-153, 2020-23, 2020-17, 2020-06, 2020-djf)."""
    if period == "hour":
        t = pd.Timestamp(np.datetime64(ordinal, "h"))
        return f"{t:%Y-%m-%d-%H}"
    if period == "day":
        t = pd.Timestamp(np.datetime64(ordinal, "D"))
        return f"{t.year:04d}-{t.dayofyear:03d}"
    if period == "week":
        monday = pd.Timestamp(np.datetime64(ordinal * 7 - 3, "D"))
        iso = monday.isocalendar()
        return f"{iso[0]:04d}-{iso[1]:02d}"
    if period == "dekad":
        year, k = divmod(ordinal, 36)
        return f"{year:04d}-{k + 1:02d}"
    if period == "month":
        year, k = divmod(ordinal, 12)
        return f"{year:04d}-{k + 1:02d}"
    if period == "season":
        start = ordinal * 3  # year * 12 + month of the first month
        return f"{(start - 1) // 12:04d}-{_SEASONS[(start - 1) % 12 + 1]}"
    if period == "tropical-season":
        start = ordinal * 6 - 1
        return f"{(start - 1) // 12:04d}-{_TROPICAL_SEASONS[(start - 1) % 12 + 1]}"
    if period == "year":
        return f"{ordinal:04d}"
    if period == "decade":
        return f"{ordinal * 10:04d}"
    if period == "decade-ad":
        return f"{ordinal * 10 + 1:04d}"
    raise ValueError(period)


def _period_start(ordinal: int, period: str) -> np.datetime64:
    """The first instant of the period with this ordinal (a dekad starts on day 1, 11 or 21,
    a week on its Monday, the winter season on 1 December)."""
    if period == "hour":
        return np.datetime64(ordinal, "h").astype("datetime64[s]")
    if period == "day":
        return np.datetime64(ordinal, "D").astype("datetime64[s]")
    if period == "week":
        return np.datetime64(ordinal * 7 - 3, "D").astype("datetime64[s]")
    if period == "dekad":
        year, k = divmod(ordinal, 36)
        month, part = divmod(k, 3)
        return np.datetime64(f"{year:04d}-{month + 1:02d}-{part * 10 + 1:02d}T00:00:00")
    if period in ("month", "season", "tropical-season"):
        first = {"month": ordinal, "season": ordinal * 3 - 1,
                 "tropical-season": ordinal * 6 - 2}[period]  # year * 12 + month - 1
        year, month0 = divmod(first, 12)
        return np.datetime64(f"{year:04d}-{month0 + 1:02d}-01T00:00:00")
    year = {"year": ordinal, "decade": ordinal * 10, "decade-ad": ordinal * 10 + 1}[period]
    return np.datetime64(f"{year:04d}-01-01T00:00:00")


@process("aggregate_temporal_period")
def aggregate_temporal_period(data: RasterCube, period: str, reducer: Callback,
                              dimension: str | None = None, context: Any = None) -> RasterCube:
    dim = temporal_dimension(data, dimension)
    times = label_times(data, dim.name)
    ordinals = _period_ordinals(times, period)
    if len(ordinals) == 0:
        return reduce_groups(data, dim.name, [], np.array([], dtype=str), reducer, context)
    # Labels are complete for the whole extent of the cube (spec), periods without data too.
    every = np.arange(ordinals.min(), ordinals.max() + 1)
    order = np.argsort(ordinals, kind="stable")
    sorted_ords = ordinals[order]
    bounds = np.searchsorted(sorted_ords, np.concatenate([every, [every[-1] + 1]]))
    groups = [np.sort(order[bounds[i]:bounds[i + 1]]) for i in range(len(every))]
    labels = np.array([_period_label(int(o), period) for o in every], dtype=str)
    out = reduce_groups(data, dim.name, groups, labels, reducer, context)
    # Outputs show each period by its start, as CDSE does (decision 0013); the labels stay.
    starts = tuple((str(label), _period_start(int(o), period)) for label, o in zip(labels, every))
    marked = tuple(replace(d, period=period, period_starts=starts) if d.name == dim.name else d
                   for d in out.dimensions)
    return replace(out, dimensions=marked)


# --- climatology ------------------------------------------------------------------------------
_NORMAL_PERIODS = ("hour", "day", "week", "dekad", "month", "season", "tropical-season", "year",
                   "decade", "decade-ad", "climatology-period", "single-period")
_KEY_WIDTH = {"hour": 2, "day": 3, "week": 2, "dekad": 2, "month": 2, "year": 4, "decade": 4,
              "decade-ad": 4}


def _keys_of_times(times: pd.DatetimeIndex, period: str) -> list[str]:
    """The normals label (e.g. '07' for July) of every timestamp."""
    if period in ("year", "decade", "decade-ad"):
        return [_period_label(int(o), period) for o in _period_ordinals(times, period)]
    if period == "hour":
        return [f"{h:02d}" for h in times.hour]
    if period == "day":
        return [f"{d:03d}" for d in times.dayofyear]
    if period == "week":
        return [f"{w:02d}" for w in times.isocalendar().week.to_numpy()]
    return [_period_label(int(o), period)[5:] for o in _period_ordinals(times, period)]


def _keys_of_labels(values: np.ndarray, period: str) -> list[str]:
    """The normals label matching each label of an aggregated cube (or of dates)."""
    if np.issubdtype(values.dtype, np.datetime64):
        return _keys_of_times(pd.DatetimeIndex(values), period)
    keys = []
    for v in values:
        s = str(v)
        if period == "hour" and len(s) >= 13:
            keys.append(s[-2:])
        elif period in ("year", "decade", "decade-ad"):
            keys.append(s[:4])
        elif len(s) > 5 and s[4] == "-":
            keys.append(s[5:])
        else:
            keys.append(s)
    return keys


def _normal_key(value: Any, period: str) -> str:
    if isinstance(value, (int, np.integer)) and period in _KEY_WIDTH:
        return f"{int(value):0{_KEY_WIDTH[period]}d}"
    if isinstance(value, (float, np.floating)) and float(value).is_integer() \
            and period in _KEY_WIDTH:
        return f"{int(value):0{_KEY_WIDTH[period]}d}"
    return str(value)


def _single_temporal(cube: RasterCube, argument: str) -> Dimension:
    found = cube.dims_of_type(TEMPORAL) if isinstance(cube, RasterCube) else []
    if not isinstance(cube, RasterCube):
        raise errors.ProcessParameterInvalid(f"'{argument}' must be a raster data cube.",
                                             argument=argument)
    if len(found) != 1:
        raise (DimensionNotAvailable if not found else TooManyDimensions)(
            f"'{argument}' must have exactly one temporal dimension, it has {len(found)}.",
            argument=argument)
    return found[0]


def _align_other_dims(value: xr.DataArray, like: xr.DataArray, argument: str) -> xr.DataArray:
    """`value` with its non-temporal dims ordered and labelled like `like`'s (same sizes)."""
    missing = set(value.dims) - set(like.dims)
    if missing:
        raise DimensionMismatch(
            f"'{argument}' has dimensions {sorted(map(str, missing))} that 'data' lacks.",
            argument=argument)
    for d in value.dims:
        if value.sizes[d] != like.sizes[d]:
            raise DimensionMismatch(
                f"Dimension '{d}' has {value.sizes[d]} labels in '{argument}' but "
                f"{like.sizes[d]} in 'data'.", argument=argument)
    shared = {d: like.coords[d].values for d in value.dims if d in like.coords}
    return value.assign_coords(shared).transpose(*[d for d in like.dims if d in value.dims])


@process("anomaly")
def anomaly(data: RasterCube, normals: RasterCube, period: str) -> RasterCube:
    if period not in _NORMAL_PERIODS:
        raise errors.ProcessParameterInvalid(
            f"Unknown period {period!r}; use one of {', '.join(_NORMAL_PERIODS)}.",
            argument="period")
    tdim = _single_temporal(data, "data").name
    ndim = _single_temporal(normals, "normals").name
    nvalues = np.asarray(normals.data.coords[ndim].values) if ndim in normals.data.coords \
        else np.arange(normals.data.sizes[ndim])
    if period in ("climatology-period", "single-period"):
        if len(nvalues) != 1:
            raise errors.ProcessParameterInvalid(
                f"For period '{period}' the normals need exactly one temporal label, they have "
                f"{len(nvalues)}.", argument="normals")
        positions = np.zeros(data.data.sizes[tdim], dtype=int)
        valid = np.ones(len(positions), dtype=bool)
    else:
        if np.issubdtype(nvalues.dtype, np.datetime64):
            normal_keys = _keys_of_times(pd.DatetimeIndex(nvalues), period)
        else:
            normal_keys = [_normal_key(v, period) for v in nvalues]
        lookup = {k: i for i, k in enumerate(normal_keys)}
        keys = _keys_of_labels(np.asarray(data.data.coords[tdim].values), period)
        positions = np.array([lookup.get(k, 0) for k in keys], dtype=int)
        valid = np.array([k in lookup for k in keys], dtype=bool)
    matched = normals.data.isel({ndim: positions})
    matched = drop_dim_coords(matched, ndim).rename({ndim: tdim})
    if not valid.all():  # no normal for these labels: the anomaly is no-data
        mask = xr.DataArray(valid, dims=[tdim])
        matched = matched.where(mask)
    matched = matched.assign_coords({tdim: data.data.coords[tdim].values})
    matched = _align_other_dims(matched, data.data, "normals")
    out = (data.data - matched).transpose(*data.data.dims)
    return data.with_data(out)


_CLIMATOLOGY_LABELS = {
    "month": [f"{m:02d}" for m in range(1, 13)],
    "season": ["djf", "mam", "jja", "son"],
    "tropical-season": ["ndjfma", "mjjaso"],
    "climatology-period": ["climatology-period"],
}


# The labels aggregate_temporal_period gives per period (anomaly's `data` lists them).
_PERIOD_LABEL = {
    "day": re.compile(r"^(\d{4})-(\d{3})$"),
    "month": re.compile(r"^(\d{4})-(\d{2})$"),
    "season": re.compile(r"^(\d{4})-(djf|mam|jja|son)$"),
    "tropical-season": re.compile(r"^(\d{4})-(ndjfma|mjjaso)$"),
    "climatology-period": re.compile(r"^(\d{4})(.*)$"),
}


def _period_labels_years_keys(values: np.ndarray, period: str
                              ) -> tuple[np.ndarray, list[str]] | None:
    """For labels such as aggregate_temporal_period gives (2008-07 for a month, 2008-djf for
    the winter from December 2008): the climatology year each counts for and its normals
    label; None for labels that are not of this form (dates, for instance)."""
    if np.issubdtype(values.dtype, np.datetime64) or not len(values):
        return None
    matches = [_PERIOD_LABEL[period].match(str(v)) for v in values]
    if not all(matches):
        return None
    years, keys = [], []
    for m in matches:
        assert m is not None
        year, key = int(m.group(1)), m.group(2)
        # a season across the turn of the year counts for the year it ends in (spec); its
        # label carries the year it starts in
        years.append(year + (key in ("djf", "ndjfma")))
        keys.append(key)
    return np.array(years), keys


@process("climatological_normal")
def climatological_normal(data: RasterCube, period: str,
                          climatology_period: list | None = None) -> RasterCube:
    if period not in ("day", "month", "season", "tropical-season", "climatology-period"):
        raise errors.ProcessParameterInvalid(
            f"Unknown period {period!r}; use day, month, season, tropical-season or "
            "climatology-period.", argument="period")
    span = [1981, 2010] if climatology_period is None else climatology_period
    try:
        first, last = (int(v) for v in span)
    except (TypeError, ValueError):
        raise errors.ProcessParameterInvalid(
            "'climatology_period' must be two years such as [1981, 2010].",
            argument="climatology_period") from None
    if last < first:
        raise errors.ProcessParameterInvalid(
            f"The climatology period {first}-{last} ends before it starts.",
            argument="climatology_period")
    tdim = _single_temporal(data, "data").name
    values = np.asarray(data.data.coords[tdim].values) if tdim in data.data.coords else None
    periodic = None if values is None else _period_labels_years_keys(values, period)
    if periodic is not None:  # labels of aggregate_temporal_period (e.g. 2008-07, 2008-djf)
        years, all_keys = periodic
    else:
        times = label_times(data, tdim)
        years = times.year.to_numpy()
        months = times.month.to_numpy()
        # A season spanning the turn of the year counts for the year it ends in: the winter
        # before the first year is used if present, the one after the last year never (spec).
        if period == "season":
            years = years + (months == 12)
        elif period == "tropical-season":
            years = years + (months >= 11)
    positions = np.flatnonzero((years >= first) & (years <= last))
    if len(positions) == 0:
        raise errors.ProcessParameterInvalid(
            f"The data cube has no data in the climatology period {first}-{last}.",
            argument="climatology_period")
    if period == "climatology-period":
        keys = ["climatology-period"] * len(positions)
    elif periodic is not None:
        keys = [all_keys[i] for i in positions]
    else:
        keys = _keys_of_times(times[positions], period)
    if period == "day":
        all_labels = [f"{d:03d}" for d in range(1, 366)] + (["366"] if "366" in keys else [])
    else:
        all_labels = _CLIMATOLOGY_LABELS[period]
    part = data.data.isel({tdim: positions})
    part = drop_dim_coords(part, tdim).assign_coords({"__period": (tdim, np.array(keys))})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        means = part.groupby("__period").mean(dim=tdim, skipna=True)
    means = means.rename({"__period": tdim}).reindex({tdim: all_labels})
    means = means.assign_coords({tdim: np.array(all_labels, dtype=str)})
    return data.with_data(means.transpose(*data.data.dims))


# --- resample_cube_temporal -------------------------------------------------------------------
def _nearest_ranking(source: np.ndarray, target: np.ndarray,
                     window: np.timedelta64 | None) -> list[np.ndarray]:
    """For each target time the source positions ordered by distance (earlier first on ties),
    optionally limited to a window; returned as rank-major arrays with -1 for "none"."""
    src = source.astype("datetime64[ns]").astype(np.int64)
    tgt = target.astype("datetime64[ns]").astype(np.int64)
    dist = np.abs(tgt[:, None] - src[None, :]).astype(float)
    if window is not None:
        dist[dist > window.astype("timedelta64[ns]").astype(np.int64)] = np.inf
    # lexsort: primary key distance, secondary key source time (earlier wins ties)
    order = np.lexsort((np.broadcast_to(src, dist.shape), dist), axis=1)
    ranked_dist = np.take_along_axis(dist, order, axis=1)
    ranks = []
    for r in range(order.shape[1] if window is not None else min(1, order.shape[1])):
        column = np.where(np.isfinite(ranked_dist[:, r]), order[:, r], -1)
        if (column < 0).all():
            break
        ranks.append(column)
    return ranks


def _take(data: xr.DataArray, dim: str, positions: np.ndarray) -> xr.DataArray:
    taken = data.isel({dim: np.maximum(positions, 0)})
    if (positions < 0).any():
        taken = taken.where(xr.DataArray(positions >= 0, dims=[dim]))
    return drop_dim_coords(taken, dim)


@process("resample_cube_temporal")
def resample_cube_temporal(data: RasterCube, target: RasterCube, dimension: str | None = None,
                           valid_within: float | None = None, method: Any = None) -> RasterCube:
    # method: openEO 1.0's parameter (graphs of that time pass "nearest", e.g. the openEO
    # Platform UC6 graphs); the definition now always takes the nearest date.
    if method is not None and method != "nearest":
        raise errors.ProcessParameterInvalid(
            f"resample_cube_temporal takes the nearest date (the definition has no 'method' "
            f"any more); '{method}' is not available.", argument="method")
    for name, cube in (("data", data), ("target", target)):
        if not isinstance(cube, RasterCube):
            raise errors.ProcessParameterInvalid(f"'{name}' must be a raster data cube.",
                                                 argument=name)
    if dimension is not None:
        d1, d2 = data.dim(dimension), target.dim(dimension)
        if d1 is None or d2 is None:
            where = "data" if d1 is None else "target"
            raise DimensionNotAvailable(
                f"Dimension '{dimension}' does not exist in '{where}'.", argument="dimension")
        if d1.type != TEMPORAL or d2.type != TEMPORAL:
            raise DimensionMismatch(
                f"Dimension '{dimension}' must be temporal in both data cubes.",
                argument="dimension")
        names = [dimension]
    else:
        target_temporal = {d.name for d in target.dims_of_type(TEMPORAL)}
        names = [d.name for d in data.dims_of_type(TEMPORAL) if d.name in target_temporal]
        if not names:
            raise DimensionMismatch(
                "The data cubes have no temporal dimension with the same name.",
                argument="dimension")
    window = None
    if valid_within is not None:
        if not isinstance(valid_within, (int, float)) or valid_within < 0:
            raise errors.ProcessParameterInvalid(
                "'valid_within' must be a non-negative number of days.",
                argument="valid_within")
        window = np.timedelta64(int(round(valid_within * 86400e9)), "ns")

    out = data.data
    for name in names:
        src_times = label_times(data, name).to_numpy()
        tgt_times = label_times(target, name, argument="target").to_numpy()
        ranks = _nearest_ranking(src_times, tgt_times, window)
        if not ranks:
            result = _take(out, name, np.full(len(tgt_times), -1))
        elif window is None:
            result = _take(out, name, ranks[0])
        else:
            # The nearest value that is valid: try candidates by increasing distance.
            result = _take(out, name, ranks[0])
            for column in ranks[1:]:
                candidate = _take(out, name, column)
                result = result.where(is_valid_mask(result), candidate)
            result = result.where(is_valid_mask(result))
        out = result.assign_coords({name: target.data.coords[name].values})
    return data.with_data(out.transpose(*data.data.dims))
