"""The JupyterHub configuration `terracube hub` builds from its settings."""

from __future__ import annotations

from pathlib import Path

from tests.hub.conftest import needs_hub

from terracube.hub.settings import HubSettings

pytestmark = needs_hub  # configure() needs the proxy program


def test_the_hub_checks_running_labs_as_often_as_set(tmp_path: Path) -> None:
    from traitlets import config

    from terracube.hub.config import configure

    default = config.Config()
    configure(default, HubSettings(_env_file=None, data_dir=tmp_path / "a"))
    assert default.Spawner.poll_interval == 30
    often = config.Config()
    configure(often, HubSettings(_env_file=None, data_dir=tmp_path / "b", hub_poll_seconds=3))
    assert often.Spawner.poll_interval == 3
