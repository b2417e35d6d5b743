"""Issue 11, defect 13: what the `inspect` process and `openeo.udf.inspect(...)` inside a UDF
log reaches GET /jobs/{id}/logs, with its data, code and the id of its node; the data a UDF
logs is checked against the sample files read with rasterio."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tests.support.data import sample_band

openeo = pytest.importorskip("openeo")
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

SMALL = {"west": 680000, "south": 5151200, "east": 680300, "north": 5151500, "crs": 32632}
DAY = ["2022-06-07", "2022-06-08"]

UDF = '''
import numpy as np
from openeo.udf import inspect
from openeo.udf import XarrayDataCube


def apply_datacube(cube: XarrayDataCube, context: dict) -> XarrayDataCube:
    arr = cube.get_array()
    inspect(data={"max": float(np.nanmax(arr.values)), "shape": list(arr.shape)},
            message="block statistics", code="Stats", level="warning")
    return cube
'''


def b08(sample_data_dir: Path) -> np.ndarray:
    return sample_band(sample_data_dir, DAY[0], "B08", SMALL)


def cube(con):
    return con.load_collection("SENTINEL2_L2A", spatial_extent=SMALL, temporal_extent=DAY,
                               bands=["B08"])


def test_udf_inspect_reaches_the_job_log(con, sample_data_dir: Path) -> None:
    out = cube(con).apply_dimension(process=openeo.UDF(UDF, runtime="Python"), dimension="t")
    job = out.create_job(out_format="netCDF")
    job.start_and_wait(max_poll_interval=0.2)
    entries = [e for e in job.logs() if "block statistics" in e["message"]]
    assert entries, [e["message"] for e in job.logs()]
    graph = job.describe()["process"]["process_graph"]
    (apply_node,) = [node for node in graph.values()
                     if node["process_id"] == "apply_dimension"]
    callback = apply_node["arguments"]["process"]["process_graph"]
    (udf_node,) = [nid for nid, node in callback.items() if node["process_id"] == "run_udf"]
    expected = b08(sample_data_dir)
    for entry in entries:
        assert entry["level"] == "warning" and entry["code"] == "Stats"
        assert entry["path"][0]["node_id"] == udf_node
    assert max(e["data"]["max"] for e in entries) == float(expected.max())
    assert sum(np.prod(e["data"]["shape"]) for e in entries) == expected.size


def test_inspect_process_reaches_the_job_log(con) -> None:
    s2 = cube(con)
    looked = s2.process("inspect", data=s2, message="my cube", code="Look")
    graph = looked.save_result(format="netCDF").flat_graph()
    graph["numbers"] = {"process_id": "inspect",
                        "arguments": {"data": [1, 2.5, None], "message": "numbers"}}
    job = con.create_job(graph)
    job.start_and_wait(max_poll_interval=0.2)
    logs = job.logs()
    (looked_entry,) = [e for e in logs if "my cube" in e["message"]]
    (inspect_node,) = [nid for nid, n in graph.items() if n["process_id"] == "inspect"
                       and nid != "numbers"]
    assert looked_entry["code"] == "Look"
    assert looked_entry["path"][0]["node_id"] == inspect_node
    assert "raster data cube" in looked_entry["data"]  # summarised, never computed
    (numbers,) = [e for e in logs if "numbers" in e["message"]]
    assert numbers["data"] == [1, 2.5, None]
    assert numbers["path"][0]["node_id"] == "numbers"
