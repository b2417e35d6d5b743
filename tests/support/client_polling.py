"""Batch jobs polled quickly by the official `openeo` client in every test.

`BatchJob.start_and_wait` (and `execute_batch`, which calls it) sleeps 5 s before its second
status poll and up to `max_poll_interval` (default 60 s) later on; the client's
`MultiBackendJobManager` sleeps `poll_sleep` (default 60 s) between its rounds. Our test jobs
finish in seconds, so most of that time is pure waiting. Users' programs run in the tests
unchanged (no `max_poll_interval=` added to their calls): instead the test run caps the
client's intervals here, once, for every test and every test file added later.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

TEST_MAX_POLL_INTERVAL = 0.2  # seconds; the client starts at min(5, max_poll_interval)


def fast_start_and_wait(original: Callable[..., Any]) -> Callable[..., Any]:
    """`original` (BatchJob.start_and_wait) with its poll interval capped at
    TEST_MAX_POLL_INTERVAL, whatever the caller (the client's execute_batch passes 60) asks."""

    @functools.wraps(original)
    def start_and_wait(self: Any, *args: Any, max_poll_interval: float = 60,
                       **kwargs: Any) -> Any:
        capped = min(max_poll_interval, TEST_MAX_POLL_INTERVAL)
        return original(self, *args, max_poll_interval=capped, **kwargs)

    return start_and_wait


def fast_job_manager(original: Callable[..., Any]) -> Callable[..., Any]:
    """`original` (MultiBackendJobManager.__init__) with `poll_sleep` capped likewise."""

    @functools.wraps(original)
    def __init__(self: Any, poll_sleep: float = 60, *args: Any, **kwargs: Any) -> None:
        original(self, min(poll_sleep, TEST_MAX_POLL_INTERVAL), *args, **kwargs)

    return __init__


def install() -> None:
    """Cap the intervals of the installed client (nothing without the client)."""
    try:
        from openeo.extra.job_management import MultiBackendJobManager
        from openeo.rest.job import BatchJob
    except ImportError:
        return
    for owner, name, wrap in ((BatchJob, "start_and_wait", fast_start_and_wait),
                              (MultiBackendJobManager, "__init__", fast_job_manager)):
        method = getattr(owner, name)
        if not getattr(method, "__capped_for_tests__", False):
            capped = wrap(method)
            capped.__capped_for_tests__ = True  # type: ignore[attr-defined]
            setattr(owner, name, capped)
