"""Our own edits and additions that bring packaged process descriptions to 2.0.0-rc.2.

`specs.py` reads the descriptions shipped in the `openeo-driver` wheel. That set predates
2.0.0-rc.2 in places, so this module holds, written by us:

* `PATCHES`: per process, the edits that make the served parameters (names, order, optional,
  default, schema), the return schema and the experimental/deprecated flags equal those of
  2.0.0-rc.2. Schemas must match the specification to the letter, so text *inside* a schema
  (e.g. a `description` of one alternative) is reproduced exactly; prose outside schemas is ours.
* `DEFINITIONS`: complete descriptions of the processes the package lacks (summaries and
  prose in our own words, schemas exactly as specified).

tests/engine/test_specs.py checks the result against the official definitions in ../shared.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from terracube.engine.processes import hydrology

# A path into a process description. Inside a list of named objects (parameters, the
# parameters of a child process graph) a string selects the element by its `name`.
Pointer = tuple[str | int, ...]


@dataclass(frozen=True)
class SpecPatch:
    """Edits to one packaged process description, applied in the order rename, set, drop."""

    why: str  # what changed in 2.0.0-rc.2, for the reader
    rename: Mapping[str, str] = field(default_factory=dict)  # parameter: old name -> new name
    set: Mapping[Pointer, Any] = field(default_factory=dict)
    drop: tuple[Pointer, ...] = ()


EXPERIMENTAL: Pointer = ("experimental",)

# Schemas that recur below.
_NUMBER_OR_NULL = ["number", "null"]
_DATACUBE_XY = {
    "type": "object",
    "subtype": "datacube",
    "dimensions": [{"type": "spatial", "axis": ["x", "y"]}],
}
_ANY_VALUE = {"description": "A value of any data type."}
_ANY_RESULT = {"description": "Any data type."}
_HTTP_URL = {"type": "string", "format": "uri", "subtype": "uri", "pattern": "^https?://"}
_COLLECTION_ID_PATTERN = "^[A-Za-z0-9_\\-\\.~/]+$"
_STAC = {"type": "object", "subtype": "stac"}
_ML_MODEL = {"type": "object", "subtype": "ml-model"}
_VECTOR_CUBE_1X = {"type": "object", "subtype": "vector-cube"}
_SEED = {"type": ["integer", "null"]}
_NUM_TREES = {"type": "integer", "minimum": 1}
_MAX_VARIABLES = [
    {"type": "integer", "minimum": 1},
    {"type": "string", "enum": ["all", "log2", "onethird", "sqrt"]},
]
_RANDOM_FOREST_LINK = {
    "href": "https://doi.org/10.1023/A:1010933404324",
    "title": "Breiman (2001): Random Forests",
    "type": "text/html",
    "rel": "about",
}
_ML_MODEL_EXTENSION_LINK = {
    "href": "https://github.com/stac-extensions/ml-model",
    "title": "STAC ml-model extension",
    "type": "text/html",
    "rel": "about",
}

# Text inside schemas of 2.0.0-rc.2 (part of the schema, hence verbatim).
_CRS_OF_EXTENT = (
    "Coordinate reference system of the extent, specified as [EPSG code]"
    "(https://spatialreference.org/ref/epsg/) or [WKT2 CRS string]"
    "(http://docs.opengeospatial.org/is/18-010r7/18-010r7.html). Defaults to `4326` (EPSG code "
    "4326) unless the client explicitly requests a different coordinate reference system."
)
_CRS_OF_EXTENT_REPROJECTED = (
    _CRS_OF_EXTENT + " If the bounding box is not provided in the coordinate reference system "
    "(CRS) of the data cube, the bounding box is reprojected to the CRS of the spatial data "
    "cube dimensions."
)
_NODATA_INSIDE_BBOX = (
    "For raster data, all pixels inside the bounding box that do not intersect with any of the "
    "polygons will be set to the no-data value of the data cube."
)
_GEOJSON_EXTENT_LOAD_COLLECTION = (
    "Deprecated in favor of ``load_geojson()``. Limits the data cube to the bounding box of the "
    f"given geometries. {_NODATA_INSIDE_BBOX}\n\nThe GeoJSON type `GeometryCollection` is not "
    "supported. Empty geometries are ignored."
)
_GEOJSON_EXTENT_LOAD_STAC = (
    f"Limits the data cube to the bounding box of the given geometries. {_NODATA_INSIDE_BBOX}"
    "\n\nThe GeoJSON type `GeometryCollection` is not supported. Empty geometries are ignored."
)
_VECTOR_EXTENT_LOAD_COLLECTION = (
    "Limits the data cube to the bounding box of the given geometries in the vector data cube. "
    f"{_NODATA_INSIDE_BBOX} Empty geometries are ignored."
)
_VECTOR_EXTENT_LOAD_STAC = (
    "Limits the data cube to the bounding box of the given geometries in the vector data cube. "
    "All pixels inside the bounding box that do not intersect with any of the polygons will be "
    "set to the no-data value of the data cube. Empty geometries are ignored."
)
_UDF_IN_WORKSPACE = (
    "Path to a UDF uploaded to the user workspace.\n\nAs the workspace acts as an isolated root "
    "folder, the absolute path `/folder/file.txt` and relative paths `folder/file.txt` and "
    "`./folder/file.txt` are all equivalent. Likewise, specifying a path outside of the "
    "workspace results in a `FileNotFound` error."
)


def _param(name: str, *rest: str | int) -> Pointer:
    return ("parameters", name, *rest)


def _schema_of(name: str, *rest: str | int) -> Pointer:
    return ("parameters", name, "schema", *rest)


_RETURNS_SCHEMA: Pointer = ("returns", "schema")


def _unique_items(*names: str) -> dict[Pointer, Any]:
    return {_schema_of(name, "uniqueItems"): True for name in names}


PATCHES: dict[str, SpecPatch] = {
    # -- math: value ranges were added to parameter and return schemas --------------------------
    "arccos": SpecPatch(
        why="domain [-1, 1] and non-negative result",
        set={
            _schema_of("x"): {"type": _NUMBER_OR_NULL, "minimum": -1, "maximum": 1},
            _RETURNS_SCHEMA: {"type": _NUMBER_OR_NULL, "minimum": 0},
        },
    ),
    "arcsin": SpecPatch(
        why="domain [-1, 1]",
        set={_schema_of("x"): {"type": _NUMBER_OR_NULL, "minimum": -1, "maximum": 1}},
    ),
    "arcosh": SpecPatch(
        why="non-negative result",
        set={_RETURNS_SCHEMA: {"type": _NUMBER_OR_NULL, "minimum": 0}},
    ),
    "artanh": SpecPatch(
        why="open domain (-1, 1)",
        set={
            _schema_of("x"): {
                "type": _NUMBER_OR_NULL,
                "minimumExclusive": -1,
                "maximumExclusive": 1,
            }
        },
    ),
    "cos": SpecPatch(
        why="result in [-1, 1]",
        set={_RETURNS_SCHEMA: {"type": _NUMBER_OR_NULL, "minimum": -1, "maximum": 1}},
    ),
    "sin": SpecPatch(
        why="result in [-1, 1]",
        set={_RETURNS_SCHEMA: {"type": _NUMBER_OR_NULL, "minimum": -1, "maximum": 1}},
    ),
    "cosh": SpecPatch(
        why="result >= 1",
        set={_RETURNS_SCHEMA: {"type": _NUMBER_OR_NULL, "minimum": 1}},
    ),
    "tanh": SpecPatch(
        why="result in (-1, 1)",
        set={
            _RETURNS_SCHEMA: {
                "type": _NUMBER_OR_NULL,
                "minimumExclusive": -1,
                "maximumExclusive": 1,
            }
        },
    ),
    "exp": SpecPatch(
        why="strictly positive result",
        set={_RETURNS_SCHEMA: {"type": _NUMBER_OR_NULL, "minimumExclusive": 0}},
    ),
    "ln": SpecPatch(
        why="non-negative input",
        set={_schema_of("x"): {"type": _NUMBER_OR_NULL, "minimum": 0}},
    ),
    "log": SpecPatch(
        why="non-negative input",
        set={_schema_of("x"): {"type": _NUMBER_OR_NULL, "minimum": 0}},
    ),
    "sgn": SpecPatch(
        why="result is one of -1, 0, 1 or null",
        set={_RETURNS_SCHEMA: {"type": _NUMBER_OR_NULL, "enum": [-1, 0, 1, None]}},
    ),
    # -- comparisons: a tolerance must be positive -------------------------------------------
    "eq": SpecPatch(
        why="positive delta",
        set={_schema_of("delta"): {"type": _NUMBER_OR_NULL, "minimumExclusive": 0}},
    ),
    "neq": SpecPatch(
        why="positive delta",
        set={_schema_of("delta"): {"type": _NUMBER_OR_NULL, "minimumExclusive": 0}},
    ),
    # -- labels and dimension names must be unique -----------------------------------------------
    "aggregate_temporal": SpecPatch(why="unique labels", set=_unique_items("labels")),
    "array_create_labeled": SpecPatch(why="unique labels", set=_unique_items("labels")),
    "rename_labels": SpecPatch(why="unique labels", set=_unique_items("target", "source")),
    "flatten_dimensions": SpecPatch(why="unique dimensions", set=_unique_items("dimensions")),
    "unflatten_dimension": SpecPatch(
        why="unique target dimensions", set=_unique_items("target_dimensions")
    ),
    "predict_curve": SpecPatch(
        why="unique labels", set={_schema_of("labels", 1, "uniqueItems"): True}
    ),
    "array_append": SpecPatch(
        why="labels may be numbers too",
        set={_schema_of("label"): [{"type": "number"}, {"type": "string"}, {"type": "null"}]},
    ),
    "date_difference": SpecPatch(
        why="unit `week` was added",
        set={
            _schema_of("unit", "enum"): [
                "millisecond",
                "second",
                "minute",
                "hour",
                "day",
                "week",
                "month",
                "year",
            ]
        },
    ),
    # -- proposals that became stable --------------------------------------------------------
    "date_between": SpecPatch(why="no longer experimental", drop=(EXPERIMENTAL,)),
    "date_shift": SpecPatch(why="no longer experimental", drop=(EXPERIMENTAL,)),
    "filter_labels": SpecPatch(why="no longer experimental", drop=(EXPERIMENTAL,)),
    "inspect": SpecPatch(why="no longer experimental", drop=(EXPERIMENTAL,)),
    "apply_polygon": SpecPatch(
        why="stable; `polygons` renamed to `geometries`; cubes need spatial x/y dimensions",
        rename={"polygons": "geometries"},
        set={
            _schema_of("data"): _DATACUBE_XY,
            _param("geometries", "description"): (
                "The geometries to process the data cube for, as a vector data cube with at "
                "least one polygon. Accepted are a `Polygon` or `MultiPolygon` geometry, a "
                "`Feature` whose geometry is one of these, or a `FeatureCollection` of such "
                "features. Empty geometries are skipped."
            ),
            _schema_of("process", "parameters", "data", "schema"): _DATACUBE_XY,
            _schema_of("process", "returns", "schema", "schema"): _DATACUBE_XY,
            _param("mask_value", "description"): (
                "The value for pixels whose centre lies outside the polygon. With the default "
                "`null` they get the no-data value of the data cube, so masked pixels can be told "
                "apart from no-data pixels inside the polygon only if another value is given."
            ),
            _RETURNS_SCHEMA: _DATACUBE_XY,
        },
        drop=(EXPERIMENTAL,),
    ),
    # -- enum schemas with a plain string type ------------------------------------------------
    "ard_surface_reflectance": SpecPatch(
        why="`type` is a string, not a list",
        set={
            _schema_of("atmospheric_correction_method", "type"): "string",
            _schema_of("cloud_detection_method", "type"): "string",
        },
    ),
    "atmospheric_correction": SpecPatch(
        why="`type` is a string, not a list", set={_schema_of("method", 0, "type"): "string"}
    ),
    "cloud_detection": SpecPatch(
        why="`type` is a string, not a list", set={_schema_of("method", 0, "type"): "string"}
    ),
    # -- spatial extents: reworded CRS and no-data text inside the schemas --------------------
    "filter_bbox": SpecPatch(
        why="CRS wording",
        set={_schema_of("extent", "properties", "crs", "description"): _CRS_OF_EXTENT},
    ),
    "load_collection": SpecPatch(
        why="CRS and no-data wording",
        set={
            _schema_of(
                "spatial_extent", 0, "properties", "crs", "description"
            ): _CRS_OF_EXTENT_REPROJECTED,
            _schema_of("spatial_extent", 1, "description"): _GEOJSON_EXTENT_LOAD_COLLECTION,
            _schema_of("spatial_extent", 2, "description"): _VECTOR_EXTENT_LOAD_COLLECTION,
        },
    ),
    "load_stac": SpecPatch(
        why="CRS and no-data wording",
        set={
            _schema_of(
                "spatial_extent", 0, "properties", "crs", "description"
            ): _CRS_OF_EXTENT_REPROJECTED,
            _schema_of("spatial_extent", 1, "description"): _GEOJSON_EXTENT_LOAD_STAC,
            _schema_of("spatial_extent", 2, "description"): _VECTOR_EXTENT_LOAD_STAC,
        },
    ),
    # -- UDFs: any data type; files live in the user workspace ---------------------------------
    "run_udf": SpecPatch(
        why="data of any type; UDF paths are workspace paths",
        set={
            _schema_of("data"): _ANY_VALUE,
            _param("data", "description"): (
                "The data handed to the UDF. Its type depends on where `run_udf` is used: inside "
                "``reduce_dimension()`` it is an array of values, inside ``apply()`` a single "
                "value, and at the top level usually a data cube."
            ),
            _schema_of("udf", 1, "description"): _UDF_IN_WORKSPACE,
            ("exceptions", "FileNotFound"): {
                "message": "The UDF file was not found in the user workspace."
            },
        },
    ),
    "run_udf_externally": SpecPatch(
        why="data of any type",
        set={
            _schema_of("data"): _ANY_VALUE,
            _param("data", "description"): (
                "The data handed to the UDF service. Its type depends on the calling process, "
                "e.g. an array of values inside ``reduce_dimension()`` or a single value inside "
                "``apply()``."
            ),
        },
    ),
    # -- results and models --------------------------------------------------------------------
    "save_result": SpecPatch(
        why="returns the STAC resource of the saved result instead of `true`",
        set={
            _RETURNS_SCHEMA: _STAC,
            ("returns", "description"): (
                "The STAC metadata (e.g. an Item or Collection) describing the files that were "
                "written."
            ),
        },
    ),
    "load_ml_model": SpecPatch(
        why="parameter `id` renamed to `uri`; loading by batch job id was dropped",
        rename={"id": "uri"},
        set={
            ("description",): (
                "Loads a machine learning model that is described by a STAC Item implementing the "
                "ml-model extension, for example a model trained with "
                "``ml_fit_class_random_forest()`` and stored with ``save_ml_model()`` in an "
                "earlier batch job."
            ),
            _param("uri", "description"): (
                "Where to find the STAC Item of the model: an HTTP(S) URL or the path of a file "
                "in the user workspace. The Item must implement the `ml-model` extension."
            ),
            _schema_of("uri"): [
                {"title": "URL", **_HTTP_URL},
                {
                    "title": "User-uploaded File",
                    "type": "string",
                    "subtype": "file-path",
                    "pattern": "^[^\r\n\\:'\"]+$",
                },
            ],
            ("returns", "description"): (
                "The model, ready for prediction processes such as ``ml_predict()``."
            ),
        },
    ),
}


def _vector_cube(*dimension_types: str) -> dict:
    return {
        "type": "object",
        "subtype": "datacube",
        "dimensions": [{"type": t} for t in dimension_types],
    }


_ML_PREDICTORS_SCHEMA = [_vector_cube("geometry", "bands"), _vector_cube("geometry", "other")]
_ML_TARGET_SCHEMA = _vector_cube("geometry")


def _random_forest_fit(
    process_id: str, task: str, predictors_schema: Any, target_schema: Any, *, experimental: bool
) -> dict:
    """Description of a random forest training process; `task` is classification or regression."""
    default_mtry = (
        "`sqrt` for classification" if task == "classification" else ("`onethird` for regression")
    )
    return {
        "id": process_id,
        "summary": f"Fit a random forest {task} model",
        "description": (
            f"Trains a random forest {task} model (Breiman, 2001) on the given training data. "
            "All of the data is used for training: split off test or validation data "
            "beforehand if you need it."
        ),
        "categories": ["machine learning"],
        "experimental": experimental,
        "parameters": [
            {
                "name": "predictors",
                "description": (
                    "The predictor variables as a vector data cube, one value per predictor "
                    "for each geometry of `target`."
                ),
                "schema": predictors_schema,
            },
            {
                "name": "target",
                "description": (
                    "The training sites as a vector data cube: geometries, each with the value "
                    f"the {task} model should learn to predict."
                ),
                "schema": target_schema,
            },
            {
                "name": "max_variables",
                "description": (
                    "How many variables are tried at each split of a tree: a number, `all`, "
                    "`log2` (base-2 logarithm of the number of variables), `onethird` (a third "
                    "of them) or `sqrt` (their square root). A common choice is "
                    f"{default_mtry}."
                ),
                "schema": _MAX_VARIABLES,
            },
            {
                "name": "num_trees",
                "description": "How many trees the forest grows.",
                "optional": True,
                "default": 100,
                "schema": _NUM_TREES,
            },
            {
                "name": "seed",
                "description": (
                    "Seed for the random sampling during training; with `null` the training is "
                    "not reproducible."
                ),
                "optional": True,
                "default": None,
                "schema": _SEED,
            },
        ],
        "returns": {
            "description": (
                "The trained model; store it with ``save_ml_model()`` and restore it with "
                "``load_ml_model()``."
            ),
            "schema": _ML_MODEL,
        },
        "links": [_RANDOM_FOREST_LINK],
    }


def _run_ogcapi(process_id: str, *, external: bool) -> dict:
    where = (
        "on an OGC API - Processes server chosen by the user (hosted elsewhere or on the user's "
        "own machine)"
        if external
        else "that this back-end offers through OGC API - Processes - Part 2 (Deploy, Replace, "
        "Undeploy)"
    )
    parameters: list[dict] = [
        {
            "name": "data",
            "description": (
                "The input handed to the OGC API process, in a form that process understands."
            ),
            "schema": _ANY_VALUE,
        },
    ]
    if external:
        parameters.append(
            {
                "name": "url",
                "description": "The absolute URL of the landing page of the OGC API - Processes "
                "server.",
                "schema": _HTTP_URL,
            }
        )
    parameters += [
        {
            "name": "id",
            "description": "The identifier of the process on the OGC API server.",
            "schema": {"type": "string"},
        },
        {
            "name": "context",
            "description": "Further inputs, as the OGC API process defines them.",
            "schema": {"type": "object"},
            "default": {},
            "optional": True,
        },
    ]
    return {
        "id": process_id,
        "summary": "Run an OGC API process" + (" hosted elsewhere" if external else ""),
        "description": f"Executes a process {where} and passes its output on unchanged.",
        "categories": ["cubes", "import", "udf"],
        "experimental": True,
        "parameters": parameters,
        "exceptions": {
            "InvalidOgcApiProcess": {"message": "No OGC API process with this identifier exists."}
        },
        "returns": {
            "description": "Whatever the OGC API process returned, of any data type.",
            "schema": _ANY_RESULT,
        },
    }


DEFINITIONS: dict[str, dict] = {
    "export_collection": {
        "id": "export_collection",
        "summary": "Publish results as an openEO collection",
        "description": (
            "Copies processing results, given as a STAC resource such as a Collection or an "
            "Item, together with all STAC resources and assets below it, into an openEO "
            "collection of this back-end."
        ),
        "categories": ["export", "stac"],
        "experimental": True,
        "parameters": [
            {
                "name": "data",
                "description": "The STAC resource of the results to publish.",
                "schema": _STAC,
            },
            {
                "name": "collection",
                "description": (
                    "The collection to publish to. The results are added to it if it exists; "
                    "otherwise it is created from the STAC metadata of `data`."
                ),
                "schema": [
                    {
                        "title": "New Collection",
                        "type": "string",
                        "pattern": _COLLECTION_ID_PATTERN,
                    },
                    {
                        "title": "Existing Collection",
                        "type": "string",
                        "subtype": "collection-id",
                        "pattern": _COLLECTION_ID_PATTERN,
                    },
                ],
            },
        ],
        "returns": {
            "description": "The identifier of the collection that holds the results.",
            "schema": {
                "type": "string",
                "subtype": "collection-id",
                "pattern": _COLLECTION_ID_PATTERN,
            },
        },
    },
    "stac_modify": {
        "id": "stac_modify",
        "summary": "Change a STAC resource",
        "description": (
            "Applies a set of changes to a STAC resource, such as a Collection or an Item, "
            "and returns the changed resource."
        ),
        "categories": ["stac"],
        "experimental": True,
        "parameters": [
            {"name": "data", "description": "The STAC resource to change.", "schema": _STAC},
            {
                "name": "changes",
                "description": (
                    "The changes as a JSON Merge Patch (RFC 7386): members present here replace "
                    "those of `data`, members set to `null` are removed, and members not "
                    "mentioned stay as they are."
                ),
                "schema": {"type": "object"},
            },
        ],
        "returns": {"description": "The changed STAC resource.", "schema": _STAC},
        "links": [
            {
                "href": "https://www.rfc-editor.org/rfc/rfc7386.html",
                "title": "RFC 7386: JSON Merge Patch",
                "type": "text/html",
                "rel": "about",
            }
        ],
    },
    "text_find": {
        "id": "text_find",
        "summary": "Position of a text within another text",
        "description": (
            "Searches `data` for the first occurrence of `pattern` and returns the zero-based "
            "character position where it starts, or `null` if it does not occur. A `null` "
            "input gives `null`."
        ),
        "categories": ["texts"],
        "experimental": True,
        "parameters": [
            {
                "name": "data",
                "description": "The text to search in.",
                "schema": {"type": ["string", "null"]},
            },
            {
                "name": "pattern",
                "description": "The text to look for, taken literally (not a regular expression).",
                "schema": {"type": "string"},
            },
            {
                "name": "case_sensitive",
                "description": "Set to `false` to ignore upper and lower case.",
                "schema": {"type": "boolean"},
                "default": True,
                "optional": True,
            },
        ],
        "returns": {
            "description": "The position (0 or more) of the first match, or `null` if none.",
            "schema": {"type": ["integer", "null"], "minimum": 0},
        },
        "examples": [
            {"arguments": {"data": "Sentinel-2 Level-2A", "pattern": "Level"}, "returns": 11},
            {"arguments": {"data": "Sentinel-2 Level-2A", "pattern": "level"}, "returns": None},
            {
                "arguments": {
                    "data": "Sentinel-2 Level-2A",
                    "pattern": "LEVEL",
                    "case_sensitive": False,
                },
                "returns": 11,
            },
            {"arguments": {"data": "Ökosystem", "pattern": "kos"}, "returns": 1},
            {"arguments": {"data": None, "pattern": "a"}, "returns": None},
        ],
    },
    "run_ogcapi": _run_ogcapi("run_ogcapi", external=False),
    "run_ogcapi_externally": _run_ogcapi("run_ogcapi_externally", external=True),
    "ml_fit_class_random_forest": _random_forest_fit(
        "ml_fit_class_random_forest",
        "classification",
        _ML_PREDICTORS_SCHEMA,
        _ML_TARGET_SCHEMA,
        experimental=True,
    ),
    "ml_fit_regr_random_forest": _random_forest_fit(
        "ml_fit_regr_random_forest",
        "regression",
        _ML_PREDICTORS_SCHEMA,
        _ML_TARGET_SCHEMA,
        experimental=True,
    ),
    # The openEO 1.x name; openeo-driver ships fit_class_random_forest but not this one.
    "fit_regr_random_forest": _random_forest_fit(
        "fit_regr_random_forest",
        "regression",
        _VECTOR_CUBE_1X,
        _VECTOR_CUBE_1X,
        experimental=True,
    ),
    "ml_predict": {
        "id": "ml_predict",
        "summary": "Predict with a machine learning model",
        "description": (
            "Feeds the input features of a data cube to a trained machine learning model and "
            "returns its predictions as a data cube."
        ),
        "categories": ["machine learning"],
        "experimental": True,
        "parameters": [
            {
                "name": "data",
                "description": "The data cube with the input features.",
                "schema": {"type": "object", "subtype": "datacube"},
            },
            {
                "name": "model",
                "description": (
                    "The trained model, e.g. from ``ml_fit_class_random_forest()`` or "
                    "``load_ml_model()``."
                ),
                "schema": _ML_MODEL,
            },
            {
                "name": "dimensions",
                "description": (
                    "The dimensions (zero or more) that the model consumes as its features; they "
                    "are removed from the result. A `DimensionNotAvailable` exception is raised "
                    "for a dimension the data cube does not have."
                ),
                "schema": {"type": "array", "items": {"type": "string"}},
            },
        ],
        "exceptions": {
            "DimensionNotAvailable": {"message": "A dimension with the given name does not exist."}
        },
        "returns": {
            "description": (
                "The predictions: the given dimensions are removed and a dimension `predictions` "
                "of type `other` is added, with the single label `0` if the model predicts one "
                "value."
            ),
            "schema": {"type": "object", "subtype": "datacube", "dimensions": [{"type": "other"}]},
        },
    },
    # Our own experimental processes, described next to their code.
    **hydrology.DESCRIPTIONS,
}
