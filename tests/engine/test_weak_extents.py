"""Loads without spatial_extent bounded by the geometries of the processes that use them
(engine/optimize.py, as CDSE's dry run does): the rewrites, and the values of the rewritten
graph equal to those of the same graph with the geometries' bounding box as explicit extent,
both evaluated on the sample collection."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
from tests.engine.test_optimize import load, ref, save

from terracube.engine.evaluate import Evaluator, Services
from terracube.engine.optimize import Box, optimize
from terracube.engine.registry import build_registry
from terracube.results.access import FormatTable

SQUARE = {"type": "Polygon", "coordinates": [[[11.33, 46.50], [11.345, 46.50], [11.345, 46.51],
                                              [11.33, 46.51], [11.33, 46.50]]]}
SQUARE_BOX = {"west": 11.33, "south": 46.50, "east": 11.345, "north": 46.51, "crs": 4326}
# A second field east of the first, not touching it.
EAST = {"type": "Polygon", "coordinates": [[[11.36, 46.505], [11.37, 46.505], [11.37, 46.515],
                                            [11.36, 46.515], [11.36, 46.505]]]}
BBOX_UTM = {"west": 679720, "south": 5151080, "east": 680680, "north": 5151920,
            "crs": "EPSG:32632"}
DAYS = ["2022-06-01", "2022-06-15"]


def callback(pid: str, param: str = "x") -> dict:
    return {"process_graph": {"r": {"process_id": pid,
                                    "arguments": {param: {"from_parameter": param}},
                                    "result": True}}}


def mask_polygon(nid: str, mask: dict = SQUARE, **more) -> dict:
    return {"process_id": "mask_polygon", "arguments": {"data": ref(nid), "mask": mask, **more}}


def apply_polygon(nid: str, geometries: dict = SQUARE, pid: str = "apply_polygon") -> dict:
    name = "chunks" if pid == "chunk_polygon" else "geometries"
    return {"process_id": pid, "arguments": {
        "data": ref(nid), name: geometries, "process": {"process_graph": {"a": {
            "process_id": "apply", "arguments": {"data": {"from_parameter": "data"},
                                                 "process": callback("absolute")},
            "result": True}}}}}


def extent(graph: dict, nid: str = "load") -> dict | None:
    return optimize(graph)[nid]["arguments"].get("spatial_extent")


def fc(*geometries: dict) -> dict:
    return {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {}, "geometry": g} for g in geometries]}


# --- rewrites ---------------------------------------------------------------------------------
@pytest.mark.parametrize("pid", ["mask_polygon", "apply_polygon", "chunk_polygon"])
def test_polygons_bound_a_load_without_extent(pid: str) -> None:
    node = mask_polygon("load") if pid == "mask_polygon" else apply_polygon("load", pid=pid)
    assert extent({"load": load(), "p": node, "save": save("p")}) == SQUARE_BOX


@pytest.mark.parametrize("pid", ["mask_polygon", "apply_polygon", "chunk_polygon"])
def test_an_explicit_extent_wins_over_polygons(pid: str) -> None:
    node = mask_polygon("load") if pid == "mask_polygon" else apply_polygon("load", pid=pid)
    graph = {"load": load(spatial_extent=BBOX_UTM), "p": node, "save": save("p")}
    assert extent(graph) == BBOX_UTM


def test_mask_polygon_that_keeps_the_outside_needs_the_whole_load() -> None:
    for more in ({"inside": True}, {"replacement": 0}):
        graph = {"load": load(), "p": mask_polygon("load", **more), "save": save("p")}
        assert extent(graph) is None


def test_a_filter_bbox_later_in_the_graph_wins_over_the_polygons() -> None:
    later = {"process_id": "filter_bbox", "arguments": {"data": ref("p"), "extent": BBOX_UTM}}
    graph = {"load": load(), "p": mask_polygon("load"), "crop": later, "save": save("crop")}
    assert extent(graph) == BBOX_UTM
    # apply_polygon's process sees whole chunks: a later filter does not narrow them
    graph["p"] = apply_polygon("load")
    assert extent(graph) == SQUARE_BOX


def test_several_consumers_get_the_union_and_one_that_needs_all_gets_all() -> None:
    agg = {"process_id": "aggregate_spatial", "arguments": {
        "data": ref("load"), "geometries": fc(EAST), "reducer": callback("mean", "data")}}
    graph = {"load": load(), "p": mask_polygon("load", fc(SQUARE)), "a": agg,
             "s1": save("p"), "s2": {**save("a"), "result": False}}
    # mask_polygon's box and aggregate_spatial's are apart: one load each
    out = optimize(graph)
    boxes = sorted(n["arguments"]["spatial_extent"]["west"] for n in out.values()
                    if n["process_id"] == "load_collection")
    assert boxes == [11.33, 11.36]
    # two polygons of one mask_polygon: the union of their bounds
    graph = {"load": load(), "p": mask_polygon("load", fc(SQUARE, EAST)), "save": save("p")}
    assert extent(graph) == {"west": 11.33, "south": 46.5, "east": 11.37, "north": 46.515,
                             "crs": 4326}
    # a consumer that needs everything (the load saved as it is) keeps the whole collection
    graph = {"load": load(), "p": mask_polygon("load"), "s1": save("p"),
             "s2": {**save("load"), "result": False}}
    assert extent(graph) is None


def test_weak_and_strong_boxes() -> None:
    weak, strong = Box(0, 0, 1, 1, weak=True), Box(2, 2, 3, 3)
    assert weak.union(strong).weak and weak.union(strong) == Box(0, 0, 3, 3, weak=True)
    assert Box(0, 0, 1, 1, 4326, weak=True).in_crs(32632).weak


# --- same values as the graph with the extent written out ------------------------------------
@pytest.fixture(scope="module")
def sample_catalog(sample_data_dir: Path):
    from terracube.catalog import Catalog

    return Catalog(sample_data_dir)


def run(graph: dict, catalog) -> object:
    services = Services(registry=build_registry(), catalog=catalog, formats=FormatTable())
    return Evaluator(services).run(optimize(graph, catalog))


SAME_AS_EXPLICIT = {
    "mask_polygon": {"p": mask_polygon("load")},
    "apply_polygon": {"p": apply_polygon("load")},
    "chunk_polygon": {"p": apply_polygon("load", pid="chunk_polygon")},
    "mask_polygon then a time mean": {
        "p": mask_polygon("load"),
        "m": {"process_id": "reduce_dimension", "arguments": {
            "data": ref("p"), "dimension": "t", "reducer": callback("mean", "data")}}},
}


@pytest.mark.parametrize("name", list(SAME_AS_EXPLICIT))
def test_values_equal_those_with_the_explicit_extent(name: str, sample_catalog) -> None:
    tail = copy.deepcopy(SAME_AS_EXPLICIT[name])
    tail[list(tail)[-1]]["result"] = True
    bare = {"load": load(bands=["B04"], temporal_extent=DAYS), **tail}
    written = {"load": load(bands=["B04"], temporal_extent=DAYS, spatial_extent=SQUARE_BOX),
               **copy.deepcopy(tail)}
    assert optimize(bare, sample_catalog)["load"]["arguments"]["spatial_extent"] == SQUARE_BOX
    implicit, explicit = run(bare, sample_catalog), run(written, sample_catalog)
    assert implicit.data.dims == explicit.data.dims
    for dim in explicit.data.dims:
        np.testing.assert_array_equal(implicit.data.coords[dim].values,
                                      explicit.data.coords[dim].values)
    assert np.isfinite(explicit.data.values).any()
    np.testing.assert_array_equal(implicit.data.values, explicit.data.values)


# --- load_stac aligned like load_collection (engine/alignment.py) ----------------------------
def test_a_load_stac_cube_aligned_with_another_crs_is_widened() -> None:
    from terracube.engine.alignment import widen_aligned_loads

    box = {"west": 11.33, "south": 46.48, "east": 11.36, "north": 46.505}
    grids = {"load_collection": (32632, 10.0), "load_stac": (4326, 1 / 3600)}
    graph = {"s2": load(spatial_extent=dict(box)),
             "dem": {"process_id": "load_stac", "arguments": {
                 "url": "https://example.org/dem/collection.json", "spatial_extent": dict(box)}},
             "m": {"process_id": "merge_cubes", "result": True, "arguments": {
                 "cube1": ref("s2"), "cube2": ref("dem")}}}
    assert widen_aligned_loads(graph, lambda node: grids.get(node["process_id"])) == ["dem"]
    grown = graph["dem"]["arguments"]["spatial_extent"]
    assert grown["west"] < box["west"] and grown["east"] > box["east"]
    assert grown["south"] < box["south"] and grown["north"] > box["north"]


def test_geometries_with_a_named_crs_give_a_box_in_that_crs() -> None:
    utm = {"type": "Polygon", "crs": {"type": "name", "properties": {"name": "EPSG:32632"}},
           "coordinates": [[[679720, 5151080], [680680, 5151080], [680680, 5151920],
                            [679720, 5151080]]]}
    agg = {"process_id": "aggregate_spatial", "arguments": {
        "data": ref("load"), "geometries": utm, "reducer": callback("mean", "data")}}
    assert extent({"load": load(), "a": agg, "save": save("a")}) == {
        "west": 679720, "south": 5151080, "east": 680680, "north": 5151920, "crs": 32632}


# --- a box through a kernel ------------------------------------------------------------------
KERNEL = [[1, 2, 1], [2, 4, 2], [1, 2, 1]]


def kernel_then_crop(extent: dict | None = None) -> dict:
    load_args = {"bands": ["B04", "B08"], "temporal_extent": DAYS}
    if extent is not None:
        load_args["spatial_extent"] = extent
    return {"load": load(**load_args),
            "k": {"process_id": "apply_kernel", "arguments": {
                "data": ref("load"), "kernel": KERNEL, "factor": 1 / 16}},
            "crop": {"process_id": "filter_bbox",
                     "arguments": {"data": ref("k"), "extent": BBOX_UTM}},
            "save": save("crop")}


def test_a_box_passes_a_kernel_grown_by_its_reach(sample_catalog) -> None:
    pushed = optimize(kernel_then_crop(), sample_catalog)["load"]["arguments"]["spatial_extent"]
    # one 3x3 kernel: one pixel of the grid, widened by the coarsest band's (B08 10 m,
    # B04 10 m: the collection's coarsest, 60 m, is the safe pixel size the catalog gives)
    assert pushed["crs"] in (32632, "EPSG:32632")
    grow = BBOX_UTM["west"] - pushed["west"]
    assert 10 <= grow <= 60 and pushed["east"] - BBOX_UTM["east"] == grow
    # without a catalog the pixel size is unknown: nothing is pushed
    assert extent(kernel_then_crop()) is None
    # a weak box does not pass a kernel
    graph = {"load": load(), "k": {"process_id": "apply_kernel", "arguments": {
        "data": ref("load"), "kernel": KERNEL}}, "p": mask_polygon("k"), "save": save("p")}
    assert extent(graph) is None


def test_values_through_a_kernel_equal_the_whole_load(sample_catalog) -> None:
    graph = kernel_then_crop()
    del graph["save"]
    graph["crop"]["result"] = True
    whole = Evaluator(Services(registry=build_registry(), catalog=sample_catalog,
                               formats=FormatTable())).run(copy.deepcopy(graph))
    pushed = run(graph, sample_catalog)
    assert pushed.data.shape == whole.data.shape and np.isfinite(whole.data.values).all()
    np.testing.assert_array_equal(pushed.data.values, whole.data.values)


def test_geometries_of_a_load_geojson_node_count_too() -> None:
    graph = {"load": load(), "v": {"process_id": "load_geojson", "arguments": {"data": fc(EAST)}},
             "p": {"process_id": "mask_polygon", "arguments": {"data": ref("load"),
                                                               "mask": ref("v")}},
             "save": save("p")}
    assert extent(graph) == {"west": 11.36, "south": 46.505, "east": 11.37, "north": 46.515,
                             "crs": 4326}
