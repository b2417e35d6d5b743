"""Per-user limits on synchronous work (issue 16): at most TERRACUBE_MAX_SYNC_REQUESTS_PER_USER
POST /result requests of one user run at the same time in this server process; one more is
refused at once with 429 TooManyRequests and a Retry-After header (the client's cue to wait),
so one user cannot occupy every thread of the server."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from terracube import errors

# Seconds a refused client is asked to wait: a small sync request takes about that long.
SYNC_RETRY_AFTER = 5


class ConcurrencyLimiter:
    """Counts the requests of each user in progress; `slot(user)` holds one while it runs."""

    def __init__(self, limit: int, what: str = "synchronous requests (POST /result)") -> None:
        self.limit = limit
        self.what = what
        self._running: dict[str, int] = {}
        self._lock = threading.Lock()

    @contextmanager
    def slot(self, user_id: str) -> Iterator[None]:
        with self._lock:
            count = self._running.get(user_id, 0)
            if count >= self.limit:
                raise errors.TooManyRequests(
                    f"You have {count} {self.what} running already, the most one user may "
                    f"run at the same time; send this one when one of them has finished, or "
                    "run it as a batch job (POST /jobs), which waits in the queue instead.",
                    retry_after=SYNC_RETRY_AFTER)
            self._running[user_id] = count + 1
        try:
            yield
        finally:
            with self._lock:
                left = self._running[user_id] - 1
                if left:
                    self._running[user_id] = left
                else:
                    del self._running[user_id]

    def running(self, user_id: str) -> int:
        with self._lock:
            return self._running.get(user_id, 0)
