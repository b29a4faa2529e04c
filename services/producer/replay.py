"""Sends events to Kafka at a target rate (open loop) with kafka-python.

A broker that goes away is waited out, each record retried, for up to ``max_outage_s``. Past
that the replay stops without a traceback and says what was delivered and where to resume:
the first event (in the replay's order) the broker did not acknowledge. Everything before it
was acknowledged; rerunning from it may repeat some later events, which the scorer absorbs
(a transaction id with the same content is a redelivery, decided once).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from prometheus_client import Counter

from services.common.connections import kafka_python_kwargs
from services.common.settings import Settings
from services.producer.sources import Event

SENT = Counter("fraud_producer_sent_total", "Records the producer sent, by topic.", ["topic"])
SEND_ERRORS = Counter("fraud_producer_send_errors_total", "Records Kafka did not accept.")


DEFAULT_MAX_OUTAGE_S = 300.0
"""How long a replay waits for an unreachable broker before it gives up (seconds)."""


@dataclass
class ReplayStats:
    """What a replay sent: counts per topic and the wall-clock span (seconds).

    Attributes:
        sent: records handed to the producer, per topic.
        delivered: records the broker acknowledged.
        events: events of the stream handed to the producer (after ``skip_events``).
        resume_at: the first event, counted from the start of the stream, that the broker
            did not acknowledge (every event before it was acknowledged); None when all were.
        error: why the replay stopped early, None when it completed.
    """

    sent: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    delivered: int = 0
    events: int = 0
    resume_at: int | None = None
    error: str | None = None

    @property
    def transactions(self) -> int:
        return self.sent.get("transactions", 0)

    def counts(self) -> str:
        """What was sent, for a person: ``67,162 to labels, 67,080 to transactions``."""
        return ", ".join(f"{n:,} to {topic}" for topic, n in sorted(self.sent.items())) or "nothing"


def make_producer(settings: Settings, max_outage_s: float = 120.0) -> object:
    """A kafka-python producer tuned for low latency and no loss: acks from every in-sync
    replica, idempotence, retries until the delivery timeout (``max_outage_s``: a broker
    restart loses nothing), sends that block at most as long when the broker is away,
    reconnect attempts at most a second apart."""
    from kafka import KafkaProducer

    class Producer(KafkaProducer):  # type: ignore[misc]
        def __del__(self) -> None:
            # a producer whose close gave up (records stuck past the outage bound) is closed
            # again at exit by kafka-python, which then printed a traceback to the user
            with contextlib.suppress(Exception):
                super().__del__()

    return Producer(
        **kafka_python_kwargs(settings.kafka),
        acks="all",
        linger_ms=1,
        batch_size=64 * 1024,
        delivery_timeout_ms=int(max_outage_s * 1000),
        max_block_ms=int(max_outage_s * 1000),
        # Kafka's rule: delivery timeout >= linger + request timeout
        request_timeout_ms=min(30_000, int(max_outage_s * 1000) // 2),
        bootstrap_timeout_ms=min(30_000, int(max_outage_s * 1000)),
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
    skip_events: int = 0,
    max_outage_s: float = DEFAULT_MAX_OUTAGE_S,
) -> ReplayStats:
    """Produce ``events`` in order; transactions paced at ``rate_tps`` (0: as fast as possible).

    Pacing is open loop: the i-th transaction is due at ``start + i / rate`` whatever the
    consumer does, ``start`` being when the first one is handed over (after the topics'
    metadata is known: neither the first event's preparation nor the first metadata fetch
    turns into a burst of catching up); labels go out as soon as their turn comes. ``limit``
    caps the stream's transactions (those skipped count: a resumed run ends where the first
    would have).
    ``progress`` is a tqdm bar (or None). The first ``skip_events`` events are skipped (a
    resume point of an earlier run). A broker away for longer than ``max_outage_s`` stops
    the replay: ``error`` and ``resume_at`` of the result say so; nothing is raised for it.
    """
    from kafka.errors import KafkaError, KafkaTimeoutError, RetriableError

    stats = ReplayStats()
    try:
        producer = make_producer(settings, max_outage_s)
    except RetriableError as error:  # no broker answered at all (a bad setting is raised)
        stats.error = f"{type(error).__name__}: no broker at {settings.kafka.bootstrap_servers}"
        stats.resume_at = skip_events
        return stats
    topics = {
        "transactions": settings.topics.transactions.name,
        "labels": settings.topics.labels.name,
    }
    acked = bytearray()  # per event handed over: 1 once the broker acknowledged it
    began = time.perf_counter()
    paced_from = 0.0  # when the first transaction was handed over
    sent_tx = 0

    expired: list[object] = []

    def on_failure(error: object) -> None:
        SEND_ERRORS.inc()
        expired.append(error)

    def on_ack(index: int) -> object:
        def done(_metadata: object) -> None:
            acked[index] = 1

        return done

    try:
        for topic in topics.values():  # metadata now: a send blocks on it the first time
            producer.partitions_for(topic)  # type: ignore[attr-defined]
        seen_tx = 0  # transactions of the stream so far, skipped ones included
        for position, event in enumerate(events):
            if event.topic == "transactions":
                if limit is not None and seen_tx >= limit:
                    break
                seen_tx += 1
            if position < skip_events:
                continue
            if event.topic == "transactions":
                if sent_tx == 0:
                    paced_from = time.perf_counter()
                elif rate_tps > 0:
                    delay = paced_from + sent_tx / rate_tps - time.perf_counter()
                    if delay > 0:
                        time.sleep(delay)
                sent_tx += 1
                if progress is not None:
                    progress.update(1)  # type: ignore[attr-defined]
            if expired:  # the outage outlasted the bound: stop now, not at the end
                raise KafkaTimeoutError(f"a record was not delivered within {max_outage_s} s")
            acked.append(0)
            future = producer.send(topics[event.topic], key=event.key, value=event.value)  # type: ignore[attr-defined]
            future.add_callback(on_ack(len(acked) - 1))
            future.add_errback(on_failure)
            SENT.labels(topic=event.topic).inc()
            stats.sent[event.topic] = stats.sent.get(event.topic, 0) + 1
        producer.flush(timeout=max_outage_s)  # type: ignore[attr-defined]
    except KafkaError as error:  # a send or the flush waited out the bound
        stats.error = f"{type(error).__name__}: no broker answered for {max_outage_s:.0f} s"
    finally:
        # records still queued expire within the delivery timeout; a close that gives up
        # earlier would leave the producer to close again at exit, with a traceback
        with contextlib.suppress(KafkaError):
            producer.close(timeout=max_outage_s + 10)  # type: ignore[attr-defined]
    stats.seconds = time.perf_counter() - began
    stats.events = len(acked)
    stats.delivered = sum(acked)
    missing = acked.find(0)
    if missing >= 0:
        stats.resume_at = skip_events + missing
        stats.error = stats.error or f"{len(acked) - stats.delivered} records not acknowledged"
    elif stats.error is not None:  # stopped before handing the next event over
        stats.resume_at = skip_events + len(acked)
    return stats
