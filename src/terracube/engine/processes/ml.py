"""Machine learning processes: random forests (scikit-learn) trained on vector cubes, applied
lazily to data cubes, saved to and loaded from files.

Names: the openEO 1.x processes used by CDSE and the openeo client (fit_class_random_forest,
fit_regr_random_forest, predict_random_forest as the reducer of reduce_dimension, load_ml_model
with `id`) and the 2.x ones of openeo-processes/ml (ml_fit_*, ml_predict, load_ml_model with
`uri`) share one implementation.

Training computes its samples when the training process is evaluated: they are one row per
training geometry (small), and a model must be one concrete object so that every chunk of a
prediction, every tile of a preview and every later request uses the same trees instead of
retraining. Prediction never computes: it is a dask map over blocks of pixels with the
feature dimensions whole, and the fitted model is one key in the dask graph.
"""

from __future__ import annotations

import json
import math
import re
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
import xarray as xr

from terracube import errors
from terracube import process_errors as pe
from terracube.datacube.cube import BANDS, OTHER, TEMPORAL, Dimension, RasterCube, require_dimension
from terracube.datacube.values import as_array, numbers
from terracube.datacube.vector import GEOMETRY_DIM, VectorCube
from terracube.engine.evaluate import ProcessContext, SavedResult
from terracube.engine.mlmodel import (
    CLASSIFICATION,
    MODEL_FORMAT,
    REGRESSION,
    FeatureAxis,
    MlModel,
    ModelFileInvalid,
    find_model_item,
    json_labels,
    model_files,
    read_model,
    read_model_file,
    signing_key,
)
from terracube.engine.ports import WorkspaceAccess
from terracube.engine.processes.cubes import nodata_as_nan
from terracube.engine.processes.rasterise import vector_input
from terracube.engine.registry import process
from terracube.url_policy import FetchRefused, check_fetch, remote_only

PREDICTIONS_DIM = "predictions"  # ml_predict: the dimension of the predicted values
TARGET_PROPERTY = "target"  # the feature property with the value to learn (1.x convention)
MODEL_FOLDER = "ml-models"  # save_ml_model writes here inside the user's workspace
DEFAULT_MODEL_NAME = "ml_model"
_MAX_VARIABLES = ("all", "log2", "onethird", "sqrt")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_BLOCK_BYTES = 256 * 2**20  # largest block of features handed to one predict call
_MAX_ITEM_BYTES = 10 * 2**20
_MAX_MODEL_BYTES = 2 * 2**30
_HTTP_TIMEOUT_S = 60


# --- training ---------------------------------------------------------------------------------
@process("fit_class_random_forest")
@process("ml_fit_class_random_forest")
def fit_class_random_forest(predictors: Any, target: Any, max_variables: Any = None,
                            num_trees: int = 100, seed: int | None = None, *,
                            ctx: ProcessContext) -> MlModel:
    """Train a random forest classifier; `max_variables` null means `sqrt`."""
    return _fit(CLASSIFICATION, predictors, target, max_variables, num_trees, seed, ctx)


@process("fit_regr_random_forest")
@process("ml_fit_regr_random_forest")
def fit_regr_random_forest(predictors: Any, target: Any, max_variables: Any = None,
                           num_trees: int = 100, seed: int | None = None, *,
                           ctx: ProcessContext) -> MlModel:
    """Train a random forest regressor; `max_variables` null means `onethird`."""
    return _fit(REGRESSION, predictors, target, max_variables, num_trees, seed, ctx)


def _fit(task: str, predictors: Any, target: Any, max_variables: Any, num_trees: Any,
         seed: Any, ctx: ProcessContext) -> MlModel:
    axes, samples = _predictor_samples(predictors)
    n_features = math.prod(a.size for a in axes)
    estimator = _forest(task, n_features, max_variables, num_trees, seed)
    labels = _target_values(target, len(predictors), task)
    # The one computation of training: the predictor values of the training geometries.
    table = np.asarray(samples.values, dtype=np.float64).reshape(len(predictors), n_features)
    with np.errstate(invalid="ignore"):
        usable = np.isfinite(table).all(axis=1) & np.isfinite(labels)
    if not usable.any():
        raise errors.ProcessParameterInvalid(
            "No training geometry has both a target value and valid predictor values (are the "
            "geometries inside the data, and the target property set?).", argument="predictors")
    left_out = int((~usable).sum())
    if left_out:
        ctx.warn(f"{left_out} of {len(usable)} training geometries have no target value or a "
                 "no-data predictor value and were left out of the training.")
    y = labels[usable]
    if task == CLASSIFICATION:
        y = y.astype(np.int64)
    estimator.fit(table[usable].astype(np.float32), y)
    # Predictions run block by block in dask threads: one thread per block, not per tree.
    estimator.set_params(n_jobs=1)
    parameters = {"max_variables": max_variables, "num_trees": num_trees, "seed": seed}
    trained_by = "fit_class_random_forest" if task == CLASSIFICATION else "fit_regr_random_forest"
    return MlModel(estimator, task, axes, parameters, trained_by, int(usable.sum()))


def _predictor_samples(predictors: Any) -> tuple[tuple[FeatureAxis, ...], xr.DataArray]:
    """The feature axes and the (lazy) predictor values, geometry first, then the features."""
    if not isinstance(predictors, VectorCube) or predictors.values is None:
        raise errors.ProcessParameterInvalid(
            "'predictors' must be a vector data cube with values, e.g. the result of "
            "aggregate_spatial of the data over the training geometries.", argument="predictors")
    values = predictors.values
    if values.dtype.kind not in "biuf":
        raise errors.ProcessParameterInvalid(
            f"'predictors' must hold numbers, not {values.dtype}.", argument="predictors")
    kinds = {d.name: d.type for d in predictors.dimensions}
    feature_dims = [d for d in values.dims if d != GEOMETRY_DIM]
    axes = tuple(
        FeatureAxis(str(d), int(values.sizes[d]),
                    json_labels(values.coords[d].values) if d in values.coords else (),
                    kinds.get(str(d), OTHER))
        for d in feature_dims)
    n_features = math.prod(a.size for a in axes)
    if n_features == 0:
        raise errors.ProcessParameterInvalid("'predictors' has no values per geometry.",
                                             argument="predictors")
    return axes, values.transpose(GEOMETRY_DIM, *feature_dims)


def _target_values(target: Any, count: int, task: str) -> np.ndarray:
    """The value to learn for every training geometry as float64 (NaN: none)."""
    if isinstance(target, dict):
        target = vector_input(target, "target")
    if not isinstance(target, VectorCube):
        raise errors.ProcessParameterInvalid(
            "'target' must be a vector data cube or a GeoJSON FeatureCollection whose features "
            f"have the property '{TARGET_PROPERTY}'.", argument="target")
    if len(target) != count:
        raise errors.ProcessParameterInvalid(
            f"'target' has {len(target)} geometries but 'predictors' has {count}: the "
            "predictors must be aggregated over the geometries of the target, in the same "
            "order.", argument="target")
    if target.values is not None:
        raw = _values_per_geometry(target.values)
    else:
        raw = _property_values(target.properties)
    out = np.full(count, np.nan)
    for i, v in enumerate(raw):
        if v is None:
            continue
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.number)):
            raise errors.ProcessParameterInvalid(
                f"The target values must be numbers; geometry #{i} has {v!r}. Encode classes "
                "as integers (e.g. 1 = forest, 2 = water).", argument="target")
        out[i] = float(v)
    if task == CLASSIFICATION:
        given = out[np.isfinite(out)]
        fractional = given[given != np.round(given)]
        if fractional.size:
            raise errors.ProcessParameterInvalid(
                f"Class labels must be integers, got {fractional[0]:g}; use "
                "fit_regr_random_forest for a continuous target.", argument="target")
    return out


def _values_per_geometry(values: xr.DataArray) -> list:
    others = [d for d in values.dims if d != GEOMETRY_DIM]
    for d in others:
        if values.sizes[d] == 1:
            values = values.isel({d: 0})
        elif d in values.coords and TARGET_PROPERTY in list(values.coords[d].values):
            values = values.sel({d: TARGET_PROPERTY})
        else:
            raise errors.ProcessParameterInvalid(
                f"'target' has {values.sizes[d]} values per geometry along '{d}'; it needs "
                f"one (a single label, or the label '{TARGET_PROPERTY}').", argument="target")
    raw = np.asarray(values.transpose(GEOMETRY_DIM).values)
    return [None if v is None or (isinstance(v, float) and math.isnan(v)) else v
            for v in raw.tolist()]


def _property_values(properties: tuple[dict, ...]) -> list:
    # Only `target` (the convention of the 1.x back-ends): guessing among other properties
    # would silently train on an id column.
    if not any(TARGET_PROPERTY in p for p in properties):
        found = ", ".join(sorted(set().union(*properties))) or "none"
        raise errors.ProcessParameterInvalid(
            f"Give the target features the property '{TARGET_PROPERTY}' with the value to "
            f"learn (properties found: {found}).", argument="target")
    return [p.get(TARGET_PROPERTY) for p in properties]


def _forest(task: str, n_features: int, max_variables: Any, num_trees: Any, seed: Any) -> Any:
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

    if isinstance(num_trees, bool) or not isinstance(num_trees, int) or num_trees < 1:
        raise errors.ProcessParameterInvalid(
            f"'num_trees' must be an integer of at least 1, got {num_trees!r}.",
            argument="num_trees")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise errors.ProcessParameterInvalid(f"'seed' must be an integer or null, got {seed!r}.",
                                             argument="seed")
    forest = RandomForestClassifier if task == CLASSIFICATION else RandomForestRegressor
    return forest(n_estimators=num_trees, max_features=_max_features(max_variables, n_features,
                                                                      task),
                  random_state=None if seed is None else seed % 2**32, n_jobs=-1)


def _max_features(value: Any, n_features: int, task: str) -> Any:
    """sklearn's max_features for openEO's max_variables (null: the usual default per task)."""
    if value is None:
        value = "sqrt" if task == CLASSIFICATION else "onethird"
    if isinstance(value, int) and not isinstance(value, bool):
        if not 1 <= value <= n_features:
            raise errors.ProcessParameterInvalid(
                f"'max_variables' is {value}, but there are {n_features} predictor variables.",
                argument="max_variables")
        return value
    if value == "all":
        return None
    if value == "onethird":
        return max(1, n_features // 3)
    if value in ("sqrt", "log2"):
        return value
    raise errors.ProcessParameterInvalid(
        f"'max_variables' must be an integer or one of {', '.join(_MAX_VARIABLES)}, got "
        f"{value!r}.", argument="max_variables")


# --- prediction -------------------------------------------------------------------------------
@process("predict_random_forest")
def predict_random_forest(data: Any, model: Any) -> Any:
    """The reducer of reduce_dimension: predicts one value per pixel from the whole array of
    values along the reduced dimension (all pixels at once, lazily)."""
    model = _model_input(model, "model")
    arr = as_array(data)
    values = numbers(arr)
    if arr.is_list:
        row = np.asarray(values.values, dtype=np.float64)
        if row.size != model.n_features:
            raise errors.ProcessParameterInvalid(
                f"The model needs {model.n_features} values, the array has {row.size}.",
                argument="data")
        value = float(model.predict(row)[0])
        if math.isnan(value):
            return None
        return int(value) if model.task == CLASSIFICATION else value
    return _predict(values, [arr.dim], model, "data")


@process("ml_predict")
def ml_predict(data: Any, model: Any, dimensions: list) -> Any:
    """Predict along `dimensions` (the features); they are replaced by `predictions`."""
    model = _model_input(model, "model")
    if not isinstance(dimensions, list) or not all(isinstance(d, str) for d in dimensions):
        raise errors.ProcessParameterInvalid("'dimensions' must be a list of dimension names.",
                                             argument="dimensions")
    if len(set(dimensions)) != len(dimensions):
        raise errors.ProcessParameterInvalid("'dimensions' names a dimension twice.",
                                             argument="dimensions")
    if isinstance(data, RasterCube):
        for name in dimensions:
            require_dimension(data, name, "dimensions")
        cube = nodata_as_nan(data)
        out, dims = _predictions(cube.data, cube.dimensions, dimensions, model)
        return cube.with_data(out, dims)
    if isinstance(data, VectorCube) and data.values is not None:
        for name in dimensions:
            if name not in data.values.dims:
                raise pe.DimensionNotAvailable(
                    f"Dimension '{name}' does not exist; available: "
                    f"{', '.join(map(str, data.values.dims))}.", argument="dimensions")
        if GEOMETRY_DIM in dimensions:
            raise errors.ProcessParameterInvalid(
                "The geometry dimension cannot be a feature dimension.", argument="dimensions")
        out, dims = _predictions(data.values, data.dimensions, dimensions, model)
        return data.with_values(out, dims)
    raise errors.ProcessParameterInvalid(
        f"'data' must be a data cube, got {type(data).__name__}.", argument="data")


def _predictions(values: xr.DataArray, dimensions: tuple[Dimension, ...], features: list[str],
                 model: MlModel) -> tuple[xr.DataArray, tuple[Dimension, ...]]:
    """ml_predict's result: the feature dimensions replaced by a `predictions` dimension
    (one label, "0") where the first of them was."""
    kept = [d for d in dimensions if d.name not in features]
    if any(d.name == PREDICTIONS_DIM for d in kept):
        raise pe.DimensionExists(f"The data cube already has a dimension '{PREDICTIONS_DIM}'.",
                                 argument="data")
    if features:
        first = list(values.dims).index(features[0])
        position = len([d for d in values.dims[:first] if d not in features])
    else:
        position = len(kept)
    predicted = _predict(values, features, model, "data")
    predicted = predicted.expand_dims({PREDICTIONS_DIM: ["0"]}, axis=position)
    dims = list(kept)
    dims.insert(position, Dimension(PREDICTIONS_DIM, OTHER))
    return predicted, tuple(dims)


def _predict(values: xr.DataArray, features: list[str], model: MlModel,
             argument: str) -> xr.DataArray:
    """The model's prediction for every cell of `values` (float64, NaN where any feature is
    missing), without the feature dimensions; lazy for dask-backed values."""
    if not features:  # every single value is the one feature
        features = ["__feature__"]
        values = values.expand_dims(features[0], axis=values.ndim)
    values, features = _aligned(values, features, model, argument)
    others = [d for d in values.dims if d not in features]
    values = values.transpose(*others, *features)
    feature_axes = list(range(len(others), values.ndim))
    coords = {k: c for k, c in values.coords.items() if not set(c.dims) & set(features)}
    if isinstance(values.data, da.Array):
        blocks = _feature_blocks(values.data, feature_axes)
        out = da.map_blocks(_predict_block, blocks, _graph_model(model), len(features),
                            drop_axis=feature_axes, dtype=np.float64,
                            meta=np.array((), dtype=np.float64))
    else:
        out = _predict_block(np.asarray(values.data), model, len(features))
    return xr.DataArray(out, dims=others, coords=coords)


def _predict_block(block: np.ndarray, model: MlModel, n_feature_axes: int) -> np.ndarray:
    shape = block.shape[:block.ndim - n_feature_axes]
    return model.predict(block.reshape(-1, model.n_features)).reshape(shape)


def _graph_model(model: MlModel) -> Any:
    # One key for the model: the scheduler ships it once per worker, not once per block.
    return dask.delayed(model, name=f"ml-model-{model.key}", traverse=False)


def _feature_blocks(data: da.Array, feature_axes: list[int]) -> da.Array:
    """`data` with the feature axes in one chunk, and blocks small enough to predict."""
    whole = {axis: -1 for axis in feature_axes}
    if any(len(data.chunks[a]) > 1 for a in feature_axes):
        data = data.rechunk(whole)
    largest = math.prod(max(c) for c in data.chunks)
    if largest * max(data.dtype.itemsize, 4) > _BLOCK_BYTES:
        rest = {axis: "auto" for axis in range(data.ndim) if axis not in feature_axes}
        with dask.config.set({"array.chunk-size": _BLOCK_BYTES}):
            data = data.rechunk({**whole, **rest})
    return data


def _aligned(values: xr.DataArray, features: list[str], model: MlModel,
             argument: str) -> tuple[xr.DataArray, list[str]]:
    """`values` with the labels of its feature dimensions in the model's order, and the
    feature dimensions in the model's order: flattened in that order, the values of a cell are
    the model's feature vector."""
    axes = model.features
    sizes = [int(values.sizes[d]) for d in features]
    if len(features) != len(axes):
        if math.prod(sizes) != model.n_features:
            raise errors.ProcessParameterInvalid(
                f"The model takes {model.n_features} features ({_describe(axes)}), but the "
                f"data has {math.prod(sizes)} values along {', '.join(features)}.",
                argument=argument)
        return values, features
    if sorted(features) == sorted(a.name for a in axes):
        features = [a.name for a in axes]  # same names: match dimensions by name
    for name, axis in zip(features, axes):
        if values.sizes[name] != axis.size:
            raise errors.ProcessParameterInvalid(
                f"The model takes {axis.size} values along '{axis.name}', the data has "
                f"{values.sizes[name]} along '{name}'.", argument=argument)
        if axis.type == TEMPORAL or not axis.labels or name not in values.coords:
            continue  # dates differ between training and prediction: by position
        labels = json_labels(values.coords[name].values)
        if labels == axis.labels:
            continue
        if set(labels) != set(axis.labels) or len(set(labels)) != len(labels):
            kind = "bands" if axis.type == BANDS else "labels"
            raise errors.ProcessParameterInvalid(
                f"The model was trained on the {kind} {', '.join(map(str, axis.labels))} of "
                f"'{axis.name}', the data has {', '.join(map(str, labels))} along '{name}'.",
                argument=argument)
        values = values.isel({name: [labels.index(v) for v in axis.labels]})
    return values, features


def _describe(axes: tuple[FeatureAxis, ...]) -> str:
    return " x ".join(f"{a.size} along '{a.name}'" for a in axes) or "one value"


def _model_input(value: Any, argument: str) -> MlModel:
    if not isinstance(value, MlModel):
        raise errors.ProcessParameterInvalid(
            f"'{argument}' must be a machine learning model (from fit_class_random_forest, "
            f"fit_regr_random_forest or load_ml_model), got {type(value).__name__}.",
            argument=argument)
    return value


# --- saving and loading -----------------------------------------------------------------------
@process("save_ml_model")
def save_ml_model(data: Any, options: dict | None = None, *, ctx: ProcessContext) -> bool:
    """Store the model as `ml-models/<name>.json` (+ `.joblib`) in the user's workspace, or,
    without a workspace, as an output of the job for the result writer (SavedResult in
    MODEL_FORMAT). Option `name` (default `ml_model`; a model of that name is replaced)."""
    model = _model_input(data, "data")
    options = dict(options or {})
    unknown = sorted(set(options) - {"name"})
    if unknown:
        raise errors.ProcessParameterInvalid(
            f"Unknown option(s) {', '.join(unknown)}; save_ml_model supports 'name'.",
            argument="options")
    name = options.get("name", DEFAULT_MODEL_NAME)
    if not isinstance(name, str) or not _NAME.match(name):
        raise errors.ProcessParameterInvalid(
            "The option 'name' must be 1-100 letters, digits, '.', '_' or '-' (starting with a "
            f"letter or digit), got {name!r}.", argument="options")
    workspace = ctx.services.workspace
    # A batch job (it has a job log) publishes the model as result assets, as CDSE does:
    # load_ml_model(<job id>) and load_ml_model(<results item URL>) load it from there.
    if workspace is None or ctx.services.log is not None:
        ctx.services.saved.append(SavedResult(model, MODEL_FORMAT, {"name": name},
                                              node_id=ctx.node_id))
    if workspace is None:
        return True
    # Written like uploads: quota, path rules and atomic replacement as for /files.
    for file_name, content in model_files(model, name, _signing_key(ctx)):
        workspace.write_file(f"{MODEL_FOLDER}/{file_name}", content)
    if ctx.services.log:
        ctx.services.log("info", f"Model saved as {MODEL_FOLDER}/{name}.json in your "
                         "workspace.", ctx.node_id)
    return True


@process("load_ml_model")
def load_ml_model(uri: str | None = None, id: str | None = None, *,
                  ctx: ProcessContext) -> MlModel:
    """Load a model saved by save_ml_model. `uri` (2.x) or `id` (1.x) is the http(s) URL of its
    STAC Item, a path in the user's workspace (the Item, its .joblib or their folder), or the
    id of a batch job that saved one model."""
    argument = "uri" if uri is not None else "id"
    ref = uri if uri is not None else id
    if ref is None:
        raise errors.ProcessParameterRequired(
            "load_ml_model needs 'uri': the URL of the model's STAC Item, its path in your "
            "workspace or the id of the batch job that saved it.", argument="uri")
    if not isinstance(ref, str) or not ref.strip():
        raise errors.ProcessParameterInvalid(f"'{argument}' must be a URL or a file path.",
                                             argument=argument)
    key = _signing_key(ctx)
    try:
        if re.match(r"^https?://", ref, re.IGNORECASE):
            settings = ctx.services.settings
            with remote_only(settings.fetch_allowed() if settings is not None else ()):
                return _load_url(ref, key)
        item = _workspace_item(ctx.services.workspace, ref, argument)
        if item is None:
            item = _job_item(ctx, ref, argument)
        return read_model_file(item, key)
    except ModelFileInvalid as exc:
        raise errors.ProcessParameterInvalid(f"'{ref}' cannot be loaded as a model: {exc}.",
                                             argument=argument) from None


def _signing_key(ctx: ProcessContext) -> bytes:
    settings = ctx.services.settings
    return signing_key(settings.data_dir if settings is not None else None)


def _workspace_item(workspace: WorkspaceAccess | None, ref: str,
                    argument: str) -> Path | None:
    """The model STAC Item that `ref` names in the workspace, or None if it names nothing."""
    if workspace is None:
        return None
    try:
        path = workspace.locate(ref)
    except errors.OpenEOError as exc:
        raise exc.at(argument=argument) from None
    if path.is_dir():
        return find_model_item(path)
    if path.suffix == ".joblib":
        path = path.with_suffix(".json")
    return path if path.is_file() and not path.is_symlink() else None


def _job_item(ctx: ProcessContext, ref: str, argument: str) -> Path:
    """The model STAC Item in the results of the user's batch job `ref`.

    `Services.job_results.folder(job_id)` gives the results folder of one of the user's finished
    jobs (JobNotFound / JobNotFinished otherwise); without it only URLs and workspace paths
    can be loaded.
    """
    job_results = ctx.services.job_results
    if job_results is None:
        where = "in your workspace" if ctx.services.workspace is not None else "here"
        raise errors.FileNotFound(
            f"No model '{ref}' {where}. Give the URL of the model's STAC Item (for a batch "
            "job: listed at GET /jobs/{job_id}/results) or its path in your workspace "
            f"(save_ml_model stores models as {MODEL_FOLDER}/<name>.json).", argument=argument)
    try:
        folder = Path(job_results.folder(ref))
    except errors.JobNotFound:
        raise errors.FileNotFound(
            f"No model '{ref}': it is neither a model in your workspace "
            f"({MODEL_FOLDER}/<name>.json, written by save_ml_model in a synchronous request) "
            "nor one of your batch jobs. Models come from save_ml_model: give the id of the "
            "batch job that saved it, the URL of that job's results (GET /jobs/{job_id}/"
            "results, its 'canonical' link) or the URL of the model's STAC Item.",
            argument=argument) from None
    except errors.OpenEOError as exc:
        raise exc.at(argument=argument) from None
    try:
        return find_model_item(folder)
    except ModelFileInvalid:
        raise errors.FileNotFound(
            f"The batch job '{ref}' saved no model (exactly one save_ml_model output is "
            "needed); train a model in a batch job whose graph ends in save_ml_model.",
            argument=argument) from None


def _load_url(url: str, key: bytes) -> MlModel:
    item = json.loads(_http_get(url, _MAX_ITEM_BYTES))
    if isinstance(item, dict) and item.get("type") == "Collection":
        # A batch job's results Collection (its `canonical` link): the model is the Item
        # with the ml-model extension among its `item` links.
        url, item = _model_item_of(url, item)

    def fetch(href: str) -> bytes:
        absolute = urllib.parse.urljoin(url, href)
        if not re.match(r"^https?://", absolute, re.IGNORECASE):
            raise ModelFileInvalid("the model asset must be an http(s) URL")
        return _http_get(absolute, _MAX_MODEL_BYTES)

    return read_model(item, fetch, key)


def _model_item_of(url: str, collection: dict) -> tuple[str, dict]:
    hrefs = [urllib.parse.urljoin(url, link["href"]) for link in collection.get("links") or []
             if isinstance(link, dict) and link.get("rel") == "item"
             and isinstance(link.get("href"), str)]
    for href in hrefs[:_MAX_COLLECTION_ITEMS]:
        item = json.loads(_http_get(href, _MAX_ITEM_BYTES))
        if isinstance(item, dict) and any(str(k).startswith("ml-model:")
                                          for k in item.get("properties") or {}):
            return href, item
    raise ModelFileInvalid("the STAC Collection links to no Item of a model (ml-model "
                           "extension)")


_MAX_COLLECTION_ITEMS = 50  # items of a results Collection read to find its model


class _CheckedRedirects(urllib.request.HTTPRedirectHandler):
    """Redirects are followed only where the fetch policy allows (url_policy.py)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: ANN001, ANN201
        check_fetch(newurl)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _http_get(url: str, limit: int) -> bytes:
    try:
        # Refused before connecting: the server's own ports and network are not for users
        # (the answer must not tell a closed local port from an open one).
        check_fetch(url)
    except FetchRefused as exc:
        raise ModelFileInvalid(str(exc).rstrip(".")) from None
    try:
        opener = urllib.request.build_opener(_CheckedRedirects)
        with opener.open(url, timeout=_HTTP_TIMEOUT_S) as response:
            body = response.read(limit + 1)
    except FetchRefused as exc:
        raise ModelFileInvalid(str(exc).rstrip(".")) from None
    except (OSError, ValueError) as exc:
        raise ModelFileInvalid(f"downloading {url} failed ({exc})") from None
    if len(body) > limit:
        raise ModelFileInvalid(f"{url} is larger than {limit // 2**20} MB")
    return body
