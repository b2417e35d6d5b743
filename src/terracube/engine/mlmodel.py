"""The machine-learning model value (a fitted scikit-learn estimator) and its files.

A model is stored as two files side by side: `<name>.joblib`, the pickled estimator, and
`<name>.json`, a STAC Item with the ml-model extension that describes it (task, features,
training parameters) and points at the `.joblib` asset.

Unpickling runs code, and users can put files into their workspace, so a model file is only
loaded if it carries a valid HMAC signature made with this server's key (`signing_key`): a
user can load every model this back-end saved, and nothing else.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import os
import secrets
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from terracube.datacube.cube import datetime_labels_to_strings

CLASSIFICATION = "classification"
REGRESSION = "regression"
# SavedResult.format of save_ml_model: result writers and the job runner store such a result
# with `write_model` (one `.joblib` and one `.json` file).
MODEL_FORMAT = "ml-model"
DEFAULT_MODEL_NAME = "ml_model"  # save_ml_model's option `name`
ML_MODEL_EXTENSION = "https://stac-extensions.github.io/ml-model/v1.0.0/schema.json"
CHECKPOINT_ROLE = "ml-model:checkpoint"
MODEL_MEDIA_TYPE = "application/octet-stream; application=joblib"
_SIGNATURE = "terracube:signature"
_KEY_FILE = Path("secrets") / "ml-model-signing.key"
# Without a data directory (tests, embedded use) models are signed with a key that lives
# as long as the process: they can be loaded again only by the same process.
_PROCESS_KEY = secrets.token_bytes(32)


# Rows per call of the estimator's predict (bounds its temporary memory).
_PREDICT_ROWS = 1 << 18

class ModelFileInvalid(ValueError):
    """A model file that is not a model this back-end wrote (missing, tampered, other format)."""


@dataclass(frozen=True)
class FeatureAxis:
    """A dimension of the predictors that the model takes its input features from."""

    name: str
    size: int
    labels: tuple = ()  # JSON values (strings, numbers; dates as RFC 3339), () if unlabeled
    type: str = "other"  # the openEO dimension type: bands | temporal | other

    def to_json(self) -> dict:
        return {"name": self.name, "type": self.type, "size": self.size,
                "labels": list(self.labels)}

    @classmethod
    def from_json(cls, obj: dict) -> FeatureAxis:
        return cls(str(obj["name"]), int(obj["size"]), tuple(obj.get("labels") or ()),
                   str(obj.get("type") or "other"))


@dataclass(frozen=True, eq=False)
class MlModel:
    """A trained model: the estimator plus what is needed to apply it to a data cube.

    The features are the values along `features` (one or more dimensions of the training
    predictors), flattened in C order: with axes (t, bands) feature k is date k // n_bands,
    band k % n_bands.
    """

    estimator: Any  # a fitted sklearn RandomForestClassifier / RandomForestRegressor
    task: str  # CLASSIFICATION | REGRESSION
    features: tuple[FeatureAxis, ...]
    parameters: dict  # the training process' arguments: num_trees, max_variables, seed
    trained_by: str  # the process id that trained it
    n_samples: int  # training samples used
    created: str = field(default_factory=lambda: _now())
    key: str = field(default_factory=lambda: uuid.uuid4().hex)  # identity in dask graphs

    @property
    def n_features(self) -> int:
        return int(np.prod([f.size for f in self.features], dtype=np.int64))

    @property
    def classes(self) -> list | None:
        if self.task != CLASSIFICATION:
            return None
        return [_json_scalar(v) for v in self.estimator.classes_]

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Predictions (float64) for rows of features; NaN for rows with a missing value."""
        rows = features.reshape(-1, self.n_features)
        out = np.full(rows.shape[0], np.nan)
        with np.errstate(invalid="ignore"):
            valid = np.isfinite(rows).all(axis=1)
        index = np.flatnonzero(valid)
        # In batches: a forest's predict holds (rows × classes) per tree, whatever the chunk.
        for start in range(0, index.size, _PREDICT_ROWS):
            part = index[start:start + _PREDICT_ROWS]
            out[part] = self.estimator.predict(rows[part].astype(np.float32, copy=False))
        return out

    # --- description --------------------------------------------------------------------
    def stac_item(self, name: str, asset_href: str, asset_size: int, signature: str) -> dict:
        """The STAC Item (ml-model extension 1.0) that describes the stored model."""
        import sklearn

        return {
            "type": "Feature",
            "stac_version": "1.0.0",
            "stac_extensions": [ML_MODEL_EXTENSION],
            "id": name,
            "geometry": None,
            "properties": {
                "datetime": self.created,
                "title": f"Random forest {self.task} ({self.trained_by})",
                "ml-model:type": "ml-model",
                "ml-model:learning_approach": "supervised",
                "ml-model:prediction_type": self.task,
                "ml-model:architecture": "random-forest",
                "ml-model:training-processor-type": "cpu",
                "terracube:trained_by": self.trained_by,
                "terracube:parameters": self.parameters,
                "terracube:features": [f.to_json() for f in self.features],
                "terracube:classes": self.classes,
                "terracube:training_samples": self.n_samples,
                "terracube:framework": f"scikit-learn {sklearn.__version__}",
            },
            "links": [],
            "assets": {
                "model": {
                    "href": asset_href,
                    "type": MODEL_MEDIA_TYPE,
                    "title": "scikit-learn estimator (joblib)",
                    "roles": [CHECKPOINT_ROLE],
                    "file:size": asset_size,
                    _SIGNATURE: signature,
                },
            },
        }


# --- files ------------------------------------------------------------------------------------
def signing_key(data_dir: Path | None) -> bytes:
    """The server's key for model signatures, created on first use in the data directory."""
    if data_dir is None:
        return _PROCESS_KEY
    path = Path(data_dir) / _KEY_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Written in full under a private name, then linked into place: a concurrent reader
        # sees either no key or the whole key, and the first of two creators wins.
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(32))
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    key = path.read_bytes()
    if len(key) < 32:
        raise RuntimeError(f"The model signing key {path} is damaged; delete it to make a new "
                           "one (models saved with the old key can then no longer be loaded).")
    return key


def _signature(key: bytes, blob: bytes) -> str:
    return hmac.new(key, blob, hashlib.sha256).hexdigest()


def model_files(model: MlModel, name: str, key: bytes) -> list[tuple[str, bytes]]:
    """The files of a stored model, (file name, content): the estimator, then its STAC Item
    (write them in this order: the Item refers to the estimator file)."""
    import joblib

    buffer = io.BytesIO()
    joblib.dump(model.estimator, buffer, compress=3)
    blob = buffer.getvalue()
    model_name = f"{name}.joblib"
    item = model.stac_item(name, f"./{model_name}", len(blob), _signature(key, blob))
    return [(model_name, blob), (f"{name}.json", json.dumps(item, indent=1).encode())]


def write_model(model: MlModel, folder: Path, name: str, key: bytes) -> list[Path]:
    """Write `<name>.joblib` and its STAC Item `<name>.json` into `folder` (each atomically),
    e.g. the results folder of a batch job; returns the two paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for file_name, content in model_files(model, name, key):
        _write_atomically(folder / file_name, content)
        paths.append(folder / file_name)
    return paths


def model_stem(options: dict | None) -> str:
    """The file stem of a model that save_ml_model saved with `options` (option `name`)."""
    return str((options or {}).get("name") or DEFAULT_MODEL_NAME)


def _write_atomically(path: Path, content: bytes) -> None:
    tmp = path.with_name(f".{path.name}.part")
    tmp.write_bytes(content)
    os.replace(tmp, path)


def read_model(item: dict, fetch: Callable[[str], bytes], key: bytes) -> MlModel:
    """The model described by a STAC Item; `fetch(href)` returns the bytes of an asset."""
    import joblib
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

    if not isinstance(item, dict) or item.get("type") != "Feature":
        raise ModelFileInvalid("it is not a STAC Item")
    props = item.get("properties") or {}
    task = props.get("ml-model:prediction_type")
    assets = [a for a in (item.get("assets") or {}).values()
              if isinstance(a, dict) and CHECKPOINT_ROLE in (a.get("roles") or [])]
    if task not in (CLASSIFICATION, REGRESSION) or len(assets) != 1 or "terracube:features" \
            not in props:
        raise ModelFileInvalid("it does not describe a model trained by this back-end "
                               "(ml-model extension with one checkpoint asset)")
    asset = assets[0]
    blob = fetch(str(asset.get("href")))
    expected = str(asset.get(_SIGNATURE) or "")
    if not hmac.compare_digest(expected, _signature(key, blob)):
        raise ModelFileInvalid("its model file was not written by this back-end or was "
                               "changed since (signature mismatch)")
    estimator = joblib.load(io.BytesIO(blob))
    wanted = RandomForestClassifier if task == CLASSIFICATION else RandomForestRegressor
    if not isinstance(estimator, wanted):
        raise ModelFileInvalid(f"its model file holds a {type(estimator).__name__}, not a "
                               f"{wanted.__name__}")
    return MlModel(
        estimator=estimator,
        task=task,
        features=tuple(FeatureAxis.from_json(f) for f in props["terracube:features"]),
        parameters=dict(props.get("terracube:parameters") or {}),
        trained_by=str(props.get("terracube:trained_by") or ""),
        n_samples=int(props.get("terracube:training_samples") or 0),
        created=str(props.get("datetime") or _now()),
    )


def read_model_file(path: Path, key: bytes) -> MlModel:
    """The model of a local STAC Item file; asset hrefs are relative to its folder."""
    item = json.loads(path.read_text())
    folder = path.parent.resolve()

    def fetch(href: str) -> bytes:
        if "://" in href or href.startswith("/"):
            raise ModelFileInvalid("the model asset must be a file next to the STAC Item")
        asset = (folder / href).resolve()
        if not asset.is_relative_to(folder):
            raise ModelFileInvalid("the model asset must be a file next to the STAC Item")
        return asset.read_bytes()

    return read_model(item, fetch, key)


def find_model_item(folder: Path) -> Path:
    """The one model STAC Item in a folder (e.g. the results of a batch job)."""
    found = []
    for path in sorted(folder.glob("*.json")):
        if path.is_symlink():
            continue
        try:
            item = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(item, dict) and ML_MODEL_EXTENSION in (item.get("stac_extensions") or []):
            found.append(path)
    if len(found) != 1:
        raise ModelFileInvalid(f"{len(found)} models found; name the model's .json file")
    return found[0]


# --- small helpers ----------------------------------------------------------------------------
def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _json_scalar(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def json_labels(values: Sequence) -> tuple:
    """Dimension labels as JSON values (numpy scalars unwrapped, dates as RFC 3339)."""
    arr = np.asarray(values)
    if arr.dtype.kind == "M":
        return tuple(datetime_labels_to_strings(arr))
    return tuple(v.item() if isinstance(v, np.generic) else v for v in arr.tolist())
