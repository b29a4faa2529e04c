"""Card feature state in Feast's online store on Redis, and the features of micro-batches.

Adapter of :mod:`services.features.incremental` to Feast's Redis layout
(:mod:`services.common.feast_layout`): each card's history is the ``card_history`` row of its
customer entity, written by its partition's owner only (transactions are keyed by card); each
terminal's history is the ``terminal_history`` row of its terminal entity, which this module
only reads (its single writer is :class:`services.scorer.terminal_state.TerminalState`).
Every command names one key, so the same pipeline works on Redis Cluster. Two round trips per
micro-batch, the transaction-id check included; one when the writes are deferred
(``defer_writes``): a batch's writes then go out at the head of the next batch's pipeline, or
at :meth:`RedisFeatureState.flush`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from services.common import feast_layout as fl
from services.common.events import Transaction
from services.common.settings import StoreSettings
from services.features.definitions import ALL_FEATURES
from services.features.incremental import CustomerHistory, TerminalHistory, batch_features
from services.features.windows import FloatArray

ROW_TTL_MS = StoreSettings().feature_row_ttl_ms
"""Default expiry of a card's or a terminal's row after its last write
(``FRAUD_STORE__FEATURE_ROW_TTL_DAYS``), milliseconds."""


def queue_row(pipe: Any, key: bytes, mapping: dict[bytes, bytes], row_ttl_ms: int) -> None:
    """Queue the write of an entity's row, and its expiry ``row_ttl_ms`` from now (0: none)
    as Feast's ``key_ttl_seconds`` expires the rows it writes."""
    pipe.hset(key, mapping=mapping)
    if row_ttl_ms:
        pipe.pexpire(key, row_ttl_ms)


@lru_cache(maxsize=1 << 18)
def customer_key(customer_id: str) -> bytes:
    """The Redis key of a card's entity row (Feast's layout)."""
    return fl.entity_key(fl.CUSTOMER_JOIN_KEY, customer_id)


@lru_cache(maxsize=1 << 18)
def terminal_key(terminal_id: str) -> bytes:
    """The Redis key of a terminal's entity row (Feast's layout)."""
    return fl.entity_key(fl.TERMINAL_JOIN_KEY, terminal_id)


def id_key(transaction_id: str) -> str:
    return f"txid:{transaction_id}"


ID_MEMORY_S = 35 * 24 * 3600
"""How long a transaction id stays reserved for its content (seconds of wall clock)."""

CARD_FIELDS = fl.card_fields()
TERMINAL_FIELDS = fl.terminal_fields()
TERMINAL_READ_FIELDS = TERMINAL_FIELDS[:2]
"""What scoring reads of a terminal: event times and fraud flags (not the transaction keys)."""


def encode_customer(history: CustomerHistory) -> dict[bytes, bytes]:
    """The ``card_history`` row of a card (HSET mapping): its arrays and the newest event time."""
    values = {
        fl.CARD_TIMES: fl.encode_doubles(history.times_ms),
        fl.CARD_CENTS: fl.encode_doubles(history.cents),
        fl.CARD_LARGE: fl.encode_doubles(history.large),
        fl.CARD_IDS: fl.encode_strings(history.transaction_ids),
    }
    newest = int(history.times_ms.max()) if history.times_ms.size else 0
    return fl.row(fl.CARD_VIEW, values, newest)


def decode_customer(values: Sequence[bytes | None]) -> CustomerHistory:
    """A card's history from its ``card_history`` fields (:data:`CARD_FIELDS` order); an empty
    history when the card has none.

    Raises:
        ValueError: a field does not hold the Feast type of its feature.
    """
    times, cents, large, ids = values
    if times is None:
        return CustomerHistory()
    return CustomerHistory(
        times_ms=fl.decode_doubles(times).astype(np.int64),
        cents=fl.decode_doubles(cents).astype(np.int64),
        transaction_ids=fl.decode_strings(ids),
        large=fl.decode_doubles(large).astype(np.int64),
    )


def encode_terminal(history: TerminalHistory) -> dict[bytes, bytes]:
    """The ``terminal_history`` row of a terminal (HSET mapping)."""
    values = {
        fl.TERMINAL_TIMES: fl.encode_doubles(history.times_ms),
        fl.TERMINAL_FRAUDS: fl.encode_doubles(history.frauds),
        fl.TERMINAL_KEYS: fl.encode_doubles(history.keys),
    }
    newest = int(history.times_ms[-1]) if history.times_ms.size else 0  # sorted
    return fl.row(fl.TERMINAL_VIEW, values, newest)


def decode_terminal(
    times: bytes | None, frauds: bytes | None, keys: bytes | None = None
) -> TerminalHistory:
    """A terminal's history from its ``terminal_history`` fields (without ``keys``, the
    transaction keys are zeros: scoring needs only times and labels).

    Raises:
        ValueError: a field does not hold the Feast type of its feature.
    """
    times_ms = fl.decode_doubles(times).astype(np.int64)
    return TerminalHistory(
        times_ms=times_ms,
        keys=(
            fl.decode_doubles(keys).astype(np.int64)
            if keys is not None
            else np.zeros(times_ms.size, dtype=np.int64)
        ),
        frauds=fl.decode_doubles(frauds).astype(np.int64),
    )


def fingerprint(tx: Transaction) -> bytes:
    """The fields that make a transaction what it is (a redelivery repeats them exactly)."""
    fields = (tx.customer_id, tx.terminal_id, str(tx.time_ms), repr(tx.amount), tx.currency)
    return hashlib.sha256("\x1f".join(fields).encode()).digest()[:16]


def queue_claim(pipe: Any, tx: Transaction) -> bytes:
    """Queue on a pipeline the claim of ``tx``'s id for its content: ``SET txid:<id>
    <fingerprint> NX GET EX`` (replies the fingerprint already there, if any). Returns the
    fingerprint."""
    sig = fingerprint(tx)
    pipe.set(id_key(tx.transaction_id), sig, nx=True, get=True, ex=ID_MEMORY_S)
    return sig


@dataclass
class BatchFeatures:
    """Features of a micro-batch.

    Attributes:
        values: shape (n, len(ALL_FEATURES)), :data:`definitions.ALL_FEATURES` order; rows of
            reused ids are NaN.
        reused: per transaction, True when its id was already used with other content.
    """

    values: FloatArray
    reused: list[bool]


def _reused(
    batch: Sequence[Transaction], prints: list[bytes], previous: list[bytes | None]
) -> list[bool]:
    """True where the id was recorded earlier, or earlier in the batch, with another
    fingerprint (a redelivery repeats the same one)."""
    seen: dict[str, bytes] = {}
    flags = []
    for tx, sig, old in zip(batch, prints, previous, strict=True):
        first = seen.setdefault(tx.transaction_id, sig)
        flags.append((old is not None and old != sig) or first != sig)
    return flags


@dataclass
class _Writes:
    """A micro-batch's state writes not yet sent: the transactions they record and each
    touched card's new ``card_history`` row."""

    transactions: list[Transaction]
    customers: dict[str, dict[bytes, bytes]]

    def queue(self, pipe: Any, row_ttl_ms: int) -> None:
        for customer, mapping in self.customers.items():
            queue_row(pipe, customer_key(customer), mapping, row_ttl_ms)


class RedisFeatureState:
    """Computes features of micro-batches against the entity state in Feast's online store
    (``redis.asyncio``, a single Redis or a Redis Cluster).

    With ``defer_writes``, a batch's state writes are held back and sent at the head of the
    next batch's pipeline (Redis runs a pipeline's commands in order, so that batch reads what
    they wrote; on a cluster, commands to one key keep their order too): one round trip per
    batch instead of two. Whoever defers must call :meth:`flush` before committing the
    batch's offsets or giving up its partitions, and :meth:`take_unwritten` when Redis fails.
    """

    def __init__(
        self, client: Any, defer_writes: bool = False, row_ttl_ms: int = ROW_TTL_MS
    ) -> None:
        self._redis = client
        self._defer = defer_writes
        self._row_ttl_ms = row_ttl_ms
        self._unwritten: _Writes | None = None

    async def features(self, batch: Sequence[Transaction]) -> BatchFeatures:
        """Claim each transaction id, add the batch to its cards' histories (idempotently) and
        return its features. Two round trips per micro-batch (one with deferred writes).

        A transaction's features depend only on what arrived before it on its card
        (:func:`services.features.incremental.customer_features`), never on where the batch
        was cut. A transaction id already recorded with other content (a reused id, not a
        redelivery) is flagged in ``reused``, gets no features (a row of NaN) and is not
        written. Fingerprints expire after :data:`ID_MEMORY_S` (wall clock).

        Raises:
            redis.RedisError: Redis is unreachable (the caller decides in degraded mode);
                deferred writes not known to be written stay unwritten.
        """
        customers = list(dict.fromkeys(tx.customer_id for tx in batch))
        terminals = list(dict.fromkeys(tx.terminal_id for tx in batch))
        pipe = self._redis.pipeline(transaction=False)
        sending, self._unwritten = self._unwritten, None
        if sending is not None:
            sending.queue(pipe, self._row_ttl_ms)
        first = len(pipe)
        prints = [queue_claim(pipe, tx) for tx in batch]
        for customer in customers:
            pipe.hmget(customer_key(customer), CARD_FIELDS)
        for terminal in terminals:
            pipe.hmget(terminal_key(terminal), TERMINAL_READ_FIELDS)
        try:
            replies = (await pipe.execute())[first:]
        except BaseException:
            self._unwritten = sending
            raise
        n, m = len(batch), len(customers)
        reused = _reused(batch, prints, replies[:n])
        kept = [tx for tx, bad in zip(batch, reused, strict=True) if not bad]
        histories = {
            c: decode_customer(r) for c, r in zip(customers, replies[n : n + m], strict=True)
        }
        sites = {t: decode_terminal(*r) for t, r in zip(terminals, replies[n + m :], strict=True)}
        values = np.full((n, len(ALL_FEATURES)), np.nan)
        if not kept:
            return BatchFeatures(values, reused)
        values[~np.asarray(reused, dtype=bool)] = batch_features(kept, histories, sites)

        touched = dict.fromkeys(tx.customer_id for tx in kept)
        written = {}
        for customer in touched:
            history = histories[customer]
            history.prune(int(history.times_ms.max()))
            written[customer] = encode_customer(history)
        self._unwritten = _Writes(kept, written)
        if not self._defer:
            await self.flush()
        return BatchFeatures(values, reused)

    async def flush(self) -> None:
        """Send the deferred writes, if any.

        Raises:
            redis.RedisError: Redis is unreachable; the writes stay unwritten.
        """
        sending, self._unwritten = self._unwritten, None
        if sending is None:
            return
        pipe = self._redis.pipeline(transaction=False)
        sending.queue(pipe, self._row_ttl_ms)
        try:
            await pipe.execute()
        except BaseException:
            self._unwritten = sending
            raise

    def take_unwritten(self) -> list[Transaction]:
        """The transactions whose state writes were deferred and not sent (or not known to
        have been), oldest first; forgets the writes. After a Redis failure they are
        recorded again through :meth:`features` (which is idempotent)."""
        taken, self._unwritten = self._unwritten, None
        return taken.transactions if taken is not None else []


__all__ = [
    "CARD_FIELDS",
    "BatchFeatures",
    "RedisFeatureState",
    "customer_key",
    "decode_customer",
    "decode_terminal",
    "encode_customer",
    "encode_terminal",
    "terminal_key",
]
