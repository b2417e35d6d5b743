"""A wrong kind of value in any one argument is the user's error, never a 500.

Every official test case (../shared/openeo-processes/tests) is run again with one of its
arguments replaced by a JSON value of some other kind (null, a boolean, numbers, strings,
arrays, objects, a child process graph). The result may be a value or an openEO error, but the
error must be a 4xx: only a bug of ours is a 500 `Internal` (engine/evaluate.py).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import pytest
from encoding import Decoder, iter_refs, load_json5

from terracube.datacube.cube import RasterCube
from terracube.engine.evaluate import Evaluator, Services
from terracube.engine.registry import ProcessRegistry, build_registry
from terracube.errors import OpenEOError

SHARED = Path(os.environ.get("TERRACUBE_SHARED") or Path(__file__).resolve().parents[3] / "shared")
CASES_DIR = SHARED / "openeo-processes" / "tests"

if not CASES_DIR.is_dir():
    pytest.skip(f"the openEO process tests are not at {CASES_DIR} (set TERRACUBE_SHARED)",
                allow_module_level=True)

_CALLBACK = {"process_graph": {"n": {"process_id": "add", "arguments": {"x": 1, "y": 1},
                                     "result": True}}}
WRONG_VALUES: list[Any] = [None, True, 1, -1, 2.5, "x", "2020-01-01", [], [1, "a"], [[1, 2]],
                           {}, {"a": 1}, _CALLBACK]


def _processes() -> list[str]:
    return sorted(load_json5(path)["id"] for path in CASES_DIR.glob("*.json5"))


@pytest.fixture(scope="module")
def decoder() -> Decoder:
    return Decoder(CASES_DIR)


@pytest.mark.parametrize("process_id", _processes())
def test_wrong_argument_kinds_are_user_errors(process_id: str, registry: ProcessRegistry,
                                              decoder: Decoder, caplog) -> None:
    if process_id not in registry:
        pytest.skip(f"{process_id} is not implemented")
    document = load_json5(CASES_DIR / f"{process_id}.json5")
    tried: set[tuple[str, str]] = set()
    internal = []
    for case in document.get("tests", []):
        if any(not (CASES_DIR / ref).is_file() for ref in iter_refs(case)):
            continue
        if any(p not in registry for p in case.get("required", [])):
            continue
        for name in case["arguments"]:
            for wrong in WRONG_VALUES:
                key = (name, json.dumps(wrong))
                if key in tried:
                    continue
                tried.add(key)
                arguments = {k: decoder.argument(v) for k, v in case["arguments"].items()}
                arguments[name] = wrong
                graph = {"n": {"process_id": process_id, "arguments": arguments, "result": True}}
                try:
                    with caplog.at_level(logging.CRITICAL, logger="terracube.engine.evaluate"):
                        result = Evaluator(Services(registry=registry)).run(graph)
                    if isinstance(result, RasterCube):
                        result.data.compute()  # lazy work fails here, not when it is written
                except OpenEOError as exc:
                    if exc.status >= 500:
                        cause = exc.__cause__
                        internal.append(f"{name}={wrong!r}: {type(cause).__name__}: {cause}")
    assert not internal, f"{process_id}: internal errors for user input:\n" + "\n".join(internal)


def test_a_bug_in_a_process_is_an_internal_error_with_an_id(caplog) -> None:
    def tc_buggy(x):
        return {}["missing"]  # a bug of ours, not the user's fault

    registry = build_registry().with_processes({"tc_buggy": tc_buggy})
    graph = {"n": {"process_id": "tc_buggy", "arguments": {"x": 1}, "result": True}}
    with caplog.at_level(logging.ERROR, logger="terracube.engine.evaluate"):
        with pytest.raises(OpenEOError) as info:
            Evaluator(Services(registry=registry)).run(graph)
    error = info.value
    assert (error.code, error.status, error.node_id) == ("Internal", 500, "n")
    assert error.id in error.message
    assert isinstance(error.__cause__, KeyError)
    (record,) = [r for r in caplog.records if error.id in r.getMessage()]
    assert record.exc_info and record.exc_info[0] is KeyError  # logged with its traceback


@pytest.mark.parametrize("exception", [ValueError, ZeroDivisionError, OverflowError])
def test_argument_errors_stay_user_errors(exception) -> None:
    def tc_refuses(x):
        raise exception("no")

    registry = build_registry().with_processes({"tc_refuses": tc_refuses})
    graph = {"n": {"process_id": "tc_refuses", "arguments": {"x": 1}, "result": True}}
    with pytest.raises(OpenEOError) as info:
        Evaluator(Services(registry=registry)).run(graph)
    assert (info.value.code, info.value.status) == ("ProcessParameterInvalid", 400)
