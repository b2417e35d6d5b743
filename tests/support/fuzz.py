"""Schemathesis against a running server (issue 16): every operation of an OpenAPI document,
`examples` generated requests each, checked for 5xx, responses that violate the document and
hangs. Used by tests/spec/test_fuzz.py (few examples, in `make test`) and bench/fuzz.py
(many)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error, response_schema_conformance
from schemathesis.core.errors import UnsupportedSchema

# Seconds one request may take before it counts as a hang.
HANG_SECONDS = 30


@dataclass
class FuzzReport:
    requests: int = 0
    problems: list[str] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)  # nothing to generate (negative mode)


def fuzz(schema: Any, base_url: str, headers: dict[str, str], examples: int,
         derandomize: bool = True, negative: bool = False) -> FuzzReport:
    """Send `examples` generated requests to each operation of `schema` at `base_url`
    (the same ones each time with `derandomize`); with `negative`, requests that break the
    document's rules (wrong types, missing fields), which must get a 4xx, never a 5xx."""
    report = FuzzReport()
    checks = [not_a_server_error, response_schema_conformance]
    session = requests.Session()
    for result in schema.get_all_operations():
        operation = result.ok()

        mode = GenerationMode.NEGATIVE if negative else GenerationMode.POSITIVE

        @given(case=operation.as_strategy(mode))
        @settings(max_examples=examples, deadline=None, database=None, derandomize=derandomize,
                  phases=[Phase.explicit, Phase.generate],
                  suppress_health_check=list(HealthCheck))
        def run(case: Any) -> None:
            started = time.monotonic()
            try:
                response = case.call(base_url=base_url, headers=headers, session=session,
                                     timeout=HANG_SECONDS)
            except requests.Timeout:
                report.problems.append(f"{case.method} {case.formatted_path}: no answer "
                                       f"within {HANG_SECONDS} s")
                return
            report.requests += 1
            report.statuses[response.status_code] = \
                report.statuses.get(response.status_code, 0) + 1
            try:
                case.validate_response(response, checks=checks)
            except (Exception, BaseExceptionGroup) as exc:  # failed checks: collect them all
                report.problems.append(
                    f"{case.method} {case.formatted_path} -> {response.status_code} "
                    f"({time.monotonic() - started:.1f} s): {str(exc)[:600]}")

        try:
            run()
        except (Unsatisfiable, UnsupportedSchema) as exc:
            # nothing (schema-breaking) to generate, or a schema schemathesis cannot negate
            report.skipped.append(f"{operation.method.upper()} {operation.path}: "
                                  f"{type(exc).__name__}")
    return report


def load(path_or_url: str) -> Any:
    if path_or_url.startswith("http"):
        return schemathesis.openapi.from_url(path_or_url)
    return schemathesis.openapi.from_path(path_or_url)


# Failures against the official openapi.yaml that are correct behaviour, and why: each entry
# is the texts that all appear in such a failure.
OFFICIAL_QUIRKS: dict[tuple[str, ...], str] = {
    # STAC web-map-links: `rel: xyz` links are URL templates ({z}/{x}/{y}), which the API's
    # `link.href` (format: uri) cannot express. (schemathesis cuts the value short: matched
    # by the preview layer's path.)
    ('is not a "uri"', "/services/xyz/"): "templated xyz links",
    # process_json_schema is `oneOf: [{title: Generic}, process_graph_json_schema,
    # datacube_json_schema]`: the Generic branch matches every schema, so every schema that
    # also matches another branch (e.g. {"type": ["number", "null"]}, which has no `subtype`,
    # of the official process definitions) fails the oneOf, however correct it is.
    ("not valid under any of the schemas listed in the 'oneOf' keyword",
     "Schema at /components/schemas/process_schema"): "process_json_schema's oneOf",
}


def official_quirk(problem: str) -> bool:
    """Whether a failure is one of OFFICIAL_QUIRKS."""
    return any(all(text in problem for text in texts) for texts in OFFICIAL_QUIRKS)
