"""A transaction's card features depend on what arrived before it, never on micro-batch cuts.

The oracle counts by hand, one transaction at a time, with plain loops: the card's
transactions that arrived before it (or are it) whose event time lies in (t - n days, t].
"""

from __future__ import annotations

import itertools
from collections import defaultdict

import numpy as np
import pytest

from services.features import definitions as d
from services.features.incremental import CUSTOMER_BLOCK, CustomerHistory, customer_features
from tests.streams import Tx

DAY = d.MS_PER_DAY
T0 = 1_534_759_200_000  # 2018-08-20T10:00:00Z


def _oracle(stream: list[Tx]) -> dict[str, list[float]]:
    """Each transaction's CUSTOMER_BLOCK values, by brute force over the arrival prefix."""
    seen: dict[str, list[tuple[int, float, int]]] = defaultdict(list)  # (time, amount, large)
    out: dict[str, list[float]] = {}
    for tx in stream:
        before = seen[tx.customer_id]
        row: list[float] = []
        mean_30 = 0.0
        for days in d.WINDOWS_DAYS:
            inside = [a for t, a, _ in before if tx.time_ms - days * DAY < t <= tx.time_ms]
            inside.append(tx.amount)
            row += [float(len(inside)), sum(round(a * 100) for a in inside) / len(inside) / 100]
            mean_30 = row[-1]
        large = int(tx.amount > d.LARGE_AMOUNT_FACTOR * mean_30)
        window = d.LARGE_AMOUNT_WINDOW_DAYS * DAY
        row.append(
            float(large + sum(g for t, _, g in before if tx.time_ms - window < t <= tx.time_ms))
        )
        before.append((tx.time_ms, tx.amount, large))
        out[tx.transaction_id] = row
    return out


def _online(stream: list[Tx], cuts: list[int]) -> dict[str, list[float]]:
    histories: defaultdict[str, CustomerHistory] = defaultdict(CustomerHistory)
    out: dict[str, list[float]] = {}
    bounds = [0, *cuts, len(stream)]
    for lo, hi in itertools.pairwise(bounds):
        chunk = stream[lo:hi]
        if chunk:
            for tx, row in zip(chunk, customer_features(chunk, histories), strict=True):
                out[tx.transaction_id] = row.tolist()
    return out


def test_a_later_arrival_with_an_earlier_time_does_not_count_for_what_came_before() -> None:
    """The case tried with kcat: A, then B a day later, then D one ms before B, sent after B."""
    a = Tx("A", "c", "t", T0, 10.0)
    b = Tx("B", "c", "t", T0 + DAY, 20.0)
    late = Tx("D", "c", "t", T0 + DAY - 1, 40.0)
    together = _online([a, b, late], [])
    apart = _online([a, b, late], [1, 2])
    one_day = CUSTOMER_BLOCK.index(d.customer_count(1))
    assert together["B"][one_day : one_day + 2] == [1.0, 20.0]  # A is exactly one day old
    assert together == apart
    # D's own window holds A and D; B came first but is later in event time
    assert together["D"][one_day : one_day + 2] == [2.0, 25.0]


def _random_stream(rng: np.random.Generator, n: int, late_share: float) -> list[Tx]:
    times = np.sort(rng.integers(0, 40 * DAY, n)) + T0
    late = rng.random(n) < late_share
    times[late] -= rng.integers(1, 3 * DAY, int(late.sum()))  # arrives after later events
    same = rng.random(n) < 0.05
    times[1:][same[1:]] = times[:-1][same[1:]]  # ties in event time
    return [
        Tx(f"x{i}", f"c{rng.integers(0, 4)}", "t", int(t), float(rng.choice([5.0, 20.0, 90.0])))
        for i, t in enumerate(times)
    ]


@pytest.mark.parametrize("late_share", [0.0, 0.2])
def test_every_cut_of_the_stream_gives_the_oracles_features(late_share: float) -> None:
    rng = np.random.default_rng(11)
    stream = _random_stream(rng, 60, late_share)
    want = _oracle(stream)
    for cut in range(len(stream) + 1):
        got = _online(stream, [cut])
        for tx in stream:
            assert got[tx.transaction_id] == pytest.approx(want[tx.transaction_id], abs=1e-9), (
                f"cut at {cut}, {tx.transaction_id}"
            )
    random_cuts = sorted(set(rng.integers(1, len(stream), 15).tolist()))
    got = _online(stream, random_cuts)
    for tx in stream:
        assert got[tx.transaction_id] == pytest.approx(want[tx.transaction_id], abs=1e-9)


def test_a_redelivered_transaction_gets_its_first_values() -> None:
    rng = np.random.default_rng(5)
    stream = _random_stream(rng, 40, 0.2)
    histories: defaultdict[str, CustomerHistory] = defaultdict(CustomerHistory)
    values = customer_features(stream, histories)
    first = dict(zip((tx.transaction_id for tx in stream), values, strict=True))
    again = customer_features(stream[10:25], histories)
    for tx, row in zip(stream[10:25], again, strict=True):
        assert row.tolist() == first[tx.transaction_id].tolist()
