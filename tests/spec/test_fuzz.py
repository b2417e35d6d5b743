"""Schemathesis against a real `terracube serve` (issue 16): a few generated requests per
operation of our own OpenAPI document and of the official openapi.yaml — no 5xx, no response
that violates the document, no hang. The longer run is bench/fuzz.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.support.data import data_dir_with_samples
from tests.support.fuzz import fuzz, load, official_quirk
from tests.support.paths import SHARED
from tests.support.processes import ServerProcess

EXAMPLES = 2  # per operation: the whole test stays around a minute on a busy machine


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory,
           sample_data_dir: Path) -> Iterator[ServerProcess]:
    data = data_dir_with_samples(tmp_path_factory.mktemp("fuzz"), sample_data_dir)
    srv = ServerProcess(data, {"TERRACUBE_WORKERS": "0"})
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def auth(server: ServerProcess) -> dict[str, str]:
    r = httpx.get(server.api + "credentials/basic", auth=("demo", "demo"), timeout=60)
    return {"Authorization": f"Bearer basic//{r.json()['access_token']}"}


def test_our_openapi_document(server, auth):
    report = fuzz(load(server.api + "openapi.json"), server.url, auth, EXAMPLES)
    assert report.requests > 50
    assert not report.problems, "\n".join(report.problems)


def test_the_official_openapi_document(server, auth):
    report = fuzz(load(str(SHARED / "openeo-api" / "openapi.yaml")), server.api.rstrip("/"),
                  auth, EXAMPLES)
    assert report.requests > 50
    problems = [p for p in report.problems if not official_quirk(p)]
    assert not problems, "\n".join(problems)
