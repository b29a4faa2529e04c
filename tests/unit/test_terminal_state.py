"""The terminals' single writer: its assignor and its update rule (no services)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np

from services.common.events import Label
from services.features.incremental import TERMINAL_HORIZON_MS, TerminalHistory, transaction_key
from services.scorer.terminal_state import Observed, SingleOwnerAssignor, update

T0 = 1_533_686_400_000  # 2018-08-08T00:00:00Z


class _Cluster:
    def partitions_for_topic(self, topic: str) -> set[int]:
        return {"decisions": {0, 1, 2, 3}, "labels": {0, 1}}[topic]


def test_every_partition_goes_to_one_member_the_others_stand_by() -> None:
    members = {
        m: SingleOwnerAssignor.metadata(["decisions", "labels"]) for m in ("m-2", "m-1", "m-3")
    }
    assignment = SingleOwnerAssignor.assign(_Cluster(), members)  # type: ignore[arg-type]
    owned = {m: a.assignment for m, a in assignment.items()}
    assert owned["m-1"] == [("decisions", [0, 1, 2, 3]), ("labels", [0, 1])]
    assert owned["m-2"] == owned["m-3"] == []
    del members["m-1"]  # the owner leaves: the next one takes everything
    assignment = SingleOwnerAssignor.assign(_Cluster(), members)  # type: ignore[arg-type]
    assert assignment["m-2"].assignment == [("decisions", [0, 1, 2, 3]), ("labels", [0, 1])]


def _label(tx: str, time_ms: int, fraud: bool) -> Any:
    moment = dt.datetime.fromtimestamp(time_ms / 1000, dt.UTC)
    return Label(tx, "c", "t", moment, time_ms, fraud, moment, "chargeback")


def _contents(history: TerminalHistory) -> list[tuple[str, int, int]]:
    return sorted(
        zip(history.keys.tolist(), history.times_ms.tolist(), history.frauds.tolist(), strict=True)
    )


def test_any_interleaving_and_any_repetition_give_the_same_terminal() -> None:
    """Hand-made: x and y observed, y labelled fraud, z labelled before it is observed, a
    label of y repeated, and an event older than the horizon that must go."""
    observed = [Observed("x", "t", T0), Observed("y", "t", T0 + 1000), Observed("z", "t", T0 + 5)]
    old = Observed("old", "t", T0 - TERMINAL_HORIZON_MS - 1)
    labels = [
        _label("y", T0 + 1000, True),
        _label("z", T0 + 5, False),
        _label("y", T0 + 1000, True),
    ]
    key = transaction_key
    want = sorted([(key("x"), T0, 0), (key("y"), T0 + 1000, 1), (key("z"), T0 + 5, 0)])
    rng = np.random.default_rng(3)
    for _ in range(20):
        history = TerminalHistory()
        events: list[Any] = [*observed, old, *labels, observed[1]]
        order = rng.permutation(len(events))
        for k in order:  # one event per call, in a random order
            event = events[k]
            if isinstance(event, Observed):
                update({"t": history}, [event])
            else:
                update({"t": history}, [], [event])
        assert _contents(history) == want
        assert np.all(np.diff(history.times_ms) >= 0)


def test_a_terminal_batch_of_any_size_gives_what_one_at_a_time_gives() -> None:
    """Redeliveries, late and tied event times, cut into random chunks: short chunks take
    the lookup by comparison, long ones the lookup by set; both must end in the same arrays,
    in the same order (event time, then arrival)."""
    rng = np.random.default_rng(11)
    for _ in range(50):
        ids = [f"tx-{rng.integers(0, 25)}" for _ in range(40)]
        first_time = {}
        pairs = []
        for tx in ids:  # a redelivery repeats its event time
            first_time.setdefault(tx, T0 + 1000 * int(rng.integers(0, 8)))
            pairs.append((tx, first_time[tx]))
        one_by_one = TerminalHistory()
        for pair in pairs:
            one_by_one.observe_transactions([pair])
        chunked = TerminalHistory()
        at = 0
        while at < len(pairs):
            size = int(rng.integers(1, 20))
            chunked.observe_transactions(pairs[at : at + size])
            at += size
        for history in (one_by_one, chunked):
            assert np.all(np.diff(history.times_ms) >= 0)
        assert one_by_one.keys.tolist() == chunked.keys.tolist()
        assert one_by_one.times_ms.tolist() == chunked.times_ms.tolist()
        assert len(set(one_by_one.keys.tolist())) == len(first_time)
