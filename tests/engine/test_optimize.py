"""Filter push-down (engine/optimize.py): graph rewrites, and results equal to the graph as
written when both run on the sample collection."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest

from terracube.engine.evaluate import Evaluator, Services
from terracube.engine.optimize import Box, Interval, optimize, pushed_down
from terracube.engine.registry import build_registry
from terracube.results.access import FormatTable

BBOX_UTM = {"west": 679720, "south": 5151080, "east": 680680, "north": 5151920,
            "crs": "EPSG:32632"}
BBOX_LL = {"west": 11.33, "south": 46.50, "east": 11.345, "north": 46.51}  # inside the sample
RESOLUTIONS = {"B02": 10.0, "B04": 10.0, "B08": 10.0, "B05": 20.0, "SCL": 20.0}


def bands_of(node: dict) -> dict:
    return RESOLUTIONS if node["process_id"] == "load_collection" else None


def ref(nid: str) -> dict:
    return {"from_node": nid}


def load(**args) -> dict:
    return {"process_id": "load_collection", "arguments": {"id": "SENTINEL2_L2A", **args}}


def save(nid: str) -> dict:
    return {"process_id": "save_result", "arguments": {"data": ref(nid), "format": "GTiff"},
            "result": True}


def reducer(pid: str) -> dict:
    return {"process_graph": {"r": {"process_id": pid,
                                    "arguments": {"data": {"from_parameter": "data"}},
                                    "result": True}}}


def reduce(nid: str, dim: str, pid: str = "max") -> dict:
    return {"process_id": "reduce_dimension",
            "arguments": {"data": ref(nid), "dimension": dim, "reducer": reducer(pid)}}


def bbox(nid: str, extent: dict = BBOX_UTM) -> dict:
    return {"process_id": "filter_bbox", "arguments": {"data": ref(nid), "extent": extent}}


def temporal(nid: str, extent: list) -> dict:
    return {"process_id": "filter_temporal", "arguments": {"data": ref(nid), "extent": extent}}


def apply_abs(nid: str) -> dict:
    return {"process_id": "apply", "arguments": {"data": ref(nid), "process": {
        "process_graph": {"a": {"process_id": "absolute",
                                "arguments": {"x": {"from_parameter": "x"}}, "result": True}}}}}


def args(graph: dict, nid: str = "load") -> dict:
    return graph[nid]["arguments"]


# --- rewrites ---------------------------------------------------------------------------------
def test_filter_bbox_on_the_load_moves_into_spatial_extent_and_stays() -> None:
    graph = {"load": load(), "crop": bbox("load"), "save": save("crop")}
    before = copy.deepcopy(graph)
    out = optimize(graph)
    assert graph == before  # pure: the input graph is not changed
    assert args(out)["spatial_extent"] == BBOX_UTM
    assert out["crop"] == graph["crop"]  # the filter stays (a no-op on the smaller cube)
    assert list(pushed_down(graph, out)) == [("load", "spatial_extent", None, BBOX_UTM)]


def test_filters_pass_through_nodes_that_keep_the_dimension() -> None:
    graph = {"load": load(bands=["B04", "B08"]), "abs": apply_abs("load"),
             "ndvi": {"process_id": "ndvi", "arguments": {"data": ref("abs")}},
             "max": reduce("ndvi", "t"), "crop": bbox("max"), "save": save("crop")}
    out = optimize(graph)
    assert args(out)["spatial_extent"] == BBOX_UTM
    # a reduction over time passes space on, but a time filter after it does not exist
    assert "temporal_extent" not in args(out)


def test_time_filter_passes_a_spatial_kernel_but_a_bbox_does_not() -> None:
    kernel = {"process_id": "apply_kernel",
              "arguments": {"data": ref("load"), "kernel": [[1, 1, 1]] * 3}}
    graph = {"load": load(), "k": kernel, "crop": bbox("k"),
             "time": temporal("crop", ["2022-06-01", "2022-07-01"]), "save": save("time")}
    out = optimize(graph)
    assert args(out)["temporal_extent"] == ["2022-06-01", "2022-07-01"]
    assert "spatial_extent" not in args(out)  # pixels at the edge need their neighbours


def test_extents_intersect_with_what_the_load_already_has() -> None:
    graph = {"load": load(temporal_extent=["2022-05-01", "2022-06-15"],
                          spatial_extent={**BBOX_UTM, "west": 680000}),
             "time": temporal("load", ["2022-06-01", None]), "crop": bbox("time"),
             "save": save("crop")}
    out = optimize(graph)
    assert args(out)["temporal_extent"] == ["2022-06-01", "2022-06-15"]
    assert args(out)["spatial_extent"] == {**BBOX_UTM, "west": 680000}  # already inside


def test_a_box_in_another_crs_is_intersected_in_the_loads_crs() -> None:
    big = {"west": 678000, "south": 5149680, "east": 681840, "north": 5153520,
           "crs": "EPSG:32632"}
    graph = {"load": load(spatial_extent=big), "crop": bbox("load", BBOX_LL),
             "save": save("crop")}
    extent = args(optimize(graph))["spatial_extent"]
    assert extent["crs"] == "EPSG:32632"
    inner = Box(**BBOX_LL).in_crs("EPSG:32632")
    assert Box(**extent).contains(inner) and Box(**big).contains(Box(**extent))
    assert extent["east"] - extent["west"] < 0.5 * (big["east"] - big["west"])


def test_an_unfiltered_consumer_keeps_the_whole_load() -> None:
    graph = {"load": load(), "crop": bbox("load"), "max": reduce("load", "t"),
             "merge": {"process_id": "merge_cubes",
                       "arguments": {"cube1": ref("crop"), "cube2": ref("max")}},
             "save": save("merge")}
    out = optimize(graph)
    assert "spatial_extent" not in args(out)
    assert len(out) == len(graph)


def test_separate_windows_get_one_load_each() -> None:
    east = {**BBOX_UTM, "west": 681000, "east": 681500}
    graph = {"load": load(bands=["B04"]), "a": bbox("load"), "b": bbox("load", east),
             "merge": {"process_id": "merge_cubes",
                       "arguments": {"cube1": ref("a"), "cube2": ref("b")}},
             "save": save("merge")}
    out = optimize(graph)
    assert len(out) == len(graph) + 1
    copy_id = out["b"]["arguments"]["data"]["from_node"]
    assert copy_id != "load" and out[copy_id]["process_id"] == "load_collection"
    assert args(out)["spatial_extent"] == BBOX_UTM
    assert args(out, copy_id)["spatial_extent"] == east
    assert args(out, copy_id)["bands"] == ["B04"]
    assert "result" not in out[copy_id]


def test_nested_windows_share_one_load_with_the_larger_window() -> None:
    inner = {**BBOX_UTM, "west": 680000, "east": 680200}
    graph = {"load": load(), "a": bbox("load"), "b": bbox("load", inner),
             "merge": {"process_id": "merge_cubes",
                       "arguments": {"cube1": ref("a"), "cube2": ref("b")}},
             "save": save("merge")}
    out = optimize(graph)
    assert len(out) == len(graph)
    assert args(out)["spatial_extent"] == BBOX_UTM


def test_bands_need_the_collection_metadata() -> None:
    graph = {"load": load(), "b": {"process_id": "filter_bands",
                                   "arguments": {"data": ref("load"), "bands": ["B08", "B04"]}},
             "save": save("b")}
    assert "bands" not in args(optimize(graph))  # names and resolutions unknown
    out = optimize(graph, band_lookup=bands_of)
    assert args(out)["bands"] == ["B04", "B08"]  # collection order; the filter orders them


def test_bands_are_not_pushed_when_the_grid_would_get_coarser() -> None:
    graph = {"load": load(bands=["B04", "SCL"]),
             "b": {"process_id": "filter_bands",
                   "arguments": {"data": ref("load"), "bands": ["SCL"]}},
             "save": save("b")}
    assert args(optimize(graph, band_lookup=bands_of))["bands"] == ["B04", "SCL"]
    graph["load"] = load(bands=["B05", "B04", "SCL"])
    graph["b"]["arguments"]["bands"] = ["SCL", "B04"]
    assert args(optimize(graph, band_lookup=bands_of))["bands"] == ["B04", "SCL"]


def test_common_names_and_wavelengths_are_left_to_the_filter() -> None:
    for extra in ({"bands": ["nir"]}, {"bands": ["B04"], "wavelengths": [[0.8, 0.9]]}):
        graph = {"load": load(bands=["B04", "B08", "B02"]),
                 "b": {"process_id": "filter_bands", "arguments": {"data": ref("load"), **extra}},
                 "save": save("b")}
        assert args(optimize(graph, band_lookup=bands_of))["bands"] == ["B04", "B08", "B02"]


def test_w2_like_graph_keeps_all_bands_for_the_cloud_mask() -> None:
    cloud = {"process_id": "reduce_dimension", "arguments": {
        "data": ref("load"), "dimension": "bands", "reducer": {"process_graph": {
            "scl": {"process_id": "array_element",
                    "arguments": {"data": {"from_parameter": "data"}, "label": "SCL"}},
            "eq": {"process_id": "eq", "arguments": {"x": ref("scl"), "y": 3},
                   "result": True}}}}}
    graph = {"load": load(bands=["B02", "B04", "SCL"]), "cloud": cloud,
             "refl": {"process_id": "filter_bands",
                      "arguments": {"data": ref("load"), "bands": ["B02", "B04"]}},
             "masked": {"process_id": "mask",
                        "arguments": {"data": ref("refl"), "mask": ref("cloud")}},
             "crop": bbox("masked"), "time": temporal("crop", ["2022-06-01", "2022-08-01"]),
             "save": save("time")}
    out = optimize(graph, band_lookup=bands_of)
    assert len(out) == len(graph)
    assert args(out)["bands"] == ["B02", "B04", "SCL"]
    # mask passes space and time to both of its cubes, so the one load gets both
    assert args(out)["spatial_extent"] == BBOX_UTM
    assert args(out)["temporal_extent"] == ["2022-06-01", "2022-08-01"]


def test_a_time_filter_after_temporal_aggregation_is_not_pushed() -> None:
    monthly = {"process_id": "aggregate_temporal_period",
               "arguments": {"data": ref("load"), "period": "month", "reducer": reducer("mean")}}
    graph = {"load": load(), "m": monthly, "time": temporal("m", ["2022-06-01", "2022-07-01"]),
             "save": save("time")}
    assert "temporal_extent" not in args(optimize(graph))


def test_geometry_bounds_of_filter_spatial_and_aggregate_spatial() -> None:
    square = {"type": "Polygon", "coordinates": [[[11.33, 46.50], [11.345, 46.50],
                                                  [11.345, 46.51], [11.33, 46.51],
                                                  [11.33, 46.50]]]}
    fc = {"type": "FeatureCollection",
          "features": [{"type": "Feature", "properties": {}, "geometry": square}]}
    for pid, arg in (("filter_spatial", "geometries"), ("aggregate_spatial", "geometries")):
        node = {"process_id": pid, "arguments": {"data": ref("load"), arg: fc}}
        if pid == "aggregate_spatial":
            node["arguments"]["reducer"] = reducer("mean")
        graph = {"load": load(), "f": node, "save": save("f")}
        extent = args(optimize(graph))["spatial_extent"]
        assert extent == {"west": 11.33, "south": 46.5, "east": 11.345, "north": 46.51,
                          "crs": 4326}


def test_mask_polygon_keeps_an_explicit_extent_and_points_have_no_area() -> None:
    square = {"type": "Polygon", "coordinates": [[[11.33, 46.50], [11.345, 46.50],
                                                  [11.345, 46.51], [11.33, 46.50]]]}
    graph = {"load": load(spatial_extent=BBOX_UTM),
             "m": {"process_id": "mask_polygon",
                   "arguments": {"data": ref("load"), "mask": square}},
             "save": save("m")}
    # the result keeps every pixel of the load (without an extent: tests/engine/
    # test_weak_extents.py)
    assert args(optimize(graph))["spatial_extent"] == BBOX_UTM
    point = {"type": "Point", "coordinates": [11.34, 46.505]}
    graph = {"load": load(), "f": {"process_id": "filter_spatial",
                                   "arguments": {"data": ref("load"), "geometries": point}},
             "save": save("f")}
    assert "spatial_extent" not in args(optimize(graph))


def test_references_the_optimizer_cannot_follow_keep_the_whole_load() -> None:
    graph = {"load": load(), "crop": bbox("load"),
             "a": {"process_id": "apply", "arguments": {
                 "data": ref("crop"), "context": {"cube": ref("load")},
                 "process": apply_abs("x")["arguments"]["process"]}},
             "save": save("a")}
    assert "spatial_extent" not in args(optimize(graph))
    graph = {"load": load(), "crop": bbox("load", {"west": {"from_parameter": "w"},
                                                   "south": 0, "east": 1, "north": 1}),
             "save": save("crop")}
    assert "spatial_extent" not in args(optimize(graph))
    graph = {"load": load(), "udp": {"process_id": "my_udp", "arguments": {"data": ref("load")}},
             "crop": bbox("udp"), "save": save("crop")}
    assert "spatial_extent" not in args(optimize(graph))


def test_a_disjoint_filter_leaves_the_load_alone() -> None:
    graph = {"load": load(temporal_extent=["2022-04-01", "2022-05-01"]),
             "time": temporal("load", ["2022-06-01", "2022-07-01"]), "save": save("time")}
    assert args(optimize(graph))["temporal_extent"] == ["2022-04-01", "2022-05-01"]


def test_long_chains_do_not_recurse_deeply() -> None:
    graph = {"load": load()}
    prev = "load"
    for i in range(3000):
        graph[f"a{i}"] = apply_abs(prev)
        prev = f"a{i}"
    graph["crop"] = bbox(prev)
    graph["save"] = save("crop")
    assert args(optimize(graph))["spatial_extent"] == BBOX_UTM


def test_interval_and_box_algebra() -> None:
    a = Interval("2022-01-01", "2022-03-01")
    b = Interval("2022-02-01T00:00:00Z", None)
    assert a.intersect(b) == Interval("2022-02-01T00:00:00Z", "2022-03-01")
    assert a.union(b) == Interval("2022-01-01", None)
    assert Interval(None, "2022-03-01").contains(a) and not a.contains(b)
    assert Interval("2022-03-01", "2022-02-01").empty
    box = Box(0, 0, 10, 10, 32632)
    assert box.intersect(Box(5, 5, 20, 20, 32632)) == Box(5, 5, 10, 10, 32632)
    assert box.intersect(Box(11, 11, 20, 20, 32632)).empty


# --- same results as the graph as written -------------------------------------------------------
@pytest.fixture(scope="module")
def sample_catalog(sample_data_dir: Path):
    from terracube.catalog import Catalog

    return Catalog(sample_data_dir)


def run(graph: dict, catalog) -> object:
    services = Services(registry=build_registry(), catalog=catalog, formats=FormatTable())
    return Evaluator(services).run(graph)


SAME_RESULT_GRAPHS = {
    "bbox in lon/lat after ndvi and max": {
        "load": load(bands=["B04", "B08"]),
        "ndvi": {"process_id": "ndvi", "arguments": {"data": ref("load")}},
        "max": reduce("ndvi", "t"), "crop": bbox("max", BBOX_LL)},
    "time and bands through apply": {
        "load": load(spatial_extent=BBOX_UTM), "abs": apply_abs("load"),
        "time": temporal("abs", ["2022-06-01", "2022-06-20T12:00:00Z"]),
        "b": {"process_id": "filter_bands", "arguments": {"data": ref("time"),
                                                          "bands": ["B08", "B02"]}}},
    "bbox edges on pixel centres, 10 m and 20 m bands": {
        "load": load(bands=["B02", "SCL"], temporal_extent=["2022-06-01", "2022-06-15"]),
        "crop": bbox("load", {"west": 679725, "south": 5151085, "east": 680675,
                              "north": 5151915, "crs": 32632})},
    "two windows, two loads": {
        "load": load(bands=["B04"], temporal_extent=["2022-06-01", "2022-06-15"]),
        "a": bbox("load"),
        "b": bbox("load", {**BBOX_UTM, "west": 680800, "east": 681200, "south": 5152000,
                           "north": 5152400}),
        "ra": reduce("a", "t", "mean"), "rb": reduce("b", "t", "mean"),
        "merge": {"process_id": "merge_cubes", "arguments": {"cube1": ref("ra"),
                                                             "cube2": ref("rb")}}},
}


@pytest.mark.parametrize("name", list(SAME_RESULT_GRAPHS))
def test_optimized_graph_gives_the_same_cube(name: str, sample_catalog) -> None:
    graph = copy.deepcopy(SAME_RESULT_GRAPHS[name])
    last = list(graph)[-1]
    graph[last]["result"] = True
    optimized = optimize(graph, sample_catalog)
    assert list(pushed_down(graph, optimized))  # something was pushed
    plain, fast = run(graph, sample_catalog), run(optimized, sample_catalog)
    assert plain.dimensions == fast.dimensions
    assert plain.data.dims == fast.data.dims
    for dim in plain.data.dims:
        np.testing.assert_array_equal(plain.data.coords[dim].values,
                                      fast.data.coords[dim].values)
    np.testing.assert_array_equal(plain.data.values, fast.data.values)
