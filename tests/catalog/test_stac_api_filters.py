"""Property conditions of load_stac/load_collection sent to STAC APIs as CQL2-JSON filters
(catalog/cql2.py and the item search of catalog/stac.py).

The API is a real HTTP server in its own process (filtering_stac_api.py beside this file) over
the real Belgian Sentinel-2 items; its log shows which filter reached it and which items it
returned. The cubes are compared with what rasterio reads from the files.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from tests.support.filtering_stac_api import FilteringStacApi
from tests.support.real_data import BELGIUM_CLOUD_COVER, BELGIUM_STAC, write_belgium_catalog

from terracube.catalog.access import StacUrlReader
from terracube.catalog.cql2 import Cql2Support, condition_filter, property_filter
from terracube.engine.evaluate import Callback, Evaluator, Services
from terracube.engine.registry import build_registry

# Made-up platforms and instruments for the three Belgian items (the originals have none).
PLATFORM = {"2023-06-01": "sentinel-2a", "2023-06-04": "sentinel-2b",
            "2023-06-06": "sentinel-2b"}
INSTRUMENTS = {"2023-06-01": ["msi"], "2023-06-04": ["msi", "made-up"],
               "2023-06-06": ["made-up"]}
TIFS = {"2023-06-01": BELGIUM_STAC / "openEO_2023-06-01Z.tif",
        "2023-06-04": BELGIUM_STAC / "sub-folder" / "openEO_2023-06-04Z.tif",
        "2023-06-06": BELGIUM_STAC / "sub-folder" / "openEO_2023-06-06Z.tif"}
# 8 x 6 pixels of the 10 m UTM 31N grid of the Belgian crops.
BOX = {"west": 644600.0, "south": 5676240.0, "east": 644680.0, "north": 5676300.0,
       "crs": 32631}
FULL = Cql2Support(filter=True, advanced_comparison=True, array_functions=True)
BASIC = Cql2Support(filter=True)


def cond(process_id: str, **arguments) -> dict:
    """A one-node condition graph; "value" stands for {"from_parameter": "value"}."""
    args = {k: {"from_parameter": "value"} if v == "value" else v for k, v in arguments.items()}
    return {"c": {"process_id": process_id, "arguments": args, "result": True}}


def both(first: dict, second: dict) -> dict:
    """and(first, second) of two one-node graphs."""
    return {"a": {**first["c"], "result": False}, "b": {**second["c"], "result": False},
            "and": {"process_id": "and", "arguments": {"x": {"from_node": "a"},
                                                       "y": {"from_node": "b"}},
                    "result": True}}


def callback(graph: dict, scope: dict | None = None) -> Callback:
    return Callback(graph, Evaluator(Services(registry=build_registry())), scope or {},
                    "load", "properties")


def prop(name: str) -> dict:
    return {"property": name}


# --- translation ------------------------------------------------------------------------------
@pytest.mark.parametrize("graph, expected", [
    (cond("lte", x="value", y=20), {"op": "<=", "args": [prop("p"), 20]}),
    (cond("gt", x=20, y="value"), {"op": "<", "args": [prop("p"), 20]}),  # 20 > value
    (cond("eq", x="value", y="sentinel-2a"), {"op": "=", "args": [prop("p"), "sentinel-2a"]}),
    (cond("neq", x="value", y=True), {"op": "<>", "args": [prop("p"), True]}),
    (cond("between", x="value", min=1, max=2.5),
     {"op": "and", "args": [{"op": ">=", "args": [prop("p"), 1]},
                            {"op": "<=", "args": [prop("p"), 2.5]}]}),
    (cond("between", x="value", min=1, max=2, exclude_max=True),
     {"op": "and", "args": [{"op": ">=", "args": [prop("p"), 1]},
                            {"op": "<", "args": [prop("p"), 2]}]}),
    (cond("array_contains", data=["a", "b"], value="value"),
     {"op": "in", "args": [prop("p"), ["a", "b"]]}),
    (cond("array_contains", data="value", value="msi"),
     {"op": "a_contains", "args": [prop("p"), ["msi"]]}),
    (both(cond("gte", x="value", y=0), cond("lt", x="value", y=9)),
     {"op": "and", "args": [{"op": ">=", "args": [prop("p"), 0]},
                            {"op": "<", "args": [prop("p"), 9]}]}),
    # Conditions without a faithful CQL2 form: left out of an `and`, or no filter at all.
    (both(cond("eq", x="value", y="A", case_sensitive=False), cond("lt", x="value", y=9)),
     {"op": "<", "args": [prop("p"), 9]}),
    (cond("eq", x="value", y=1, delta=0.5), None),
    (cond("lt", x="value", y="2023-06-01"), None),  # openEO: false for non-numbers
    (cond("lt", x="value", y={"from_parameter": "unknown"}), None),
    (cond("is_nan", x="value"), None),
    ({**both(cond("lt", x="value", y=1), cond("eq", x="value", y=1, delta=1)),
      "and": {"process_id": "or", "arguments": {"x": {"from_node": "a"},
                                                "y": {"from_node": "b"}}, "result": True}},
     None),
])
def test_conditions_become_cql2(graph: dict, expected: dict | None) -> None:
    assert condition_filter("p", callback(graph), FULL) == expected


def test_parameters_of_the_outer_graph_and_plain_values() -> None:
    limit = callback(cond("lte", x="value", y={"from_parameter": "max_cloud"}),
                     scope={"max_cloud": 30})
    assert condition_filter("eo:cloud_cover", limit, FULL) == \
        {"op": "<=", "args": [prop("eo:cloud_cover"), 30]}
    assert condition_filter("platform", "sentinel-2a", FULL) == \
        {"op": "=", "args": [prop("platform"), "sentinel-2a"]}


def test_what_the_api_supports_decides_the_operators() -> None:
    one_of = callback(cond("array_contains", data=["a", "b"], value="value"))
    holds = callback(cond("array_contains", data="value", value="msi"))
    assert condition_filter("p", one_of, BASIC) == {"op": "or", "args": [
        {"op": "=", "args": [prop("p"), "a"]}, {"op": "=", "args": [prop("p"), "b"]}]}
    assert condition_filter("p", holds, BASIC) is None
    cloud = callback(cond("lt", x="value", y=50))
    assert property_filter({"eo:cloud_cover": cloud, "instruments": holds}, BASIC) == \
        {"op": "<", "args": [prop("eo:cloud_cover"), 50]}
    assert property_filter({"eo:cloud_cover": cloud}, Cql2Support()) is None


def test_conformance_classes() -> None:
    # As Earth Search and the Planetary Computer list them (filter draft rc.2 and OGC CQL2).
    earth_search = [
        "https://api.stacspec.org/v1.0.0/item-search",
        "https://api.stacspec.org/v1.0.0-rc.2/item-search#filter",
        "http://www.opengis.net/spec/cql2/1.0/conf/cql2-json",
        "http://www.opengis.net/spec/cql2/1.0/conf/cql2-text",
        "http://www.opengis.net/spec/cql2/1.0/conf/basic-cql2",
        "http://www.opengis.net/spec/cql2/1.0/conf/advanced-comparison-operators",
    ]
    assert Cql2Support.from_conformance(earth_search) == \
        Cql2Support(filter=True, advanced_comparison=True, array_functions=False)
    text_only = [u for u in earth_search if not u.endswith("cql2-json")]
    assert not Cql2Support.from_conformance(text_only).filter
    assert not Cql2Support.from_conformance(earth_search[:1]).filter


# --- against a STAC API server ----------------------------------------------------------------
@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = write_belgium_catalog(tmp_path_factory.mktemp("filter-stac"))
    for item_file in (path.parent / "items").glob("*.json"):
        item = json.loads(item_file.read_text())
        day = item["properties"]["datetime"][:10]
        item["properties"]["platform"] = PLATFORM[day]
        item["properties"]["instruments"] = INSTRUMENTS[day]
        item_file.write_text(json.dumps(item))
    return path


@pytest.fixture(scope="module")
def apis(catalog: Path, tmp_path_factory: pytest.TempPathFactory):
    logs = tmp_path_factory.mktemp("filter-stac-logs")
    started: dict[str, FilteringStacApi] = {}

    def get(mode: str) -> FilteringStacApi:
        if mode not in started:
            started[mode] = FilteringStacApi(catalog, logs / f"{mode}.jsonl", mode)
        return started[mode]

    yield get
    for api in started.values():
        api.stop()


def window(tif: Path, band: int) -> np.ndarray:
    with rasterio.open(tif) as ds:
        w = rasterio.windows.from_bounds(BOX["west"], BOX["south"], BOX["east"], BOX["north"],
                                         ds.transform)
        return ds.read(band, window=w).astype("float32")


def load_stac(url: str, properties: dict):
    graph = {"load": {"process_id": "load_stac", "result": True, "arguments": {
        "url": url, "spatial_extent": BOX, "bands": ["B02"],
        "properties": {name: {"process_graph": g} for name, g in properties.items()}}}}
    # The items' assets are files of the test data, so the user fetch policy (tested in
    # tests/api/test_fetch_policy.py) is off here.
    reader = StacUrlReader(remote_only=False)
    return Evaluator(Services(registry=build_registry(), stac=reader)).run(graph)


def check_cube(cube, days: list[str]) -> None:
    assert [str(t)[:10] for t in cube.data.t.values] == days
    values = cube.data.sel(bands="B02").values
    for i, day in enumerate(days):
        np.testing.assert_array_equal(values[i], window(TIFS[day], 3))


CLOUDY = cond("lte", x="value", y=20)
CASES = {
    "cloud cover": ({"eo:cloud_cover": CLOUDY},
                    {"op": "<=", "args": [prop("eo:cloud_cover"), 20]}),
    "and in one condition": (
        {"eo:cloud_cover": both(cond("gte", x="value", y=10), cond("lt", x="value", y=70))},
        {"op": "and", "args": [{"op": ">=", "args": [prop("eo:cloud_cover"), 10]},
                               {"op": "<", "args": [prop("eo:cloud_cover"), 70]}]}),
    "two properties": (
        {"eo:cloud_cover": CLOUDY, "platform": cond("eq", x="value", y="sentinel-2b")},
        {"op": "and", "args": [{"op": "<=", "args": [prop("eo:cloud_cover"), 20]},
                               {"op": "=", "args": [prop("platform"), "sentinel-2b"]}]}),
    "between": ({"eo:cloud_cover": cond("between", x="value", min=10, max=60)},
                {"op": "and", "args": [{"op": ">=", "args": [prop("eo:cloud_cover"), 10]},
                                       {"op": "<=", "args": [prop("eo:cloud_cover"), 60]}]}),
    "one of": ({"platform": cond("array_contains", data=["sentinel-2a", "landsat-9"],
                                 value="value")},
               {"op": "in", "args": [prop("platform"), ["sentinel-2a", "landsat-9"]]}),
    "array holds": ({"instruments": cond("array_contains", data="value", value="msi")},
                    {"op": "a_contains", "args": [prop("instruments"), ["msi"]]}),
}


def matching_days(properties: dict) -> list[str]:
    """The days whose made-up properties satisfy the conditions (as openEO defines them)."""
    checks = {"cloud cover": lambda d: BELGIUM_CLOUD_COVER[d] <= 20,
              "and in one condition": lambda d: 10 <= BELGIUM_CLOUD_COVER[d] < 70,
              "two properties": lambda d: BELGIUM_CLOUD_COVER[d] <= 20 and
              PLATFORM[d] == "sentinel-2b",
              "between": lambda d: 10 <= BELGIUM_CLOUD_COVER[d] <= 60,
              "one of": lambda d: PLATFORM[d] in ("sentinel-2a", "landsat-9"),
              "array holds": lambda d: "msi" in INSTRUMENTS[d]}
    (name,) = [n for n, (props, _) in CASES.items() if props is properties]
    return [d for d in sorted(PLATFORM) if checks[name](d)]


@pytest.mark.parametrize("case", list(CASES))
def test_load_stac_sends_the_filter_and_loads_the_matching_items(apis, case: str) -> None:
    api = apis("full")
    properties, expected_filter = CASES[case]
    days = matching_days(properties)
    assert 0 < len(days) < 3  # every case leaves something out
    cube = load_stac(f"{api.url}/collections/belgium-rgb", properties)
    search = api.searches()[-1]
    assert search["method"] == "POST"
    assert search["params"]["filter"] == expected_filter
    assert search["params"]["filter-lang"] == "cql2-json"
    # Only the matching items left the server.
    assert search["matched"] == len(days) == len(search["returned"])
    check_cube(cube, days)


@pytest.mark.parametrize("mode, sent, returned", [
    ("basic", {"op": "or", "args": [{"op": "=", "args": [prop("platform"), "sentinel-2a"]},
                                    {"op": "=", "args": [prop("platform"), "landsat-9"]}]}, 1),
    ("no-filter", None, 3),  # no filter extension: none is sent
    ("ignore", {"op": "in", "args": [prop("platform"), ["sentinel-2a", "landsat-9"]]}, 3),
])
def test_apis_that_support_less_still_give_exactly_the_matching_items(
        apis, mode: str, sent: dict | None, returned: int) -> None:
    api = apis(mode)
    properties = CASES["one of"][0]
    cube = load_stac(f"{api.url}/collections/belgium-rgb", properties)
    search = api.searches()[-1]
    assert search["params"].get("filter") == sent
    assert len(search["returned"]) == returned
    check_cube(cube, matching_days(properties))


def test_only_array_conditions_on_a_basic_api_send_no_filter(apis) -> None:
    api = apis("basic")
    properties = CASES["array holds"][0]
    cube = load_stac(f"{api.url}/collections/belgium-rgb", properties)
    assert "filter" not in api.searches()[-1]["params"]
    check_cube(cube, matching_days(properties))


def test_a_refused_filter_falls_back_to_checking_the_items(apis, caplog) -> None:
    """openEO's neq compares types strictly (a string is not 5); the server refuses to
    compare a string property with a number (400), so the search is repeated without."""
    api = apis("full")
    before = len(api.searches())
    cube = load_stac(f"{api.url}/collections/belgium-rgb",
                     {"eo:cloud_cover": CLOUDY, "platform": cond("neq", x="value", y=5)})
    searches = api.searches()[before:]
    assert "refused the filter" in caplog.text and "cannot compare" in caplog.text
    assert "filter" not in searches[-1]["params"]
    assert len(searches[-1]["returned"]) == 3
    check_cube(cube, [d for d, c in sorted(BELGIUM_CLOUD_COVER.items()) if c <= 20])
