"""Every registered process function takes the parameters its definition in /processes lists.

Names and order, which are optional, and the defaults: a function keyword without a Python
default is a required parameter for the evaluator, so a mismatch makes the server refuse or
accept graphs against its own published definition. Python cannot hold a JSON array or object
as a default safely, so a spec default `[]`, `{}` or `[1981, 2010]` is written `None` (the
function applies the spec's default). Deliberate deviations are listed with their reason.
"""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from terracube.engine import specs
from terracube.engine.registry import ProcessRegistry, build_registry

_MISSING = object()

# Process id -> why its function differs from its definition (kept lenient on purpose).
DEVIATIONS = {
    "array_filter": "also takes the older name 'process' for 'condition', which the official "
                    "test cases (2.0.0-rc.2 tests/array_filter.json5) still use; 'condition' is "
                    "then checked in the function",
    "load_collection": "spatial_extent and temporal_extent are required (nullable) in the "
                       "spec; graphs that leave them out are read as null, as clients and "
                       "other back-ends do; also takes CDSE's 'featureflags' (loader tuning "
                       "hints, ignored), which openEO Platform programs set",
    "load_ml_model": "also takes the openEO 1.x parameter 'id' for 'uri'; the function "
                     "requires one of them",
    "fit_curve": "also takes the openEO 1.x 'dimension' (data a cube), which the openeo "
                 "client's DataCube.fit_curve sends",
    "predict_curve": "also takes the openEO 1.x 'data', which the openeo client's "
                     "DataCube.predict_curve sends (not needed: labels say where to predict)",
    "resample_cube_temporal": "also takes openEO 1.0's 'method' (only 'nearest', what the "
                              "process does), which older graphs pass",
    "fit_class_random_forest": "max_variables (required, nullable) defaults to null: sqrt",
    "fit_regr_random_forest": "max_variables (required, nullable) defaults to null: onethird",
    "ml_fit_class_random_forest": "max_variables (required, nullable) defaults to null: sqrt",
    "ml_fit_regr_random_forest": "max_variables (required, nullable) defaults to null: "
                                 "onethird",
}

REGISTRY = build_registry()


def _function_parameters(registry: ProcessRegistry, process_id: str) -> list[tuple[str, bool,
                                                                                    Any]]:
    impl = registry.get(process_id)
    signature = inspect.signature(impl.func).parameters
    out = []
    for name, keyword in impl.params.items():
        default = signature[keyword].default
        optional = default is not inspect.Parameter.empty
        out.append((name, optional, default if optional else _MISSING))
    return out


def _served_parameters(process_id: str) -> list[tuple[str, bool, Any]]:
    description = specs.process_description(process_id)
    assert description is not None, f"{process_id} is registered but not described"
    return [(p["name"], bool(p.get("optional", False)), p.get("default", _MISSING))
            for p in description["parameters"]]


def _same_default(ours: Any, served: Any) -> bool:
    if served is _MISSING:
        return True  # optional without a default in the spec: the function's own is fine
    if isinstance(served, (list, dict)) and ours is None:
        return True  # a JSON array/object default, applied inside the function
    return ours == served and type(ours) is type(served) or (
        isinstance(ours, (int, float)) and isinstance(served, (int, float))
        and not isinstance(ours, bool) and ours == served)


def _mismatches(process_id: str) -> list[str]:
    ours = _function_parameters(REGISTRY, process_id)
    served = _served_parameters(process_id)
    problems = []
    if [p[0] for p in ours] != [p[0] for p in served]:
        problems.append(f"names {[p[0] for p in ours]} != {[p[0] for p in served]}")
    for (name, optional, default), (s_name, s_optional, s_default) in zip(ours, served):
        if name != s_name:
            continue
        if optional != s_optional:
            problems.append(f"'{name}' optional: {optional} != {s_optional}")
        elif optional and not _same_default(default, s_default):
            problems.append(f"'{name}' default: {default!r} != {s_default!r}")
    if REGISTRY.get(process_id).takes_extra:
        problems.append("takes **kwargs")
    return problems


@pytest.mark.parametrize("process_id", REGISTRY.ids())
def test_function_parameters_equal_the_served_definition(process_id: str) -> None:
    problems = _mismatches(process_id)
    if process_id in DEVIATIONS:
        assert problems, f"{process_id} matches its definition now: drop it from DEVIATIONS"
        return
    assert not problems, f"{process_id}: " + "; ".join(problems)


def test_deviations_name_registered_processes() -> None:
    assert set(DEVIATIONS) <= set(REGISTRY.ids())
