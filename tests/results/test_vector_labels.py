"""Vector results of cubes whose temporal labels are periods, not dates (season labels of
aggregate_temporal_period, the normals of climatological_normal), and of bands whose names are
not Python identifiers."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from shapely.geometry import Point, box

from terracube.datacube.cube import BANDS, GEOMETRY, TEMPORAL, Dimension
from terracube.datacube.vector import VectorCube
from terracube.results.writers import write_result

GEOMS = (box(11.0, 46.0, 11.1, 46.1), Point(11.2, 46.2))


def vector_cube(labels: list[str], bands: list[str]) -> VectorCube:
    values = np.arange(2 * len(labels) * len(bands), dtype="float32").reshape(
        2, len(labels), len(bands))
    da = xr.DataArray(values, dims=["geometry", "t", "bands"],
                      coords={"geometry": [0, 1], "t": np.array(labels, dtype=str),
                              "bands": bands})
    dims = (Dimension("geometry", GEOMETRY, reference_system=4326), Dimension("t", TEMPORAL),
            Dimension("bands", BANDS))
    return VectorCube(GEOMS, 4326, da.chunk(), dims, ({"name": "field"}, {"name": "well"}))


SEASONS = ["2008-mam", "2008-jja", "2008-son", "2008-djf"]
NORMALS = [f"{m:02d}" for m in range(1, 13)]


@pytest.mark.parametrize("labels", [SEASONS, NORMALS], ids=["seasons", "normals"])
def test_csv_writes_period_labels_as_they_are(tmp_path, labels) -> None:
    (f,) = write_result(vector_cube(labels, ["B04", "B08"]), "CSV", {}, tmp_path)
    table = pd.read_csv(f.path, dtype={"date": str})
    assert list(table.columns) == ["date", "feature_index", "B04", "B08"]
    assert list(table.date) == [label for label in labels for _ in range(2)]
    row = table[(table.date == labels[1]) & (table.feature_index == 1)].iloc[0]
    # geometry 1, label 1: position (1 * len(labels) + 1) * 2 in the value array
    assert (row.B04, row.B08) == ((len(labels) + 1) * 2, (len(labels) + 1) * 2 + 1)
    assert "0001" not in f.path.read_text()  # "01" was once written as 0001-01-01T00:00:00Z


@pytest.mark.parametrize("labels", [SEASONS, NORMALS], ids=["seasons", "normals"])
def test_json_and_geojson_write_period_labels_as_they_are(tmp_path, labels) -> None:
    cube = vector_cube(labels, ["B04"])
    (f,) = write_result(cube, "JSON", {}, tmp_path / "json")
    doc = json.loads(f.path.read_text())
    assert list(doc) == labels
    assert doc[labels[0]] == [[0.0], [float(len(labels))]]
    (g,) = write_result(cube, "GeoJSON", {}, tmp_path / "geojson")
    props = json.loads(g.path.read_text())["features"][1]["properties"]
    assert props == {"name": "well", **{f"{label}_B04": float(len(labels) + i)
                                        for i, label in enumerate(labels)}}


def test_geojson_and_json_of_bands_that_are_no_identifiers(tmp_path) -> None:
    # itertuples() renamed such columns (_1, _2), so the writer failed with a KeyError
    cube = vector_cube(["2008-mam"], ["0", "q0.25", "class"])
    (g,) = write_result(cube, "GeoJSON", {}, tmp_path / "geojson")
    features = json.loads(g.path.read_text())["features"]
    assert features[0]["properties"] == {"name": "field", "2008-mam_0": 0.0,
                                         "2008-mam_q0.25": 1.0, "2008-mam_class": 2.0}
    assert features[1]["properties"]["2008-mam_q0.25"] == 4.0
    (f,) = write_result(cube, "JSON", {}, tmp_path / "json")
    assert json.loads(f.path.read_text()) == {"2008-mam": [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]}
