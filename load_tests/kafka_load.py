"""An open-loop Kafka load generator that records each send time.

Open loop: the i-th transaction is due at ``start + i / rate`` (fixed) or after exponential
gaps (Poisson), whatever the system under test does; each send time is recorded by
transaction id. A :class:`tools.decision_tap.DecisionTap` on the output topic records when
each id came back and the Kafka timestamp its worker gave the output record, so latency =
output record's timestamp - send time, by the same machine's clock.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

MIN_SLEEP_S = 0.001
"""Shortest sleep between sends (at higher rates, several events go per wake-up)."""


@dataclass
class Timings:
    """Send times (``time.time()`` seconds) by transaction id; the receive times of the tap on
    the output topic and the output records' Kafka timestamps (shared, filled by its
    thread)."""

    sent: dict[str, float] = field(default_factory=dict)
    received: dict[str, float] = field(default_factory=dict)
    produced: dict[str, float] = field(default_factory=dict)


def arrivals(rate: float, seconds: float, poisson: bool, seed: int = 0) -> np.ndarray:
    """Offsets (seconds from the start) of the sends of one step."""
    n = int(rate * seconds)
    if not poisson:
        return np.arange(n) / rate
    gaps = np.random.default_rng(seed).exponential(1.0 / rate, n)
    return np.cumsum(gaps)


async def send_step(
    producer: Any,
    topic: str,
    events: Iterator[tuple[str, bytes, bytes]],
    offsets: np.ndarray,
    timings: Timings,
) -> None:
    """Send one event at each offset from now with an ``aiokafka.AIOKafkaProducer``; record
    each send time; return once all are delivered.

    Events that fall due together go out together: the generator sleeps at least
    :data:`MIN_SLEEP_S` at a time (a wake-up per event cost most of a core at 2,000 tx/s) and
    then sends everything due. Each send time is taken just before its send, not the due
    time: the producer's own buffering (its linger, a full buffer) counts in the latency; a
    wake-up that came late on a busy machine does not. aiokafka builds record batches in C:
    kafka-python built them, and computed their CRC-32C, in pure Python.
    """
    send = producer.send
    start = time.perf_counter()
    wall = time.time() - start
    for due in offsets:
        delay = start + due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(max(delay, MIN_SLEEP_S))
        tx_id, key, value = next(events)
        timings.sent[tx_id] = wall + time.perf_counter()
        await send(topic, key=key, value=value)
    await producer.flush()
