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
from schemathesis.checks import not_a_server_error, response_schema_conformance

# Seconds one request may take before it counts as a hang.
HANG_SECONDS = 30


@dataclass
class FuzzReport:
    requests: int = 0
    problems: list[str] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)


def fuzz(schema: Any, base_url: str, headers: dict[str, str], examples: int,
         skip: set[tuple[str, str]] = frozenset(), conformance: bool = True,  # type: ignore
         seconds_per_operation: float | None = None) -> FuzzReport:
    """Send `examples` generated requests to each operation of `schema` at `base_url`."""
    report = FuzzReport()
    checks = [not_a_server_error] + ([response_schema_conformance] if conformance else [])
    session = requests.Session()
    for result in schema.get_all_operations():
        operation = result.ok()
        if (operation.method.upper(), operation.path) in skip:
            continue

        @given(case=operation.as_strategy())
        @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
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

        run()
    return report


def load(path_or_url: str) -> Any:
    if path_or_url.startswith("http"):
        return schemathesis.openapi.from_url(path_or_url)
    return schemathesis.openapi.from_path(path_or_url)


# Failures against the official openapi.yaml that are correct behaviour, and why.
OFFICIAL_QUIRKS = {
    # STAC web-map-links: `rel: xyz` links are URL templates ({z}/{x}/{y}), which the API's
    # `link.href` (format: uri) cannot express.
    # (schemathesis cuts the value short: matched by the preview layer's path)
    "/services/xyz/collections/": "templated xyz links",
    # The official process definitions (openeo-processes) describe some parameters as
    # {"type": ["number", "null"]}, which the API's process_json_schema oneOf rejects.
    '{"type":["number","null"]}': "type arrays of the official process definitions",
}


def official_quirk(problem: str) -> bool:
    return any(marker in problem for marker in OFFICIAL_QUIRKS)
