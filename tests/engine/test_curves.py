"""fit_curve / predict_curve: a seasonal curve per pixel recovered, checked against scipy."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from scipy.optimize import curve_fit

from terracube import errors
from terracube.datacube.cube import OTHER, SPATIAL, TEMPORAL, Dimension, RasterCube, is_lazy
from terracube.engine.evaluate import Evaluator, Services

YEAR = 31557600.0
OMEGA = 2 * np.pi / YEAR
T = np.arange("2020-01-01", "2021-01-01", 12, dtype="datetime64[D]").astype("datetime64[ns]")
SECONDS = T.astype(np.int64) / 1e9
Y = np.array([20.0, 10.0, 0.0])
X = np.array([1.0, 2.0, 3.0, 4.0])


def p_ref(name: str, i: int) -> dict:
    return {"process_id": "array_element",
            "arguments": {"data": {"from_parameter": name}, "index": i}}


def op(process_id: str, x: str, y: str, result: bool = False) -> dict:
    """A binary process on two nodes (or the parameter x, written as "$x")."""
    def ref(v: str) -> dict:
        return {"from_parameter": "x"} if v == "$x" else {"from_node": v}
    node = {"process_id": process_id, "arguments": {"x": ref(x), "y": ref(y)}}
    return {**node, "result": True} if result else node


# f(x) = a + b cos(w x) + c sin(w x), as an openEO process graph
SEASONAL = {
    "a": p_ref("parameters", 0), "b": p_ref("parameters", 1), "c": p_ref("parameters", 2),
    "wx": {"process_id": "multiply", "arguments": {"x": OMEGA, "y": {"from_parameter": "x"}}},
    "cos": {"process_id": "cos", "arguments": {"x": {"from_node": "wx"}}},
    "sin": {"process_id": "sin", "arguments": {"x": {"from_node": "wx"}}},
    "bc": op("multiply", "b", "cos"),
    "cs": op("multiply", "c", "sin"),
    "s1": op("add", "a", "bc"),
    "s2": op("add", "s1", "cs", result=True),
}

# f(x) = a * exp(b * x): non-linear in the parameters
EXPONENTIAL = {
    "a": p_ref("parameters", 0), "b": p_ref("parameters", 1),
    "bx": op("multiply", "b", "$x"),
    "e": {"process_id": "exp", "arguments": {"p": {"from_node": "bx"}}},
    "r": op("multiply", "a", "e", result=True),
}


def seasonal(x, a, b, c):
    return a + b * np.cos(OMEGA * x) + c * np.sin(OMEGA * x)


def true_parameters() -> np.ndarray:
    rng = np.random.default_rng(7)
    return np.stack([rng.uniform(0.2, 0.6, (len(Y), len(X))),
                     rng.uniform(-0.3, 0.3, (len(Y), len(X))),
                     rng.uniform(-0.3, 0.3, (len(Y), len(X)))])


def observed(noise: float = 0.01) -> np.ndarray:
    a, b, c = true_parameters()
    v = seasonal(SECONDS[:, None, None], a, b, c)
    v = v + np.random.default_rng(3).normal(0, noise, v.shape)
    v[5, 0, 0] = np.nan
    v[:, 2, 3] = np.nan  # a pixel without data
    return v


def make_cube(v: np.ndarray) -> RasterCube:
    data = xr.DataArray(v, dims=["t", "y", "x"], coords={"t": T, "y": Y, "x": X}).chunk(
        {"t": 10, "y": 2, "x": 2})
    dims = (Dimension("t", TEMPORAL), Dimension("y", SPATIAL, "y", 4326),
            Dimension("x", SPATIAL, "x", 4326))
    return RasterCube(data, dims)


def run(registry, graph: dict, **params):
    return Evaluator(Services(registry=registry)).run(graph, params)


def fit_graph(function: dict, p0: list) -> dict:
    return {"fit": {"process_id": "apply_dimension", "arguments": {
        "data": {"from_parameter": "cube"}, "dimension": "t",
        "process": {"process_graph": {"f": {"process_id": "fit_curve", "arguments": {
            "data": {"from_parameter": "data"}, "parameters": p0,
            "function": {"process_graph": function}}, "result": True}}}}, "result": True}}


def test_seasonal_parameters_are_recovered(registry) -> None:
    v = observed()
    out = run(registry, fit_graph(SEASONAL, [0, 0, 0]), cube=make_cube(v))
    assert is_lazy(out)
    assert out.data.dims == ("t", "y", "x") and out.data.sizes["t"] == 3
    fitted = out.data.values
    expected = true_parameters()
    good = np.ones((len(Y), len(X)), dtype=bool)
    good[2, 3] = False
    np.testing.assert_allclose(fitted[:, good], expected[:, good], atol=0.02)
    assert np.isnan(fitted[:, 2, 3]).all()
    # the same optimum as scipy's curve_fit, pixel by pixel
    for iy, ix in [(0, 0), (1, 2), (2, 0)]:
        ok = np.isfinite(v[:, iy, ix])
        popt, _ = curve_fit(seasonal, SECONDS[ok], v[ok, iy, ix], p0=[0, 0, 0])
        np.testing.assert_allclose(fitted[:, iy, ix], popt, rtol=1e-5, atol=1e-7)


def test_predict_curve_with_fitted_parameters(registry) -> None:
    v = observed(noise=0.0)
    graph = fit_graph(SEASONAL, [0, 0, 0])
    graph["fit"].pop("result")
    labels = ["2021-03-01", "2021-07-15T12:00:00Z"]
    graph["pred"] = {"process_id": "predict_curve", "arguments": {
        "parameters": {"from_node": "fit"}, "dimension": "t", "labels": labels,
        "function": {"process_graph": SEASONAL}}, "result": True}
    out = run(registry, graph, cube=make_cube(v))
    assert is_lazy(out)
    assert out.data.dims == ("t", "y", "x")
    assert out.dim("t").type == TEMPORAL
    times = np.array(["2021-03-01T00:00", "2021-07-15T12:00"], dtype="datetime64[ns]")
    np.testing.assert_array_equal(out.data.coords["t"].values, times)
    a, b, c = true_parameters()
    expected = seasonal(times.astype(np.int64)[:, None, None] / 1e9, a, b, c)
    got = out.data.values
    np.testing.assert_allclose(got[:, :2, :], expected[:, :2, :], atol=1e-6)
    assert np.isnan(got[:, 2, 3]).all()


def test_predict_curve_numeric_labels_from_other_dimension(registry) -> None:
    params = xr.DataArray(np.array([[2.0, 0.5], [1.0, -1.0]]), dims=["p", "x"],
                          coords={"p": [0, 1], "x": [1.0, 2.0]})
    cube = RasterCube(params, (Dimension("p", OTHER), Dimension("x", SPATIAL, "x", 4326)))
    graph = {"pred": {"process_id": "predict_curve", "arguments": {
        "parameters": {"from_parameter": "cube"}, "dimension": "z", "labels": [0, 1, 2],
        "function": {"process_graph": EXPONENTIAL}}, "result": True}}
    out = run(registry, graph, cube=cube)
    assert out.data.dims == ("z", "x")
    expected = np.array([[2 * np.exp(1 * z), 0.5 * np.exp(-z)] for z in (0, 1, 2)])
    np.testing.assert_allclose(out.data.values, expected)


def test_fit_curve_on_a_labeled_list_matches_scipy(registry) -> None:
    xs = [0.0, 1.0, 2.0, 3.0, 4.0]
    ys = [1.1, 1.9, 4.2, 7.8, 16.5]
    graph = {"arr": {"process_id": "array_create_labeled",
                     "arguments": {"data": ys, "labels": xs}},
             "fit": {"process_id": "fit_curve", "arguments": {
                 "data": {"from_node": "arr"}, "parameters": [1, 0.1],
                 "function": {"process_graph": EXPONENTIAL}}, "result": True}}
    out = run(registry, graph)
    popt, _ = curve_fit(lambda x, a, b: a * np.exp(b * x), xs, ys, p0=[1, 0.1])
    np.testing.assert_allclose(out, popt, rtol=1e-5)


def test_fit_curve_without_enough_values_gives_nodata(registry) -> None:
    v = np.full((len(T), 1, 1), np.nan)
    v[:2, 0, 0] = [1.0, 2.0]
    cube = RasterCube(xr.DataArray(v, dims=["t", "y", "x"],
                                   coords={"t": T, "y": [0.0], "x": [0.0]}),
                      (Dimension("t", TEMPORAL), Dimension("y", SPATIAL, "y"),
                       Dimension("x", SPATIAL, "x")))
    out = run(registry, fit_graph(SEASONAL, [0, 0, 0]), cube=cube)
    assert np.isnan(out.data.values).all()


def test_fit_curve_needs_parameters(registry) -> None:
    with pytest.raises(errors.ProcessParameterInvalid):
        run(registry, fit_graph(SEASONAL, []), cube=make_cube(observed()))


def test_predict_curve_needs_labels(registry) -> None:
    graph = {"pred": {"process_id": "predict_curve", "arguments": {
        "parameters": {"from_parameter": "cube"}, "dimension": "t",
        "function": {"process_graph": SEASONAL}}, "result": True}}
    with pytest.raises(errors.ProcessParameterInvalid, match="labels"):
        run(registry, graph, cube=make_cube(observed()))


# --- the openEO 1.x cube forms (the client's DataCube.fit_curve / predict_curve) -------------
def test_fit_curve_of_a_cube_along_a_dimension(registry) -> None:
    v = observed()
    graph = {"fit": {"process_id": "fit_curve", "arguments": {
        "data": {"from_parameter": "cube"}, "parameters": [0, 0, 0], "dimension": "t",
        "function": {"process_graph": SEASONAL}}, "result": True}}
    out = run(registry, graph, cube=make_cube(v))
    assert out.data.dims == ("param", "y", "x")
    assert out.dim("param").type == OTHER
    np.testing.assert_array_equal(out.data.coords["x"].values, X)
    by_array = run(registry, fit_graph(SEASONAL, [0, 0, 0]), cube=make_cube(v)).data.values
    np.testing.assert_allclose(out.data.values, by_array, equal_nan=True)


def test_fit_curve_of_a_cube_needs_an_existing_dimension(registry) -> None:
    base = {"process_id": "fit_curve", "arguments": {
        "data": {"from_parameter": "cube"}, "parameters": [0, 0, 0],
        "function": {"process_graph": SEASONAL}}, "result": True}
    with pytest.raises(errors.ProcessParameterInvalid, match="dimension to fit along"):
        run(registry, {"fit": base}, cube=make_cube(observed()))
    base["arguments"]["dimension"] = "time"
    with pytest.raises(errors.OpenEOError, match="no dimension 'time'"):
        run(registry, {"fit": base}, cube=make_cube(observed()))


def test_predict_curve_with_data_fills_its_gaps_or_predicts_its_labels(registry) -> None:
    v = observed(noise=0.0)
    graph = {"fit": {"process_id": "fit_curve", "arguments": {
        "data": {"from_parameter": "cube"}, "parameters": [0, 0, 0], "dimension": "t",
        "function": {"process_graph": SEASONAL}}}}
    for labels in ([], None):
        graph["pred"] = {"process_id": "predict_curve", "arguments": {
            "data": {"from_parameter": "cube"}, "parameters": {"from_node": "fit"},
            "dimension": "t", "labels": labels, "function": {"process_graph": SEASONAL}},
            "result": True}
        got = run(registry, graph, cube=make_cube(v)).data.values
        a, b, c = true_parameters()
        predicted = seasonal(SECONDS[:, None, None], a, b, c)
        expected = predicted if labels == [] else np.where(np.isnan(v), predicted, v)
        np.testing.assert_allclose(got[:, :2, :], expected[:, :2, :], atol=1e-6)
