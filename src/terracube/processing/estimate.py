"""GET /jobs/{job_id}/estimate: what a job will read, write and roughly take, from a dry run.

The figures come from the dry run of processing/explain.py (metadata only, no pixel read):
the bytes the loads read (stored samples), the uncompressed size of the outputs, and a
duration from documented rates (settings `estimate_*`, docs/administration/limits.md):

    duration = start + bytes to read / read rate + bytes the nodes hold / compute rate
               + bytes to write / write rate + tasks × 2 ms

A graph that fails in the dry run gets its figures so far and the error in
`terracube:problems`. A graph whose duration cannot be known (a UDF, model training, deeply
nested callbacks) is answered with the openEO error EstimateComplexity (API profiles,
requirement 826) rather than a confident guess. `costs` are added from the duration by
processing/costs.py (the billing rate).
"""

from __future__ import annotations

import math
from typing import Any

from terracube import errors
from terracube.engine.evaluate import Services
from terracube.processing.explain import Explanation, explain_process

SECONDS_PER_TASK = 0.002
# Defaults of the rates when no settings are given (measured on the sample data, 2 cores).
START_SECONDS = 2.0
READ_BYTES_PER_SECOND = 60e6
WRITE_BYTES_PER_SECOND = 80e6
COMPUTE_BYTES_PER_SECOND = 400e6


def estimated_seconds(explanation: Explanation, services: Services) -> float:
    """The rough duration of a process from its dry run, by the server's rates."""
    settings = services.settings
    start = getattr(settings, "estimate_start_seconds", START_SECONDS)
    read = getattr(settings, "estimate_read_bytes_per_second", READ_BYTES_PER_SECOND)
    write = getattr(settings, "estimate_write_bytes_per_second", WRITE_BYTES_PER_SECOND)
    compute = getattr(settings, "estimate_compute_bytes_per_second", COMPUTE_BYTES_PER_SECOND)
    return float(start + explanation.bytes_to_read / read + explanation.bytes_to_hold / compute
                 + explanation.output_bytes / write + explanation.tasks * SECONDS_PER_TASK)


def estimate_job(process: dict[str, Any], services: Services) -> dict[str, Any]:
    """The openEO estimate of a job's process: duration, size and (with a rate) costs."""
    explanation = explain_process(process, services)
    if explanation.unestimable and explanation.error is None:
        raise errors.EstimateComplexity(
            "The duration of this process cannot be estimated: "
            + "; ".join(explanation.unestimable)
            + ". Start it and watch its progress, or try it on a small extent first.")
    seconds = estimated_seconds(explanation, services)
    result: dict[str, Any] = {
        "duration": iso_duration(seconds),
        "size": int(explanation.output_bytes),
        # downloads_included is left out: its default, null, means unlimited downloads.
        "terracube:bytes_to_read": int(explanation.bytes_to_read),
        "terracube:pixels_to_read": int(explanation.pixels_to_read),
        "terracube:loads": [{"collection": ld.collection, "shape": ld.shape, "bytes": ld.bytes}
                            for ld in explanation.loads],
        "terracube:outputs": explanation.outputs,
        "terracube:tasks": explanation.tasks,
        "terracube:seconds": round(seconds, 1),
    }
    if explanation.error is not None:
        # The job will fail with it (the figures cover what came before); answered with 200,
        # as clients and the official suite expect an estimate of any job.
        error = explanation.error
        result["terracube:problems"] = [f"{error.code}: {error.message}"]
    return result


def estimate_if_possible(process: dict[str, Any], services: Services) -> dict[str, Any] | None:
    """The estimate, or None when the duration cannot be estimated (a budget check then lets
    the work start; its usage stops it)."""
    try:
        return estimate_job(process, services)
    except errors.EstimateComplexity:
        return None


def iso_duration(seconds: float) -> str:
    """An ISO 8601 duration, whole seconds rounded up: PT45S, PT3M20S, PT1H2M."""
    total = max(1, math.ceil(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    out = "PT"
    if hours:
        out += f"{hours}H"
    if minutes:
        out += f"{minutes}M"
    if secs or out == "PT":
        out += f"{secs}S"
    return out
