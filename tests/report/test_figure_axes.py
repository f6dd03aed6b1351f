"""The dot plots zoom to the methods: a noise floor far off their scale is drawn at the edge."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest

from ptrag.report.figures import _clip_far_noise_floor, _zoomed_limits

NAMES = ["st", "memory", "linear", "noise_floor"]


def test_a_far_noise_floor_is_left_out_of_the_limits_and_drawn_at_the_edge_with_its_value() -> None:
    means = np.array([1.20, 1.16, 1.18, 2.35])
    lows, highs = means - 0.05, means + 0.05
    low, high = _zoomed_limits(NAMES, means, lows, highs)
    assert (low, high) == pytest.approx((1.11 - 0.0084, 1.25 + 0.0084))  # padded by 6 % of 0.14
    figure, axis = plt.subplots()
    clipped, clipped_lows, clipped_highs = _clip_far_noise_floor(
        axis, NAMES, np.arange(4), means, lows, highs, (low, high)
    )
    assert clipped[3] == clipped_lows[3] == clipped_highs[3] == high
    np.testing.assert_array_equal(clipped[:3], means[:3])
    assert [t.get_text() for t in axis.texts] == ["→ 2.35"]
    plt.close(figure)


def test_a_noise_floor_on_the_methods_scale_stays_inside_the_limits() -> None:
    means = np.array([0.25, 0.23, 0.25, 0.29])
    lows, highs = means - 0.01, means + 0.01
    low, high = _zoomed_limits(NAMES, means, lows, highs)
    assert low < 0.22 and high > 0.30
