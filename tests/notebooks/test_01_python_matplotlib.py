"""Lesson 1: the window, its reflectance statistics and the stretch limits, from the JP2 files."""

from __future__ import annotations

import numpy as np
from tests.notebooks.s2_files import band

BOX = (335000, 5816000, 338000, 5819000)


def test_lesson_1_numbers(run_notebook, course_server):
    kept = run_notebook("01_python_matplotlib").results
    red, _ = band(course_server.samples, "B04", BOX)
    nir, _ = band(course_server.samples, "B08", BOX)
    assert kept["shape"] == [4, 300, 300]
    assert np.isclose(kept["red_mean"], red.mean(), rtol=1e-6)
    p2, p98 = np.percentile(red, [2, 98])
    assert np.isclose(kept["red_p2"], p2, atol=1e-6)
    assert np.isclose(kept["red_p98"], p98, atol=1e-6)
    assert kept["bright_nir_pixels"] == int((nir > 0.15).sum())
