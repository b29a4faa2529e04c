"""Reads the ``decisions`` topic from a point on, in a background thread (kafka-python).

Used by the main job and the benchmarks to see the decisions of one run, including latency,
whatever the decision store already held from earlier runs.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import orjson

from services.common.connections import kafka_python_kwargs
from services.common.settings import Settings


class DecisionTap:
    """Collects the first record per transaction id produced after :meth:`start`.

    Args:
        topic: the topic to read (default: ``decisions``); its records are JSON objects with
            a ``transaction_id``.
        keep_records: keep each record (else only its arrival time, for long benchmarks).

    Attributes:
        records: transaction id -> the first record (when ``keep_records``).
        received_at: transaction id -> when its first record arrived (``time.time()``).
        duplicates: records seen again for an id (redeliveries).
    """

    def __init__(
        self, settings: Settings, topic: str | None = None, keep_records: bool = True
    ) -> None:
        self._settings = settings
        self._topic = topic or settings.topics.decisions.name
        self._keep = keep_records
        self.records: dict[str, dict[str, Any]] = {}
        self.received_at: dict[str, float] = {}
        self.duplicates = 0
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="decision-tap", daemon=True)
        self._lock = threading.Lock()

    def start(self, timeout_s: float = 30.0) -> DecisionTap:
        """Begin reading at the topic's current end; returns once positioned."""
        self._thread.start()
        if not self._ready.wait(timeout_s):
            raise TimeoutError("could not position on the decisions topic")
        return self

    def _run(self) -> None:
        from kafka import KafkaConsumer, TopicPartition

        consumer = KafkaConsumer(
            **kafka_python_kwargs(self._settings.kafka),
            enable_auto_commit=False,
            fetch_max_wait_ms=10,
        )
        topic = self._topic
        parts = [
            TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])
        ]
        consumer.assign(parts)
        consumer.seek_to_end(*parts)
        for part in parts:
            consumer.position(part)  # resolve the lazy seek now, before anything is produced
        self._ready.set()
        try:
            while not self._stop.is_set():
                for batch in consumer.poll(timeout_ms=50).values():
                    now = time.time()
                    for record in batch:
                        decision = orjson.loads(record.value)
                        tx_id = decision["transaction_id"]
                        with self._lock:
                            if tx_id in self.received_at:
                                self.duplicates += 1
                                continue
                            self.received_at[tx_id] = now
                            if self._keep:
                                self.records[tx_id] = decision
        finally:
            consumer.close()

    def count(self, ids: set[str] | None = None) -> int:
        with self._lock:
            seen = self.received_at
            return len(seen) if ids is None else sum(1 for i in ids if i in seen)

    def wait_for(self, ids: list[str], timeout_s: float, progress: Any = None) -> int:
        """Wait until every id has a decision or the deadline passes; return how many do."""
        wanted = set(ids)
        deadline = time.monotonic() + timeout_s
        seen = 0
        while time.monotonic() < deadline:
            seen = self.count(wanted)
            if progress is not None:
                progress.update(seen - progress.n)
            if seen == len(wanted):
                break
            time.sleep(0.2)
        return seen

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
