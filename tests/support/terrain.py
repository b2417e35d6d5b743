"""Slope and aspect computed independently of the engine (numpy slicing), to compare the
server's `slope`/`aspect` (and CDSE's slope process) with."""

from __future__ import annotations

import numpy as np


def horn(z: np.ndarray, widths: np.ndarray, heights: np.ndarray) -> tuple[np.ndarray, ...]:
    """Horn's slope and aspect (degrees) of `z` (rows north to south) whose pixels are
    `widths` by `heights` metres (one value per row); neighbours beyond the edge or no-data
    take the centre's value; aspect NaN where the ground is flat."""
    p = np.pad(z, 1, constant_values=np.nan)
    c = p[1:-1, 1:-1]

    def nb(dr: int, dc: int) -> np.ndarray:
        v = p[1 + dr:p.shape[0] - 1 + dr, 1 + dc:p.shape[1] - 1 + dc]
        return np.where(np.isnan(v), c, v)

    w, h = widths[:, None], heights[:, None]
    dzdx = ((nb(-1, 1) + 2 * nb(0, 1) + nb(1, 1)) - (nb(-1, -1) + 2 * nb(0, -1) + nb(1, -1))) \
        / (8 * w)
    dzdy = ((nb(-1, -1) + 2 * nb(-1, 0) + nb(-1, 1)) - (nb(1, -1) + 2 * nb(1, 0) + nb(1, 1))) \
        / (8 * h)
    aspect = (np.degrees(np.arctan2(-dzdx, -dzdy)) + 360) % 360
    aspect[(dzdx == 0) & (dzdy == 0)] = np.nan
    return np.degrees(np.arctan(np.hypot(dzdx, dzdy))), aspect
