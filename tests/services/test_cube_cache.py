"""The cache of lazy results and stretches behind XYZ tiles: the tiles a map asks for at once
share one evaluation instead of each making it."""

from __future__ import annotations

import threading
import time

import pytest

from terracube.services.render import CubeCache


def test_concurrent_tiles_make_a_value_once_and_failures_are_not_kept() -> None:
    cache = CubeCache(capacity=4)
    made: list[int] = []

    def make() -> str:
        made.append(1)
        time.sleep(0.3)  # an evaluation taking a while
        return "cube"

    got: list[str] = []
    threads = [threading.Thread(target=lambda: got.append(cache.get_or_make(("s", "g"), make)))
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == ["cube"] * 8 and len(made) == 1

    def fail() -> str:
        raise RuntimeError("evaluation failed")

    for _ in range(2):  # a failure is raised to its caller and not cached: the next one tries
        with pytest.raises(RuntimeError, match="evaluation failed"):
            cache.get_or_make(("s", "bad"), fail)
    assert cache.get_or_make(("s", "bad"), lambda: "fixed") == "fixed"
    cache.forget("s")
    assert cache.get_or_make(("s", "g"), lambda: "new") == "new"
