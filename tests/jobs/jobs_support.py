"""Helpers of the batch job tests (worker processes, waiting), shared with the e2e tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def sqlite_url(folder: Path) -> str:
    return f"sqlite:///{folder / 'terracube.db'}"


def job_data_dir(tmp_path: Path, sample_data_dir: Path) -> Path:
    """A fresh data folder that shares the session's generated sample collection."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "samples").symlink_to(sample_data_dir / "samples", target_is_directory=True)
    return data


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TERRACUBE_")}
    env.update(extra)
    return env


class WorkerProcess:
    """A `terracube worker` child process on a data folder."""

    def __init__(self, data_dir: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.log_path = data_dir / f"worker-{time.monotonic_ns()}.log"
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "terracube.cli", "worker", "--data-dir", str(data_dir),
             *args], stdout=self._log, stderr=subprocess.STDOUT, env=clean_env(**(env or {})))

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait(self, timeout: float = 120) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            self._log.flush()

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text()

    def kill(self) -> None:
        """SIGKILL, as the kernel's OOM killer or `kill -9` would."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def wait_for(condition, timeout: float = 60, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def pid_alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
