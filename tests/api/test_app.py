"""create_app and Settings: defaults, env overrides, refusing unsafe set-ups, the dev user."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from tests.support.fakes import EmptyCatalog

from terracube.api.app import create_app
from terracube.auth.users import UserStore
from terracube.engine.registry import ProcessRegistry
from terracube.settings import Settings, UnsafeToServe, is_loopback


def make_app(settings: Settings):
    return create_app(settings, catalog=EmptyCatalog(), registry=ProcessRegistry())


def test_settings_defaults(monkeypatch, tmp_path):
    for name in ("HOST", "PORT", "DATA_DIR", "DATABASE_URL", "DEV_DEFAULT_USER", "PUBLIC_URL"):
        monkeypatch.delenv(f"TERRACUBE_{name}", raising=False)
    monkeypatch.chdir(tmp_path)
    s = Settings()
    assert s.host == "127.0.0.1"
    assert s.port == 8000
    assert s.data_dir == (tmp_path / "var").resolve()
    assert s.database_url == f"sqlite:///{s.data_dir / 'terracube.db'}"
    assert s.dask_scheduler is None
    assert s.memory_limit is None
    assert s.token_ttl_seconds > 0
    assert s.dev_default_user is False
    assert s.public_url is None


def test_settings_from_env(monkeypatch, tmp_path):
    monkeypatch.setenv("TERRACUBE_PORT", "9123")
    monkeypatch.setenv("TERRACUBE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("TERRACUBE_DEV_DEFAULT_USER", "true")
    monkeypatch.setenv("TERRACUBE_PUBLIC_URL", "https://eo.example.org/")
    monkeypatch.setenv("TERRACUBE_DASK_SCHEDULER", "tcp://dask:8786")
    s = Settings()
    assert s.port == 9123
    assert isinstance(s.data_dir, Path) and s.data_dir == tmp_path / "data"
    assert s.database_url.endswith(str(tmp_path / "data" / "terracube.db"))
    assert s.dev_default_user is True
    assert s.public_url == "https://eo.example.org"
    assert s.dask_scheduler == "tcp://dask:8786"
    # Explicit values (CLI flags) win over the environment.
    assert Settings(port=1234).port == 1234


def test_explicit_database_url_is_kept(tmp_path):
    url = f"sqlite:///{tmp_path / 'other.db'}"
    assert Settings(data_dir=tmp_path, database_url=url).database_url == url


@pytest.mark.parametrize("host, loopback", [
    ("127.0.0.1", True), ("127.0.0.2", True), ("localhost", True), ("::1", True),
    ("0.0.0.0", False), ("::", False), ("192.168.1.10", False), ("example.org", False),
])
def test_is_loopback(host, loopback):
    assert is_loopback(host) is loopback


def test_dev_default_user_is_created_and_announced(tmp_path, caplog):
    settings = Settings(data_dir=tmp_path, dev_default_user=True)
    with caplog.at_level(logging.WARNING):
        app = make_app(settings)
    assert "dev default user demo/demo created — do not expose" in caplog.text
    assert app.state.users.has_password("demo", "demo")


def test_dev_default_user_keeps_a_changed_password(tmp_path):
    settings = Settings(data_dir=tmp_path, dev_default_user=True)
    users = make_app(settings).state.users
    users.set_password("demo", "changed")
    users = make_app(settings).state.users
    assert users.has_password("demo", "changed")


def test_refuses_dev_user_on_public_host(tmp_path):
    with pytest.raises(UnsafeToServe, match="dev default user"):
        make_app(Settings(data_dir=tmp_path, host="0.0.0.0", dev_default_user=True))
    # Nothing was created.
    assert not make_app(Settings(data_dir=tmp_path)).state.users.exists("demo")


def test_refuses_default_password_on_public_host(tmp_path):
    make_app(Settings(data_dir=tmp_path, dev_default_user=True))
    with pytest.raises(UnsafeToServe, match="default password"):
        make_app(Settings(data_dir=tmp_path, host="0.0.0.0"))


def test_public_host_is_fine_without_default_credentials(tmp_path):
    users = make_app(Settings(data_dir=tmp_path, dev_default_user=True)).state.users
    users.set_password("demo", "a-better-one")
    make_app(Settings(data_dir=tmp_path, host="0.0.0.0"))


def test_services_are_on_app_state(tmp_path):
    catalog, registry = EmptyCatalog(), ProcessRegistry()
    settings = Settings(data_dir=tmp_path)
    app = create_app(settings, catalog=catalog, registry=registry)
    assert app.state.settings is settings
    assert app.state.catalog is catalog
    assert app.state.registry is registry
    assert isinstance(app.state.users, UserStore)
    assert (tmp_path / "terracube.db").exists()


def test_default_catalog_and_registry_are_built_from_settings(tmp_path):
    from terracube.catalog import Catalog
    from terracube.engine.registry import ProcessRegistry as Registry

    app = create_app(Settings(data_dir=tmp_path))
    assert isinstance(app.state.catalog, Catalog)
    assert isinstance(app.state.registry, Registry)
