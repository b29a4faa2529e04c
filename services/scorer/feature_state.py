"""Feature state in Redis: each card's and each terminal's recent history.

Adapter of :mod:`services.features.incremental` to Redis. A card's history is one string key
written by its partition's owner only (transactions are keyed by card). A terminal is touched
by every partition and by labels, so its history lives in two sorted sets updated with
idempotent ``ZADD``/``ZREM`` (member: transaction id, score: event time in ms), never
read-modify-write: concurrent scorers cannot lose each other's updates.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

import numpy as np

from services.common.events import Label, Transaction
from services.features.incremental import (
    CUSTOMER_HORIZON_MS,
    TERMINAL_HORIZON_MS,
    CustomerHistory,
    TerminalHistory,
    transaction_features,
)

_MAGIC = b"CH1"
_SEP = "\x1f"


def customer_key(customer_id: str) -> str:
    return f"fs:c:{customer_id}"


def terminal_tx_key(terminal_id: str) -> str:
    return f"fs:t:{terminal_id}:tx"


def terminal_fraud_key(terminal_id: str) -> str:
    return f"fs:t:{terminal_id}:fraud"


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


def terminal_from_sets(
    transactions: Sequence[tuple[bytes, float]], frauds: Sequence[bytes]
) -> TerminalHistory:
    """A terminal history from its sorted-set members (``ZRANGE ... WITHSCORES``)."""
    fraud_ids = set(frauds)
    ids = [m.decode() for m, _ in transactions]
    times = np.fromiter((int(s) for _, s in transactions), np.int64, len(transactions))
    flags = np.fromiter((m in fraud_ids for m, _ in transactions), np.int64, len(transactions))
    return TerminalHistory(times_ms=times, transaction_ids=ids, frauds=flags)


class RedisFeatureState:
    """Computes features of micro-batches against histories in Redis (``redis.asyncio``)."""

    def __init__(self, client: Any) -> None:
        self._redis = client

    async def features(self, batch: Sequence[Transaction]) -> list[dict[str, float]]:
        """Update the histories with ``batch`` (idempotently) and return each transaction's
        features, in order. Two Redis round trips per batch.

        Raises:
            redis.RedisError: Redis is unreachable (the caller decides in degraded mode).
        """
        customers = list(dict.fromkeys(tx.customer_id for tx in batch))
        terminals = list(dict.fromkeys(tx.terminal_id for tx in batch))
        since = min(tx.time_ms for tx in batch) - TERMINAL_HORIZON_MS
        pipe = self._redis.pipeline(transaction=False)
        for customer in customers:
            pipe.get(customer_key(customer))
        for terminal in terminals:
            pipe.zrange(terminal_tx_key(terminal), since, "+inf", byscore=True, withscores=True)
            pipe.zrange(terminal_fraud_key(terminal), since, "+inf", byscore=True)
        replies = await pipe.execute()
        histories = {c: decode_customer(r) for c, r in zip(customers, replies, strict=False)}
        rest = replies[len(customers) :]
        sites = {
            t: terminal_from_sets(rest[2 * i], rest[2 * i + 1]) for i, t in enumerate(terminals)
        }

        out = []
        for tx in batch:
            customer = histories[tx.customer_id].observe(tx.transaction_id, tx.time_ms, tx.amount)
            terminal = sites[tx.terminal_id].features_at(tx.time_ms)
            out.append(transaction_features(tx.time_ms, tx.amount, customer, terminal))

        pipe = self._redis.pipeline(transaction=False)
        for customer_id, history in histories.items():
            history.prune(int(history.times_ms[-1]))
            pipe.set(customer_key(customer_id), encode_customer(history))
        for tx in batch:
            pipe.zadd(terminal_tx_key(tx.terminal_id), {tx.transaction_id: tx.time_ms})
        for terminal in terminals:
            newest = max(tx.time_ms for tx in batch if tx.terminal_id == terminal)
            for key in (terminal_tx_key(terminal), terminal_fraud_key(terminal)):
                pipe.zremrangebyscore(key, "-inf", newest - TERMINAL_HORIZON_MS)
        await pipe.execute()
        return out

    async def apply_labels(self, labels: Sequence[Label]) -> None:
        """Record labels for terminal risk; the latest label of a transaction wins.

        Raises:
            redis.RedisError: Redis is unreachable (the caller retries; labels are not acked).
        """
        pipe = self._redis.pipeline(transaction=False)
        for label in labels:
            when = label.transaction_time_ms
            pipe.zadd(terminal_tx_key(label.terminal_id), {label.transaction_id: when})
            if label.is_fraud:
                pipe.zadd(terminal_fraud_key(label.terminal_id), {label.transaction_id: when})
            else:
                pipe.zrem(terminal_fraud_key(label.terminal_id), label.transaction_id)
        await pipe.execute()


__all__ = [
    "CUSTOMER_HORIZON_MS",
    "RedisFeatureState",
    "customer_key",
    "decode_customer",
    "encode_customer",
    "terminal_fraud_key",
    "terminal_tx_key",
]
