"""Window arithmetic on small hand-computed cases (no data files, no services)."""

from __future__ import annotations

import numpy as np
import pytest

from services.features import definitions as d
from services.features.derived import calendar_flags
from services.features.incremental import (
    CUSTOMER_BLOCK,
    TERMINAL_BLOCK,
    CustomerHistory,
    TerminalHistory,
    customer_features,
    terminal_features,
)
from services.features.windows import (
    delayed_window,
    event_keys,
    first_flag_window,
    prefix_sums,
    to_cents,
    trailing_window,
)
from tests.streams import Tx

DAY = d.MS_PER_DAY
BASE = 1_530_000_000_000  # 2018-06-26T08:00:00Z


def test_trailing_window_includes_current_and_excludes_later_ties() -> None:
    # one customer: t=0 (10.00), t=0.5d (20.00), t=1d (30.00), t=1d again (40.00), t=3d (5.00)
    times = np.array([0, DAY // 2, DAY, DAY, 3 * DAY]) + BASE
    keys = event_keys(np.zeros(5, dtype=np.int64), times)
    prefix = prefix_sums(to_cents([10.0, 20.0, 30.0, 40.0, 5.0]))
    counts, means = trailing_window(keys, prefix, np.arange(5), days=1)
    # (t-1d, t]: the event exactly one day older falls out
    assert counts.tolist() == [1, 2, 2, 3, 1]
    assert means.tolist() == pytest.approx([10.0, 15.0, 25.0, 30.0, 5.0], abs=1e-12)


def test_trailing_window_keeps_entities_apart() -> None:
    codes = np.array([0, 0, 1, 1])
    times = np.array([0, 1000, 0, 1000]) + BASE
    prefix = prefix_sums(to_cents([1.0, 2.0, 100.0, 200.0]))
    counts, means = trailing_window(event_keys(codes, times), prefix, np.arange(4), days=7)
    assert counts.tolist() == [1, 2, 1, 2]
    assert means.tolist() == pytest.approx([1.0, 1.5, 100.0, 150.0])


def test_delayed_window_counts_transactions_seven_to_seven_plus_n_days_old() -> None:
    # transactions 6.5, 7, 7.5, 8.5 and 40 days before t; the 7.5-day-old one is fraud
    t = BASE + 50 * DAY
    times = np.sort(t - np.array([40, 8.5, 7.5, 7, 6.5]) * DAY).astype(np.int64)
    frauds = prefix_sums(np.array([0, 0, 1, 0, 0]))
    keys = event_keys(np.zeros(5, dtype=np.int64), times)
    query = event_keys(np.zeros(1, dtype=np.int64), np.array([t]))
    counts, risk = delayed_window(keys, frauds, query, days=1, delay_days=7)
    assert counts.tolist() == [2]  # 7 (boundary, included) and 7.5 days old
    assert risk.tolist() == [0.5]
    counts, risk = delayed_window(keys, frauds, query, days=30, delay_days=7)
    assert counts.tolist() == [3] and risk.tolist() == pytest.approx([1 / 3])
    counts, risk = delayed_window(keys, frauds, query - 45 * DAY, days=1, delay_days=7)
    assert counts.tolist() == [0] and risk.tolist() == [0.0]  # empty window: risk 0


def test_calendar_flags() -> None:
    stamps = np.array(
        ["2018-08-11T06:59:59", "2018-08-11T07:00:00", "2018-08-13T00:00:00", "2018-08-12T23:59"],
        dtype="datetime64[ms]",
    ).astype(np.int64)
    weekend, night = calendar_flags(stamps)
    assert weekend.tolist() == [1, 1, 0, 1]  # Sat, Sat, Mon, Sun
    assert night.tolist() == [1, 0, 1, 0]


def _customer(history: CustomerHistory, *txs: Tx) -> list[dict[str, float]]:
    block = customer_features(list(txs), {"c": history})
    return [dict(zip(CUSTOMER_BLOCK, row.tolist(), strict=True)) for row in block]


def test_customer_history_is_idempotent_and_ordered() -> None:
    history = CustomerHistory()
    [first] = _customer(history, Tx("a", "c", "t", BASE, 10.0))
    [second] = _customer(history, Tx("b", "c", "t", BASE + 1000, 30.0))
    assert second[d.customer_count(1)] == 2 and second[d.customer_mean(1)] == 20.0
    assert _customer(history, Tx("a", "c", "t", BASE, 10.0)) == [first]  # a redelivery
    assert _customer(history, Tx("b", "c", "t", BASE + 1000, 30.0)) == [second]
    assert history.transaction_ids == ["a", "b"]


def test_a_batch_gives_what_one_at_a_time_gives() -> None:
    txs = [
        Tx(f"x{i}", "c" if i % 2 else "c2", "t", BASE + i * 3_600_000, 10.0 + 190 * (i == 9))
        for i in range(12)
    ]
    one_by_one: list[dict[str, float]] = []
    histories = {"c": CustomerHistory(), "c2": CustomerHistory()}
    for tx in txs:
        one_by_one += [
            dict(zip(CUSTOMER_BLOCK, r.tolist(), strict=True))
            for r in customer_features([tx], histories)
        ]
    batched = customer_features(txs, {"c": CustomerHistory(), "c2": CustomerHistory()})
    assert [dict(zip(CUSTOMER_BLOCK, r.tolist(), strict=True)) for r in batched] == one_by_one
    # x9 (200.00) is over 3 x its card's 30-day mean (48.00, itself included): large
    assert one_by_one[9][d.customer_mean(30)] == 48.0
    assert one_by_one[9][d.LARGE_AMOUNT_COUNT] == 1.0
    assert one_by_one[11][d.LARGE_AMOUNT_COUNT] == 1.0  # the card's next one still counts it
    assert one_by_one[10][d.LARGE_AMOUNT_COUNT] == 0.0  # the other card
    assert one_by_one[7][d.LARGE_AMOUNT_COUNT] == 0.0


def test_a_late_transaction_is_kept_in_arrival_order() -> None:
    history = CustomerHistory()
    _customer(history, Tx("b", "c", "t", BASE + 2000, 20.0))
    [late] = _customer(history, Tx("a", "c", "t", BASE + 1000, 10.0))
    assert history.transaction_ids == ["b", "a"]
    assert late[d.customer_count(1)] == 1.0  # b is later than a: outside a's window


def _risk(history: TerminalHistory, t: int, days: int = 1) -> tuple[float, float]:
    block = terminal_features(np.array([t]), ["t"], {"t": history})[0]
    j = d.WINDOWS_DAYS.index(days)
    return float(block[2 * j]), float(block[2 * j + 1])


def test_terminal_history_counts_only_received_labels() -> None:
    history = TerminalHistory()
    history.observe_transaction("x", BASE)
    history.observe_transaction("y", BASE + 1000)
    t = BASE + 7 * DAY + DAY // 2  # window (BASE - 0.5 d, BASE + 0.5 d]
    assert _risk(history, t) == (2.0, 0.0)  # no label received yet
    history.observe_label("y", BASE + 1000, True)
    history.observe_label("y", BASE + 1000, True)  # the same label twice counts once
    assert _risk(history, t) == (2.0, 0.5)
    history.observe_label("z", BASE + 2000, True)  # label before its transaction was seen
    assert _risk(history, t) == pytest.approx((3.0, 2 / 3))
    history.observe_label("z", BASE + 2000, False)  # a later verdict wins
    assert _risk(history, t) == pytest.approx((3.0, 1 / 3))


def test_first_flag_window_on_a_hand_computed_terminal() -> None:
    # one terminal: events at day 0, 1 (fraud), 1 again (legitimate, same instant), 2, 3
    # (fraud), 20 (fraud); label delay 7 days, window 30 days
    times = np.array([0, DAY, DAY, 2 * DAY, 3 * DAY, 20 * DAY]) + BASE
    keys = event_keys(np.zeros(6, dtype=np.int64), times)
    flags = np.array([0, 1, 0, 0, 1, 1])
    query = event_keys(np.zeros(5, dtype=np.int64), BASE + np.array([5, 9, 12, 36, 40]) * DAY)
    age, share = first_flag_window(keys, flags, query, days=30, delay_days=7)
    # t=5d: window (-32d, -2d] holds nothing: no fraud known
    # t=9d: window (-28d, 2d]: first fraud at day 1; since it: 3 events, 1 fraud
    # t=12d: (-25d, 5d]: first fraud day 1; since it 4 events (day 1 both, 2, 3), 2 frauds
    # t=36d: (-1d, 29d]: first fraud day 1 (age 35 days); since it 5 events, 3 frauds
    # t=40d: (3d, 33d]: day 3 falls out; first fraud day 20 (age 20), 1 event, 1 fraud
    assert age.tolist() == pytest.approx([37.0, 8.0, 11.0, 35.0, 20.0])
    assert share.tolist() == pytest.approx([0.0, 1 / 3, 0.5, 0.6, 1.0])


def test_first_flag_window_matches_brute_force_over_many_terminals() -> None:
    rng = np.random.default_rng(7)
    n = 3_000
    terminals = rng.integers(0, 40, n)
    times = BASE + rng.integers(0, 60 * DAY // 3_600_000, n) * 3_600_000  # hours: many ties
    flags = (rng.random(n) < 0.1).astype(np.int64)
    order = np.lexsort((np.arange(n), times, terminals))
    keys = event_keys(terminals[order], times[order])
    age, share = first_flag_window(keys, flags[order], keys, days=30, delay_days=7)
    for i in rng.choice(n, 300, replace=False):
        same = terminals[order] == terminals[order][i]
        t = times[order][i]
        inside = same & (times[order] > t - 37 * DAY) & (times[order] <= t - 7 * DAY)
        frauds = times[order][inside & (flags[order] == 1)]
        if frauds.size == 0:
            assert (age[i], share[i]) == (37.0, 0.0)
            continue
        since = same & (times[order] >= frauds.min()) & (times[order] <= t - 7 * DAY)
        assert age[i] == pytest.approx((t - frauds.min()) / DAY)
        assert share[i] == pytest.approx(flags[order][since].sum() / since.sum())


def _terminal_block(history: TerminalHistory, t: int) -> dict[str, float]:
    row = terminal_features(np.array([t]), ["t"], {"t": history})[0]
    return dict(zip(TERMINAL_BLOCK, row.tolist(), strict=True))


def test_terminal_features_give_the_compromise_from_received_labels_only() -> None:
    history = TerminalHistory()
    for k, tid in enumerate(["a", "b", "c"]):
        history.observe_transaction(tid, BASE + k * DAY)
    t = BASE + 10 * DAY  # window (BASE - 27 d, BASE + 3 d]
    block = _terminal_block(history, t)
    assert (block[d.TERMINAL_FIRST_FRAUD_AGE], block[d.TERMINAL_FRAUD_SHARE_SINCE_FIRST]) == (
        37.0,
        0.0,
    )
    history.observe_label("b", BASE + DAY, True)
    block = _terminal_block(history, t)
    assert block[d.TERMINAL_FIRST_FRAUD_AGE] == pytest.approx(9.0)
    assert block[d.TERMINAL_FRAUD_SHARE_SINCE_FIRST] == pytest.approx(0.5)  # b fraud, c not
