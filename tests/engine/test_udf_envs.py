"""Environments of the packages UDFs declare (engine/udf_envs.py): the requirement set's key,
what the runtime provides, one installation for concurrent requests, conflicts found among the
installed packages' own requirements, and the read-only folder inside the real sandbox. Packages
come from a folder of wheels written here (pip with --no-index: no network)."""

from __future__ import annotations

import logging
import shutil
import threading
from pathlib import Path

import pytest
from tests.support.markers import needs_sandbox
from tests.support.wheels import write_wheel

from terracube import errors
from terracube.engine.evaluate import Evaluator, Services
from terracube.engine.udf_envs import (
    EnvPolicy,
    declared_dependencies,
    environment_for,
    to_install,
    udf_codes,
)
from terracube.engine.udf_sandbox import UdfLimits, sandbox_command
from terracube.settings import Settings


def declaring(*requirements: str, body: str = "    return cube\n") -> str:
    lines = "".join(f'#   "{r}",\n' for r in requirements)
    return (f"# /// script\n# dependencies = [\n{lines}# ]\n# ///\nimport xarray\n\n"
            f"def apply_datacube(cube: xarray.DataArray, context: dict) -> xarray.DataArray:\n"
            + body)


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("wheels")
    write_wheel(folder, "tc-plain", "1.0", {"tc_plain/__init__.py": "VALUE = 41\n"})
    write_wheel(folder, "tc-needs-plain", "1.0", {"tc_needs_plain/__init__.py": ""},
                requires=["tc-plain>=1"])
    write_wheel(folder, "tc-old-numpy", "1.0", {"tc_old_numpy/__init__.py": ""},
                requires=["numpy<1.0"])
    return folder


def policy(tmp_path: Path, wheels: Path, **settings) -> EnvPolicy:
    return EnvPolicy.from_settings(Settings(
        data_dir=tmp_path, udf_package_index="none", udf_find_links=str(wheels), **settings))


def test_the_runtime_provides_what_it_has() -> None:
    assert to_install(["numpy>=1", "xarray", "pytest; python_version < '3'"]) == []
    assert [r.name for r in to_install(["tc-plain", "numpy"])] == ["tc-plain"]
    with pytest.raises(errors.ProcessParameterInvalid, match=r"numpy<1 \(the runtime has"):
        to_install(["numpy<1"])
    with pytest.raises(errors.ProcessParameterInvalid, match="direct reference"):
        to_install(["tc-plain @ https://example.org/tc_plain-1.0-py3-none-any.whl"])


def test_pep723_block_is_read() -> None:
    assert declared_dependencies(declaring("a>=1", "b")) == ["a>=1", "b"]
    assert declared_dependencies("def apply_datacube(cube, context):\n    return cube\n") == []
    with pytest.raises(errors.ProcessParameterInvalid, match="not valid TOML"):
        declared_dependencies("# /// script\n# dependencies = [\n# ///\n")


def test_concurrent_requests_install_once(tmp_path, wheels, caplog) -> None:
    p = policy(tmp_path, wheels)
    code = declaring("tc-plain")
    found: list[Path | None] = []
    caplog.set_level(logging.INFO, logger="terracube.engine.udf_envs")
    threads = [threading.Thread(target=lambda: found.append(environment_for(code, p)))
               for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(found) == 3 and len(set(found)) == 1 and found[0] is not None
    assert sum("installed in" in r.message for r in caplog.records) == 1
    # the same set written otherwise has the same key; nothing but the environment is left
    assert environment_for(declaring("TC_Plain", "numpy"), p) == found[0]
    assert sorted(x.name for x in (tmp_path / "udf-envs").iterdir()) == \
        sorted([found[0].name, found[0].name + ".lock"])


def test_a_package_that_needs_another_runtime_version_is_refused(tmp_path, wheels) -> None:
    with pytest.raises(errors.ProcessParameterInvalid) as info:
        environment_for(declaring("tc-old-numpy"), policy(tmp_path, wheels))
    assert "tc-old-numpy" in info.value.message and "numpy<1.0 (the runtime has numpy" in \
        info.value.message
    assert [x.name for x in (tmp_path / "udf-envs").iterdir()] == [
        x.name for x in (tmp_path / "udf-envs").iterdir() if x.name.endswith(".lock")]


def test_udf_codes_of_nested_graphs() -> None:
    graph = {"load": {"process_id": "load_collection", "arguments": {}},
             "apply": {"process_id": "apply", "arguments": {"process": {"process_graph": {
                 "u": {"process_id": "run_udf", "arguments": {"udf": "code\n"}}}}}},
             "top": {"process_id": "run_udf", "arguments": {"udf": {"from_parameter": "x"}}}}
    assert list(udf_codes({"process_graph": graph})) == [("u", "code\n")]


def test_the_environment_is_bound_read_only(tmp_path) -> None:
    env = tmp_path / "env"
    env.mkdir()
    command = sandbox_command(UdfLimits(), env)
    i = command.index(str(env))
    assert command[i - 1:i + 2] == ["--ro-bind", str(env), "/udf/env"]


@needs_sandbox
def test_the_sandboxed_udf_imports_the_package_and_cannot_change_it(registry, tmp_path,
                                                                   wheels) -> None:
    body = ("    import tc_plain\n    try:\n        open(tc_plain.__file__, 'a').write('x')\n"
            "        wrote = 1000\n    except OSError:\n        wrote = 0\n"
            "    return cube * 0 + tc_plain.VALUE + wrote + (tc_plain.__file__.startswith("
            "'/udf/env/'))\n")
    s = Settings(data_dir=tmp_path, udf_package_index="none", udf_find_links=str(wheels))
    graph = {"u": {"process_id": "run_udf", "arguments": {
        "data": [1.0], "udf": declaring("tc-plain", body=body), "runtime": "Python"},
        "result": True}}
    assert Evaluator(Services(registry=registry, settings=s)).run(graph, {}) == [42.0]


def test_allow_list_covers_what_the_packages_require(tmp_path, wheels) -> None:
    only = policy(tmp_path, wheels, udf_dependencies="allow-list",
                  udf_allowed_packages="tc-needs-plain")
    with pytest.raises(errors.ProcessParameterInvalid) as info:
        environment_for(declaring("tc-needs-plain"), only)
    assert "require tc-plain, which this server does not install" in info.value.message
    both = policy(tmp_path, wheels, udf_dependencies="allow-list",
                  udf_allowed_packages="tc-needs-plain,TC_Plain")
    env = environment_for(declaring("tc-needs-plain"), both)
    assert env is not None and (env / "tc_plain" / "__init__.py").is_file()


def test_a_killed_installation_leaves_nothing_behind(tmp_path, wheels) -> None:
    p = policy(tmp_path, wheels)
    env = environment_for(declaring("tc-plain"), p)
    assert env is not None
    shutil.rmtree(env)
    stale = env.parent / f".tmp-{env.name}-dead"
    (stale / "half").mkdir(parents=True)
    assert environment_for(declaring("tc-plain"), p) == env and not stale.exists()
