"""The scorer's ports: what the scoring pipeline needs from the world, as protocols.

Production plugs in Redis (``feature_state.RedisFeatureState``), the registry's active model
(``model.ActiveModel``) and an aiokafka producer; the unit tests plug in in-memory fakes
(``tests/unit/fakes.py``). Knows no adapter.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from typing import Any, Protocol

from services.common.events import Transaction
from services.features.windows import FloatArray


class BatchFeatures(Protocol):
    """Features of a micro-batch."""

    values: FloatArray
    """Shape (n, len(ALL_FEATURES)), in ``services.features.definitions.ALL_FEATURES`` order."""
    reused: list[bool]
    """Per transaction: its id was already used with other content (not written, not
    decided)."""


class FeatureSource(Protocol):
    """Online features of transactions, from the entity state they also update."""

    async def features(self, batch: Sequence[Transaction]) -> BatchFeatures:
        """Features of ``batch`` (in order), the batch recorded in the state (idempotent by
        transaction id).

        Raises:
            Exception: the state's store failed (the scorer decides in degraded mode).
        """
        ...

    async def flush(self) -> None:
        """Write whatever state writes are still held back."""
        ...

    def take_unwritten(self) -> list[Transaction]:
        """Transactions whose state writes were held back and not sent; forgets them."""
        ...


class LoadedModel(Protocol):
    """A model version the scorer can use."""

    @property
    def version(self) -> str: ...

    @property
    def feature_names(self) -> list[str]: ...

    @property
    def metadata(self) -> dict[str, Any]:
        """The registry's metadata; ``thresholds`` is the policy's default cut-offs."""
        ...


class FraudModel(Protocol):
    """The active fraud model, which may change between batches."""

    @property
    def current(self) -> LoadedModel | None:
        """The model to score with, None when no model is active (degraded mode)."""
        ...

    def predict(self, rows: FloatArray) -> FloatArray:
        """Fraud probabilities, shape (n,), for rows in ``current.feature_names`` order."""
        ...

    def contributions(self, rows: FloatArray) -> FloatArray:
        """TreeSHAP contributions in log-odds, shape (n, n_features + 1), bias last."""
        ...

    @property
    def shadow(self) -> LoadedModel | None:
        """The challenger in shadow, None when there is none."""
        ...

    def predict_shadow(self, rows: FloatArray) -> FloatArray:
        """The challenger's fraud probabilities, shape (n,), for rows in
        ``shadow.feature_names`` order."""
        ...


class DriftObserver(Protocol):
    """Counts what the model saw, for drift monitoring (``drift.DriftCounts`` in production)."""

    def observe(self, model: LoadedModel, inputs: FloatArray, scores: FloatArray) -> None:
        """Decided transactions: ``inputs`` of shape (n, model inputs) in the model's order,
        ``scores`` of shape (n,)."""
        ...


class Publisher(Protocol):
    """Appends records to Kafka topics (aiokafka's ``AIOKafkaProducer`` is one)."""

    async def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        headers: Sequence[tuple[str, bytes | None]] | None = None,
    ) -> Awaitable[Any]:
        """Queue a record; the returned awaitable completes once the broker acknowledged it
        (and raises if it did not)."""
        ...


class Record(Protocol):
    """A consumed Kafka record (aiokafka's ``ConsumerRecord`` is one)."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes | None]]
