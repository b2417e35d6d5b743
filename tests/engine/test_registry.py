"""The process registry: built from the explicit module list, immutable, derived for tests."""

from __future__ import annotations

import sys

import pytest

from terracube import errors
from terracube.engine.registry import PROCESS_MODULES, ProcessRegistry, build_registry, process


def test_every_listed_module_contributes_processes(registry: ProcessRegistry) -> None:
    for name in PROCESS_MODULES:
        module = sys.modules[name]
        ids = [pid for obj in vars(module).values()
               if getattr(obj, "__module__", None) == name
               for pid in getattr(obj, "_openeo_ids", ())]
        assert ids, f"{name} defines no process"
        assert all(pid in registry for pid in ids)


def test_a_module_that_fails_to_import_fails_the_build() -> None:
    with pytest.raises(ImportError, match="terracube.engine.processes.no_such_family"):
        build_registry((*PROCESS_MODULES, "terracube.engine.processes.no_such_family"))


def test_a_broken_dependency_inside_a_module_fails_the_build(tmp_path, monkeypatch) -> None:
    # Before: a ModuleNotFoundError of the listed module itself was skipped silently.
    (tmp_path / "tc_broken_family.py").write_text("import tc_no_such_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ImportError, match="tc_broken_family failed to import"):
        build_registry(("tc_broken_family",))


def test_the_registry_cannot_be_changed(registry: ProcessRegistry) -> None:
    assert not hasattr(registry, "add")
    with pytest.raises(TypeError):
        registry._impls["evil"] = registry.get("add")  # type: ignore[index]
    assert "evil" not in registry


def test_derived_registries_leave_the_original_alone(registry: ProcessRegistry) -> None:
    def tc_twice(x):
        return 2 * x

    derived = registry.with_processes({"tc_twice": tc_twice})
    assert "tc_twice" in derived and "tc_twice" not in registry
    assert len(derived) == len(registry) + 1
    assert derived.get("tc_twice").required == frozenset({"x"})
    with pytest.raises(ValueError, match="add"):
        registry.with_processes({"add": tc_twice})


def test_unknown_process_is_an_openeo_error(registry: ProcessRegistry) -> None:
    with pytest.raises(errors.ProcessUnsupported):
        registry.get("no_such_process")


def test_decorated_functions_map_spec_names() -> None:
    @process("tc_if")
    def tc_if(value, accept, reject=None, ctx=None, **extra):
        return value

    impl = ProcessRegistry({"tc_if": tc_if}).get("tc_if")
    assert impl.params == {"value": "value", "accept": "accept", "reject": "reject"}
    assert impl.required == frozenset({"value", "accept"})
    assert impl.wants_ctx and impl.takes_extra


def test_python_keywords_get_a_trailing_underscore() -> None:
    def tc_kw(if_, and_=1):
        return if_

    impl = ProcessRegistry({"tc_kw": tc_kw}).get("tc_kw")
    assert impl.params == {"if": "if_", "and": "and_"}
