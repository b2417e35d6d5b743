"""errors.py against the openEO API's errors.json, in both directions, and the process
exceptions (process_errors.py) against the process definitions that declare them."""

from __future__ import annotations

import importlib
import json
import pkgutil
from pathlib import Path

import pytest

import terracube
from terracube import errors, process_errors


@pytest.fixture(scope="module")
def error_codes(shared_dir: Path) -> dict[str, dict]:
    return json.loads((shared_dir / "openeo-api" / "errors.json").read_text())


@pytest.fixture(scope="module")
def declared_process_exceptions(shared_dir: Path) -> set[str]:
    """The exception names the official process definitions declare."""
    names: set[str] = set()
    for path in (shared_dir / "openeo-processes").rglob("*.json"):
        doc = json.loads(path.read_text())
        if isinstance(doc, dict):
            names |= set(doc.get("exceptions") or {})
    return names


def all_error_classes() -> list[type[errors.OpenEOError]]:
    """Every OpenEOError subclass defined anywhere in terracube (all modules imported)."""
    for module in pkgutil.walk_packages(terracube.__path__, "terracube."):
        if module.name.startswith("terracube.hub"):
            continue  # the course hub needs JupyterHub, which the server does not
        importlib.import_module(module.name)
    seen: list[type[errors.OpenEOError]] = []
    todo = [errors.OpenEOError]
    while todo:
        cls = todo.pop()
        for sub in cls.__subclasses__():
            if sub not in seen:
                seen.append(sub)
                todo.append(sub)
    return seen


def test_every_code_of_errors_json_has_a_class_with_its_status(error_codes) -> None:
    missing = [code for code in error_codes if not hasattr(errors, code)]
    assert not missing, f"errors.py has no class for {missing}"
    for code, spec in error_codes.items():
        cls = getattr(errors, code)
        assert issubclass(cls, errors.OpenEOError), code
        assert cls.code == code
        assert cls.status == spec["http"], f"{code}: {cls.status} != {spec['http']}"


def test_every_class_has_a_known_code(error_codes, declared_process_exceptions) -> None:
    classes = all_error_classes()
    assert len(classes) >= len(error_codes)
    unknown = []
    for cls in classes:
        if cls is process_errors.ProcessException:
            continue  # the abstract base of the process exceptions
        if issubclass(cls, process_errors.ProcessException):
            ok = cls.code in declared_process_exceptions and cls.status == 400
        else:
            ok = cls.code in error_codes or cls.code in errors.EXTRA_CODES
        if not ok:
            unknown.append(f"{cls.__module__}.{cls.__qualname__} ({cls.code})")
    assert not unknown, f"codes neither in errors.json, declared by a process nor documented " \
                        f"in errors.EXTRA_CODES: {unknown}"


def test_extra_codes_are_not_in_errors_json_and_are_used(error_codes) -> None:
    codes = {cls.code for cls in all_error_classes()}
    for code, reason in errors.EXTRA_CODES.items():
        assert code not in error_codes, f"{code} is in errors.json: use that class"
        assert code in codes, f"{code} is documented but no class uses it"
        assert reason.strip()


def test_an_error_renders_as_openeo_error_json(error_codes) -> None:
    exc = errors.FileLocked("results.tif is written by job j-1", argument="path")
    body = exc.to_json()
    assert body["code"] == "FileLocked" and exc.status == error_codes["FileLocked"]["http"]
    assert body["message"] == "[argument 'path'] results.tif is written by job j-1"
    assert len(body["id"]) == 32 and body["links"] == []
