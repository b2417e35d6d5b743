"""Every test case of the official openEO process tests, run through our engine in process.

The cases come from ../shared/openeo-processes/tests/*.json5 (or $TERRACUBE_SHARED): one pytest
case per test case, with ids like `add[3]`. Each runs as a one-node process graph. A case whose
process (or a process it requires) is not implemented fails: the target is all passing.
Cases of experimental processes carry the `experimental` marker (`-m "not experimental"`).
"""

from __future__ import annotations

from typing import Any

import pytest
from encoding import Decoder, assert_equivalent, iter_refs, load_json5
from tests.support.paths import SHARED

from terracube.engine.evaluate import Evaluator, Services
from terracube.engine.registry import ProcessRegistry
from terracube.errors import OpenEOError

CASES_DIR = SHARED / "openeo-processes" / "tests"

if not CASES_DIR.is_dir():
    pytest.skip(f"the openEO process tests are not at {CASES_DIR} (set TERRACUBE_SHARED)",
                allow_module_level=True)


# Upstream cases that contradict the process definitions or have typos (xfail, strict: a case
# that passes shows up).
_BLUE_165 = ("assumes 165 for blue at row 1, column 4 of assets/xyb-minimal-int.json5, which "
             "holds 255, the no-data value")
_MASK_INVERTED = ("expects the pixels replaced where assets/xyb-mask.json5 holds 0 and kept where "
                  "it holds 1 (all of the first row is kept, though the mask is 1 there); mask "
                  "replaces the pixels whose mask value is non-zero or true")
_SINGLE_NULL = ("with ignore_nodata=false a no-data value alone gives no-data: the spec's own "
                "example for data [null], ignore_nodata false returns null")
_JANUARY = ("the intervals are in January 2020 but assets/xyt-more-timestamps.json5 has "
            "dates in June 2020 (re-dated to January, our output equals the expected values: "
            "tests/engine/test_temporal.py)")
_T2_RENAMED = ("expects the dimension 't2' renamed to 't'; the spec (and case [7]) keep the "
               "dimension name (the values match)")
_INSIDE_BACKWARDS = ("the polygon does not overlap the data and the expected result treats "
                     "'inside' the other way round than the spec and cases [3]-[6]")
ERRATA = {
    "all[8]": f"expects true for [null]; {_SINGLE_NULL}",
    "any[8]": f"expects false for [null]; {_SINGLE_NULL}",
    "apply[2]": _BLUE_165,
    "apply_dimension[1]": _BLUE_165,
    "apply_dimension[2]": "applies over 'bands' of assets/xyt-more-timestamps.json5, which has "
                          "the dimensions t, y, x (the expected result is over t)",
    "array_append[0]": "expects [1] for appending 0 to []",
    "array_apply[8]": "the graph calls the process 'mulitply' (typo of multiply)",
    "array_element[3]": "asks for the label 'BO2' (letter O); the labels are B01, B02, B03",
    "array_filter[5]": "the condition returns numbers (subtract(x, 1): 0.23 for B01, -0.02 for "
                       "B02), not booleans; only elements whose condition is true are kept, so "
                       "none is (and as both numbers are non-zero, no truthiness rule keeps B01 "
                       "but not B02)",
    "array_find[6]": "expects index 1 for the value 3, which is at index 0",
    "array_modify[3]": "removes one element without giving 'length', whose default is 0 (nothing "
                       "is removed; array_modify[2] inserts with that same default); the spec's "
                       "example has the same contradiction",
    "count[4]": "the condition is a bare graph (no process_graph) using the parameter "
                "'element'; count's condition has the parameters x and context",
    "count[5]": "the condition is a bare graph (no process_graph) using the parameter "
                "'element'; count's condition has the parameters x and context",
    "filter_bands[4]": "asks for the bands red and blue but expects the bands blue and green "
                       "(with their values)",
    "lte[15]": "expects lte(Infinity, Infinity) = false, but lte is or(lt, eq) and "
               "eq(Infinity, Infinity) = true (eq[16]; gte[15] expects true)",
    "mask[0]": _MASK_INVERTED,
    "mask[2]": _MASK_INVERTED,
    "reduce_dimension[1]": _BLUE_165,
    "rename_dimension[3]": "renames 'x' to 'lon' but expects 'y' renamed",
    "rename_dimension[4]": "renames 'y' to 'lat' but expects 'x' renamed",
    "rename_labels[5]": "gives the new labels as 'source' and no 'target', which is required",
    "rename_labels[7]": "gives the new labels as 'source' and no 'target', which is required",
    **{f"aggregate_temporal[{i}]": _JANUARY for i in (5, 6, 7, 8)},
    "aggregate_temporal[9]": "passes 'labels' inside the reducer object instead of as an "
                             "argument of aggregate_temporal",
    "aggregate_temporal[10]": f"{_JANUARY}; also reduces with mean while the expected values "
                              "are medians",
    "aggregate_temporal_period[3]": "period 'hour' expects daily labels and 4 periods where the "
                                    "data spans 5 hours",
    "aggregate_temporal_period[4]": "period 'day' expects labels YYYY-MM-DD-00; the spec's "
                                    "labels for days are YYYY-DDD (the values match)",
    "aggregate_temporal_period[8]": _T2_RENAMED,
    "aggregate_temporal_period[9]": _T2_RENAMED,
    "mask_polygon[0]": _INSIDE_BACKWARDS,
    "mask_polygon[1]": _INSIDE_BACKWARDS,
    "mask_polygon[6]": "assets/xytb-s2-small-masked-inside.json5 leaves 4 pixels of its last "
                       "band and date unmasked that lie inside the polygon",
    "product[10]": "expects NaN for 1 * -Infinity * 3 * Infinity, which is -Infinity in IEEE "
                   "754 (the spec's rule)",
}


def _collect() -> list:
    params = []
    for path in sorted(CASES_DIR.glob("*.json5")):
        document = load_json5(path)
        process_id = document["id"]
        for i, case in enumerate(document.get("tests", [])):
            marks = [pytest.mark.experimental] if document.get("experimental") else []
            missing = sorted({ref for ref in iter_refs(case) if not (CASES_DIR / ref).is_file()})
            if missing:
                marks.append(pytest.mark.xfail(
                    reason=f"the upstream test refers to a missing asset: {', '.join(missing)}",
                    run=False))
            case_id = f"{process_id}[{i}]"
            if case_id in ERRATA:
                marks.append(pytest.mark.xfail(reason=f"upstream test: {ERRATA[case_id]}",
                                               strict=True))
            params.append(pytest.param(process_id, case, id=case_id, marks=marks))
    return params


@pytest.fixture(scope="module")
def decoder() -> Decoder:
    return Decoder(CASES_DIR)


@pytest.mark.parametrize(("process_id", "case"), _collect())
def test_process_case(process_id: str, case: dict[str, Any], registry: ProcessRegistry,
                      decoder: Decoder) -> None:
    missing = [p for p in (process_id, *case.get("required", [])) if p not in registry]
    if missing:
        pytest.fail(f"not implemented: {', '.join(missing)}", pytrace=False)
    arguments = {name: decoder.argument(value) for name, value in case["arguments"].items()}
    graph = {"n": {"process_id": process_id, "arguments": arguments, "result": True}}
    try:
        result = Evaluator(Services(registry=registry)).run(graph)
    except Exception as exc:
        # `throws`: true (any exception) or the name of the exception in the process spec.
        # With `returns` as well, either outcome is correct.
        if "throws" not in case:
            raise
        # Even where any exception will do, bad input must be the user's (4xx) error: a 500
        # Internal here is a bug of ours that the case happens to trigger.
        assert isinstance(exc, OpenEOError) and exc.status < 500, f"internal error: {exc!r}"
        code = case["throws"]
        if isinstance(code, str) and isinstance(exc, OpenEOError):
            assert exc.code == code, f"raised {exc.code} ({exc}), the spec names {code}"
        return
    if "returns" not in case:
        pytest.fail(f"expected the exception {case['throws']}, got the result {result!r}",
                    pytrace=False)
    assert_equivalent(result, decoder.expected(case["returns"]), case.get("delta"))
