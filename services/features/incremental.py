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

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from services.features import definitions as d
from services.features.derived import amount_ratios, calendar_flags, large_amount_flags
from services.features.windows import (
    FloatArray,
    Int64Array,
    delayed_window,
    event_keys,
    first_flag_window,
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
TERMINAL_HORIZON_MS = (
    max(*d.WINDOWS_DAYS, d.TERMINAL_COMPROMISE_WINDOW_DAYS) + d.LABEL_DELAY_DAYS
) * d.MS_PER_DAY + REPLAY_SLACK_MS
"""How far back a terminal history keeps events: its longest delayed window, and the slack."""

CUSTOMER_BLOCK: tuple[str, ...] = (*d.CUSTOMER_FEATURES, d.LARGE_AMOUNT_COUNT)
"""Columns of :func:`customer_features`."""
TERMINAL_BLOCK: tuple[str, ...] = d.TERMINAL_ALL_FEATURES
"""Columns of :func:`terminal_features`."""


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
    """One card's recent transactions in arrival order (the order of its partition).

    Arrival order, not event-time order: a transaction's features count only what arrived
    before it (and itself), so where a micro-batch ends, or a late event that arrives after
    it, changes nothing (for a stream in event-time order both orders are the same).

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
        """Append the transactions not yet present, in arrival order."""
        known = set(self.transaction_ids)
        fresh = []
        for tx in new:
            if tx.transaction_id not in known:
                known.add(tx.transaction_id)
                fresh.append(tx)
        if not fresh:
            return
        times = np.array([tx.time_ms for tx in fresh], dtype=np.int64)
        self.times_ms = np.concatenate([self.times_ms, times])
        self.cents = np.concatenate([self.cents, to_cents([tx.amount for tx in fresh])])
        self.large = np.concatenate([self.large, np.full(len(fresh), -1, dtype=np.int64)])
        self.transaction_ids = self.transaction_ids + [tx.transaction_id for tx in fresh]

    def prune(self, now_ms: int) -> None:
        """Forget events older than the horizon before ``now_ms`` (arrival order kept)."""
        keep = self.times_ms >= now_ms - CUSTOMER_HORIZON_MS
        if not keep.all():
            self.times_ms, self.cents = self.times_ms[keep], self.cents[keep]
            self.large = self.large[keep]
            self.transaction_ids = [t for t, k in zip(self.transaction_ids, keep, strict=True) if k]


def transaction_key(transaction_id: str) -> int:
    """A 48-bit key of a transaction id (BLAKE2b), exact as a float64: how a terminal's
    history knows its transactions without holding their ids (a collision between two of a
    terminal's ~100 recent transactions has odds of about 1 in 10^10)."""
    digest = hashlib.blake2b(transaction_id.encode(), digest_size=6).digest()
    return int.from_bytes(digest, "little")


_FEW = 8
"""Up to this many new transactions, a terminal looks each one up in its keys by comparison;
beyond, through a set of them (a backfill's thousands)."""


@dataclass
class TerminalHistory:
    """One terminal's recent transactions and the fraud labels received for them.

    Attributes:
        times_ms: event times, sorted, shape (n,).
        keys: :func:`transaction_key` of each transaction, shape (n,).
        frauds: 1 where a fraud label was received for the transaction, shape (n,).
    """

    times_ms: Int64Array = field(default_factory=_empty)
    keys: Int64Array = field(default_factory=_empty)
    frauds: Int64Array = field(default_factory=_empty)

    def observe_transaction(self, transaction_id: str, time_ms: int) -> int:
        """Record a transaction on this terminal (no-op if known); return its index."""
        self.observe_transactions([(transaction_id, time_ms)])
        return int(np.flatnonzero(self.keys == transaction_key(transaction_id))[0])

    def observe_transactions(self, transactions: Sequence[tuple[str, int]]) -> None:
        """Record the (transaction id, event time ms) pairs not yet known, keeping event-time
        order (ties: known ones first, then in the given order)."""
        fresh: dict[int, int] = {}
        for transaction_id, time_ms in transactions:
            fresh.setdefault(transaction_key(transaction_id), time_ms)
        if len(fresh) <= _FEW:  # the writer's usual case: a comparison each, no set of keys
            new = [(k, t) for k, t in fresh.items() if not (self.keys == k).any()]
        else:
            known = set(self.keys.tolist())
            new = [(k, t) for k, t in fresh.items() if k not in known]
        if not new:
            return
        added = [t for _, t in new]
        self.keys = np.concatenate([self.keys, np.array([k for k, _ in new], dtype=np.int64)])
        self.frauds = np.concatenate([self.frauds, np.zeros(len(new), np.int64)])
        times = np.concatenate([self.times_ms, np.array(added, dtype=np.int64)])
        previous = int(self.times_ms[-1]) if self.times_ms.size else added[0]
        if any(b < a for a, b in zip([previous, *added], added, strict=False)):  # out of order
            order = np.argsort(times, kind="stable")  # ties: known first, then arrival
            times, self.keys, self.frauds = times[order], self.keys[order], self.frauds[order]
        self.times_ms = times

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
            self.keys = self.keys[keep:]


def customer_features(
    batch: Sequence[TransactionLike], histories: Mapping[str, CustomerHistory]
) -> FloatArray:
    """Add ``batch`` to the card histories and return its customer features.

    A transaction's windows hold the card's transactions that arrived before it (or are it)
    and whose event time lies in ``(t - n days, t]``: what came later in the stream never
    counts, even in the same micro-batch or with an earlier event time. A transaction already
    in its history (a redelivery) gets the values it got the first time.

    Args:
        batch: transactions in stream order; each one's card must be in ``histories``.

    Returns:
        Shape (len(batch), 7), columns :data:`CUSTOMER_BLOCK`: counts and mean amounts over
        the 1, 7 and 30 days windows, then the large-transaction count.
    """
    rows: dict[str, list[int]] = {}
    for i, tx in enumerate(batch):
        rows.setdefault(tx.customer_id, []).append(i)
    positions = np.empty(len(batch), dtype=np.int64)
    starts = np.empty(len(batch), dtype=np.int64)
    codes, times, cents, large = [], [], [], []
    offset = 0
    for code, (customer, members) in enumerate(rows.items()):
        history = histories[customer]
        history.add([batch[i] for i in members])
        index = {tid: k for k, tid in enumerate(history.transaction_ids)}
        for i in members:
            positions[i] = offset + index[batch[i].transaction_id]
            starts[i] = offset
        n = len(history.transaction_ids)
        codes.append(np.full(n, code, dtype=np.int64))
        times.append(history.times_ms)
        cents.append(history.cents)
        large.append(history.large)
        offset += n
    all_codes, all_times = np.concatenate(codes), np.concatenate(times)
    keys = event_keys(all_codes, all_times)
    # a card whose events did not arrive in event-time order needs the exact (slow) count
    descents = np.diff(keys) < 0
    late = np.isin(all_codes[positions], all_codes[1:][descents]) if descents.any() else ()
    late_rows = _LateArrivals(all_times, positions, starts, np.flatnonzero(late))
    amounts_cents = np.concatenate(cents)
    prefix = prefix_sums(amounts_cents)
    out = np.empty((len(batch), len(CUSTOMER_BLOCK)))
    for j, days in enumerate(d.WINDOWS_DAYS):
        counts, means = trailing_window(keys, prefix, positions, days)
        late_rows.patch(counts, means, amounts_cents, days, scale=100.0)
        out[:, 2 * j], out[:, 2 * j + 1] = counts, means
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
    large_counts = trailing_sum(keys, prefix_sums(flags), positions, d.LARGE_AMOUNT_WINDOW_DAYS)
    late_rows.patch(None, large_counts, flags, d.LARGE_AMOUNT_WINDOW_DAYS)
    out[:, -1] = large_counts
    return out


@dataclass
class _LateArrivals:
    """The rows of cards whose events did not arrive in event-time order, counted one by one.

    For the other rows the windows of :mod:`services.features.windows` give the definition
    exactly (a binary search over the batch's keys, where keys of other cards compare alike
    whatever their order); here the window holds the card's events that arrived up to the
    transaction (``starts`` to ``positions``) with an event time in ``(t - n days, t]``.
    """

    times: Int64Array
    positions: Int64Array
    starts: Int64Array
    rows: Int64Array

    def patch(
        self,
        counts: Int64Array | None,
        values_out: npt.NDArray[Any],
        values: Int64Array,
        days: int,
        scale: float | None = None,
    ) -> None:
        """Overwrite the late rows of ``counts`` and ``values_out``: the sum of ``values`` in
        the window, or its mean divided by ``scale`` when ``scale`` is given."""
        span = days * d.MS_PER_DAY
        for r in self.rows:
            first, at = self.starts[r], self.positions[r] + 1
            seen = self.times[first:at]
            inside = (seen > seen[-1] - span) & (seen <= seen[-1])
            total, n = int(values[first:at][inside].sum()), int(inside.sum())
            if counts is not None:
                counts[r] = n
            values_out[r] = total / n / scale if scale else total


def terminal_features(
    times_ms: Int64Array, terminal_ids: Sequence[str], histories: Mapping[str, TerminalHistory]
) -> FloatArray:
    """Terminal risk at each transaction's time: transactions in ``(t - 7 - n, t - 7]`` days
    and the share labelled fraud, n = 1, 7, 30; then the age of the first fraud of the 30-day
    window and the share of frauds since it (:func:`windows.first_flag_window`).

    Returns:
        Shape (len(times_ms), 8), columns :data:`TERMINAL_BLOCK`.
    """
    codes = {t: k for k, t in enumerate(dict.fromkeys(terminal_ids))}
    sites = [histories[t] for t in codes]
    keys = event_keys(
        np.concatenate([np.full(len(h.times_ms), k, dtype=np.int64) for k, h in enumerate(sites)]),
        np.concatenate([h.times_ms for h in sites]),
    )
    labels = np.concatenate([h.frauds for h in sites])
    frauds = prefix_sums(labels)
    query = event_keys(np.array([codes[t] for t in terminal_ids], dtype=np.int64), times_ms)
    out = np.empty((len(terminal_ids), len(TERMINAL_BLOCK)))
    for j, days in enumerate(d.WINDOWS_DAYS):
        out[:, 2 * j], out[:, 2 * j + 1] = delayed_window(
            keys, frauds, query, days, d.LABEL_DELAY_DAYS
        )
    out[:, -2], out[:, -1] = first_flag_window(
        keys, labels, query, d.TERMINAL_COMPROMISE_WINDOW_DAYS, d.LABEL_DELAY_DAYS
    )
    return out


_COLUMN = {name: j for j, name in enumerate(d.ALL_FEATURES)}
_CUSTOMER_COLUMNS = np.array([_COLUMN[name] for name in CUSTOMER_BLOCK])
_TERMINAL_COLUMNS = np.array([_COLUMN[name] for name in TERMINAL_BLOCK])


def batch_features(
    batch: Sequence[TransactionLike],
    customers: Mapping[str, CustomerHistory],
    terminals: Mapping[str, TerminalHistory],
) -> FloatArray:
    """Every feature of a micro-batch, shape (len(batch), len(ALL_FEATURES)), columns in
    :data:`definitions.ALL_FEATURES` order. Adds the batch to the card histories; recording
    the transactions on their terminals is the caller's (they do not count for 7 days)."""
    n = len(batch)
    times = np.fromiter((tx.time_ms for tx in batch), dtype=np.int64, count=n)
    amounts = np.fromiter((tx.amount for tx in batch), dtype=np.float64, count=n)
    out = np.empty((n, len(d.ALL_FEATURES)))  # every column is written below
    out[:, _CUSTOMER_COLUMNS] = customer_features(batch, customers)
    out[:, _TERMINAL_COLUMNS] = terminal_features(
        times, [tx.terminal_id for tx in batch], terminals
    )
    weekend, night = calendar_flags(times)
    out[:, _COLUMN[d.AMOUNT]] = amounts
    out[:, _COLUMN[d.WEEKEND]] = weekend
    out[:, _COLUMN[d.NIGHT]] = night
    means = {name: out[:, _COLUMN[name]] for name in map(d.customer_mean, d.WINDOWS_DAYS)}
    for name, ratio in amount_ratios(amounts, means).items():
        out[:, _COLUMN[name]] = ratio
    return out
