"""Standard JSON for results: NaN and ±Infinity become null (decision 0009)."""

from __future__ import annotations

import math
from typing import Any


def without_non_finite(value: Any) -> Any:
    """`value` with every NaN and ±Infinity float replaced by None (iteratively: results can
    be deep and long)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if not isinstance(value, (list, dict)):
        return value
    root: list[Any] = [value]
    stack: list[tuple[Any, Any]] = [(root, 0)]
    while stack:
        container, key = stack.pop()
        item = container[key]
        if isinstance(item, float) and not math.isfinite(item):
            container[key] = None
        elif isinstance(item, list):
            copy = list(item)
            container[key] = copy
            stack.extend((copy, i) for i in range(len(copy)))
        elif isinstance(item, dict):
            copy_d = dict(item)
            container[key] = copy_d
            stack.extend((copy_d, k) for k in copy_d)
    return root[0]
