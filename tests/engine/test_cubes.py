"""The cube processes on small dask-backed cubes; expected values come from plain numpy.

Callbacks use a few test processes registered next to the real ones: they record how they
were called, so the tests can check that every callback runs once on whole lazy arrays.
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from terracube import errors
from terracube.datacube.cube import (
    BANDS,
    OTHER,
    SPATIAL,
    TEMPORAL,
    Dimension,
    RasterCube,
    is_lazy,
)
from terracube.datacube.values import LIST_DIM, ArrayValue
from terracube.engine.evaluate import Evaluator, Services
from terracube.engine.registry import ProcessRegistry
from terracube.results.writers import write_result

T = np.array(["2020-06-01", "2020-06-03", "2020-06-06", "2020-06-09"], dtype="datetime64[ns]")
BAND_NAMES = ["B02", "B04", "B08"]
Y = np.array([5757495.0, 5757485.0, 5757475.0])  # descending, like a north-up raster
X = np.array([404835.0, 404845.0, 404855.0, 404865.0, 404875.0])
EPSG = 25832


class BandInfo:
    def __init__(self, common_name: str, center_wavelength: float) -> None:
        self.common_name = common_name
        self.center_wavelength = center_wavelength


def values() -> np.ndarray:
    rng = np.random.default_rng(42)
    v = rng.uniform(0, 1000, size=(len(T), len(BAND_NAMES), len(Y), len(X)))
    v[1, 0, 2, 3] = np.nan
    return v


def make_cube(v: np.ndarray | None = None, *, nodata: float | None = None) -> RasterCube:
    v = values() if v is None else v
    data = xr.DataArray(v, dims=["t", "bands", "y", "x"],
                        coords={"t": T, "bands": BAND_NAMES, "y": Y, "x": X}).chunk(
        {"t": 1, "bands": 1, "y": 2, "x": 3})
    dims = (Dimension("t", TEMPORAL), Dimension("bands", BANDS),
            Dimension("y", SPATIAL, "y", EPSG), Dimension("x", SPATIAL, "x", EPSG))
    meta = {"B02": BandInfo("blue", 0.49), "B04": BandInfo("red", 0.665),
            "B08": BandInfo("nir", 0.842)}
    return RasterCube(data, dims, nodata=nodata, attrs={"band_metadata": meta})


# --- test processes for callbacks -----------------------------------------------------------
CALLS: list[tuple[str, object]] = []


def tc_mean(data):
    CALLS.append(("tc_mean", data))
    return data.data.mean(data.dim)


def tc_times(x, factor):
    CALLS.append(("tc_times", x))
    return x * factor


def tc_gt(x, y):
    return x > y


def tc_add(x, y):
    CALLS.append(("tc_add", x))
    return x + y


def tc_cumsum(data):
    CALLS.append(("tc_cumsum", data))
    return data.with_data(data.data.cumsum(data.dim))


def tc_extrema(data):
    CALLS.append(("tc_extrema", data))
    parts = [data.data.min(data.dim), data.data.max(data.dim)]
    return ArrayValue(xr.concat(parts, dim=LIST_DIM), LIST_DIM)


def tc_minmax_list(data):
    return [data.data.min(data.dim), data.data.max(data.dim)]


def tc_const(value):
    return value


def tc_text_lt(x, y):
    return x < y


@pytest.fixture(scope="module")
def services(registry: ProcessRegistry) -> Services:
    return Services(registry=registry.with_processes({
        func.__name__: func for func in (tc_mean, tc_times, tc_gt, tc_add, tc_cumsum,
                                         tc_extrema, tc_minmax_list, tc_const, tc_text_lt)}))


@pytest.fixture(autouse=True)
def _reset_calls():
    CALLS.clear()


def run(services: Services, process_id: str, **arguments):
    """Run one process node; cubes are passed as graph parameters."""
    params, args = {}, {}
    for name, value in arguments.items():
        if isinstance(value, RasterCube):
            params[name] = value
            args[name] = {"from_parameter": name}
        else:
            args[name] = value
    graph = {"n": {"process_id": process_id, "arguments": args, "result": True}}
    return Evaluator(services).run(graph, params)


def callback(process_id: str, **arguments) -> dict:
    return {"process_graph": {"c": {"process_id": process_id, "arguments": arguments,
                                    "result": True}}}


def p(name: str) -> dict:
    return {"from_parameter": name}


def names(cube: RasterCube) -> list[str]:
    return [d.name for d in cube.dimensions]


# --- reduce_dimension / apply / apply_dimension ------------------------------------------------
def test_reduce_dimension_calls_the_reducer_once_on_the_whole_cube(services):
    cube = make_cube()
    out = run(services, "reduce_dimension", data=cube, dimension="t",
              reducer=callback("tc_mean", data=p("data")))
    assert len(CALLS) == 1
    arg = CALLS[0][1]
    assert isinstance(arg, ArrayValue) and arg.dim == "t" and arg.labeled
    assert arg.data.shape == cube.data.shape
    assert is_lazy(out)
    assert names(out) == ["bands", "y", "x"]
    assert out.dim("y") == cube.dim("y")
    np.testing.assert_allclose(out.data.values, np.nanmean(values(), axis=0), equal_nan=True)


def test_reduce_dimension_broadcasts_a_constant_and_keeps_booleans(services):
    cube = make_cube()
    out = run(services, "reduce_dimension", data=cube, dimension="bands",
              reducer=callback("tc_const", value=True))
    assert is_lazy(out)
    assert out.data.dtype == bool
    assert out.data.shape == (len(T), len(Y), len(X))
    assert bool(out.data.all().values)


def test_reduce_dimension_unknown_dimension(services):
    with pytest.raises(errors.OpenEOError) as info:
        run(services, "reduce_dimension", data=make_cube(), dimension="time",
            reducer=callback("tc_mean", data=p("data")))
    assert info.value.code == "DimensionNotAvailable"
    assert "time" in info.value.message and "bands" in info.value.message


def test_apply_runs_once_and_keeps_dimensions(services):
    cube = make_cube()
    out = run(services, "apply", data=cube, context=3,
              process=callback("tc_times", x=p("x"), factor=p("context")))
    assert len(CALLS) == 1 and isinstance(CALLS[0][1], xr.DataArray)
    assert is_lazy(out)
    assert out.dimensions == cube.dimensions
    np.testing.assert_allclose(out.data.values, values() * 3, equal_nan=True)


def test_apply_turns_integer_nodata_into_null(services):
    ints = np.arange(len(T) * 3 * len(Y) * len(X), dtype=np.uint16).reshape(len(T), 3, 3, 5)
    ints[0, 0, 0, 0] = 0
    cube = make_cube(ints, nodata=0)
    out = run(services, "apply", data=cube, process=callback("tc_times", x=p("x"), factor=2))
    expected = ints.astype(float) * 2
    expected[ints == 0] = np.nan
    np.testing.assert_allclose(out.data.values, expected, equal_nan=True)
    assert out.data.dtype == np.float32


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int16", "float32"])
@pytest.mark.parametrize("nodata", [0, 7.0, 255, -1, 0.5, 70000, float("nan")])
def test_nodata_as_nan_is_null_exactly_where_the_value_equals_nodata(dtype, nodata):
    """Integer cubes are compared with their no-data value in their own type; the nulls are
    where numpy's `values == nodata` holds, whatever the value (out of range, a fraction)."""
    from terracube.engine.processes.cubes import nodata_as_nan

    rng = np.random.default_rng(5)
    v = rng.integers(0, 12, size=(len(T), 3, len(Y), len(X))).astype(dtype)
    v[0, 0, 0, :2] = [0, 255 if dtype != "int16" else -1]
    out = nodata_as_nan(make_cube(v, nodata=nodata)).data.values
    if np.isnan(nodata) and dtype != "float32":  # no integer is NaN: the cube stays as it is
        assert out.dtype == dtype
        return
    with np.errstate(invalid="ignore"):
        nulls = v == nodata
    assert out.dtype == np.float32 and out.shape == v.shape
    np.testing.assert_array_equal(np.isnan(out), nulls)
    np.testing.assert_array_equal(out[~nulls], v[~nulls].astype(np.float32))


def test_apply_comparison_gives_booleans(services):
    out = run(services, "apply", data=make_cube(), process=callback("tc_gt", x=p("x"), y=500))
    assert out.data.dtype == bool
    np.testing.assert_array_equal(out.data.values, values() > 500)


def test_apply_dimension_same_length_keeps_labels(services):
    cube = make_cube()
    out = run(services, "apply_dimension", data=cube, dimension="t",
              process=callback("tc_cumsum", data=p("data")))
    assert len(CALLS) == 1
    assert is_lazy(out)
    assert out.dimensions == cube.dimensions
    np.testing.assert_array_equal(out.data.coords["t"].values, T)
    expected = xr.DataArray(values(), dims=["t", "b", "y", "x"]).cumsum("t").values
    np.testing.assert_allclose(out.data.values, expected, equal_nan=True)


def test_apply_dimension_new_length_enumerates_labels(services):
    cube = make_cube()
    out = run(services, "apply_dimension", data=cube, dimension="t",
              process=callback("tc_extrema", data=p("data")))
    assert names(out) == ["t", "bands", "y", "x"]
    assert out.dim("t").type == TEMPORAL
    assert list(out.data.coords["t"].values) == [0, 1]
    v = values()
    np.testing.assert_allclose(out.data.values[0], np.nanmin(v, axis=0), equal_nan=True)
    np.testing.assert_allclose(out.data.values[1], np.nanmax(v, axis=0), equal_nan=True)


def test_apply_dimension_to_a_new_target_dimension(services):
    out = run(services, "apply_dimension", data=make_cube(), dimension="bands",
              target_dimension="stats", process=callback("tc_minmax_list", data=p("data")))
    assert is_lazy(out)
    assert names(out) == ["t", "stats", "y", "x"]
    assert out.dim("stats") == Dimension("stats", OTHER)
    assert list(out.data.coords["stats"].values) == [0, 1]
    np.testing.assert_allclose(out.data.values[:, 1], np.nanmax(values(), axis=1), equal_nan=True)


def test_apply_dimension_into_an_existing_single_label_dimension(services):
    cube = run(services, "add_dimension", data=make_cube(), name="stat", label="x",
               type="other")
    out = run(services, "apply_dimension", data=cube, dimension="t", target_dimension="stat",
              process=callback("tc_extrema", data=p("data")))
    assert names(out) == ["stat", "bands", "y", "x"]
    assert list(out.data.coords["stat"].values) == [0, 1]
    np.testing.assert_allclose(out.data.values[1], np.nanmax(values(), axis=0), equal_nan=True)


def test_apply_dimension_into_an_existing_dimension_with_several_labels(services):
    # t -> bands on a cube with 3 bands: each band's series gives 2 values, filled into bands
    # band by band (decision in cubes.apply_dimension; the spec defines one label only).
    cube = make_cube()
    out = run(services, "apply_dimension", data=cube, dimension="t", target_dimension="bands",
              process=callback("tc_extrema", data=p("data")))
    assert is_lazy(out)
    assert names(out) == ["bands", "y", "x"]
    assert out.dim("bands") == Dimension("bands", BANDS)
    assert list(out.data.coords["bands"].values) == list(range(6))
    assert out.attrs["band_metadata"] == {}  # B02, B04, B08 are gone
    v = values()
    expected = np.stack([f(v[:, b], axis=0) for b in range(3) for f in (np.nanmin, np.nanmax)])
    np.testing.assert_allclose(out.data.values, expected, equal_nan=True)


NDVI_CONCAT = {
    "red": {"process_id": "array_element", "arguments": {"data": p("data"), "label": "B04"}},
    "nir": {"process_id": "array_element", "arguments": {"data": p("data"), "index": 2}},
    "diff": {"process_id": "subtract",
             "arguments": {"x": {"from_node": "nir"}, "y": {"from_node": "red"}}},
    "sum": {"process_id": "add",
            "arguments": {"x": {"from_node": "nir"}, "y": {"from_node": "red"}}},
    "ndvi": {"process_id": "divide",
             "arguments": {"x": {"from_node": "diff"}, "y": {"from_node": "sum"}}},
}


@pytest.mark.parametrize(("process_id", "arguments"), [
    ("array_concat", {"array1": p("data"), "array2": {"from_node": "ndvi"}}),
    ("array_append", {"data": p("data"), "value": {"from_node": "ndvi"}}),
])
def test_apply_dimension_appends_a_value_per_pixel(services, process_id, arguments):
    # The official workflow test_apply_dimension_ndvi: array_concat(data, ndvi) where ndvi is
    # one value per pixel (no bands axis), appended as a one-element array, vectorised.
    graph = {**NDVI_CONCAT, "out": {"process_id": process_id, "arguments": arguments,
                                    "result": True}}
    out = run(services, "apply_dimension", data=make_cube(), dimension="bands",
              process={"process_graph": graph})
    assert is_lazy(out)
    assert names(out) == ["t", "bands", "y", "x"]
    assert list(out.data.coords["bands"].values) == [0, 1, 2, 3]
    v = values()
    np.testing.assert_allclose(out.data.values[:, :3], v, equal_nan=True)
    np.testing.assert_allclose(out.data.values[:, 3], (v[:, 2] - v[:, 1]) / (v[:, 2] + v[:, 1]),
                               equal_nan=True)


def test_array_concat_of_two_values_per_pixel(services):
    graph = {**NDVI_CONCAT, "out": {"process_id": "array_concat", "result": True, "arguments": {
        "array1": {"from_node": "ndvi"}, "array2": {"from_node": "red"}}}}
    out = run(services, "apply_dimension", data=make_cube(), dimension="bands",
              process={"process_graph": graph})
    assert list(out.data.coords["bands"].values) == [0, 1]
    np.testing.assert_allclose(out.data.values[:, 1], values()[:, 1], equal_nan=True)


# --- filters ----------------------------------------------------------------------------------
def test_filter_bands_by_name_common_name_and_wavelength(services):
    cube = make_cube()
    out = run(services, "filter_bands", data=cube, bands=["nir", "B02"])
    assert is_lazy(out)
    assert list(out.data.coords["bands"].values) == ["B08", "B02"]
    np.testing.assert_allclose(out.data.values, values()[:, [2, 0]], equal_nan=True)
    assert list(out.attrs["band_metadata"]) == ["B08", "B02"]
    out = run(services, "filter_bands", data=cube, wavelengths=[[0.6, 0.9]])
    assert list(out.data.coords["bands"].values) == ["B04", "B08"]


def test_filter_bands_errors(services):
    with pytest.raises(errors.OpenEOError) as info:
        run(services, "filter_bands", data=make_cube())
    assert info.value.code == "BandFilterParameterMissing"
    no_bands = run(services, "reduce_dimension", data=make_cube(), dimension="bands",
                   reducer=callback("tc_mean", data=p("data")))
    with pytest.raises(errors.OpenEOError) as info:
        run(services, "filter_bands", data=no_bands, bands=["red"])
    assert info.value.code == "DimensionMissing"


def test_filter_bbox_in_lon_lat_selects_pixel_centres(services):
    from pyproj import Transformer

    to_ll = Transformer.from_crs(EPSG, 4326, always_xy=True)
    west, south = to_ll.transform(404850.0, 5757480.0)
    east, north = to_ll.transform(404870.0, 5757500.0)
    out = run(services, "filter_bbox", data=make_cube(),
              extent={"west": west, "south": south, "east": east, "north": north})
    assert is_lazy(out)
    np.testing.assert_array_equal(out.data.coords["x"].values, [404855.0, 404865.0])
    np.testing.assert_array_equal(out.data.coords["y"].values, [5757495.0, 5757485.0])
    np.testing.assert_allclose(out.data.values, values()[:, :, 0:2, 2:4], equal_nan=True)


def test_filter_bbox_in_the_cube_crs_includes_borders(services):
    out = run(services, "filter_bbox", data=make_cube(),
              extent={"west": 404845.0, "south": 5757475.0, "east": 404855.0,
                      "north": 5757480.0, "crs": EPSG})
    np.testing.assert_array_equal(out.data.coords["x"].values, [404845.0, 404855.0])
    np.testing.assert_array_equal(out.data.coords["y"].values, [5757475.0])


def test_filter_temporal_is_left_closed(services):
    cube = make_cube()
    out = run(services, "filter_temporal", data=cube, extent=["2020-06-03", "2020-06-09"])
    assert is_lazy(out)
    np.testing.assert_array_equal(out.data.coords["t"].values, T[1:3])
    out = run(services, "filter_temporal", data=cube, extent=[None, "2020-06-03T00:00:00Z"])
    np.testing.assert_array_equal(out.data.coords["t"].values, T[:1])
    out = run(services, "filter_temporal", data=cube, extent=["2020-06-05T23:00:00-02:00", None],
              dimension="t")
    np.testing.assert_array_equal(out.data.coords["t"].values, T[3:])


@pytest.mark.parametrize("extent, dimension, code", [
    (["2020-06-09", "2020-06-01"], None, "TemporalExtentEmpty"),
    (["2020-06-01T00:00:00Z", "2020-06-01T00:00:00Z"], None, "TemporalExtentEmpty"),
    (["2020-06-01", "2020-06-09"], "time", "DimensionNotAvailable"),
])
def test_filter_temporal_errors(services, extent, dimension, code):
    args = {"extent": extent} if dimension is None else {"extent": extent, "dimension": dimension}
    with pytest.raises(errors.OpenEOError) as info:
        run(services, "filter_temporal", data=make_cube(), **args)
    assert info.value.code == code


def test_filter_temporal_same_date_twice_is_that_day(services):
    """["d", "d"] is the whole day d (CDSE; decision 0011), an equal date-time is still empty."""
    out = run(services, "filter_temporal", data=make_cube(), extent=[str(T[1])[:10]] * 2)
    np.testing.assert_array_equal(out.data.coords["t"].values, T[1:2])


def test_filter_labels_on_numbers_and_dates(services):
    cube = make_cube()
    out = run(services, "filter_labels", data=cube, dimension="x",
              condition=callback("tc_gt", x=p("value"), y=404850))
    np.testing.assert_array_equal(out.data.coords["x"].values, X[2:])
    out = run(services, "filter_labels", data=cube, dimension="t",
              condition=callback("tc_text_lt", x=p("value"), y=p("context")),
              context="2020-06-05")
    np.testing.assert_array_equal(out.data.coords["t"].values, T[:2])
    assert is_lazy(out)


# --- dimensions and labels --------------------------------------------------------------------
def test_add_drop_and_rename_dimension(services):
    cube = make_cube()
    added = run(services, "add_dimension", data=cube, name="t2", label="2021-01-01T00:00:00Z",
                type="temporal")
    assert names(added) == ["t2", "t", "bands", "y", "x"]
    assert added.data.coords["t2"].values[0] == np.datetime64("2021-01-01")
    assert is_lazy(added)
    dropped = run(services, "drop_dimension", data=added, name="t2")
    assert dropped.dimensions == cube.dimensions
    renamed = run(services, "rename_dimension", data=cube, source="t", target="time")
    assert renamed.dimensions[0] == Dimension("time", TEMPORAL)
    np.testing.assert_array_equal(renamed.data.coords["time"].values, T)
    for process_id, args, code in [
        ("add_dimension", {"name": "x", "label": 1}, "DimensionExists"),
        ("add_dimension", {"name": "z", "label": 1, "type": "spatial"}, None),
        ("drop_dimension", {"name": "t"}, "DimensionLabelCountMismatch"),
        ("drop_dimension", {"name": "foo"}, "DimensionNotAvailable"),
        ("rename_dimension", {"source": "t", "target": "x"}, "DimensionExists"),
        ("rename_dimension", {"source": "foo", "target": "bar"}, "DimensionNotAvailable"),
    ]:
        if code is None:
            out = run(services, process_id, data=cube, **args)
            assert out.dims_of_type(SPATIAL)[0].axis == "z"
            continue
        with pytest.raises(errors.OpenEOError) as info:
            run(services, process_id, data=cube, **args)
        assert info.value.code == code, process_id


def test_rename_labels(services):
    cube = make_cube()
    out = run(services, "rename_labels", data=cube, dimension="bands",
              source=["B08", "B02"], target=["nir", "blue"])
    assert list(out.data.coords["bands"].values) == ["blue", "B04", "nir"]
    assert set(out.attrs["band_metadata"]) == {"blue", "B04", "nir"}
    swapped = run(services, "rename_labels", data=cube, dimension="bands",
                  source=["B02", "B04"], target=["B04", "B02"])
    assert list(swapped.data.coords["bands"].values) == ["B04", "B02", "B08"]
    dated = run(services, "rename_labels", data=cube, dimension="t",
                source=["2020-06-01T00:00:00Z"], target=["2020-05-31"])
    assert dated.data.coords["t"].values[0] == np.datetime64("2020-05-31")
    for args, code in [
        ({"target": ["a"]}, "LabelsNotEnumerated"),
        ({"source": ["B02"], "target": ["a", "b"]}, "LabelMismatch"),
        ({"source": ["B99"], "target": ["a"]}, "LabelNotAvailable"),
        ({"source": ["B02"], "target": ["B04"]}, "LabelExists"),
    ]:
        with pytest.raises(errors.OpenEOError) as info:
            run(services, "rename_labels", data=cube, dimension="bands", **args)
        assert info.value.code == code


def test_rename_temporal_labels_to_text_makes_the_dimension_other(services, tmp_path):
    # The official workflow test_rename_labels_time: the one date becomes "first_date".
    cube = run(services, "filter_temporal", data=make_cube(), extent=["2020-06-01", "2020-06-02"])
    labels = run(services, "dimension_labels", data=cube, dimension="t")
    out = run(services, "rename_labels", data=cube, dimension="t", source=labels,
              target=["first_date"])
    assert is_lazy(out)
    assert out.dim("t") == Dimension("t", OTHER)
    assert list(out.data.coords["t"].values) == ["first_date"]
    assert run(services, "dimension_labels", data=out, dimension="t") == ["first_date"]
    written = write_result(out, "netCDF", {}, tmp_path)[0].path
    with xr.open_dataset(written) as ds:
        assert list(ds["t"].values) == ["first_date"]
        np.testing.assert_allclose(ds["B04"].values, values()[:1, 1], equal_nan=True)
    # Renaming part of the dates: the others stay as RFC 3339 text (mixed kinds as text).
    out = run(services, "rename_labels", data=make_cube(), dimension="t",
              source=["2020-06-03"], target=[5])
    assert out.dim("t").type == OTHER
    assert list(out.data.coords["t"].values) == [
        "2020-06-01T00:00:00Z", 5, "2020-06-06T00:00:00Z", "2020-06-09T00:00:00Z"]
    written = write_result(out, "netCDF", {}, tmp_path / "mixed")[0].path
    with xr.open_dataset(written) as ds:
        assert list(ds["t"].values)[:2] == ["2020-06-01T00:00:00Z", "5"]
    # "today" is not an RFC 3339 date, even if pandas would parse it.
    out = run(services, "rename_labels", data=cube, dimension="t", source=labels,
              target=["today"])
    assert out.dim("t").type == OTHER


def test_rename_labels_of_enumerated_labels(services):
    out = run(services, "apply_dimension", data=make_cube(), dimension="t",
              process=callback("tc_extrema", data=p("data")))
    out = run(services, "rename_labels", data=out, dimension="t", target=["min"])
    assert list(out.data.coords["t"].values) == ["min", 1]


def test_dimension_labels(services):
    cube = make_cube()
    assert run(services, "dimension_labels", data=cube, dimension="t") == [
        "2020-06-01T00:00:00Z", "2020-06-03T00:00:00Z", "2020-06-06T00:00:00Z",
        "2020-06-09T00:00:00Z"]
    assert run(services, "dimension_labels", data=cube, dimension="bands") == BAND_NAMES
    assert run(services, "dimension_labels", data=cube, dimension="x") == list(X)


def test_flatten_and_unflatten_round_trip(services):
    cube = make_cube()
    flat = run(services, "flatten_dimensions", data=cube, dimensions=["t", "bands"],
               target_dimension="tb")
    assert is_lazy(flat)
    assert names(flat) == ["tb", "y", "x"]
    labels = list(flat.data.coords["tb"].values)
    assert labels[:2] == ["2020-06-01T00:00:00Z~B02", "2020-06-01T00:00:00Z~B04"]
    np.testing.assert_allclose(flat.data.values, values().reshape(12, 3, 5), equal_nan=True)
    back = run(services, "unflatten_dimension", data=flat, dimension="tb",
               target_dimensions=["time", "band"])
    assert names(back) == ["time", "band", "y", "x"]
    assert list(back.data.coords["band"].values) == BAND_NAMES
    np.testing.assert_allclose(back.data.values, values(), equal_nan=True)
    with pytest.raises(errors.OpenEOError) as info:
        run(services, "flatten_dimensions", data=cube, dimensions=["t", "bands"],
            target_dimension="x")
    assert info.value.code == "TargetDimensionExists"


def test_trim_cube_removes_empty_edges_and_bands(services):
    v = values()
    v[:, :, 0, :] = np.nan  # first row empty
    v[:, 1] = np.nan  # second band empty
    v[:, :, :, 4] = np.nan  # last column empty
    out = run(services, "trim_cube", data=make_cube(v))
    assert is_lazy(out)
    np.testing.assert_array_equal(out.data.coords["y"].values, Y[1:])
    np.testing.assert_array_equal(out.data.coords["x"].values, X[:4])
    assert list(out.data.coords["bands"].values) == ["B02", "B08"]


def test_create_data_cube_then_add_dimensions(services):
    cube = run(services, "create_data_cube")
    assert cube.dimensions == () and is_lazy(cube)
    cube = run(services, "add_dimension", data=cube, name="x", label=1.5, type="spatial")
    assert cube.dimensions == (Dimension("x", SPATIAL, "x"),)


# --- ndvi, mask, merge_cubes ------------------------------------------------------------------
def test_ndvi_by_common_names(services):
    cube = make_cube()
    out = run(services, "ndvi", data=cube)
    v = values()
    expected = (v[:, 2] - v[:, 1]) / (v[:, 2] + v[:, 1])
    assert is_lazy(out)
    assert names(out) == ["t", "y", "x"]
    np.testing.assert_allclose(out.data.values, expected, equal_nan=True)
    kept = run(services, "ndvi", data=cube, target_band="NDVI")
    assert list(kept.data.coords["bands"].values) == [*BAND_NAMES, "NDVI"]
    np.testing.assert_allclose(kept.data.values[:, 3], expected, equal_nan=True)
    for args, code in [({"target_band": "B02"}, "BandExists"),
                       ({"nir": "swir"}, "NirBandAmbiguous"),
                       ({"red": "B99"}, "RedBandAmbiguous")]:
        with pytest.raises(errors.OpenEOError) as info:
            run(services, "ndvi", data=cube, **args)
        assert info.value.code == code


def _spatial_mask(v: np.ndarray, y=Y, x=X) -> RasterCube:
    data = xr.DataArray(v, dims=["y", "x"], coords={"y": y, "x": x}).chunk({"y": 2})
    return RasterCube(data, (Dimension("y", SPATIAL, "y", EPSG),
                             Dimension("x", SPATIAL, "x", EPSG)))


def test_mask_broadcasts_a_spatial_mask(services):
    m = np.zeros((3, 5))
    m[1, 2:] = 1
    m[0, 0] = np.nan  # no-data in the mask does not mask
    out = run(services, "mask", data=make_cube(), mask=_spatial_mask(m))
    assert is_lazy(out)
    expected = values()
    expected[:, :, m == 1] = np.nan
    np.testing.assert_allclose(out.data.values, expected, equal_nan=True)
    out = run(services, "mask", data=make_cube(), mask=_spatial_mask(m == 1), replacement=-1)
    expected[:, :, m == 1] = -1
    np.testing.assert_allclose(out.data.values, expected, equal_nan=True)


def test_mask_keeps_integers_and_uses_nodata(services):
    ints = np.full((len(T), 3, 3, 5), 7, dtype=np.uint8)
    m = np.eye(3, 5)
    out = run(services, "mask", data=make_cube(ints, nodata=255), mask=_spatial_mask(m))
    assert out.data.dtype == np.uint8 and out.nodata == 255
    assert (out.data.values[:, :, m == 1] == 255).all()
    out = run(services, "mask", data=make_cube(ints, nodata=255), mask=_spatial_mask(m),
              replacement=-1)
    assert (out.data.values[:, :, m == 1] == -1).all()
    assert (out.data.values[:, :, m == 0] == 7).all()


def test_mask_on_a_coarser_grid_is_aligned_by_nearest_neighbour(services):
    y2 = np.array([5757490.0, 5757470.0])
    x2 = np.array([404840.0, 404860.0, 404880.0])
    coarse = np.array([[1, 0, 0], [0, 0, 1]])
    out = run(services, "mask", data=make_cube(), mask=_spatial_mask(coarse, y2, x2))
    masked = np.isnan(out.data.values[0, 0]) & ~np.isnan(values()[0, 0])
    assert masked[0, 0] and masked[0, 1] and masked[2, 4]
    assert not masked[0, 2] and not masked[2, 0]


def test_mask_without_some_dates_of_the_data_leaves_them_unmasked(services):
    # CDSE joins mask and data (a left outer join): the mask's load had max_cloud_cover, the
    # data's none (CDSE's Whittaker notebook)
    everything = make_cube(np.ones((len(T), 3, 3, 5)))
    some_dates = run(services, "filter_temporal", data=everything, extent=[str(T[1]), None])
    out = run(services, "mask", data=make_cube(), mask=some_dates)
    got = out.data.values
    np.testing.assert_allclose(got[0], values()[0], equal_nan=True)  # no mask for T[0]
    assert np.isnan(got[1:]).all()


def test_mask_incompatible(services):
    other = RasterCube(xr.DataArray(np.ones(2), dims=["z"]).chunk(), (Dimension("z", OTHER),))
    with pytest.raises(errors.OpenEOError) as info:
        run(services, "mask", data=make_cube(), mask=other)
    assert info.value.code == "IncompatibleDataCubes"


def test_merge_cubes_appends_bands_without_resolver(services):
    cube = make_cube()
    a = run(services, "filter_bands", data=cube, bands=["B02", "B04"])
    b = run(services, "filter_bands", data=cube, bands=["B08"])
    out = run(services, "merge_cubes", cube1=a, cube2=b)
    assert is_lazy(out)
    assert list(out.data.coords["bands"].values) == BAND_NAMES
    np.testing.assert_allclose(out.data.values, values(), equal_nan=True)
    assert list(out.attrs["band_metadata"]) == BAND_NAMES


def test_merge_cubes_overlap_needs_a_resolver(services):
    cube = make_cube()
    a = run(services, "filter_temporal", data=cube, extent=["2020-06-01", "2020-06-07"])
    b = run(services, "filter_temporal", data=cube, extent=["2020-06-03", None])
    with pytest.raises(errors.OpenEOError) as info:
        run(services, "merge_cubes", cube1=a, cube2=b)
    assert info.value.code == "OverlapResolverMissing"
    out = run(services, "merge_cubes", cube1=a, cube2=b,
              overlap_resolver=callback("tc_add", x=p("x"), y=p("y")))
    assert len([c for c in CALLS if c[0] == "tc_add"]) == 1
    assert is_lazy(out)
    np.testing.assert_array_equal(out.data.coords["t"].values, T)
    v = values()
    expected = v.copy()
    expected[1:3] = v[1:3] * 2
    np.testing.assert_allclose(out.data.values, expected, equal_nan=True)


def test_merge_cubes_with_a_lower_dimensional_cube(services):
    cube = make_cube()
    dem = _spatial_mask(np.arange(15.0).reshape(3, 5))
    out = run(services, "merge_cubes", cube1=cube, cube2=dem,
              overlap_resolver=callback("tc_add", x=p("x"), y=p("y")))
    assert names(out) == ["t", "bands", "y", "x"]
    np.testing.assert_allclose(out.data.values, values() + np.arange(15.0).reshape(3, 5),
                               equal_nan=True)


def test_merge_cubes_spatial_tiles(services):
    cube = make_cube()
    left = run(services, "filter_bbox", data=cube, extent={
        "west": 404830, "east": 404850, "south": 5757470, "north": 5757500, "crs": EPSG})
    right = run(services, "filter_bbox", data=cube, extent={
        "west": 404850, "east": 404880, "south": 5757470, "north": 5757500, "crs": EPSG})
    out = run(services, "merge_cubes", cube1=right, cube2=left)
    np.testing.assert_array_equal(out.data.coords["x"].values, X)
    np.testing.assert_allclose(out.data.values, values(), equal_nan=True)


def tc_single_only(x, y):
    """A condition process that only accepts single numbers (like many text processes)."""
    if not isinstance(x, (int, float)):
        raise errors.ProcessParameterInvalid("single values only", argument="x")
    return x > y


def test_filter_labels_falls_back_to_single_labels(services):
    services = Services(registry=services.registry.with_processes(
        {"tc_single_only": tc_single_only}))
    out = run(services, "filter_labels", data=make_cube(), dimension="x",
              condition=callback("tc_single_only", x=p("value"), y=404850))
    np.testing.assert_array_equal(out.data.coords["x"].values, X[2:])
