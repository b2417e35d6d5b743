"""engine/alignment.py: a load aligned with a cube in another CRS is widened to that cube's
extent (checked with pyproj's own envelopes), and only then."""

from __future__ import annotations

from typing import Any

import pytest
from pyproj import Transformer

from terracube.engine.alignment import widen_aligned_loads

BOX = {"west": 11.33, "south": 46.48, "east": 11.36, "north": 46.505}
CRS_OF = {"S2": (32632, 60.0), "DEM": (4326, 1 / 3600), "DEM_UTM": (32632, 30.0)}


def grids(node: dict) -> tuple[Any, float] | None:
    if node.get("process_id") != "load_collection":
        return None
    return CRS_OF.get(node["arguments"]["id"])


def graph(dem_extent: Any = BOX, dem: str = "DEM", process: str = "merge_cubes") -> dict:
    nodes = {
        "s2": {"process_id": "load_collection",
               "arguments": {"id": "S2", "spatial_extent": dict(BOX)}},
        "dem": {"process_id": "load_collection",
                "arguments": {"id": dem, "spatial_extent": dem_extent}},
        "t": {"process_id": "reduce_dimension",
              "arguments": {"data": {"from_node": "dem"}, "dimension": "t",
                            "reducer": {"process_graph": {"max": {
                                "process_id": "max",
                                "arguments": {"data": {"from_parameter": "data"}},
                                "result": True}}}}},
    }
    roles = {"merge_cubes": ("cube1", "cube2"), "mask": ("data", "mask"),
             "resample_cube_spatial": ("target", "data")}[process]
    nodes["out"] = {"process_id": process, "result": True, "arguments": {
        roles[0]: {"from_node": "s2"}, roles[1]: {"from_node": "t"}}}
    return nodes


@pytest.mark.parametrize("process", ["merge_cubes", "mask", "resample_cube_spatial"])
def test_the_aligned_load_covers_the_targets_extent(process: str) -> None:
    g = graph(process=process)
    assert widen_aligned_loads(g, grids) == ["dem"]
    got = g["dem"]["arguments"]["spatial_extent"]
    assert got["crs"] == 4326
    utm = Transformer.from_crs(4326, 32632, always_xy=True).transform_bounds(
        *BOX.values(), densify_pts=21)
    back = Transformer.from_crs(32632, 4326, always_xy=True).transform_bounds(
        *utm, densify_pts=21)
    pixel = 1 / 3600
    assert got["west"] == pytest.approx(back[0] - pixel)
    assert got["south"] == pytest.approx(back[1] - pixel)
    assert got["east"] == pytest.approx(back[2] + pixel)
    assert got["north"] == pytest.approx(back[3] + pixel)
    assert got["west"] < BOX["west"] and got["north"] > BOX["north"]
    assert g["s2"]["arguments"]["spatial_extent"] == BOX  # the target is left alone


def test_nothing_changes_without_a_reason() -> None:
    same_crs = graph(dem="DEM_UTM")
    assert widen_aligned_loads(same_crs, grids) == []
    polygon = {"type": "Polygon", "coordinates": [[[11.33, 46.48], [11.36, 46.48],
                                                   [11.36, 46.5], [11.33, 46.48]]]}
    geojson = graph(dem_extent=polygon)
    assert widen_aligned_loads(geojson, grids) == []
    assert geojson["dem"]["arguments"]["spatial_extent"] == polygon
    # The DEM also goes to a result of its own: widening would change that result.
    shared = graph()
    shared["slope"] = {"process_id": "slope", "arguments": {"data": {"from_node": "dem"}}}
    assert widen_aligned_loads(shared, grids) == []
    unknown = graph(dem="NOT_IN_CATALOG")
    assert widen_aligned_loads(unknown, grids) == []
    # A process that changes the grid on the way (resample_spatial): not followed.
    resampled = graph()
    resampled["t"] = {"process_id": "resample_spatial",
                      "arguments": {"data": {"from_node": "dem"}, "resolution": 0.01}}
    assert widen_aligned_loads(resampled, grids) == []
