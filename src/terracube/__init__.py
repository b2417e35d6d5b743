"""terracube: your own openEO back-end."""

__version__ = "0.1.0"
