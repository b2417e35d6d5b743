"""A limit on failed logins (issue 16): after `max_failures` wrong passwords for one user name
within `window` seconds, GET /credentials/basic answers 429 with Retry-After for that name
until the window has passed, so passwords cannot be guessed at speed."""

from __future__ import annotations

import threading
import time
from collections import deque

from terracube import errors

TooManyRequests = errors.TooManyRequests  # Retry-After comes with it


class LoginLimiter:
    """Failed logins per user name, in this server process."""

    def __init__(self, max_failures: int = 10, window: float = 60.0) -> None:
        self.max_failures = max_failures
        self.window = window
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def check(self, name: str) -> None:
        """Raise TooManyRequests while `name` has too many recent failures."""
        now = time.monotonic()
        with self._lock:
            recent = self._recent(name, now)
            if len(recent) >= self.max_failures:
                wait = max(1, int(recent[0] + self.window - now) + 1)
                raise TooManyRequests(
                    f"Too many failed logins for this user name; try again in {wait} s.",
                    retry_after=wait)

    def failed(self, name: str) -> None:
        with self._lock:
            self._recent(name, time.monotonic()).append(time.monotonic())

    def _recent(self, name: str, now: float) -> deque[float]:
        recent = self._failures.setdefault(name, deque())
        while recent and recent[0] <= now - self.window:
            recent.popleft()
        if not recent and len(self._failures) > 10_000:
            self._failures.pop(name, None)  # keep memory bounded under name spraying
            recent = self._failures.setdefault(name, deque())
        return recent
