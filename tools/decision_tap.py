"""Reads the ``decisions`` topic from a point on, in a background thread (aiokafka, in the
thread's own event loop).

Used by the main job and the benchmarks to see the decisions of one run, including latency,
whatever the decision store already held from earlier runs.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import orjson
import uvloop

from services.common.connections import aiokafka_kwargs
from services.common.decision import Decision, decode
from services.common.settings import Settings


class DecisionTap:
    """Collects the first record per transaction id produced after :meth:`start`.

    Args:
        topic: the topic to read (default: ``decisions``); its records are JSON objects with
            a ``transaction_id``.
        keep_records: keep each record (else only its arrival time, for long benchmarks).
        fetch_min_bytes, fetch_max_wait_ms: the consumer's fetch (the broker answers once it
            has that many bytes or waited that long). Larger values mean fewer, fuller
            fetches: less CPU for this reader and the broker, later ``received_at`` times
            (``produced_at`` does not change).

    Attributes:
        records: transaction id -> the first record (when ``keep_records``).
        received_at: transaction id -> when its first record arrived (``time.time()``).
        produced_at: transaction id -> the first record's Kafka timestamp (its producer's
            clock at send, seconds): when the worker published it, free of this reader's
            own delays.
        duplicates: records seen again for an id (redeliveries).
    """

    def __init__(
        self,
        settings: Settings,
        topic: str | None = None,
        keep_records: bool = True,
        fetch_min_bytes: int = 1,
        fetch_max_wait_ms: int = 10,
    ) -> None:
        self._settings = settings
        self._fetch = {"fetch_min_bytes": fetch_min_bytes, "fetch_max_wait_ms": fetch_max_wait_ms}
        self._topic = topic or settings.topics.decisions.name
        self._keep = keep_records
        self.records: dict[str, Decision] = {}
        self.received_at: dict[str, float] = {}
        self.produced_at: dict[str, float] = {}
        self.duplicates = 0
        self._arrivals: list[str] = []  # first records' ids, in arrival order
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
        uvloop.run(self._consume())

    async def _consume(self) -> None:
        """aiokafka parses record batches (and checks their CRC-32C) in C: kafka-python did
        both in pure Python, 18 % of the benchmark process's samples at 2,000 decisions/s."""
        from aiokafka import AIOKafkaConsumer

        # no group: the consumer gets every partition of the topic, from its end
        consumer = AIOKafkaConsumer(
            self._topic,
            **aiokafka_kwargs(self._settings.kafka),
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="latest",
            **self._fetch,
            max_partition_fetch_bytes=4 * 2**20,
        )
        await consumer.start()
        try:
            while not consumer.assignment():
                await asyncio.sleep(0.05)
            for part in consumer.assignment():
                await consumer.position(part)  # resolve the start now, before anything is sent
            self._ready.set()
            while not self._stop.is_set():
                fetched = await consumer.getmany(timeout_ms=50)
                now = time.time()
                for batch in fetched.values():
                    self._record(batch, now)
        finally:
            await consumer.stop()

    def _record(self, batch: list[Any], now: float) -> None:
        with self._lock:
            for record in batch:
                decision = decode(record.value) if self._keep else None
                tx_id = decision.transaction_id if decision else _id_of(record.value)
                if tx_id in self.received_at:
                    self.duplicates += 1
                    continue
                self.received_at[tx_id] = now
                self._arrivals.append(tx_id)
                self.produced_at[tx_id] = record.timestamp / 1000
                if decision is not None:
                    self.records[tx_id] = decision

    def count(self, ids: set[str] | None = None) -> int:
        """How many of ``ids`` (default: of all ids) have a record. O(len(ids))."""
        with self._lock:
            seen = self.received_at
            return len(seen) if ids is None else sum(1 for i in ids if i in seen)

    def wait_for(self, ids: list[str], timeout_s: float, progress: Any = None) -> int:
        """Wait until every id has a decision or the deadline passes; return how many do.

        Each poll looks only at the ids that arrived since the last one: scanning all 67,080
        wanted ids five times a second was 16 % of the main job's process's profile.
        """
        wanted = set(ids)
        deadline = time.monotonic() + timeout_s
        seen, looked = 0, 0
        while True:
            with self._lock:
                arrived = self._arrivals[looked:]
            looked += len(arrived)
            seen += sum(1 for i in arrived if i in wanted)
            if progress is not None:
                progress.update(seen - progress.n)
            if seen == len(wanted) or time.monotonic() >= deadline:
                return seen
            time.sleep(0.2)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


_ID_FIELD = b'"transaction_id"'


def _id_of(value: bytes) -> str:
    """The ``transaction_id`` of a JSON record without parsing all of it (a decision is about
    1.5 KB; the benchmark reads thousands a second). Falls back to a full parse.

    Raises:
        KeyError: the record has no ``transaction_id``.
    """
    at = value.find(_ID_FIELD)
    if at >= 0:
        start = value.find(b'"', at + len(_ID_FIELD) + 1)
        end = value.find(b'"', start + 1)
        token = value[start + 1 : end]
        if start > 0 and end > start and b"\\" not in token:
            separator = value[at + len(_ID_FIELD) : start].strip()
            if separator == b":":
                return token.decode()
    return str(orjson.loads(value)["transaction_id"])
