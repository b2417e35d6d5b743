"""Curve fitting: `fit_curve` and `predict_curve` (experimental proposals).

`fit_curve` is an array process: `data` is a labeled array whose labels are the independent
variable x and whose values are y (the spec's text has the two swapped; its model is
`y = f(x, parameters)`). Inside `apply_dimension` over a cube dimension it fits every pixel at
once: a vectorised Levenberg–Marquardt (finite-difference Jacobian, per-pixel damping) runs
block by block with the fitted dimension whole, and the model function (the `function`
callback) is called with whole arrays: `x` along the dimension and `parameters` an array whose
elements are per-pixel arrays. It finds the least-squares optimum that
`scipy.optimize.curve_fit` (method "lm") finds for one pixel.

x for temporal labels: seconds since 1970-01-01T00:00:00Z (the convention of the openEO curve
fitting examples, e.g. `cos(2 * PI / 31557600 * x)` for a yearly period); numeric labels are
taken as they are. `predict_curve` uses the same convention for date/date-time labels.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from terracube import errors
from terracube import process_errors as pe
from terracube.datacube.cube import OTHER, TEMPORAL, Dimension, RasterCube
from terracube.datacube.values import ArrayValue, as_array, is_number, numbers, single_chunk
from terracube.engine.evaluate import Callback
from terracube.engine.processes.cubes import conform, nodata_as_nan
from terracube.engine.registry import process

PARAM_DIM = "__parameters__"
_PIXEL_DIM = "__pixel__"
MAX_ITERATIONS = 200
_TOLERANCE = 1e-10


# --- x values --------------------------------------------------------------------------------
def x_values(labels: Any) -> np.ndarray:
    """The independent variable for dimension labels: numbers as floats, temporal labels
    (datetime64 or date strings) as seconds since the Unix epoch."""
    arr = np.asarray(labels)
    if arr.dtype.kind == "M":
        return arr.astype("datetime64[ns]").astype(np.int64) / 1e9
    if arr.dtype.kind in "iuf":
        return arr.astype(float)
    values = [v.item() if isinstance(v, np.generic) else v for v in arr.tolist()]
    if values and all(is_number(v) for v in values):
        return np.asarray(values, dtype=float)
    if values and all(isinstance(v, str) for v in values):
        try:
            times = pd.to_datetime(values, utc=True, format="ISO8601")
        except (ValueError, TypeError) as exc:
            raise ValueError(f"labels must be numbers or dates: {exc}") from exc
        return times.tz_localize(None).values.astype("datetime64[ns]").astype(np.int64) / 1e9
    raise ValueError("the labels must be numbers or dates to serve as x")


def _initial(parameters: Any) -> np.ndarray:
    if isinstance(parameters, ArrayValue):
        parameters = list(np.asarray(parameters.data.values).ravel())
    if not isinstance(parameters, (list, tuple)) or not parameters:
        raise errors.ProcessParameterInvalid(
            "parameters must be a non-empty array of numbers (the initial guess).",
            argument="parameters")
    if not all(is_number(v) for v in parameters):
        raise errors.ProcessParameterInvalid("parameters must all be numbers.",
                                             argument="parameters")
    return np.asarray(parameters, dtype=float)


# --- the model function, vectorised over pixels ------------------------------------------------
def _model(function: Callback, x: np.ndarray, p: np.ndarray, dim: str) -> np.ndarray:
    """f(x, p) for every pixel: p is (M, k), the result (M, n)."""
    xs = xr.DataArray(x, dims=[dim])
    ps = ArrayValue(xr.DataArray(p, dims=[_PIXEL_DIM, PARAM_DIM]), PARAM_DIM)
    out = function(x=xs, data=xs, parameters=ps)  # data: x's name in openEO 1.x
    if isinstance(out, ArrayValue):
        out = out.data
    if not isinstance(out, xr.DataArray):
        if out is None:
            out = np.nan
        return np.full((p.shape[0], len(x)), float(out))
    extra = [d for d in out.dims if d not in (_PIXEL_DIM, dim)]
    if extra:
        raise errors.ProcessParameterInvalid(
            f"The model function returned values along {', '.join(map(str, extra))}; it must "
            "return one number for x.", argument="function")
    out = out.drop_vars(list(out.coords))
    if _PIXEL_DIM not in out.dims:
        out = out.expand_dims({_PIXEL_DIM: p.shape[0]})
    if dim not in out.dims:
        out = out.expand_dims({dim: len(x)})
    return np.asarray(out.transpose(_PIXEL_DIM, dim).values, dtype=float)


def levenberg_marquardt(function: Callback, x: np.ndarray, y: np.ndarray, p0: np.ndarray,
                        dim: str, ignore_nodata: bool = True) -> np.ndarray:
    """Least-squares parameters (M, k) for the curves y (M, n) over x (n), all pixels at once.

    Pixels with fewer valid values than parameters (or, without ignore_nodata, with any
    no-data value) get NaN.
    """
    m, _ = y.shape
    k = len(p0)
    valid = np.isfinite(y)
    w = valid.astype(float)
    yz = np.where(valid, y, 0.0)
    enough = valid.sum(axis=1) >= k
    if not ignore_nodata:
        enough &= valid.all(axis=1)
    result = np.full((m, k), np.nan)
    if not enough.any():
        return result
    yz, w = yz[enough], w[enough]
    p = np.tile(p0, (yz.shape[0], 1))
    with np.errstate(all="ignore"):
        f = _model(function, x, p, dim)
        cost = np.sum(((yz - f) * w) ** 2, axis=1)
        lam = np.full(p.shape[0], 1e-3)
        active = np.ones(p.shape[0], dtype=bool)
        eps = np.sqrt(np.finfo(float).eps)
        for _ in range(MAX_ITERATIONS):
            if not active.any():
                break
            idx = np.flatnonzero(active)
            pa, fa = p[idx], f[idx]
            h = eps * np.maximum(np.abs(pa), 1.0)
            jac = np.empty((len(idx), yz.shape[1], k))
            for j in range(k):
                shifted = pa.copy()
                shifted[:, j] += h[:, j]
                jac[:, :, j] = (_model(function, x, shifted, dim) - fa) / h[:, j, None]
            jac *= w[idx, :, None]
            r = (yz[idx] - fa) * w[idx]
            a = np.einsum("mni,mnj->mij", jac, jac)
            g = np.einsum("mni,mn->mi", jac, r)
            diag = np.einsum("mii->mi", a)
            damped = a + (lam[idx, None] * np.maximum(diag, 1e-12))[:, :, None] * np.eye(k)
            try:
                delta = np.linalg.solve(damped, g[:, :, None])[:, :, 0]
            except np.linalg.LinAlgError:
                delta = np.stack([np.linalg.lstsq(d, v, rcond=None)[0]
                                  for d, v in zip(damped, g, strict=True)])
            trial = pa + delta
            ft = _model(function, x, trial, dim)
            ct = np.sum(((yz[idx] - ft) * w[idx]) ** 2, axis=1)
            better = np.isfinite(ct) & (ct <= cost[idx])
            small = np.abs(delta) <= _TOLERANCE * (np.abs(pa) + _TOLERANCE)
            gain = np.abs(cost[idx] - ct) <= _TOLERANCE * np.maximum(cost[idx], 1e-300)
            ok = idx[better]
            p[ok], f[ok], cost[ok] = trial[better], ft[better], ct[better]
            lam[idx] = np.where(better, lam[idx] / 10, lam[idx] * 10)
            done = (better & (small.all(axis=1) | gain)) | (lam[idx] > 1e16)
            active[idx[done]] = False
    result[enough] = p
    return result


# --- processes ------------------------------------------------------------------------------
# The dimension that holds the fitted parameters in the openEO 1.x cube form of fit_curve
# (as openeo-processes-dask names it); predict_curve takes it as its only `other` dimension.
PARAM_CUBE_DIM = "param"


@process()
def fit_curve(data: Any, parameters: Any, function: Callback,
              ignore_nodata: bool = True, dimension: str | None = None) -> Any:
    """Least-squares parameters of `function` for the labeled array `data` (x = labels).

    Also the openEO 1.x form that the openeo client's `DataCube.fit_curve` sends (and the
    openEO Platform curve fitting examples use): `data` a cube and `dimension` the dimension to
    fit along, replaced in the result by the dimension `param` (labels 0, 1, ...)."""
    if isinstance(data, RasterCube):
        return _fit_curve_of_cube(data, parameters, function, bool(ignore_nodata), dimension)
    if dimension is not None:
        raise errors.ProcessParameterInvalid(
            "dimension is only for a data cube as data (openEO 1.x); inside apply_dimension "
            "the array is fitted along its own dimension.", argument="dimension")
    p0 = _initial(parameters)
    arr = as_array(data)
    if arr.dim not in arr.data.coords:
        raise pe.ArrayNotLabeled(
            "fit_curve needs a labeled array: its labels are the x values.", argument="data")
    try:
        x = x_values(arr.data.coords[arr.dim].values)
    except ValueError:  # e.g. band names: a dimension whose labels are no x values
        raise errors.ProcessParameterInvalid(
            f"The labels of '{arr.dim}' are the x values of the fit, so they must be numbers "
            "or dates; fit along a temporal dimension such as 't'.",
            argument="data") from None
    y = numbers(arr).astype(float)
    dim = arr.dim

    def kernel(values: np.ndarray) -> np.ndarray:
        shape = values.shape[:-1]
        flat = values.reshape(-1, values.shape[-1])
        fitted = levenberg_marquardt(function, x, flat, p0, dim, bool(ignore_nodata))
        return fitted.reshape((*shape, len(p0)))

    if arr.is_list:
        fitted = kernel(np.asarray(y.values, dtype=float)[None, :])[0]
        return [None if np.isnan(v) else float(v) for v in fitted]
    y = single_chunk(y.drop_vars(list(y.coords)), dim)
    out = xr.apply_ufunc(kernel, y, input_core_dims=[[dim]], output_core_dims=[[PARAM_DIM]],
                         exclude_dims={dim}, dask="parallelized", output_dtypes=[float],
                         dask_gufunc_kwargs={"output_sizes": {PARAM_DIM: len(p0)}})
    return ArrayValue(out, PARAM_DIM)


def _fit_curve_of_cube(data: RasterCube, parameters: Any, function: Callback,
                       ignore_nodata: bool, dimension: str | None) -> RasterCube:
    if dimension is None:
        raise errors.ProcessParameterInvalid(
            "fit_curve of a data cube needs the dimension to fit along (e.g. 't'), or use "
            "fit_curve as the process of apply_dimension.", argument="dimension")
    if data.dim(dimension) is None:
        raise pe.DimensionNotAvailable(
            f"The data cube has no dimension '{dimension}'; dimensions: "
            f"{', '.join(d.name for d in data.dimensions)}.", argument="dimension")
    try:
        x_values(data.labels(dimension))
    except ValueError:  # e.g. band names
        raise errors.ProcessParameterInvalid(
            f"The labels of '{dimension}' ({', '.join(map(str, data.labels(dimension)[:4]))}) "
            "are the x values of the fit, so they must be numbers or dates; fit along a "
            "temporal dimension such as 't'.",
            argument="dimension") from None
    cube = nodata_as_nan(data)
    fitted = fit_curve(ArrayValue(cube.data, dimension, labeled=True), parameters, function,
                       ignore_nodata)
    names = [d.name for d in cube.dimensions]
    order = [PARAM_CUBE_DIM if n == dimension else n for n in names]
    out = fitted.data.rename({PARAM_DIM: PARAM_CUBE_DIM}).transpose(*order)
    kept = {k: v for k, v in cube.data.coords.items() if dimension not in v.dims}
    out = out.assign_coords({**kept, PARAM_CUBE_DIM: np.arange(out.sizes[PARAM_CUBE_DIM])})
    dims = tuple(Dimension(PARAM_CUBE_DIM, OTHER) if d.name == dimension else d
                 for d in cube.dimensions)
    return cube.with_data(out, dims)


def _parameter_dimension(cube: RasterCube, dimension: str) -> str:
    if cube.dim(dimension) is not None:
        return dimension
    others = [d.name for d in cube.dimensions if d.type == OTHER]
    if len(others) == 1:
        return others[0]
    raise pe.DimensionNotAvailable(
        f"The parameters cube has no dimension '{dimension}' holding the parameters (and "
        f"not exactly one dimension of type other); dimensions: "
        f"{', '.join(d.name for d in cube.dimensions)}.", argument="dimension")


@process()
def predict_curve(parameters: RasterCube, function: Callback, dimension: str,
                  labels: list | None = None, data: Any = None) -> RasterCube:
    """The model function evaluated for `labels` with the per-pixel parameters.

    The parameters are the values along `dimension` (as apply_dimension(fit_curve) leaves
    them) or, if the cube lacks `dimension`, along its only dimension of type other (`param`
    of the 1.x fit_curve); that dimension is replaced by `dimension` with the given labels.
    `data` (openEO 1.x, what the client's `DataCube.predict_curve` sends) is not needed: the
    labels say where to predict.
    """
    if not isinstance(parameters, RasterCube):
        raise errors.ProcessParameterInvalid("parameters must be a data cube.",
                                             argument="parameters")
    fill_gaps = False
    observed = data if isinstance(data, RasterCube) else None  # `data` is reused below
    if observed is not None and (labels is None or labels == []):
        # openEO 1.x with `data`: null labels predict the no-data values of `data` (its
        # description), an empty array every label of `data` (the openEO Platform's UC6
        # graphs); both need the labels of `data`.
        if observed.dim(dimension) is None:
            raise pe.DimensionNotAvailable(
                f"data has no dimension '{dimension}'.", argument="dimension")
        fill_gaps = labels is None
        labels = _label_list(observed.labels(dimension))
    if labels is None:
        raise errors.ProcessParameterInvalid(
            "predict_curve needs labels: predicting only the no-data values of the fitted "
            "data (labels null) needs that data as `data`.", argument="labels")
    if not isinstance(labels, (list, tuple)) or not labels:
        raise errors.ProcessParameterInvalid("labels must be a non-empty array.",
                                             argument="labels")
    if len(set(map(str, labels))) != len(labels):
        raise errors.ProcessParameterInvalid("labels must be unique.", argument="labels")
    try:
        x = x_values(list(labels))
    except ValueError as exc:
        raise errors.ProcessParameterInvalid(str(exc), argument="labels") from exc
    temporal = all(isinstance(v, str) for v in labels)
    coords = (pd.to_datetime(list(labels), utc=True, format="ISO8601").tz_localize(None)
              .values.astype("datetime64[ns]") if temporal else np.asarray(labels))
    cube = nodata_as_nan(parameters)
    pdim = _parameter_dimension(cube, dimension)
    data = cube.data
    if data.dtype.kind != "f":
        data = data.astype(np.float64)
    pvals = data.drop_vars([pdim] if pdim in data.coords else []).rename({pdim: PARAM_DIM})
    names = [d.name for d in cube.dimensions]
    pos = names.index(pdim)
    template = pvals.isel({PARAM_DIM: 0}, drop=True).expand_dims({dimension: len(x)}, axis=pos)
    template = template.assign_coords({dimension: coords})
    xs = xr.DataArray(x, dims=[dimension])
    result = function(x=xs, data=xs, parameters=ArrayValue(pvals, PARAM_DIM))  # data: 1.x
    if isinstance(result, ArrayValue) and result.dim == PARAM_DIM:
        raise errors.ProcessParameterInvalid(
            "The model function returned an array; it must return one number for x.",
            argument="function")
    out = conform(result, template, "function")
    new_dim = Dimension(dimension, TEMPORAL if temporal else OTHER)
    dims = tuple(new_dim if d.name == pdim else d for d in cube.dimensions)
    if fill_gaps and observed is not None:
        given = nodata_as_nan(observed).data.transpose(*out.dims)
        out = given.where(given.notnull(), out.assign_coords(given.coords))
    return cube.with_data(out, dims)


def _label_list(labels: Any) -> list[Any]:
    """Dimension labels as predict_curve's `labels` takes them: dates as RFC 3339 strings."""
    arr = np.asarray(labels)
    if arr.dtype.kind == "M":
        return [f"{v}Z" for v in np.datetime_as_string(arr.astype("datetime64[s]"))]
    return [v.item() if isinstance(v, np.generic) else v for v in arr.tolist()]
