"""Sends events to Kafka at a target rate (open loop) with kafka-python."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from prometheus_client import Counter

from services.common.connections import kafka_python_kwargs
from services.common.settings import Settings
from services.producer.sources import Event

SENT = Counter("fraud_producer_sent_total", "Records the producer sent, by topic.", ["topic"])
SEND_ERRORS = Counter("fraud_producer_send_errors_total", "Records Kafka did not accept.")


@dataclass
class ReplayStats:
    """What a replay sent: counts per topic and the wall-clock span (seconds)."""

    sent: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def transactions(self) -> int:
        return self.sent.get("transactions", 0)


def make_producer(settings: Settings) -> object:
    """A kafka-python producer tuned for low latency and no loss: acks from every in-sync
    replica, idempotence, retries until the delivery timeout (two minutes: a broker restart
    loses nothing), reconnect attempts at most a second apart."""
    from kafka import KafkaProducer

    return KafkaProducer(
        **kafka_python_kwargs(settings.kafka),
        acks="all",
        linger_ms=1,
        batch_size=64 * 1024,
        delivery_timeout_ms=120_000,
        reconnect_backoff_max_ms=1000,
        max_in_flight_requests_per_connection=5,
        enable_idempotence=True,
    )


def send_all(
    settings: Settings,
    events: Iterable[Event],
    rate_tps: float = 0.0,
    limit: int | None = None,
    progress: object | None = None,
) -> ReplayStats:
    """Produce ``events`` in order; transactions paced at ``rate_tps`` (0: as fast as possible).

    Pacing is open loop: the i-th transaction is due at ``start + i / rate`` whatever the
    consumer does; labels go out as soon as their turn comes. ``limit`` caps transactions.
    ``progress`` is a tqdm bar (or None).
    """
    producer = make_producer(settings)
    topics = {
        "transactions": settings.topics.transactions.name,
        "labels": settings.topics.labels.name,
    }
    stats = ReplayStats()
    began = time.perf_counter()
    sent_tx = 0
    try:
        for event in events:
            if event.topic == "transactions":
                if limit is not None and sent_tx >= limit:
                    break
                if rate_tps > 0:
                    delay = began + sent_tx / rate_tps - time.perf_counter()
                    if delay > 0:
                        time.sleep(delay)
                sent_tx += 1
                if progress is not None:
                    progress.update(1)  # type: ignore[attr-defined]
            future = producer.send(topics[event.topic], key=event.key, value=event.value)  # type: ignore[attr-defined]
            future.add_errback(lambda _error: SEND_ERRORS.inc())
            SENT.labels(topic=event.topic).inc()
            stats.sent[event.topic] = stats.sent.get(event.topic, 0) + 1
        producer.flush(timeout=60)  # type: ignore[attr-defined]
    finally:
        producer.close(timeout=10)  # type: ignore[attr-defined]
    stats.seconds = time.perf_counter() - began
    return stats
