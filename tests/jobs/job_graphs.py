"""Process graphs over the sample collection used by the batch job tests (small and heavy)."""

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


def heavy_graph(bands: int = 10, applies: int = 2) -> dict:
    """A median over the whole sample (all dates, up to 12 bands): seconds to tens of seconds."""
    names = ["B02", "B03", "B04", "B08", "B05", "B06", "B07", "B8A", "B11", "B12", "B01",
             "B09"][:bands]
    graph: dict = {"load": {"process_id": "load_collection", "arguments": {
        "id": "SENTINEL2_L2A", "spatial_extent": None,
        "temporal_extent": ["2022-04-01", "2022-10-01"], "bands": names}}}
    previous = "load"
    for i in range(applies):
        graph[f"apply{i}"] = {"process_id": "apply", "arguments": {
            "data": {"from_node": previous}, "process": {"process_graph": {
                "s": {"process_id": "sqrt", "arguments": {"x": {"from_parameter": "x"}}},
                "m": {"process_id": "multiply", "arguments": {
                    "x": {"from_node": "s"}, "y": {"from_node": "s"}}, "result": True}}}}}
        previous = f"apply{i}"
    graph["median"] = {"process_id": "reduce_dimension", "arguments": {
        "data": {"from_node": previous}, "dimension": "t", "reducer": {"process_graph": {
            "r": {"process_id": "median", "arguments": {"data": {"from_parameter": "data"}},
                  "result": True}}}}}
    graph["save"] = {"process_id": "save_result", "arguments": {
        "data": {"from_node": "median"}, "format": "netCDF"}, "result": True}
    return {"process_graph": graph}
