"""Fused callbacks (engine/fusion.py) give exactly what the processes give one by one.

Every case runs reduce_dimension / apply twice on the same dask-backed cube with no-data,
fused and with fusion disabled, and compares values, dtype and no-data pixel for pixel; it
also checks that the fused path really ran (a FusedFunction in the dask graph). The median
of a few values per pixel (blocks passed to the sorting network without concatenation) is
compared with numpy's nanmedian.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from tests.support.callbacks import CLOUD, band, graph, n, node, p

from terracube import errors
from terracube.datacube.cube import BANDS, SPATIAL, TEMPORAL, Dimension, RasterCube
from terracube.engine import fusion
from terracube.engine.evaluate import Evaluator, Services
from terracube.engine.registry import ProcessRegistry

BANDS_ = ["B02", "B04", "B08", "SCL"]
EPSG = 32631


@pytest.fixture(scope="module")
def services(registry: ProcessRegistry) -> Services:
    return Services(registry=registry)


def cube(dtype: str = "float32", nodata: float | None = None, seed: int = 1) -> RasterCube:
    """4 dates × 4 bands × 6 × 7, chunked like a load (one date and band per chunk):
    reflectances, a classification band with its codes, NaN no-data, infinities, zeros."""
    rng = np.random.default_rng(seed)
    shape = (4, 4, 6, 7)
    v = rng.integers(0, 3000, size=shape).astype(np.float64)
    v[:, 3] = rng.choice([0, 1, 2, 3, 4, 8, 9, 10, 11], size=v[:, 3].shape)
    v[:, 0] += rng.uniform(0, 1, size=v[:, 0].shape).round(2)
    if nodata is None:
        v[rng.uniform(size=shape) < 0.15] = np.nan
        v[0, 1, 0, :2] = [np.inf, -np.inf]
    else:
        v[rng.uniform(size=shape) < 0.15] = nodata
    data = xr.DataArray(v.astype(dtype), dims=["t", "bands", "y", "x"], coords={
        "t": pd.date_range("2023-01-01", periods=4, freq="10D"), "bands": BANDS_,
        "y": 5_700_000 - 10.0 * np.arange(6), "x": 600_000 + 10.0 * np.arange(7)}).chunk(
        {"t": 1, "bands": 1, "y": 3, "x": 4})
    dims = (Dimension("t", TEMPORAL), Dimension("bands", BANDS),
            Dimension("y", SPATIAL, "y", EPSG), Dimension("x", SPATIAL, "x", EPSG))
    return RasterCube(data, dims, nodata=nodata)


def run(services: Services, pid: str, data: RasterCube, **arguments) -> RasterCube:
    g = {"n": {"process_id": pid, "arguments": {"data": p("cube"), **arguments},
               "result": True}}
    return Evaluator(services).run(g, {"cube": data})


def is_fused(out: RasterCube) -> bool:
    layers = out.data.data.dask.layers
    return any("FusedFunction" in name or isinstance(getattr(layer, "dsk", None), dict) and any(
        isinstance(v, tuple) and isinstance(v[0], fusion.FusedFunction)
        for v in layer.dsk.values()) for name, layer in layers.items())


def both(services: Services, pid: str, data: RasterCube, **arguments) -> tuple:
    fused = run(services, pid, data, **arguments)
    with fusion.disabled():
        plain = run(services, pid, data, **arguments)
    return fused, plain


def assert_same(fused: RasterCube, plain: RasterCube) -> None:
    a, b = fused.data, plain.data
    assert a.dims == b.dims
    assert a.dtype == b.dtype, (a.dtype, b.dtype)
    for d in a.dims:
        np.testing.assert_array_equal(a.coords[d].values, b.coords[d].values)
    av, bv = a.values, b.values
    if av.dtype.kind == "f":
        np.testing.assert_array_equal(np.isnan(av), np.isnan(bv))
    np.testing.assert_array_equal(av, bv)


NDVI = graph("nd", r=band("B04"), i=band("B08"), nd=node("normalized_difference", x=n("i"),
                                                        y=n("r")))
REDUCERS = {
    "w2 cloud mask": CLOUD,
    "w1 ndvi": NDVI,
    "arithmetic with int and float constants": graph(
        "d", a=band("B02"), b=band("B08"), s=node("subtract", x=n("b"), y=n("a")),
        m=node("multiply", x=n("s"), y=2), q=node("add", x=1.5, y=n("m")),
        d=node("divide", x=n("q"), y=n("a"))),
    "and / xor / not with different no-data": graph(
        "x", a=band("B02"), s=band("SCL"), g=node("gt", x=n("a"), y=1500),
        e=node("neq", x=n("s"), y=0), c=node("and", x=n("g"), y=n("e")),
        t=node("not", x=n("c")), l=node("lte", x=n("s"), y=4),
        x=node("xor", x=n("t"), y=n("l"))),
    "or of two bands' comparisons": graph(
        "o", a=band("B04"), b=band("B08"), g=node("gte", x=n("a"), y=n("b")),
        l=node("lt", x=n("b"), y=100), o=node("or", x=n("g"), y=n("l"))),
    "logic straight on values": graph(
        "o", a=band("SCL"), b=band("B02"), o=node("or", x=n("a"), y=n("b"))),
    "between, index": graph(
        "b", a={"process_id": "array_element", "arguments": {"data": p("data"), "index": 3}},
        b=node("between", x=n("a"), min=2, max=9, exclude_max=True)),
    "is_nodata": graph("i", a=band("B08"), i=node("is_nodata", x=n("a"))),
    "comparison result in arithmetic": graph(
        "m", s=band("SCL"), e=node("eq", x=n("s"), y=4), m=node("multiply", x=n("e"), y=10)),
    "sqrt of a band": graph("r", a=band("B08"), r=node("sqrt", x=n("a"))),
}


@pytest.mark.parametrize("name", list(REDUCERS))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fused_reducer_equals_process_by_process(services, name, dtype):
    fused, plain = both(services, "reduce_dimension", cube(dtype), dimension="bands",
                        reducer=REDUCERS[name])
    assert is_fused(fused) and not is_fused(plain)
    assert_same(fused, plain)


def test_integer_band_comparisons_keep_its_nodata(services):
    """A uint16 cube with no-data 0: comparisons see no-data (NaN), not the number 0."""
    ints = cube("float64", nodata=0)
    ints = ints.with_data(ints.data.astype(np.uint16))
    reducer = graph("o", s=band("SCL"), z=node("eq", x=n("s"), y=0),
                    e=node("eq", x=n("s"), y=3), o=node("or", x=n("z"), y=n("e")))
    fused, plain = both(services, "reduce_dimension", ints, dimension="bands", reducer=reducer)
    assert is_fused(fused)
    assert_same(fused, plain)
    scl = ints.data.sel(bands="SCL").values
    got = fused.data.values
    assert np.isnan(got[scl == 0]).all() and (scl == 0).any()
    np.testing.assert_array_equal(got[scl != 0], (scl[scl != 0] == 3).astype(got.dtype))


APPLY = {
    "scale": graph("m", m=node("multiply", x=p("x"), y=0.0001)),
    "threshold": graph("g", g=node("gt", x=p("x"), y=1000)),
    "not nan and small": graph("a", v=node("is_valid", x=p("x")), l=node("lt", x=p("x"), y=5),
                               a=node("and", x=n("v"), y=n("l"))),
}


@pytest.mark.parametrize("name", list(APPLY))
def test_fused_apply_equals_process_by_process(services, name):
    fused, plain = both(services, "apply", cube(), process=APPLY[name])
    assert is_fused(fused)
    assert_same(fused, plain)


@pytest.mark.parametrize("name", ["w2 cloud mask", "comparison result in arithmetic",
                                  "is_nodata", "w1 ndvi", "logic straight on values"])
def test_mask_with_a_fused_mask_cube(services, name):
    """W2's shape: the mask of a fused reducer (three-valued, numbers with no-data, bools),
    replacement default and a number."""
    data = cube()
    reducer = REDUCERS[name]
    for replacement in (None, 0):
        results = []
        for enabled in (True, False):
            g = {"cloud": {"process_id": "reduce_dimension", "arguments": {
                    "data": p("cube"), "dimension": "bands", "reducer": reducer}},
                 "m": {"process_id": "mask", "arguments": {
                     "data": p("cube"), "mask": n("cloud"), "replacement": replacement},
                     "result": True}}
            if enabled:
                results.append(Evaluator(services).run(g, {"cube": data}))
            else:
                with fusion.disabled():
                    results.append(Evaluator(services).run(g, {"cube": data}))
        assert_same(*results)
        # the mask read the fused function's truth mask (bool), not the float cube
        names = list(results[0].data.data.dask.layers)
        assert any(name.startswith("truth-") for name in names), names
        assert not any(name.startswith("truth-") for name in results[1].data.data.dask.layers)


def test_callbacks_that_are_not_pixel_wise_are_not_fused(services):
    mean = graph("m", m=node("mean", data=p("data")))
    out = run(services, "reduce_dimension", cube(), dimension="bands", reducer=mean)
    assert not is_fused(out)
    uses_context = graph("a", b=band("B02"), a=node("add", x=n("b"), y=p("context")))
    out = run(services, "reduce_dimension", cube(), dimension="bands", reducer=uses_context,
              context=3)
    assert not is_fused(out)
    with fusion.disabled():
        plain = run(services, "reduce_dimension", cube(), dimension="bands",
                    reducer=uses_context, context=3)
    assert_same(out, plain)


def test_errors_are_those_of_the_processes(services):
    unknown = graph("e", a=band("B99"), e=node("eq", x=n("a"), y=3))
    with pytest.raises(errors.OpenEOError) as fused:
        run(services, "reduce_dimension", cube(), dimension="bands", reducer=unknown)
    with fusion.disabled(), pytest.raises(errors.OpenEOError) as plain:
        run(services, "reduce_dimension", cube(), dimension="bands", reducer=unknown)
    assert type(fused.value) is type(plain.value)
    assert str(fused.value) == str(plain.value)


@pytest.mark.parametrize("size", range(1, 9))
def test_median_of_a_few_dates_chunk_by_chunk(services, size):
    """reduce_dimension(t, median) with 1..8 dates in one-date chunks: the blocks go to the
    sorting network as they are; equal to numpy's nanmedian."""
    rng = np.random.default_rng(size)
    v = rng.integers(0, 20, size=(size, 4, 6, 7)).astype(np.float32)
    v[rng.uniform(size=v.shape) < 0.3] = np.nan
    template = cube().data
    data = xr.DataArray(v, dims=template.dims, coords={
        **{d: template.coords[d].values for d in ("bands", "y", "x")},
        "t": pd.date_range("2023-01-01", periods=size)}).chunk({"t": 1, "y": 3})
    c = RasterCube(data, cube().dimensions)
    out = run(services, "reduce_dimension", c, dimension="t",
              reducer=graph("m", m=node("median", data=p("data"))))
    with np.errstate(all="ignore"), pytest.warns(RuntimeWarning) if np.isnan(v).all(
            axis=0).any() else _nothing():
        expected = np.nanmedian(v, axis=0)
    got = out.data.values
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, expected.astype(np.float32))


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


@pytest.mark.parametrize("reducer", ["max", "min"])
def test_max_min_over_many_one_date_chunks(services, reducer):
    """The NaN-skipping fold of max/min through a tree of combines (11 dates, one per chunk):
    equal to numpy, NaN only where every date is NaN, the input blocks left unchanged."""
    rng = np.random.default_rng(7)
    v = rng.uniform(-1, 1, size=(11, 4, 6, 7)).astype(np.float32)
    v[rng.uniform(size=v.shape) < 0.4] = np.nan
    v[:, :, 0, 0] = np.nan
    template = cube().data
    data = xr.DataArray(v.copy(), dims=template.dims, coords={
        **{d: template.coords[d].values for d in ("bands", "y", "x")},
        "t": pd.date_range("2023-01-01", periods=11)}).chunk({"t": 1})
    c = RasterCube(data, cube().dimensions)
    out = run(services, "reduce_dimension", c, dimension="t",
              reducer=graph("m", m=node(reducer, data=p("data"))))
    with np.errstate(all="ignore"), pytest.warns(RuntimeWarning):
        expected = (np.nanmax if reducer == "max" else np.nanmin)(v, axis=0)
    got = out.data.values
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(data.values, v)


def test_fused_functions_are_named_by_their_graph_without_pickling():
    """dask names a layer by tokenizing its function; a fused one gives its compiled graph's
    hash (pickling its closures cost 60 ms per request): same graph same name, other graph
    or other bands another."""
    from dask.base import tokenize

    a = fusion.compile_graph(CLOUD["process_graph"], BANDS_)
    b = fusion.compile_graph(CLOUD["process_graph"], BANDS_)
    c = fusion.compile_graph(NDVI["process_graph"], BANDS_)
    d = fusion.compile_graph(CLOUD["process_graph"], ["SCL", "B02", "B04", "B08"])
    assert tokenize(a) == tokenize(b)
    assert len({tokenize(a), tokenize(c), tokenize(d)}) == 3
