"""``fraud report``'s plotted lines break where Prometheus had no sample (they once joined
the two sides of a stopped scorer's silence with a straight line)."""

from __future__ import annotations

import math

from services.observability.report import with_gaps


def test_a_gap_longer_than_one_and_a_half_steps_gets_a_nan() -> None:
    # 5 s steps; nothing between 10 and 40 s (a stopped scorer)
    points = [(0.0, 1.0), (5.0, 2.0), (10.0, 3.0), (40.0, 4.0), (45.0, 5.0)]
    got = with_gaps(points, step=5.0)
    assert [t for t, _ in got] == [0.0, 5.0, 10.0, 25.0, 40.0, 45.0]
    assert math.isnan(got[3][1]) and [v for _, v in got if not math.isnan(v)] == [1, 2, 3, 4, 5]
    assert with_gaps([(0.0, 1.0), (7.0, 1.0)], step=5.0) == [(0.0, 1.0), (7.0, 1.0)]  # jitter
