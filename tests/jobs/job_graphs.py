"""Process graphs over the sample collection used by the batch job tests (small and slow)."""

from __future__ import annotations

SMALL_BBOX = {"west": 679720, "south": 5151080, "east": 680680, "north": 5151920,
              "crs": "EPSG:32632"}


def ndvi_graph(fmt: str = "netCDF", nir: str = "B08", bbox: dict | None = None,
               temporal_extent: list | None = None) -> dict:
    """NDVI over the small core area in June 2022 (about a second of work)."""
    return {"process_graph": {
        "load1": {"process_id": "load_collection", "arguments": {
            "id": "SENTINEL2_L2A", "spatial_extent": bbox or SMALL_BBOX,
            "temporal_extent": temporal_extent or ["2022-06-01", "2022-07-01"],
            "bands": ["B04", "B08"]}},
        "ndvi1": {"process_id": "ndvi", "arguments": {
            "data": {"from_node": "load1"}, "nir": nir, "red": "B04"}},
        "save1": {"process_id": "save_result", "arguments": {
            "data": {"from_node": "ndvi1"}, "format": fmt}, "result": True},
    }}


# A UDF that waits: how long a job runs must not depend on how fast the engine is.
_WAITING_UDF = """import time


def apply_datacube(cube, context):
    time.sleep(context["seconds"])
    return cube
"""


def slow_graph(seconds_per_block: float = 0.25) -> dict:
    """A job that computes for a known time: the whole sample cut into 36 neighbourhoods of
    64 × 64 px, each passed through a UDF that waits (36 × 0.25 s on 2 threads: ~4.5 s),
    then a median over time. Progress moves block by block."""
    udf = {"process_graph": {"udf": {"process_id": "run_udf", "arguments": {
        "data": {"from_parameter": "data"}, "udf": _WAITING_UDF, "runtime": "Python",
        "context": {"seconds": seconds_per_block}}, "result": True}}}
    return {"process_graph": {
        "load": {"process_id": "load_collection", "arguments": {
            "id": "SENTINEL2_L2A", "spatial_extent": None,
            "temporal_extent": ["2022-04-01", "2022-10-01"], "bands": ["B04", "B08"]}},
        "slow": {"process_id": "apply_neighborhood", "arguments": {
            "data": {"from_node": "load"}, "process": udf, "overlap": None,
            "size": [{"dimension": "x", "value": 64, "unit": "px"},
                     {"dimension": "y", "value": 64, "unit": "px"}]}},
        "median": {"process_id": "reduce_dimension", "arguments": {
            "data": {"from_node": "slow"}, "dimension": "t", "reducer": {"process_graph": {
                "r": {"process_id": "median", "arguments": {"data": {"from_parameter": "data"}},
                      "result": True}}}}},
        "save": {"process_id": "save_result", "arguments": {
            "data": {"from_node": "median"}, "format": "netCDF"}, "result": True},
    }}
