"""Writing a model that save_ml_model publishes as an output of a batch job (as CDSE does):
the estimator file and its STAC Item (ml-model extension), next to the job's other results."""

from __future__ import annotations

from pathlib import Path

from terracube import errors
from terracube.engine.evaluate import SavedResult, Services
from terracube.engine.mlmodel import (
    MODEL_MEDIA_TYPE,
    MlModel,
    model_stem,
    signing_key,
    write_model,
)
from terracube.results.writers import ResultFile

ITEM_MEDIA_TYPE = "application/json"


def write_model_output(saved: SavedResult, folder: Path, services: Services) -> list[ResultFile]:
    """`<name>.joblib` and `<name>.json` (the model's STAC Item) in `folder`."""
    model = saved.data
    if not isinstance(model, MlModel):  # save_ml_model only saves models: our bug otherwise
        raise errors.Internal(f"A model output holds a {type(model).__name__}.")
    settings = services.settings
    key = signing_key(settings.data_dir if settings is not None else None)
    blob, item = write_model(model, folder, model_stem(saved.options), key)
    return [ResultFile(blob, MODEL_MEDIA_TYPE, blob.name, model),
            ResultFile(item, ITEM_MEDIA_TYPE, item.name, model)]
