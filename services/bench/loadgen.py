"""An open-loop Kafka load generator and a receiver that times each record end to end.

Open loop: the i-th transaction is due at ``start + i / rate`` (fixed) or after exponential
gaps (Poisson), whatever the system under test does; each send time is recorded by
transaction id. The receiver reads the output topic and records when each id came back, so
latency = receive time - send time, measured by the same clock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import orjson

from services.common.settings import Settings


@dataclass
class Timings:
    """Send and receive times (``time.time()`` seconds) by transaction id."""

    sent: dict[str, float] = field(default_factory=dict)
    received: dict[str, float] = field(default_factory=dict)


def arrivals(rate: float, seconds: float, poisson: bool, seed: int = 0) -> np.ndarray:
    """Offsets (seconds from the start) of the sends of one step."""
    n = int(rate * seconds)
    if not poisson:
        return np.arange(n) / rate
    gaps = np.random.default_rng(seed).exponential(1.0 / rate, n)
    return np.cumsum(gaps)


def send_step(
    producer: object,
    topic: str,
    events: Iterator[tuple[str, bytes, bytes]],
    offsets: np.ndarray,
    timings: Timings,
) -> None:
    """Send one event at each offset from now; record each send time."""
    start = time.perf_counter()
    wall = time.time() - start
    for due in offsets:
        delay = start + due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        tx_id, key, value = next(events)
        timings.sent[tx_id] = wall + time.perf_counter()
        producer.send(topic, key=key, value=value)  # type: ignore[attr-defined]
    producer.flush()  # type: ignore[attr-defined]


class Receiver:
    """Reads an output topic from its end in a thread; records first arrival per id."""

    def __init__(self, settings: Settings, topic: str, timings: Timings) -> None:
        self._settings, self._topic, self._timings = settings, topic, timings
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Receiver:
        self._thread.start()
        if not self._ready.wait(30):
            raise TimeoutError(f"could not position on {self._topic}")
        return self

    def _run(self) -> None:
        from kafka import KafkaConsumer, TopicPartition

        consumer = KafkaConsumer(
            bootstrap_servers=self._settings.kafka.bootstrap_servers,
            enable_auto_commit=False,
            fetch_max_wait_ms=10,
        )
        parts = [
            TopicPartition(self._topic, p)
            for p in sorted(consumer.partitions_for_topic(self._topic) or [])
        ]
        consumer.assign(parts)
        consumer.seek_to_end(*parts)
        for part in parts:
            consumer.position(part)
        self._ready.set()
        received = self._timings.received
        try:
            while not self._stop.is_set():
                for batch in consumer.poll(timeout_ms=50).values():
                    now = time.time()
                    for record in batch:
                        tx_id = orjson.loads(record.value)["transaction_id"]
                        received.setdefault(tx_id, now)
        finally:
            consumer.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
