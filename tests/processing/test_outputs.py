"""processing/outputs.py: every save_result output written, named after its node, for jobs and
POST /result alike — files read back with rasterio, xarray and json."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
import rasterio
import xarray as xr

from terracube.datacube.cube import BANDS, SPATIAL, TEMPORAL, Dimension, RasterCube
from terracube.engine.evaluate import SavedResult
from terracube.processing.outputs import (
    compute_result,
    output_stems,
    write_outputs,
)
from terracube.processing.run import evaluate_outputs
from terracube.processing.services import build_services


def cube() -> RasterCube:
    values = np.arange(2 * 2 * 3 * 4, dtype="float32").reshape(2, 2, 3, 4)
    da = xr.DataArray(values, dims=["t", "bands", "y", "x"], coords={
        "t": np.array(["2022-06-02", "2022-06-07"], dtype="datetime64[ns]"),
        "bands": ["B04", "B08"],
        "y": [5151915.0, 5151905.0, 5151895.0], "x": [679725.0, 679735.0, 679745.0, 679755.0]})
    dims = (Dimension("t", TEMPORAL), Dimension("bands", BANDS),
            Dimension("y", SPATIAL, "y", 32632), Dimension("x", SPATIAL, "x", 32632))
    return RasterCube(da.chunk({"t": 1}), dims)


def test_two_save_result_outputs_are_written_with_their_node_ids(tmp_path, registry) -> None:
    data = cube()
    composite = data.with_data(data.data.max("t"))
    composite = RasterCube(composite.data, tuple(d for d in data.dimensions if d.name != "t"))
    outputs = [SavedResult(data, "netCDF", {}, node_id="save_series"),
               SavedResult(composite, "GTiff", {}, node_id="save_max")]
    logged: list[tuple] = []
    progress: list[tuple[int, float]] = []
    services = build_services(None, None, registry,
                              log=lambda level, message, node_id=None: logged.append(
                                  (level, message, node_id)))
    written = write_outputs(outputs, tmp_path, services,
                            progress=lambda i, f: progress.append((i, f)))

    assert [w.node_id for w in written] == ["save_series", "save_max"]
    assert [[f.filename for f in w.files] for w in written] == [
        ["openEO_save_series.nc"], ["openEO_save_max.tif"]]
    series = xr.open_dataset(tmp_path / "openEO_save_series.nc")
    np.testing.assert_array_equal(series["B08"].values, data.data.sel(bands="B08").values)
    with rasterio.open(tmp_path / "openEO_save_max.tif") as ds:
        # the composite, computed here with numpy from the same values
        np.testing.assert_array_equal(ds.read(), np.asarray(data.data).max(axis=0))
    assert [n for _, _, n in logged] == ["save_series", "save_max"]
    assert (0, 1.0) in progress and (1, 1.0) in progress


def test_every_save_result_of_a_graph_runs_not_only_the_result_node(tmp_path, registry) -> None:
    """The client's MultiResult: two save_result end nodes, only the second is the result."""
    graph = {
        "numbers": {"process_id": "save_result",
                    "arguments": {"data": [1, 2, 3], "format": "JSON"}},
        "total": {"process_id": "sum", "arguments": {"data": [1, 2, 3]}},
        "save_total": {"process_id": "save_result",
                       "arguments": {"data": {"from_node": "total"}, "format": "JSON"},
                       "result": True},
    }
    services = build_services(None, None, registry)
    outputs = evaluate_outputs({"process_graph": graph}, services)
    assert [o.node_id for o in outputs] == ["numbers", "save_total"]
    written = write_outputs(outputs, tmp_path, build_services(None, None, registry))
    assert json.loads((tmp_path / "openEO_numbers.json").read_text()) == [1, 2, 3]
    assert json.loads((tmp_path / "openEO_save_total.json").read_text()) == 6
    assert len(written) == 2


def test_post_result_sends_several_outputs_as_a_tar(registry) -> None:
    graph = {
        "a": {"process_id": "save_result", "arguments": {"data": [1, 2], "format": "JSON"}},
        "b": {"process_id": "save_result", "arguments": {"data": 7, "format": "JSON"},
              "result": True},
    }
    result = compute_result({"process_graph": graph}, build_services(None, None, registry))
    try:
        assert result.media_type == "application/x-tar" and result.filename == "result.tar"
        with tarfile.open(result.path) as archive:
            contents = {m.name: json.load(archive.extractfile(m)) for m in archive.getmembers()}
        assert contents == {"result_a.json": [1, 2], "result_b.json": 7}
    finally:
        result.remove()
    assert not Path(result.folder).exists()


def test_one_output_is_sent_as_it_is(registry) -> None:
    graph = {"b": {"process_id": "save_result", "arguments": {"data": 7, "format": "JSON"},
                   "result": True}}
    result = compute_result({"process_graph": graph}, build_services(None, None, registry))
    try:
        assert result.filename == "result.json" and json.loads(result.path.read_text()) == 7
    finally:
        result.remove()


def test_output_names_stay_distinct() -> None:
    def saved(node_id):
        return SavedResult(None, "JSON", {}, node_id=node_id)

    assert output_stems([saved("x")], "openEO") == ["openEO"]
    # a user-defined process that saves, called twice, gives the same inner node id twice
    assert output_stems([saved("s"), saved("s"), saved(None), saved("t")], "openEO") == [
        "openEO_1", "openEO_2", "openEO_3", "openEO_t"]
