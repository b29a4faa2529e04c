"""The API's lag read when Kafka is away: it fails (the scrape leaves no lag series rather than
stale ones) and a scrape never queues behind a read still waiting on the broker. No Kafka."""

from __future__ import annotations

import pytest
from kafka.errors import KafkaError

from services.common.errors import Unavailable
from services.common.settings import Settings
from services.observability.group_lag import GROUP_LAG, GroupLag


def test_a_broker_away_fails_the_read_and_empties_the_gauge() -> None:
    lag = GroupLag(Settings(kafka={"bootstrap_servers": "127.0.0.1:1"}), timeout_s=0.5)
    GROUP_LAG.labels(task="scorer", topic="transactions", partition="0").set(7)  # stale
    with pytest.raises(KafkaError):
        lag.export()
    assert GROUP_LAG.collect()[0].samples == []


def test_a_read_still_running_is_not_waited_for() -> None:
    lag = GroupLag(Settings(kafka={"bootstrap_servers": "127.0.0.1:1"}))
    lag._lock.acquire()  # a read from an earlier scrape, still waiting on the broker
    try:
        with pytest.raises(Unavailable):
            lag.read()
    finally:
        lag._lock.release()


def test_a_failed_read_keeps_the_last_figures_for_a_minute(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One slow read must not drop the series (Prometheus would reset the lag alerts' `for:`);
    figures older than a minute go."""
    from services.observability import group_lag

    lag = GroupLag(Settings())
    now = [1000.0]
    lag.clock = lambda: now[0]
    reads: list[object] = [{("store", "decisions", 0): 60_000}, KafkaError(), KafkaError()]

    def read() -> object:
        outcome = reads.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    monkeypatch.setattr(lag, "read", read)
    lag.export()
    now[0] += group_lag.STALE_AFTER_S - 1
    with pytest.raises(KafkaError):
        lag.export()
    (kept,) = GROUP_LAG.collect()[0].samples
    assert kept.value == 60_000 and kept.labels["task"] == "store"
    now[0] += 2
    with pytest.raises(KafkaError):
        lag.export()
    assert GROUP_LAG.collect()[0].samples == []  # a minute old: gone
