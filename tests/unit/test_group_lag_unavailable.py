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
