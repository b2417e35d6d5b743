"""Markers of the official openEO process tests."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "experimental: a test of an experimental (proposed) openEO process")
