"""The descriptions served at /processes equal openeo-processes 2.0.0-rc.2 where checked.

Compared per official definition in ../shared/openeo-processes (*.json, proposals/*.json,
ml/*.json): parameter names and order, `optional`, `default`, exact `schema`, parameter flags,
the return schema and the process's experimental/deprecated flags — what the official
openeo-test-suite checks in its process metadata tests (WP3), and a little more.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from terracube.engine import specs

SHARED_PROCESSES = Path(__file__).resolve().parents[2].parent / "shared" / "openeo-processes"

if not SHARED_PROCESSES.is_dir():
    pytest.skip(
        f"official process definitions not found at {SHARED_PROCESSES}", allow_module_level=True
    )


def _official() -> dict[str, dict]:
    found: dict[str, dict] = {}
    for pattern in ("*.json", "proposals/*.json", "ml/*.json"):
        for path in sorted(SHARED_PROCESSES.glob(pattern)):
            data = json.loads(path.read_text(encoding="utf-8"))
            found[data["id"]] = data
    return found


def _described_ids() -> list[str]:
    try:
        return sorted(specs.described_process_ids())
    except specs.ProcessSpecsUnavailable:
        return []  # test_spec_package_is_installed reports why


OFFICIAL = _official()
_MISSING = object()


def test_spec_package_is_installed():
    try:
        specs.packaged_specs_root()
    except specs.ProcessSpecsUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)


def _parameter_contract(parameter: dict) -> dict:
    return {
        "name": parameter["name"],
        "optional": parameter.get("optional", False),
        "default": parameter.get("default", _MISSING),
        "schema": parameter["schema"],
        "deprecated": parameter.get("deprecated", False),
        "experimental": parameter.get("experimental", False),
    }


def test_official_definitions_were_found():
    assert len(OFFICIAL) > 150
    assert {"add", "load_stac", "ml_predict", "text_find"} <= OFFICIAL.keys()


@pytest.mark.parametrize("process_id", sorted(OFFICIAL))
def test_description_matches_official_contract(process_id):
    expected = OFFICIAL[process_id]
    actual = specs.process_description(process_id)
    assert actual is not None, f"no description for {process_id}"

    assert actual["id"] == process_id
    assert [p["name"] for p in actual["parameters"]] == [p["name"] for p in expected["parameters"]]
    for exp, act in zip(expected["parameters"], actual["parameters"], strict=True):
        assert _parameter_contract(act) == _parameter_contract(exp), exp["name"]
    assert actual["returns"]["schema"] == expected["returns"]["schema"]
    assert actual.get("experimental", False) == expected.get("experimental", False)
    assert actual.get("deprecated", False) == expected.get("deprecated", False)


@pytest.mark.parametrize("process_id", _described_ids())
def test_every_description_is_complete(process_id):
    description = specs.process_description(process_id)
    assert description["id"] == process_id
    assert isinstance(description["description"], str) and description["description"]
    assert isinstance(description["returns"]["schema"], dict | list)
    for parameter in description["parameters"]:
        assert {"name", "description", "schema"} <= parameter.keys(), parameter.get("name")


@pytest.mark.parametrize("process_id", sorted(specs.our_definitions().keys() & OFFICIAL.keys()))
def test_own_definitions_are_in_own_words(process_id):
    """Processes we describe ourselves reuse the official schemas but not the prose."""
    ours = specs.process_description(process_id)
    official = OFFICIAL[process_id]
    assert ours["summary"] != official["summary"]
    assert ours["description"] != official["description"]


@pytest.mark.parametrize(
    "process_id", ["fit_class_random_forest", "fit_regr_random_forest", "predict_random_forest"]
)
def test_openeo_1x_ml_names_are_described(process_id):
    description = specs.process_description(process_id)
    assert description is not None
    assert description["experimental"] is True
    assert description["categories"][0] == "machine learning"


def test_fit_regr_random_forest_mirrors_its_classification_sibling():
    regr = specs.process_description("fit_regr_random_forest")
    clas = specs.process_description("fit_class_random_forest")
    assert [_parameter_contract(p) for p in regr["parameters"]] == [
        _parameter_contract(p) for p in clas["parameters"]
    ]
    assert regr["returns"]["schema"] == clas["returns"]["schema"]


def test_process_descriptions_sorts_and_leaves_out_unknown_ids():
    result = specs.process_descriptions(["sum", "no_such_process", "absolute", "sum"])
    assert [d["id"] for d in result] == ["absolute", "sum"]
    assert specs.process_descriptions([]) == []


def test_unknown_process_has_no_description():
    assert specs.process_description("no_such_process") is None


def test_returned_descriptions_are_copies():
    first = specs.process_description("add")
    first["parameters"].clear()
    assert specs.process_description("add")["parameters"]


def test_missing_package_fails_with_the_install_line():
    with pytest.raises(specs.ProcessSpecsUnavailable, match="--no-deps"):
        specs.packaged_specs_root("terracube_no_such_spec_package")
