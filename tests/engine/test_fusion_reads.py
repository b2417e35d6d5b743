"""Fused band reducers that read their bands themselves (one task per chunk) and compare
integer bands as integers give exactly what the processes give one by one.

The cubes are real loads of the sample collection (uint16 reflectances, uint8 SCL, no-data
0) through the aligned reader (catalog/direct_read.py), including a window that reaches
beyond the files (no-data there); every result is compared with the same graph evaluated
with fusion disabled. The comparisons on integers are checked against the float32
comparisons for every operator, operand order, integer type and awkward number.
"""

from __future__ import annotations

import functools
from pathlib import Path

import dask
import numpy as np
import pytest
from tests.support.callbacks import CLOUD, band, graph, n, node, p

from terracube.catalog import Catalog
from terracube.datacube.band_reads import BAND_READS, IntBand
from terracube.datacube.request import BBox, LoadRequest
from terracube.engine import fusion
from terracube.engine.evaluate import Evaluator, Services
from terracube.engine.registry import ProcessRegistry

BOXES = {
    "window inside": BBox(679720, 5151080, 680680, 5151920, "EPSG:32632"),
    "across the edge": BBox(677500, 5149000, 678730, 5150210, "EPSG:32632"),
}


REDUCERS = {
    "w2 cloud mask": CLOUD,
    "w1 ndvi": graph("nd", r=band("B04"), i=band("B08"),
                     nd=node("normalized_difference", x=n("i"), y=n("r"))),
    "comparisons on both sides, fractions": graph(
        "x", s=band("SCL"), a=band("B04"), g=node("gt", x=4.5, y=n("s")),
        e=node("neq", x=n("s"), y=0), c=node("and", x=n("g"), y=n("e")),
        l=node("lte", x=n("a"), y=1200.5), x=node("xor", x=n("c"), y=n("l"))),
    "comparison in arithmetic": graph(
        "m", s=band("SCL"), a=band("B08"), e=node("gte", x=n("s"), y=8),
        m=node("multiply", x=n("e"), y=n("a"))),
    "is_nodata of an integer band": graph("i", a=band("SCL"), i=node("is_nodata", x=n("a"))),
}


@pytest.fixture(scope="module")
def services(registry: ProcessRegistry) -> Services:
    return Services(registry=registry)


@pytest.fixture(scope="module")
def source(sample_data_dir: Path):
    return Catalog(sample_data_dir).get("SENTINEL2_L2A")


def _load(source, box: str):
    return source.load(LoadRequest(bbox=BOXES[box], temporal_extent=("2022-05-01", "2022-07-01"),
                                   bands=("B04", "B08", "SCL")))


def _evaluate(services: Services, g: dict, data) -> np.ndarray:
    out = Evaluator(services).run(g, {"cube": data})
    return out


def _fused_reading_and_plain(services: Services, g: dict, data):
    """The graph evaluated with fusion (checked to read its bands in the fused task: one task
    per chunk) and without it."""
    fused = _evaluate(services, g, data)
    with fusion.disabled():
        plain = _evaluate(services, g, data)
    layers = list(fused.data.data.dask.layers)
    assert any(layer.startswith("fused-read-") for layer in layers), layers
    assert not any(layer.startswith("read-aligned-") for layer in layers), layers
    return fused, plain


@pytest.mark.parametrize("box", BOXES, ids=list(BOXES))
@pytest.mark.parametrize("name", list(REDUCERS))
def test_reducer_reading_its_bands_equals_process_by_process(services, source, box, name):
    data = _load(source, box)
    assert BAND_READS in data.attrs
    g = {"r": {"process_id": "reduce_dimension", "arguments": {
        "data": p("cube"), "dimension": "bands", "reducer": REDUCERS[name]}, "result": True}}
    fused, plain = _fused_reading_and_plain(services, g, data)
    with dask.config.set(scheduler="threads"):
        a, b = fused.data.compute(), plain.data.compute()
    assert a.dtype == b.dtype
    np.testing.assert_array_equal(a.values, b.values)
    if box == "across the edge":
        assert np.isnan(b.values).any() or b.dtype == bool


@pytest.mark.parametrize("box", BOXES, ids=list(BOXES))
def test_mask_from_integer_scl_equals_process_by_process(services, source, box):
    """W2: the SCL cloud mask of the load masks its reflectances; the mask is computed from
    the uint8 SCL in its own read task (no float32 SCL)."""
    data = _load(source, box)
    g = {"cloud": {"process_id": "reduce_dimension", "arguments": {
            "data": p("cube"), "dimension": "bands", "reducer": CLOUD}},
         "refl": {"process_id": "filter_bands", "arguments": {
             "data": p("cube"), "bands": ["B04", "B08"]}},
         "m": {"process_id": "mask", "arguments": {"data": n("refl"), "mask": n("cloud")},
               "result": True}}
    fused = _evaluate(services, g, data)
    with fusion.disabled():
        plain = _evaluate(services, g, data)
    assert any(layer.startswith("fused-read-truth-") for layer in fused.data.data.dask.layers)
    with dask.config.set(scheduler="threads"):
        a, b = fused.data.compute(), plain.data.compute()
    np.testing.assert_array_equal(a.values, b.values)
    assert np.isnan(a.values).sum() > 0


@pytest.mark.parametrize("box", BOXES, ids=list(BOXES))
def test_ndvi_process_reads_its_bands_and_equals_process_by_process(services, source, box):
    """The ndvi process of a cube as loaded reads B08/B04 in one task per chunk (integers
    cast once), bit for bit what (nir - red) / (nir + red) of the loaded float32 bands is."""
    data = _load(source, box)
    g = {"v": {"process_id": "ndvi", "arguments": {"data": p("cube")}, "result": True}}
    fused, plain = _fused_reading_and_plain(services, g, data)
    assert fused.data.dims == plain.data.dims == ("t", "y", "x")
    assert [d.name for d in fused.dimensions] == ["t", "y", "x"]
    with dask.config.set(scheduler="threads"):
        a, b = fused.data.compute(), plain.data.compute()
    assert a.dtype == b.dtype == np.float32
    np.testing.assert_array_equal(a.values, b.values)
    for name in ("t", "y", "x"):
        np.testing.assert_array_equal(a[name].values, b[name].values)
    loaded = data.data.compute()
    nir, red = loaded.sel(bands="B08").values, loaded.sel(bands="B04").values
    with np.errstate(invalid="ignore", divide="ignore"):
        np.testing.assert_array_equal(a.values, (nir - red) / (nir + red))
    if box == "across the edge":
        assert np.isnan(a.values).any()
    kept = _evaluate(services, {"v": {"process_id": "ndvi", "arguments": {
        "data": p("cube"), "target_band": "NDVI"}, "result": True}}, data)
    assert list(kept.data.bands.values) == ["B04", "B08", "SCL", "NDVI"]


def test_a_changed_cube_does_not_read_the_files_again(services, source):
    """Band reads are only used while the cube holds the loaded array itself."""
    data = _load(source, "window inside")
    g = {"a": {"process_id": "apply", "arguments": {"data": p("cube"), "process": graph(
            "m", m=node("multiply", x=p("x"), y=2))}},
         "r": {"process_id": "reduce_dimension", "arguments": {
             "data": n("a"), "dimension": "bands", "reducer": CLOUD}, "result": True}}
    out = _evaluate(services, g, data)
    assert not any(layer.startswith("fused-read-") for layer in out.data.data.dask.layers)


NUMBERS = [0, 1, 3, 8, -1, 2.5, -0.5, 2.9999999, 3.0000001, 7.99999999, 254.5, 255, 256,
           65535, 65535.5, 65536, -32768, -32769, 32767.2, 1e6, -1e6, 16777216, 0.0]


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int16"])
@pytest.mark.parametrize("pid", ["eq", "neq", "gt", "gte", "lt", "lte"])
def test_integer_comparisons_equal_float32_comparisons(dtype, pid):
    info = np.iinfo(dtype)
    values = np.unique(np.concatenate([np.arange(-3, 12), [info.min, info.min + 1,
                                       info.max - 1, info.max, 254, 255, 256, 32767]]))
    values = values[(values >= info.min) & (values <= info.max)].astype(dtype)
    invalid = values == values[len(values) // 2]  # one no-data value
    as_float = values.astype(np.float32)
    as_float[invalid] = np.nan
    for number in NUMBERS:
        for order in (("x", "y"), ("y", "x")):
            args = {order[0]: {"from_node": "a"}, order[1]: number}
            g = {"a": band("A"), "c": {"process_id": pid, "arguments": args, "result": True}}
            function = fusion.compile_graph(g, labels=["A"])
            assert function is not None
            got = function(IntBand(values, invalid))
            expected = function(as_float)
            assert got.dtype == expected.dtype == np.float32
            np.testing.assert_array_equal(got, expected, err_msg=f"{pid} {order} {number}")
            # and the float path is numpy's float32 comparison
            ref = {"eq": np.equal, "neq": np.not_equal, "gt": np.greater,
                   "gte": np.greater_equal, "lt": np.less, "lte": np.less_equal}[pid]
            with np.errstate(all="ignore"):
                cmp = ref(as_float, number) if order[0] == "x" else ref(number, as_float)
            np.testing.assert_array_equal(
                np.where(invalid, np.nan, cmp.astype(np.float32)), expected)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_mask_with_nan_is_np_where_bit_for_bit(services, dtype):
    """mask's NaN replacement (bit arithmetic instead of a selection) gives exactly
    np.where(mask, nan, data): negative zeros, infinities and NaN kept where not masked; a
    mask without the bands dimension masks every band."""
    import pandas as pd
    import xarray as xr

    from terracube.datacube.cube import BANDS, SPATIAL, TEMPORAL, Dimension, RasterCube

    rng = np.random.default_rng(3)
    shape = (3, 2, 5, 6)
    v = rng.normal(size=shape).astype(dtype)
    v.flat[:4] = [-0.0, np.inf, -np.inf, np.nan]
    m = rng.random((3, 5, 6)) < 0.4
    m[0, 0, :4] = False
    coords = {"t": pd.date_range("2023-01-01", periods=3), "bands": ["a", "b"],
              "y": 10.0 - np.arange(5), "x": np.arange(6.0)}
    dims = (Dimension("t", TEMPORAL), Dimension("bands", BANDS),
            Dimension("y", SPATIAL, "y", 32631), Dimension("x", SPATIAL, "x", 32631))
    data = RasterCube(xr.DataArray(v, dims=list(coords), coords=coords).chunk(
        {"t": 1, "bands": 1, "y": 3}), dims)
    mask = RasterCube(xr.DataArray(m, dims=["t", "y", "x"], coords={
        k: coords[k] for k in ("t", "y", "x")}).chunk({"t": 1, "y": 3}),
        tuple(d for d in dims if d.name != "bands"))
    g = {"m": {"process_id": "mask", "arguments": {"data": p("d"), "mask": p("k")},
               "result": True}}
    for cube, cmask in ((data, mask), (data.with_data(data.data.compute()),
                                       mask.with_data(mask.data.compute()))):
        out = Evaluator(services).run(g, {"d": cube, "k": cmask}).data
        assert out.dims == ("t", "bands", "y", "x") and out.dtype == np.dtype(dtype)
        expected = np.where(m[:, None], np.array(np.nan, dtype=dtype), v)
        uint = np.uint32 if dtype == "float32" else np.uint64
        np.testing.assert_array_equal(np.asarray(out.values).view(uint), expected.view(uint))


def test_probes_run_once_per_registry_and_graph(registry, source):
    """The probes (the compiled function against the callback) are answered once for a
    graph and registry: the dry run and the run of a request, and later requests, reuse it."""
    original = registry.get("eq").func
    calls = []

    @functools.wraps(original)
    def eq(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    counting = Services(registry=ProcessRegistry({**registry.functions(), "eq": eq}))
    data = _load(source, "window inside")
    g = {"r": {"process_id": "reduce_dimension", "arguments": {
        "data": p("cube"), "dimension": "bands", "reducer": CLOUD}, "result": True}}
    first = _evaluate(counting, g, data)
    probed = len(calls)
    assert probed >= 4 * 4  # four eq, float probe and three integer types
    second = _evaluate(counting, g, data)
    assert len(calls) == probed
    assert first.data.data.name == second.data.data.name
    assert any(layer.startswith("fused-read-") for layer in second.data.data.dask.layers)
