"""In-memory stand-ins for the scorer's ports (``services.scorer.ports``): no Kafka, no Redis.

The fakes keep the contracts the real adapters keep, as far as the pipeline can tell:
- :class:`FakeFeatureSource` claims transaction ids (a redelivery gets the features of its
  first time, a reused id is flagged), holds its writes back until the next batch or
  :meth:`flush` like ``RedisFeatureState(defer_writes=True)``, and fails on demand;
- :class:`FakePublisher` hands out delivery futures that the test completes or fails;
- :class:`FakeModel` scores by the card's count of earlier transactions.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from services.common.events import Transaction
from services.features import definitions as d

COUNT = d.ALL_FEATURES.index("CUSTOMER_ID_NB_TX_30DAY_WINDOW")
"""Column of the fake features: the card's transactions recorded before this one."""
AMOUNT = d.ALL_FEATURES.index("TX_AMOUNT")


@dataclass
class FakeRecord:
    """A consumed record, as aiokafka's ``ConsumerRecord`` shows it."""

    value: bytes | None
    offset: int
    partition: int = 0
    topic: str = "transactions"
    key: bytes | None = None
    timestamp: int = 0
    headers: Sequence[tuple[str, bytes | None]] = ()


def transaction_value(
    transaction_id: str, customer_id: str = "c1", amount: float = 10.0, minute: int = 0
) -> bytes:
    """A valid transaction event v1 (DESIGN.md, "Event contracts")."""
    at = dt.datetime(2018, 8, 8, tzinfo=dt.UTC) + dt.timedelta(minutes=minute)
    return json.dumps(
        {
            "schema_version": 1,
            "transaction_id": transaction_id,
            "event_time": at.isoformat().replace("+00:00", "Z"),
            "customer_id": customer_id,
            "terminal_id": "t1",
            "amount": amount,
        }
    ).encode()


def records(*values: bytes, first_offset: int = 0, partition: int = 0) -> list[FakeRecord]:
    return [FakeRecord(v, first_offset + i, partition) for i, v in enumerate(values)]


@dataclass
class _Batch:
    values: Any
    reused: list[bool]


@dataclass
class FakeFeatureSource:
    """Per card, the ids of its recorded transactions, in the order they were written."""

    written: dict[str, list[str]] = field(default_factory=dict)
    held_back: list[Transaction] = field(default_factory=list)
    claims: dict[str, tuple[str, float]] = field(default_factory=dict)
    first_seen: dict[str, list[float]] = field(default_factory=dict)
    fail_next: int = 0
    """How many of the next calls (features or flush) raise ``ConnectionError``."""
    calls: list[str] = field(default_factory=list)

    def _maybe_fail(self) -> None:
        if self.fail_next:
            self.fail_next -= 1
            raise ConnectionError("redis is away")

    def _write(self, batch: Sequence[Transaction]) -> None:
        for tx in batch:
            ids = self.written.setdefault(tx.customer_id, [])
            if tx.transaction_id not in ids:
                ids.append(tx.transaction_id)

    async def features(self, batch: Sequence[Transaction]) -> _Batch:
        self.calls.append(f"features:{len(batch)}")
        self._maybe_fail()
        self._write(self.held_back)  # the held-back writes lead the next batch's pipeline
        self.held_back = []
        values = np.full((len(batch), len(d.ALL_FEATURES)), np.nan)
        reused = []
        pending: dict[str, int] = {}
        for i, tx in enumerate(batch):
            content = (tx.customer_id, tx.amount)
            claimed = self.claims.setdefault(tx.transaction_id, content)
            reused.append(claimed != content)
            if claimed != content:
                continue
            if tx.transaction_id not in self.first_seen:
                before = len(self.written.get(tx.customer_id, [])) + pending.get(tx.customer_id, 0)
                self.first_seen[tx.transaction_id] = [float(before), tx.amount]
                pending[tx.customer_id] = pending.get(tx.customer_id, 0) + 1
            values[i, [COUNT, AMOUNT]] = self.first_seen[tx.transaction_id]
        self.held_back = [tx for tx, bad in zip(batch, reused, strict=True) if not bad]
        return _Batch(values, reused)

    async def flush(self) -> None:
        self.calls.append("flush")
        self._maybe_fail()
        self._write(self.held_back)
        self.held_back = []

    def take_unwritten(self) -> list[Transaction]:
        unwritten, self.held_back = self.held_back, []
        return unwritten


@dataclass
class _Loaded:
    version: str = "v1"
    feature_names: list[str] = field(default_factory=lambda: list(d.ALL_FEATURES))
    metadata: dict[str, Any] = field(
        default_factory=lambda: {"thresholds": {"review": 0.2, "decline": 0.5}}
    )


@dataclass
class FakeModel:
    """Score = the card's earlier transactions / 10, capped at 1."""

    current: _Loaded | None = field(default_factory=_Loaded)
    shadow: _Loaded | None = None
    """A challenger: its score is the transaction's amount / 100, capped at 1."""

    def predict(self, rows: Any) -> Any:
        return np.minimum(rows[:, COUNT] / 10.0, 1.0)

    def predict_shadow(self, rows: Any) -> Any:
        return np.minimum(rows[:, AMOUNT] / 100.0, 1.0)

    def contributions(self, rows: Any) -> Any:
        out = np.zeros((len(rows), rows.shape[1] + 1))
        out[:, COUNT] = rows[:, COUNT]
        return out


@dataclass
class Sent:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes | None]] | None
    delivery: asyncio.Future[Any]


@dataclass
class FakePublisher:
    """Records what is sent; each record's delivery completes when the test says so."""

    sent: list[Sent] = field(default_factory=list)
    auto_deliver: bool = False

    async def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        headers: Sequence[tuple[str, bytes | None]] | None = None,
    ) -> asyncio.Future[Any]:
        delivery: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self.auto_deliver:
            delivery.set_result(None)
        self.sent.append(Sent(topic, key, value, headers, delivery))
        return delivery

    def deliver(self, error: Exception | None = None) -> None:
        """Complete every outstanding delivery (with ``error``, fail it)."""
        for s in self.sent:
            if not s.delivery.done():
                if error is None:
                    s.delivery.set_result(None)
                else:
                    s.delivery.set_exception(error)

    def on(self, topic: str) -> list[Sent]:
        return [s for s in self.sent if s.topic == topic]
