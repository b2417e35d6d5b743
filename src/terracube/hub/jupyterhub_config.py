"""JupyterHub configuration file of the course hub (`terracube hub` passes it with -f)."""

from terracube.hub.config import configure

configure(get_config())  # noqa: F821 - get_config is provided by JupyterHub when it loads this
