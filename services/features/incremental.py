"""Features of streaming transactions, from each card's and terminal's recent history.

The scorer keeps a :class:`CustomerHistory` per card and a :class:`TerminalHistory` per
terminal (persisted in Redis by its adapter). :func:`batch_features` adds a micro-batch to the
card histories and applies the same window functions as the batch path
(:mod:`services.features.windows`) to *history plus micro-batch*, vectorised over the whole
micro-batch, so a transaction gets the same values online as offline. Idempotent: a
transaction already in a history (a redelivery after a crash) is not added again and gets the
same values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from services.features import definitions as d
from services.features.derived import amount_ratios, calendar_flags, large_amount_flags
from services.features.windows import (
    FloatArray,
    Int64Array,
    delayed_window,
    event_keys,
    prefix_sums,
    to_cents,
    trailing_sum,
    trailing_window,
)

REPLAY_SLACK_MS = 15 * d.MS_PER_DAY
"""Extra history kept beyond the longest window, so that a stream can be replayed from up to
15 days before its newest event and still find every event its windows need."""
CUSTOMER_HORIZON_MS = max(d.WINDOWS_DAYS) * d.MS_PER_DAY + REPLAY_SLACK_MS
"""How far back (before its newest event) a customer history keeps events."""
TERMINAL_HORIZON_MS = (max(d.WINDOWS_DAYS) + d.LABEL_DELAY_DAYS) * d.MS_PER_DAY + REPLAY_SLACK_MS

CUSTOMER_BLOCK: tuple[str, ...] = (*d.CUSTOMER_FEATURES, d.LARGE_AMOUNT_COUNT)
"""Columns of :func:`customer_features`."""


def _empty() -> Int64Array:
    return np.zeros(0, dtype=np.int64)


class TransactionLike(Protocol):
    """What the feature code needs of a transaction."""

    @property
    def transaction_id(self) -> str: ...
    @property
    def customer_id(self) -> str: ...
    @property
    def terminal_id(self) -> str: ...
    @property
    def time_ms(self) -> int: ...
    @property
    def amount(self) -> float: ...


@dataclass
class CustomerHistory:
    """One card's recent transactions, sorted by event time (ties in arrival order).

    Attributes:
        times_ms: event times, epoch milliseconds, shape (n,).
        cents: amounts in minor units, shape (n,).
        transaction_ids: shape (n,), for idempotence.
        large: 1 where the transaction was unusually large at its time, shape (n,).
    """

    times_ms: Int64Array = field(default_factory=_empty)
    cents: Int64Array = field(default_factory=_empty)
    transaction_ids: list[str] = field(default_factory=list)
    large: Int64Array = field(default_factory=_empty)

    def add(self, new: Sequence[TransactionLike]) -> None:
        """Append transactions not yet present, keeping event-time order (ties: arrival)."""
        known = set(self.transaction_ids)
        fresh = []
        for tx in new:
            if tx.transaction_id not in known:
                known.add(tx.transaction_id)
                fresh.append(tx)
        if not fresh:
            return
        before = len(self.transaction_ids)
        times = np.array([tx.time_ms for tx in fresh], dtype=np.int64)
        self.times_ms = np.concatenate([self.times_ms, times])
        self.cents = np.concatenate([self.cents, to_cents([tx.amount for tx in fresh])])
        self.large = np.concatenate([self.large, np.full(len(fresh), -1, dtype=np.int64)])
        self.transaction_ids = self.transaction_ids + [tx.transaction_id for tx in fresh]
        if np.any(np.diff(self.times_ms[max(before - 1, 0) :]) < 0):  # a late arrival
            order = np.argsort(self.times_ms, kind="stable")
            self.times_ms, self.cents = self.times_ms[order], self.cents[order]
            self.large = self.large[order]
            self.transaction_ids = [self.transaction_ids[k] for k in order]

    def prune(self, now_ms: int) -> None:
        """Forget events older than the horizon before ``now_ms``."""
        keep = int(np.searchsorted(self.times_ms, now_ms - CUSTOMER_HORIZON_MS, side="left"))
        if keep:
            self.times_ms, self.cents = self.times_ms[keep:], self.cents[keep:]
            self.large = self.large[keep:]
            del self.transaction_ids[:keep]


@dataclass
class TerminalHistory:
    """One terminal's recent transactions and the fraud labels received for them.

    Attributes:
        times_ms: event times, sorted, shape (n,).
        transaction_ids: shape (n,).
        frauds: 1 where a fraud label was received for the transaction, shape (n,).
    """

    times_ms: Int64Array = field(default_factory=_empty)
    transaction_ids: list[str] = field(default_factory=list)
    frauds: Int64Array = field(default_factory=_empty)

    def observe_transaction(self, transaction_id: str, time_ms: int) -> int:
        """Record a transaction on this terminal (no-op if known); return its index."""
        try:
            return self.transaction_ids.index(transaction_id)
        except ValueError:
            position = int(np.searchsorted(self.times_ms, time_ms, side="right"))
            self.times_ms = np.insert(self.times_ms, position, time_ms)
            self.frauds = np.insert(self.frauds, position, 0)
            self.transaction_ids.insert(position, transaction_id)
            return position

    def observe_label(self, transaction_id: str, transaction_time_ms: int, is_fraud: bool) -> None:
        """Record a label; the latest label of a transaction wins.

        A label may arrive before the scorer saw its transaction (the label carries the
        transaction's time), so it records the transaction too.
        """
        position = self.observe_transaction(transaction_id, transaction_time_ms)
        self.frauds[position] = int(is_fraud)

    def prune(self, now_ms: int) -> None:
        """Forget events older than the horizon before ``now_ms``."""
        keep = int(np.searchsorted(self.times_ms, now_ms - TERMINAL_HORIZON_MS, side="left"))
        if keep:
            self.times_ms, self.frauds = self.times_ms[keep:], self.frauds[keep:]
            del self.transaction_ids[:keep]


def customer_features(
    batch: Sequence[TransactionLike], histories: Mapping[str, CustomerHistory]
) -> FloatArray:
    """Add ``batch`` to the card histories and return its customer features.

    Args:
        batch: transactions in stream order; each one's card must be in ``histories``.

    Returns:
        Shape (len(batch), 7), columns :data:`CUSTOMER_BLOCK`: counts and mean amounts over
        ``(t - n days, t]`` (the transaction included), then the large-transaction count.
    """
    rows: dict[str, list[int]] = {}
    for i, tx in enumerate(batch):
        rows.setdefault(tx.customer_id, []).append(i)
    positions = np.empty(len(batch), dtype=np.int64)
    codes, times, cents, large = [], [], [], []
    offset = 0
    for code, (customer, members) in enumerate(rows.items()):
        history = histories[customer]
        history.add([batch[i] for i in members])
        index = {tid: k for k, tid in enumerate(history.transaction_ids)}
        for i in members:
            positions[i] = offset + index[batch[i].transaction_id]
        n = len(history.transaction_ids)
        codes.append(np.full(n, code, dtype=np.int64))
        times.append(history.times_ms)
        cents.append(history.cents)
        large.append(history.large)
        offset += n
    keys = event_keys(np.concatenate(codes), np.concatenate(times))
    prefix = prefix_sums(np.concatenate(cents))
    out = np.empty((len(batch), len(CUSTOMER_BLOCK)))
    for j, days in enumerate(d.WINDOWS_DAYS):
        out[:, 2 * j], out[:, 2 * j + 1] = trailing_window(keys, prefix, positions, days)
    flags = np.concatenate(large)
    unset = flags[positions] < 0  # transactions added just now: flag from their own mean
    if unset.any():
        amounts = np.array([tx.amount for tx in batch], dtype=np.float64)
        mean_30 = out[:, 2 * d.WINDOWS_DAYS.index(max(d.WINDOWS_DAYS)) + 1]
        flags[positions[unset]] = large_amount_flags(amounts[unset], mean_30[unset])
        offset = 0
        for customer in rows:
            history = histories[customer]
            history.large = flags[offset : offset + len(history.transaction_ids)].copy()
            offset += len(history.transaction_ids)
    out[:, -1] = trailing_sum(keys, prefix_sums(flags), positions, d.LARGE_AMOUNT_WINDOW_DAYS)
    return out


def terminal_features(
    times_ms: Int64Array, terminal_ids: Sequence[str], histories: Mapping[str, TerminalHistory]
) -> FloatArray:
    """Terminal risk at each transaction's time: transactions in ``(t - 7 - n, t - 7]`` days
    and the share labelled fraud, n = 1, 7, 30.

    Returns:
        Shape (len(times_ms), 6), columns :data:`definitions.TERMINAL_FEATURES`.
    """
    codes = {t: k for k, t in enumerate(dict.fromkeys(terminal_ids))}
    sites = [histories[t] for t in codes]
    keys = event_keys(
        np.concatenate([np.full(len(h.times_ms), k, dtype=np.int64) for k, h in enumerate(sites)]),
        np.concatenate([h.times_ms for h in sites]),
    )
    frauds = prefix_sums(np.concatenate([h.frauds for h in sites]))
    query = event_keys(np.array([codes[t] for t in terminal_ids], dtype=np.int64), times_ms)
    out = np.empty((len(terminal_ids), len(d.TERMINAL_FEATURES)))
    for j, days in enumerate(d.WINDOWS_DAYS):
        out[:, 2 * j], out[:, 2 * j + 1] = delayed_window(
            keys, frauds, query, days, d.LABEL_DELAY_DAYS
        )
    return out


def batch_features(
    batch: Sequence[TransactionLike],
    customers: Mapping[str, CustomerHistory],
    terminals: Mapping[str, TerminalHistory],
) -> FloatArray:
    """Every feature of a micro-batch, shape (len(batch), len(ALL_FEATURES)), columns in
    :data:`definitions.ALL_FEATURES` order. Adds the batch to the card histories; recording
    the transactions on their terminals is the caller's (they do not count for 7 days)."""
    times = np.array([tx.time_ms for tx in batch], dtype=np.int64)
    amounts = np.array([tx.amount for tx in batch], dtype=np.float64)
    customer = customer_features(batch, customers)
    terminal = terminal_features(times, [tx.terminal_id for tx in batch], terminals)
    weekend, night = calendar_flags(times)
    columns: dict[str, FloatArray] = {
        d.AMOUNT: amounts,
        d.WEEKEND: weekend.astype(np.float64),
        d.NIGHT: night.astype(np.float64),
    }
    columns.update({name: customer[:, j] for j, name in enumerate(CUSTOMER_BLOCK)})
    columns.update({name: terminal[:, j] for j, name in enumerate(d.TERMINAL_FEATURES)})
    columns.update(amount_ratios(amounts, columns))
    return np.column_stack([np.asarray(columns[name], dtype=np.float64) for name in d.ALL_FEATURES])
