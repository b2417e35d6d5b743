"""The pool of `terracube worker` processes that `terracube serve` keeps running (restarting
one that dies; on stop, each worker queues its running job again and exits)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time

from terracube.settings import Settings

log = logging.getLogger(__name__)


class WorkerPool:
    """Keeps `count` `terracube worker` processes running; restarts one that dies."""

    def __init__(self, settings: Settings, count: int) -> None:
        self.settings = settings
        self.count = count
        self.procs: list[subprocess.Popen | None] = [None] * count
        self._started_at = [0.0] * count
        self._failures = [0] * count
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def command(self) -> list[str]:
        return [sys.executable, "-m", "terracube.cli", "worker", "--data-dir",
                str(self.settings.data_dir), "--exit-with-parent"]

    def environment(self) -> dict[str, str]:
        """The server's settings for the workers (they may have come from the command line)."""
        env = dict(os.environ)
        for name, value in self.settings.model_dump().items():
            if value is None or isinstance(value, (dict, list)):
                continue
            env[f"TERRACUBE_{name.upper()}"] = str(value).lower() if isinstance(value, bool) \
                else str(value)
        return env

    def start(self) -> None:
        for slot in range(self.count):
            self._spawn(slot)
        self._thread = threading.Thread(target=self._monitor, name="worker-pool", daemon=True)
        self._thread.start()

    def _spawn(self, slot: int) -> None:
        proc = subprocess.Popen(self.command(), stdin=subprocess.PIPE, env=self.environment())
        self.procs[slot] = proc
        self._started_at[slot] = time.monotonic()
        log.info("started worker %d (pid %d)", slot + 1, proc.pid)

    def _monitor(self) -> None:
        while not self._stop.wait(1.0):
            with self._lock:
                for slot, proc in enumerate(self.procs):
                    if proc is None or proc.poll() is None or self._stop.is_set():
                        continue
                    lived = time.monotonic() - self._started_at[slot]
                    self._failures[slot] = self._failures[slot] + 1 if lived < 10 else 0
                    delay = min(30.0, 2.0 ** self._failures[slot]) if self._failures[slot] else 0
                    log.warning("worker %d (pid %d) exited with %s; restarting%s", slot + 1,
                                proc.pid, proc.returncode, f" in {delay:g} s" if delay else "")
                    if delay and self._stop.wait(delay):
                        return
                    self._spawn(slot)

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs if p is not None and p.poll() is None]

    def stop(self, timeout: float = 20.0) -> None:
        self._stop.set()
        with self._lock:
            procs = [p for p in self.procs if p is not None]
            for proc in procs:
                if proc.poll() is None:
                    proc.terminate()  # the worker re-queues its running job and exits
            deadline = time.monotonic() + timeout
            for proc in procs:
                try:
                    proc.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                if proc.stdin:
                    proc.stdin.close()
