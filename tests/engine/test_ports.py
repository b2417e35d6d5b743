"""The engine's ports (engine/ports.py) as processing/ fills them: Services frozen, every port
given its adapter, and what a process says when a port is missing."""

from __future__ import annotations

import dataclasses

import pytest

from terracube import errors
from terracube.auth.users import User
from terracube.catalog import Catalog
from terracube.catalog.access import StacUrlReader, UploadedFileReader
from terracube.engine.evaluate import Evaluator, Services
from terracube.processing.services import build_services
from terracube.results.access import FormatTable
from terracube.settings import Settings
from terracube.workspace.access import UserWorkspace
from terracube.workspace.files import workspace_folder


def run(services: Services, process_id: str, **arguments: object) -> object:
    graph = {"n": {"process_id": process_id, "arguments": arguments, "result": True}}
    return Evaluator(services).run(graph)


def test_services_are_frozen(registry) -> None:
    services = Services(registry=registry)
    with pytest.raises(dataclasses.FrozenInstanceError):
        services.catalog = None  # type: ignore[misc]
    derived = dataclasses.replace(services, formats=FormatTable())
    assert derived.formats is not None and services.formats is None


def test_build_services_fills_every_port(registry, tmp_path) -> None:
    settings = Settings(data_dir=tmp_path / "data", storage_quota_bytes=1234)
    catalog = Catalog(settings)
    services = build_services(settings, catalog, registry, User(user_id="alice"))
    assert services.catalog is catalog
    assert isinstance(services.stac, StacUrlReader)
    assert isinstance(services.uploads, UploadedFileReader)
    assert isinstance(services.formats, FormatTable)
    assert isinstance(services.workspace, UserWorkspace)
    assert services.workspace.root == workspace_folder(settings, "alice")
    assert services.udp_lookup is not None
    # without a user there is no workspace and no UDP store to look in
    anonymous = build_services(settings, catalog, registry)
    assert anonymous.workspace is None and anonymous.udp_lookup is None


def test_format_table_by_the_names_users_give() -> None:
    formats = FormatTable()
    assert formats.output_format("tif") == "GTiff" and formats.output_format("nc") == "netCDF"
    assert formats.output_format("pickle") is None
    assert formats.input_format("GeoTiff") == "GTiff"
    assert formats.input_format("png") is None  # written, never read
    assert "GTiff" in formats.input_formats() and "PNG" not in formats.input_formats()


def test_user_workspace_writes_within_the_quota(tmp_path) -> None:
    space = UserWorkspace(tmp_path / "ws", quota=10)
    space.write_file("a/b.txt", b"12345")
    assert (tmp_path / "ws" / "a" / "b.txt").read_bytes() == b"12345"
    assert space.locate("a/b.txt") == tmp_path / "ws" / "a" / "b.txt"
    with pytest.raises(errors.OpenEOError) as info:
        space.write_file("c.txt", b"123456")
    assert info.value.code == "StorageQuotaExceeded"
    assert sorted(p.name for p in (tmp_path / "ws").rglob("*")) == ["a", "b.txt"]
    with pytest.raises(errors.OpenEOError) as info:
        space.check_path("../outside")
    assert info.value.code == "FilePathInvalid"


@pytest.mark.parametrize(("process_id", "arguments", "code"), [
    ("load_collection", {"id": "S2"}, "CollectionNotFound"),
    ("load_stac", {"url": "https://example.org/collection.json"}, "ProcessUnsupported"),
    ("save_result", {"data": 1, "format": "JSON"}, "ProcessUnsupported"),
])
def test_a_missing_port_is_an_openeo_error(registry, process_id, arguments, code) -> None:
    with pytest.raises(errors.OpenEOError) as info:
        run(Services(registry=registry), process_id, **arguments)
    assert info.value.code == code and info.value.node_id == "n"


def test_load_uploaded_files_needs_a_workspace(registry) -> None:
    services = Services(registry=registry, uploads=UploadedFileReader(), formats=FormatTable())
    with pytest.raises(errors.OpenEOError) as info:
        run(services, "load_uploaded_files", paths=["a.tif"], format="GTiff")
    assert info.value.code == "FileNotFound" and info.value.argument == "paths"
