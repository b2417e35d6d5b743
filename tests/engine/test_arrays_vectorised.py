"""Array processes and reducers on a dask-backed cube dimension: one lazy operation, right values.

Each test hands a process the whole cube as an ArrayValue along `t` (what reduce_dimension and
apply_dimension do), checks that the result is still a dask graph and compares the computed
values with numpy computed independently, pixel by pixel where numpy has no vectorised form.
"""

from __future__ import annotations

import warnings

import dask.array as da
import numpy as np
import pytest
import xarray as xr

from terracube.datacube.values import ArrayValue
from terracube.engine.evaluate import Evaluator, Services
from terracube.engine.processes import array_callbacks, array_order, arrays, reducers
from terracube.engine.registry import build_registry

T, Y, X = 7, 4, 5


@pytest.fixture(autouse=True)
def _quiet_numpy():
    # numpy's nan-functions warn on all-NaN pixels; the reference values are still right.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


@pytest.fixture
def raw() -> np.ndarray:
    rng = np.random.default_rng(42)
    values = rng.normal(size=(T, Y, X))
    values[rng.random(values.shape) < 0.3] = np.nan
    values[:, 0, 0] = np.nan  # a pixel with only no-data
    values[:, 0, 1] = np.arange(T)  # a pixel without any
    return values


@pytest.fixture
def cube_dim(raw: np.ndarray) -> ArrayValue:
    """The cube as a callback sees it: dask-backed, several chunks along the dimension."""
    data = xr.DataArray(da.from_array(raw, chunks=(3, 2, 5)), dims=["t", "y", "x"],
                        coords={"t": np.arange(T) * 10.0, "y": np.arange(Y), "x": np.arange(X)})
    return ArrayValue(data, "t", labeled=True)


def values_of(result) -> np.ndarray:
    """The computed values; fails unless the result is still lazy."""
    data = result.data if isinstance(result, ArrayValue) else result
    assert isinstance(data, xr.DataArray)
    assert isinstance(data.data, da.Array), "the result was computed instead of staying lazy"
    return data.values


def per_pixel(func, raw: np.ndarray) -> np.ndarray:
    """`func` applied to every pixel's series in Python: the slow, obvious reference."""
    first = func(raw[:, 0, 0])
    out = np.empty(np.shape(first) + raw.shape[1:])
    for y in range(raw.shape[1]):
        for x in range(raw.shape[2]):
            out[(...,) + (y, x)] = func(raw[:, y, x])
    return out


def nan_or(values: np.ndarray, func) -> float:
    valid = values[~np.isnan(values)]
    return func(valid) if valid.size else np.nan


@pytest.mark.parametrize(("process", "reference"), [
    (reducers.sum_, lambda v: nan_or(v, np.sum)),
    (reducers.product, lambda v: nan_or(v, np.prod)),
    (reducers.mean, lambda v: nan_or(v, np.mean)),
    (reducers.median, lambda v: nan_or(v, np.median)),
    (reducers.min_, lambda v: nan_or(v, np.min)),
    (reducers.max_, lambda v: nan_or(v, np.max)),
    (reducers.sd, lambda v: nan_or(v, lambda a: np.std(a, ddof=1) if a.size > 1 else np.nan)),
    (reducers.variance,
     lambda v: nan_or(v, lambda a: np.var(a, ddof=1) if a.size > 1 else np.nan)),
])
def test_reducers_skip_nodata(process, reference, cube_dim, raw):
    got = values_of(process(data=cube_dim))
    np.testing.assert_allclose(got, per_pixel(reference, raw), equal_nan=True)


@pytest.mark.parametrize("process", [reducers.sum_, reducers.mean, reducers.max_, reducers.sd])
def test_reducers_without_ignore_nodata_give_nodata(process, cube_dim, raw):
    got = values_of(process(data=cube_dim, ignore_nodata=False))
    has_nodata = np.isnan(raw).any(axis=0)
    assert np.isnan(got[has_nodata]).all()
    assert not np.isnan(got[~has_nodata]).any()


def test_quantiles_are_type_7(cube_dim, raw):
    probabilities = [0.0, 0.1, 0.5, 0.75, 1.0]
    result = reducers.quantiles(data=cube_dim, probabilities=probabilities)
    assert isinstance(result, ArrayValue) and result.dim == "t"
    expected = per_pixel(lambda v: np.nanquantile(v, probabilities, method="linear")
                         if (~np.isnan(v)).any() else np.full(5, np.nan), raw)
    np.testing.assert_allclose(values_of(result), expected, equal_nan=True)


def test_extrema_is_min_and_max(cube_dim, raw):
    got = values_of(reducers.extrema(data=cube_dim))
    np.testing.assert_allclose(got[0], np.nanmin(raw, axis=0), equal_nan=True)
    np.testing.assert_allclose(got[1], np.nanmax(raw, axis=0), equal_nan=True)


def test_first_and_last_skip_nodata(cube_dim, raw):
    def first_valid(v):
        return nan_or(v, lambda a: a[0])

    def last_valid(v):
        return nan_or(v, lambda a: a[-1])

    np.testing.assert_allclose(values_of(arrays.first(data=cube_dim)),
                               per_pixel(first_valid, raw), equal_nan=True)
    np.testing.assert_allclose(values_of(arrays.last(data=cube_dim)),
                               per_pixel(last_valid, raw), equal_nan=True)
    np.testing.assert_allclose(values_of(arrays.first(data=cube_dim, ignore_nodata=False)),
                               raw[0], equal_nan=True)


def test_sort_order_and_rearrange(cube_dim, raw):
    ascending = values_of(array_order.sort(data=cube_dim))
    np.testing.assert_allclose(ascending, np.sort(raw, axis=0), equal_nan=True)

    def descending_nodata_first(v):
        valid = np.sort(v[~np.isnan(v)])[::-1]
        return np.concatenate([np.full(np.isnan(v).sum(), np.nan), valid])

    got = values_of(array_order.sort(data=cube_dim, asc=False, nodata=False))
    np.testing.assert_allclose(got, per_pixel(descending_nodata_first, raw), equal_nan=True)

    permutation = array_order.order(data=cube_dim, nodata=True)
    rearranged = array_order.rearrange(data=cube_dim, order=permutation)
    np.testing.assert_allclose(values_of(rearranged), np.sort(raw, axis=0), equal_nan=True)


@pytest.mark.parametrize(("process", "accumulate", "identity"), [
    (array_order.cumsum, np.add.accumulate, 0.0),
    (array_order.cumproduct, np.multiply.accumulate, 1.0),
    (array_order.cummax, np.maximum.accumulate, -np.inf),
    (array_order.cummin, np.minimum.accumulate, np.inf),
])
def test_cumulative_keep_nodata_in_place(process, accumulate, identity, cube_dim, raw):
    expected = np.where(np.isnan(raw), np.nan,
                        accumulate(np.where(np.isnan(raw), identity, raw), axis=0))
    result = process(data=cube_dim)
    assert isinstance(result, ArrayValue) and result.dim == "t"
    np.testing.assert_allclose(values_of(result), expected, equal_nan=True)
    # Without ignore_nodata the first no-data value ends the series.
    stopped = values_of(process(data=cube_dim, ignore_nodata=False))
    after_nodata = np.cumsum(np.isnan(raw), axis=0) > 0
    assert np.isnan(stopped[after_nodata]).all()
    np.testing.assert_allclose(stopped[~after_nodata], expected[~after_nodata])


def test_interpolate_linear_fills_inner_gaps_only(cube_dim, raw):
    labels = np.arange(T) * 10.0

    def reference(v):
        valid = ~np.isnan(v)
        if valid.sum() < 2:
            return v
        inner = (labels >= labels[valid][0]) & (labels <= labels[valid][-1])
        return np.where(inner, np.interp(labels, labels[valid], v[valid]), v)

    result = array_order.array_interpolate_linear(data=cube_dim)
    np.testing.assert_allclose(values_of(result), per_pixel(reference, raw), equal_nan=True)


def test_count_find_contains_and_element(cube_dim, raw):
    np.testing.assert_array_equal(values_of(array_callbacks.count(data=cube_dim)),
                                  (~np.isnan(raw)).sum(axis=0))
    np.testing.assert_array_equal(values_of(arrays.array_contains(data=cube_dim, value=3)),
                                  (raw == 3).any(axis=0))
    found = values_of(arrays.array_find(data=cube_dim, value=3))
    assert found[0, 1] == 3 and np.isnan(found[0, 0])
    np.testing.assert_allclose(values_of(arrays.array_element(data=cube_dim, index=2)), raw[2],
                               equal_nan=True)
    np.testing.assert_allclose(values_of(arrays.array_element(data=cube_dim, label=40.0)),
                               raw[4], equal_nan=True)
    missing = arrays.array_element(data=cube_dim, index=T, return_nodata=True)
    assert np.isnan(values_of(missing)).all()


def test_all_and_any_on_booleans(cube_dim, raw):
    positive = ArrayValue(cube_dim.data > 0, "t")
    np.testing.assert_array_equal(values_of(reducers.all_(data=positive)), (raw > 0).all(axis=0))
    np.testing.assert_array_equal(values_of(reducers.any_(data=positive)), (raw > 0).any(axis=0))


# --- callbacks, run by the real evaluator with the real elementwise processes -------------------


def callback(graph: dict, **parameters):
    """Evaluate a child process graph the way a parent process calls its callback."""
    evaluator = Evaluator(Services(registry=build_registry()))

    def call(**arguments):
        return evaluator.run(graph, {**parameters, **arguments})

    return call


def node(process_id: str, **arguments) -> dict:
    return {"r": {"process_id": process_id, "arguments": arguments, "result": True}}


def test_array_apply_gets_whole_arrays_with_index(cube_dim, raw):
    add_index = callback(node("add", x={"from_parameter": "x"}, y={"from_parameter": "index"}))
    result = array_callbacks.array_apply(data=cube_dim, process=add_index)
    assert isinstance(result, ArrayValue) and result.dim == "t"
    np.testing.assert_allclose(values_of(result), raw + np.arange(T)[:, None, None],
                               equal_nan=True)
    assert list(result.data.coords["t"].values) == list(cube_dim.data.coords["t"].values)


def test_array_filter_per_pixel_keeps_matches_in_order(cube_dim, raw):
    positive = callback(node("gt", x={"from_parameter": "x"}, y=0))
    result = array_callbacks.array_filter(data=cube_dim, condition=positive)

    def reference(v):
        kept = v[v > 0]
        return np.concatenate([kept, np.full(T - kept.size, np.nan)])

    np.testing.assert_allclose(values_of(result), per_pixel(reference, raw), equal_nan=True)


def test_array_filter_by_label_selects_positions(cube_dim, raw):
    early = callback(node("lt", x={"from_parameter": "label"}, y=25))
    result = array_callbacks.array_filter(data=cube_dim, condition=early)
    assert list(result.data.coords["t"].values) == [0.0, 10.0, 20.0]
    np.testing.assert_allclose(values_of(result), raw[:3], equal_nan=True)


def test_count_with_condition_and_context(cube_dim, raw):
    above = callback(node("gt", x={"from_parameter": "x"}, y={"from_parameter": "context"}))
    got = values_of(array_callbacks.count(data=cube_dim, condition=above, context=0.5))
    np.testing.assert_array_equal(got, (raw > 0.5).sum(axis=0))


def test_list_of_cube_values_reduces_along_the_list(cube_dim, raw):
    # max([x, 0]) inside `apply`: the list holds the cube and a number.
    x = cube_dim.data.isel(t=0, drop=True)
    got = values_of(reducers.max_(data=[x, 0]))
    np.testing.assert_allclose(got, np.where(np.isnan(raw[0]), 0, np.maximum(raw[0], 0)))


def test_array_concat_takes_a_value_per_pixel_as_one_element(cube_dim, raw):
    # A DataArray without the array's dimension is one value per pixel (e.g. an NDVI computed
    # inside apply_dimension); one with it is an array along it.
    per_pixel_value = cube_dim.data.isel(t=0, drop=True) * 2
    out = arrays.array_concat(cube_dim, per_pixel_value)
    assert out.dim == "t" and out.size == T + 1
    np.testing.assert_allclose(values_of(out), np.concatenate([raw, raw[:1] * 2]), equal_nan=True)
    out = arrays.array_concat(per_pixel_value, cube_dim)
    np.testing.assert_allclose(values_of(out), np.concatenate([raw[:1] * 2, raw]), equal_nan=True)
    out = arrays.array_concat(cube_dim, cube_dim.data.drop_vars("t"))  # unlabeled: no conflict
    np.testing.assert_allclose(values_of(out), np.concatenate([raw, raw]), equal_nan=True)
