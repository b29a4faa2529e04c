"""Feature state in Redis: each card's and each terminal's recent history.

Adapter of :mod:`services.features.incremental` to Redis. A card's history is one string key
written by its partition's owner only (transactions are keyed by card). A terminal is touched
by every partition and by labels, so its history is one sorted set updated only with
idempotent ``ZADD``/``ZREM`` (score: event time in ms; member: the transaction id, plus
``!<id>`` once a fraud label arrived), never read-modify-write: concurrent scorers cannot lose
each other's updates. Two round trips per micro-batch, the transaction-id check included; one
when the writes are deferred (``defer_writes``): a batch's writes then go out at the head of
the next batch's pipeline, or at :meth:`RedisFeatureState.flush`.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from services.common.events import Label, Transaction
from services.features.definitions import ALL_FEATURES
from services.features.incremental import (
    TERMINAL_HORIZON_MS,
    CustomerHistory,
    TerminalHistory,
    batch_features,
)
from services.features.windows import FloatArray

_MAGIC = b"CH1"
_SEP = "\x1f"
FRAUD_MARK = "!"


def customer_key(customer_id: str) -> str:
    return f"fs:c:{customer_id}"


def terminal_key(terminal_id: str) -> str:
    return f"fs:t:{terminal_id}"


def id_key(transaction_id: str) -> str:
    return f"txid:{transaction_id}"


ID_MEMORY_S = 35 * 24 * 3600
"""How long a transaction id stays reserved for its content (seconds of wall clock)."""


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


def encode_customer(history: CustomerHistory) -> bytes:
    """A compact binary form: magic, count, times, cents, large flags, ids."""
    n = len(history.transaction_ids)
    return b"".join(
        (
            _MAGIC,
            struct.pack("<I", n),
            history.times_ms.astype("<i8").tobytes(),
            history.cents.astype("<i8").tobytes(),
            history.large.astype("i1").tobytes(),
            _SEP.join(history.transaction_ids).encode(),
        )
    )


def decode_customer(raw: bytes | None) -> CustomerHistory:
    """Inverse of :func:`encode_customer`; an empty history for None.

    Raises:
        ValueError: the bytes are not an encoded history.
    """
    if raw is None:
        return CustomerHistory()
    if raw[:3] != _MAGIC:
        raise ValueError("not an encoded customer history")
    (n,) = struct.unpack_from("<I", raw, 3)
    at = 7
    times = np.frombuffer(raw, "<i8", n, at).astype(np.int64)
    cents = np.frombuffer(raw, "<i8", n, at + 8 * n).astype(np.int64)
    large = np.frombuffer(raw, "i1", n, at + 16 * n).astype(np.int64)
    ids_raw = raw[at + 17 * n :].decode()
    ids = ids_raw.split(_SEP) if n else []
    return CustomerHistory(times_ms=times, cents=cents, transaction_ids=ids, large=large)


def terminal_from_members(members: Sequence[tuple[bytes, float]]) -> TerminalHistory:
    """A terminal history from its sorted set (``ZRANGE ... BYSCORE ... WITHSCORES``)."""
    frauds = {m[1:] for m, _ in members if m[:1] == b"!"}
    txs = [(m, s) for m, s in members if m[:1] != b"!"]
    return TerminalHistory(
        times_ms=np.fromiter((int(s) for _, s in txs), np.int64, len(txs)),
        transaction_ids=[m.decode() for m, _ in txs],
        frauds=np.fromiter((m in frauds for m, _ in txs), np.int64, len(txs)),
    )


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
    """A micro-batch's state writes not yet sent: the transactions they record, each touched
    card's whole new history, each terminal's new members."""

    transactions: list[Transaction]
    customers: dict[str, bytes]
    terminals: dict[str, dict[str, int]]

    def queue(self, pipe: Any) -> None:
        if self.customers:
            pipe.mset({customer_key(c): blob for c, blob in self.customers.items()})
        for terminal, members in self.terminals.items():
            pipe.zadd(terminal_key(terminal), members)
            # pruned at every write: a set that passes 128 members turns from listpack into
            # skiplist (about 5 times the bytes) and stays so; pruning 2 % of the writes left
            # 87.5 % of terminals there after a year (`fraud bench-memory`)
            horizon = max(members.values()) - TERMINAL_HORIZON_MS
            pipe.zremrangebyscore(terminal_key(terminal), "-inf", horizon)


class RedisFeatureState:
    """Computes features of micro-batches against histories in Redis (``redis.asyncio``).

    With ``defer_writes``, a batch's state writes are held back and sent at the head of the
    next batch's pipeline (Redis runs a pipeline's commands in order, so that batch reads what
    they wrote): one round trip per batch instead of two. Whoever defers must call
    :meth:`flush` before committing the batch's offsets or giving up its partitions, and
    :meth:`take_unwritten` when Redis fails.
    """

    def __init__(self, client: Any, defer_writes: bool = False) -> None:
        self._redis = client
        self._defer = defer_writes
        self._unwritten: _Writes | None = None

    async def features(self, batch: Sequence[Transaction]) -> BatchFeatures:
        """Claim each transaction id, update the histories with the batch (idempotently) and
        return its features. Two round trips per micro-batch (one with deferred writes).

        A transaction id already recorded with other content (a reused id, not a redelivery)
        is flagged in ``reused``, gets no features (a row of NaN) and is not written.
        Fingerprints expire after :data:`ID_MEMORY_S` (wall clock).

        Raises:
            redis.RedisError: Redis is unreachable (the caller decides in degraded mode);
                deferred writes not known to be written stay unwritten.
        """
        customers = list(dict.fromkeys(tx.customer_id for tx in batch))
        terminals = list(dict.fromkeys(tx.terminal_id for tx in batch))
        since = min(tx.time_ms for tx in batch) - TERMINAL_HORIZON_MS
        pipe = self._redis.pipeline(transaction=False)
        sending, self._unwritten = self._unwritten, None
        if sending is not None:
            sending.queue(pipe)
        first = len(pipe)
        prints = [queue_claim(pipe, tx) for tx in batch]
        pipe.mget([customer_key(c) for c in customers])
        for terminal in terminals:
            pipe.zrange(terminal_key(terminal), since, "+inf", byscore=True, withscores=True)
        try:
            replies = (await pipe.execute())[first:]
        except BaseException:
            self._unwritten = sending
            raise
        n = len(batch)
        reused = _reused(batch, prints, replies[:n])
        kept = [tx for tx, bad in zip(batch, reused, strict=True) if not bad]
        histories = {c: decode_customer(r) for c, r in zip(customers, replies[n], strict=True)}
        sites = {
            t: terminal_from_members(r) for t, r in zip(terminals, replies[n + 1 :], strict=True)
        }
        values = np.full((n, len(ALL_FEATURES)), np.nan)
        if not kept:
            return BatchFeatures(values, reused)
        values[~np.asarray(reused, dtype=bool)] = batch_features(kept, histories, sites)

        touched = {tx.customer_id for tx in kept}
        written = {c: h for c, h in histories.items() if c in touched}
        for history in written.values():
            history.prune(int(history.times_ms[-1]))
        by_terminal: dict[str, dict[str, int]] = {}
        for tx in kept:
            by_terminal.setdefault(tx.terminal_id, {})[tx.transaction_id] = tx.time_ms
        self._unwritten = _Writes(
            kept, {c: encode_customer(h) for c, h in written.items()}, by_terminal
        )
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
        sending.queue(pipe)
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

    async def apply_labels(self, labels: Sequence[Label]) -> None:
        """Record labels for terminal risk; the latest label of a transaction wins.

        Raises:
            redis.RedisError: Redis is unreachable (the caller retries; labels are not acked).
        """
        pipe = self._redis.pipeline(transaction=False)
        for label in labels:
            key, when = terminal_key(label.terminal_id), label.transaction_time_ms
            pipe.zadd(key, {label.transaction_id: when})
            if label.is_fraud:
                pipe.zadd(key, {FRAUD_MARK + label.transaction_id: when})
            else:
                pipe.zrem(key, FRAUD_MARK + label.transaction_id)
        await pipe.execute()


__all__ = [
    "FRAUD_MARK",
    "BatchFeatures",
    "RedisFeatureState",
    "customer_key",
    "decode_customer",
    "encode_customer",
    "terminal_key",
]
