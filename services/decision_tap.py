"""Reads the ``decisions`` topic from a point on, in a background thread (kafka-python).

Used by the main job and the benchmarks to see the decisions of one run, including latency,
whatever the decision store already held from earlier runs.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from services.common.settings import Settings


class DecisionTap:
    """Collects the first decision record per transaction id produced after :meth:`start`."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.records: dict[str, dict[str, Any]] = {}
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
            bootstrap_servers=self._settings.kafka.bootstrap_servers,
            enable_auto_commit=False,
            fetch_max_wait_ms=50,
        )
        topic = self._settings.topics.decisions.name
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
                for batch in consumer.poll(timeout_ms=100).values():
                    for record in batch:
                        decision = json.loads(record.value)
                        with self._lock:
                            if decision["transaction_id"] in self.records:
                                self.duplicates += 1
                            else:
                                self.records[decision["transaction_id"]] = decision
        finally:
            consumer.close()

    def count(self, ids: set[str] | None = None) -> int:
        with self._lock:
            return len(self.records) if ids is None else sum(1 for i in ids if i in self.records)

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
