"""The encodings of the official openEO process tests (openeo-processes/tests/README.md).

Test files are JSON5. Arguments and return values use special objects for what JSON cannot
express: `{"type": "nodata"}`, `{"type": "datetime", "value": ...}`, labeled arrays, data
cubes, and `{"$ref": "assets/..."}` for shared inputs. `Decoder.argument` turns them into what
our process functions take; `Decoder.expected` into values `assert_equivalent` compares with.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from terracube.datacube.cube import Dimension, RasterCube, is_lazy
from terracube.datacube.values import LIST_DIM, ArrayValue, list_to_numpy

# --- JSON5 ------------------------------------------------------------------------------------
# Strings are matched first so that "//" inside a string is kept.
_COMMENTS = re.compile(r'("(?:[^"\\]|\\.)*")|//[^\n]*|/\*.*?\*/', re.S)
_TRAILING_COMMAS = re.compile(r'("(?:[^"\\]|\\.)*")|,(?=\s*[\]}])')


def load_json5(path: Path) -> Any:
    """Parse a JSON5 file; the test files are JSON plus comments, trailing commas and NaN /
    Infinity, which the json module reads quickly. Anything else goes to the json5 package."""
    text = path.read_text(encoding="utf-8")
    plain = _TRAILING_COMMAS.sub(lambda m: m[1] or "", _COMMENTS.sub(lambda m: m[1] or "", text))
    try:
        return json.loads(plain)
    except ValueError:
        import json5

        return json5.loads(text)


def iter_refs(value: Any):
    """Every `$ref` target in an encoded value."""
    if isinstance(value, dict):
        if isinstance(value.get("$ref"), str):
            yield value["$ref"]
        for v in value.values():
            yield from iter_refs(v)
    elif isinstance(value, list):
        for v in value:
            yield from iter_refs(v)


# --- decoded expectations -----------------------------------------------------------------------
@dataclass(frozen=True)
class Instant:
    """An expected point in time (compared as an instant, whatever the notation)."""

    value: np.datetime64  # UTC, nanoseconds


@dataclass(frozen=True)
class LabeledArray:
    labels: list
    values: list


def to_instant(value: Any) -> np.datetime64:
    """UTC datetime64[ns] for an RFC 3339 string, a datetime64 or a datetime."""
    ts = pd.Timestamp(str(value) if isinstance(value, str) else value)
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return np.datetime64(ts.to_datetime64(), "ns")


# The keys that make an object one of the special encodings (GeoJSON also has "type").
_SPECIAL_KEYS = {"nodata": {"type"}, "datetime": {"type", "value"},
                 "labeled-array": {"type", "data"}, "datacube": {"type", "dimensions"}}


def _special(value: dict) -> str | None:
    kind = value.get("type")
    keys = _SPECIAL_KEYS.get(kind) if isinstance(kind, str) else None
    if keys is None or not keys <= value.keys() or (kind == "nodata" and len(value) > 1):
        return None
    return kind


class Decoder:
    """Decodes encoded test values; `$ref` paths are relative to the tests folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._assets: dict[str, Any] = {}  # raw (encoded) assets; decoded afresh for every use

    def _asset(self, ref: str) -> Any:
        if ref not in self._assets:
            path = self.folder / ref
            self._assets[ref] = (load_json5(path) if path.suffix in (".json5", ".json")
                                 else path.read_text(encoding="utf-8"))
        return self._assets[ref]

    def argument(self, value: Any) -> Any:
        return self._decode(value, expected=False)

    def expected(self, value: Any) -> Any:
        return self._decode(value, expected=True)

    def _decode(self, value: Any, expected: bool) -> Any:
        if isinstance(value, list):
            if expected and value and all(
                    isinstance(v, dict) and v.keys() == {"key", "value"} for v in value):
                # a few tests give only the "data" of a labeled array
                return self._decode({"type": "labeled-array", "data": value}, expected)
            return [self._decode(v, expected) for v in value]
        if not isinstance(value, dict):
            return value
        if isinstance(value.get("$ref"), str) and len(value) == 1:
            return self._decode(self._asset(value["$ref"]), expected)
        kind = _special(value)
        if kind == "nodata":
            return None
        if kind == "datetime":
            return Instant(to_instant(value["value"])) if expected else value["value"]
        if kind == "labeled-array":
            labels = [item["key"] for item in value["data"]]
            values = [self._decode(item["value"], expected) for item in value["data"]]
            if expected:
                return LabeledArray(labels, values)
            data = xr.DataArray(list_to_numpy(values), dims=[LIST_DIM], coords={LIST_DIM: labels})
            return ArrayValue(data, LIST_DIM, labeled=True)
        if kind == "datacube":
            return decode_cube(value, lazy=not expected)
        return {k: self._decode(v, expected) for k, v in value.items()}


_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}([Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})?)?")


def _temporal_labels(labels: list) -> np.ndarray:
    """datetime64 for RFC 3339 labels; period labels ("2023-djf", "2020-06-01-00") stay text."""
    if all(isinstance(v, str) and _RFC3339.fullmatch(v) for v in labels):
        return np.array([to_instant(v) for v in labels], dtype="datetime64[ns]")
    return np.asarray(labels)


def decode_cube(value: dict, lazy: bool) -> RasterCube:
    """A RasterCube for an encoded data cube; values float with NaN for every no-data value."""
    dims = value["dimensions"]
    if isinstance(dims, list):  # a few tests list the dimensions instead of naming them
        order = [d["name"] for d in dims]
        dims = {d["name"]: d for d in dims}
    else:
        order = value.get("order") or list(dims)
    coords: dict[str, Any] = {}
    dimensions = []
    for name in order:
        spec = dims[name]
        if spec.get("values") is not None:
            labels = spec["values"]
            coords[name] = (_temporal_labels(labels) if spec["type"] == "temporal"
                            else np.asarray(labels))
        dimensions.append(Dimension(name, spec["type"], spec.get("axis"),
                                    spec.get("reference_system")))
    data = value.get("data")
    irrelevant = data is None  # "can be set to null if the data values are irrelevant"
    if irrelevant:
        data = np.full([len(coords[n]) for n in order], np.nan)
    data = np.array(data, dtype=float)  # null -> NaN, booleans -> 1.0 / 0.0
    if data.size == 0 and data.ndim != len(order):  # `[]` for a cube without values
        data = np.full([len(coords.get(n, ())) for n in order], np.nan)
    nodata = value.get("nodata")
    nodata = nodata if isinstance(nodata, list) else [nodata]
    for nd in nodata:
        if nd is not None and not (isinstance(nd, float) and math.isnan(nd)):
            data[data == nd] = np.nan
    array = xr.DataArray(data, dims=order, coords=coords)
    return RasterCube(array.chunk() if lazy else array, tuple(dimensions),
                      nodata=None if nodata[0] is None else float(nodata[0]),
                      attrs={"values_irrelevant": True} if irrelevant else {})


# --- comparison ---------------------------------------------------------------------------------
_DEFAULT_DELTA = 1e-10  # "a precision of 10 decimals is checked"


def assert_equivalent(actual: Any, expected: Any, delta: float | None = None) -> None:
    """Assert that a process result matches the decoded expectation of a test case."""
    _same(actual, expected, delta or _DEFAULT_DELTA, "result", in_array=False)


def _numbers_close(a: float, e: float, delta: float) -> bool:
    if math.isnan(e) or math.isnan(a):
        return math.isnan(e) and math.isnan(a)
    if math.isinf(e) or math.isinf(a):
        return a == e
    return abs(a - e) <= delta or math.isclose(a, e, rel_tol=_DEFAULT_DELTA)


def _scalar(value: Any) -> Any:
    """numpy scalars as Python values (datetime64 kept)."""
    if isinstance(value, np.generic) and not isinstance(value, np.datetime64):
        return value.item()
    return value


def _as_list(value: Any) -> list | None:
    """The elements of a list-like result (list, ArrayValue, 1-d or n-d arrays), else None."""
    if isinstance(value, ArrayValue):
        value = value.data
    if isinstance(value, xr.DataArray):
        value = value.values
    if isinstance(value, np.ndarray) and value.ndim > 0:
        return [_scalar(v) if not isinstance(v, np.ndarray) else v for v in value]
    if isinstance(value, (list, tuple)):
        return list(value)
    return None


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _same(actual: Any, expected: Any, delta: float, where: str, in_array: bool) -> None:
    actual = _scalar(actual)
    if isinstance(expected, RasterCube):
        _same_cube(actual, expected, delta)
    elif isinstance(expected, LabeledArray):
        assert isinstance(actual, ArrayValue), \
            f"{where}: expected a labeled array, got {type(actual).__name__}"
        labels = [_scalar(v) for v in actual.labels()]
        assert labels == expected.labels, f"{where}: labels {labels} != {expected.labels}"
        _same(actual.data, expected.values, delta, where, in_array)
    elif isinstance(expected, list):
        items = _as_list(actual)
        assert items is not None, f"{where}: expected an array, got {actual!r}"
        assert len(items) == len(expected), \
            f"{where}: expected {len(expected)} elements, got {len(items)}: {actual!r}"
        for i, (a, e) in enumerate(zip(items, expected)):
            _same(a, e, delta, f"{where}[{i}]", in_array=True)
    elif isinstance(expected, dict):
        assert isinstance(actual, dict), f"{where}: expected an object, got {actual!r}"
        assert sorted(actual) == sorted(expected), f"{where}: keys {sorted(actual)}"
        for k in expected:
            _same(actual[k], expected[k], delta, f"{where}.{k}", in_array)
    elif expected is None:
        # Inside arrays NaN is how numeric arrays hold no-data.
        assert actual is None or (in_array and _is_nan(actual)), \
            f"{where}: expected no-data (null), got {actual!r}"
    elif isinstance(expected, Instant):
        assert actual is not None and not isinstance(actual, (bool, int, float)), \
            f"{where}: expected a date-time, got {actual!r}"
        assert to_instant(actual) == expected.value, \
            f"{where}: expected {expected.value}, got {actual!r}"
    elif isinstance(expected, bool):
        assert isinstance(actual, bool), f"{where}: expected {expected}, got {actual!r}"
        assert actual is expected, f"{where}: expected {expected}, got {actual!r}"
    elif isinstance(expected, (int, float)):
        if in_array and actual is None and _is_nan(expected):
            return
        assert isinstance(actual, (int, float)) and not isinstance(actual, bool), \
            f"{where}: expected the number {expected!r}, got {actual!r}"
        assert _numbers_close(float(actual), float(expected), delta), \
            f"{where}: expected {expected!r}, got {actual!r}"
    else:
        assert actual == expected, f"{where}: expected {expected!r}, got {actual!r}"


def _instants_or_none(labels: Any) -> list | None:
    try:
        return [to_instant(v) for v in labels]
    except ValueError:
        return None


def _same_cube(actual: Any, expected: RasterCube, delta: float) -> None:
    assert isinstance(actual, RasterCube), f"expected a data cube, got {type(actual).__name__}"
    assert is_lazy(actual), "the result cube is computed (numpy), not lazy (dask)"
    names = [d.name for d in actual.dimensions]
    assert names == [d.name for d in expected.dimensions], f"dimensions {names}"
    for a, e in zip(actual.dimensions, expected.dimensions):
        assert a.type == e.type, f"dimension '{a.name}' has type {a.type}, expected {e.type}"
        if a.name not in expected.data.coords:
            continue
        want = expected.data.coords[a.name].values
        assert a.name in actual.data.coords, f"dimension '{a.name}' has no labels"
        got = actual.data.coords[a.name].values
        assert len(got) == len(want), f"dimension '{a.name}': labels {list(got)}"
        if want.dtype.kind == "M":
            assert _instants_or_none(got) == list(want), \
                f"dimension '{a.name}': labels {list(got)}, expected {list(want)}"
        elif want.dtype.kind in "iuf" and got.dtype.kind in "iuf":
            np.testing.assert_allclose(got, want, rtol=0, atol=max(delta, 1e-9),
                                       err_msg=f"dimension '{a.name}' labels")
        else:
            assert [_scalar(v) for v in got] == [_scalar(v) for v in want], \
                f"dimension '{a.name}': labels {list(got)}, expected {list(want)}"
    if expected.attrs.get("values_irrelevant"):
        return
    values = np.asarray(actual.data.values)
    want = expected.data.values
    assert values.shape == want.shape, f"shape {values.shape}, expected {want.shape}"
    np.testing.assert_allclose(values.astype(float), want, rtol=_DEFAULT_DELTA, atol=delta,
                               equal_nan=True, err_msg="cube values")
