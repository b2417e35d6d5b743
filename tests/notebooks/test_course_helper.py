"""notebooks/terracube_course.py: the connection from the environment, and keep()."""

from __future__ import annotations

import importlib
import json
import sys

import httpx
from tests.notebooks.conftest import NOTEBOOKS


def _course(monkeypatch):
    monkeypatch.syspath_prepend(str(NOTEBOOKS))
    sys.modules.pop("terracube_course", None)
    return importlib.import_module("terracube_course")


def test_connect_with_user_and_password(course_server, monkeypatch):
    course = _course(monkeypatch)
    monkeypatch.delenv("TERRACUBE_TOKEN", raising=False)
    monkeypatch.delenv("TERRACUBE_TOKEN_FILE", raising=False)
    monkeypatch.setenv("TERRACUBE_URL", course_server.url)
    monkeypatch.setenv("TERRACUBE_USER", course_server.user)
    monkeypatch.setenv("TERRACUBE_PASSWORD", course_server.password)
    assert course.connect().describe_account()["user_id"] == course_server.user


def test_connect_with_a_token(course_server, monkeypatch):
    course = _course(monkeypatch)
    token = httpx.get(f"{course_server.server.api}credentials/basic",
                      auth=(course_server.user, course_server.password)).json()["access_token"]
    monkeypatch.setenv("TERRACUBE_URL", course_server.url)
    monkeypatch.delenv("TERRACUBE_TOKEN_FILE", raising=False)
    monkeypatch.setenv("TERRACUBE_TOKEN", token)
    monkeypatch.setenv("TERRACUBE_PASSWORD", "wrong")  # the token wins
    assert course.connect().describe_account()["user_id"] == course_server.user


def test_keep_merges_results_into_one_json(tmp_path, monkeypatch):
    course = _course(monkeypatch)
    import numpy as np

    monkeypatch.setenv("TERRACUBE_COURSE_OUT", str(tmp_path))
    course.keep("xx_lesson", a=np.float32(1.5), b=np.arange(3))
    course.keep("xx_lesson", c="three")
    assert json.loads((tmp_path / "xx_lesson.json").read_text()) == {
        "a": 1.5, "b": [0, 1, 2], "c": "three"}
    monkeypatch.delenv("TERRACUBE_COURSE_OUT")
    course.keep("yy_lesson", a=1)  # no folder: nothing written, no error
    assert not (tmp_path / "yy_lesson.json").exists()


def test_the_renewed_token_file_wins_over_the_start_token(course_server, monkeypatch, tmp_path):
    course = _course(monkeypatch)
    token = httpx.get(f"{course_server.server.api}credentials/basic",
                      auth=(course_server.user, course_server.password)).json()["access_token"]
    token_file = tmp_path / "token"
    monkeypatch.setenv("TERRACUBE_URL", course_server.url)
    monkeypatch.setenv("TERRACUBE_TOKEN", "expired-start-token")
    monkeypatch.setenv("TERRACUBE_TOKEN_FILE", str(token_file))
    token_file.write_text(token + "\n")
    assert course.connect().describe_account()["user_id"] == course_server.user
    token_file.unlink()  # no file (yet): TERRACUBE_TOKEN is used
    monkeypatch.setenv("TERRACUBE_TOKEN", token)
    assert course.connect().describe_account()["user_id"] == course_server.user
