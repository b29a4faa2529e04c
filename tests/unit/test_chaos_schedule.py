"""The SIGKILL schedule of `fraud chaos --scenario scorer-kill`: inside the replay, spaced,
and found for replays too short for the usual 4 s spacing (this looped forever once)."""

from __future__ import annotations

import itertools
import random
from types import SimpleNamespace

import pytest

from tools.chaos.scenarios import _kill_times


@pytest.mark.parametrize(("replay_s", "gap"), [(50.0, 4.0), (8.0, 6.0 / 3), (0.5, 0.375 / 3)])
def test_kills_fall_inside_the_replay_and_apart(replay_s: float, gap: float) -> None:
    for seed in range(20):
        ctx = SimpleNamespace(replay_s=replay_s, rng=random.Random(seed))
        times = _kill_times(ctx, 3)  # type: ignore[arg-type]
        assert len(times) == 3 and times == sorted(times)
        assert 0.1 * replay_s <= times[0] and times[-1] <= 0.85 * replay_s
        assert all(b - a >= gap - 1e-9 for a, b in itertools.pairwise(times))


def test_the_command_offers_every_scenario() -> None:
    from tools.chaos import CLUSTER_NAMES, NAMES
    from tools.chaos.scenarios import CLUSTER_SCENARIOS, SCENARIOS

    assert list(SCENARIOS) == NAMES
    assert list(CLUSTER_SCENARIOS) == CLUSTER_NAMES
